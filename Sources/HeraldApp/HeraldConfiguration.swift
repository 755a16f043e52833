import Foundation
#if canImport(Glibc)
import Glibc
#endif
import HeraldAPI
import HeraldPostgres
import Logging
import HeraldSQLite

/// Where Herald keeps its data.
public enum DatabaseLocation: Sendable, Hashable, CustomStringConvertible {
    case sqliteFile(String)
    case sqliteMemory
    case postgres(String)

    /// Parses `sqlite:PATH`, `sqlite::memory:`, `postgres://…` or `postgresql://…`.
    public init(parsing text: String) throws {
        if text == "sqlite::memory:" || text == "sqlite://:memory:" {
            self = .sqliteMemory
        } else if text.hasPrefix("sqlite://") {
            let path = String(text.dropFirst("sqlite://".count))
            guard !path.isEmpty else { throw HeraldStartupError("--database: 'sqlite:' needs a file path, as in sqlite:herald.sqlite") }
            self = .sqliteFile(path)
        } else if text.hasPrefix("sqlite:") {
            let path = String(text.dropFirst("sqlite:".count))
            guard !path.isEmpty else { throw HeraldStartupError("--database: 'sqlite:' needs a file path, as in sqlite:herald.sqlite") }
            self = .sqliteFile(path)
        } else if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            self = .postgres(text)
        } else {
            throw HeraldStartupError("--database: expected sqlite:PATH, sqlite::memory: or postgres://…, got '\(text.prefix(60))'")
        }
    }

    /// Never shows a PostgreSQL password.
    public var description: String {
        switch self {
        case .sqliteFile(let path): "sqlite:\(path)"
        case .sqliteMemory: "sqlite::memory:"
        case .postgres(let url):
            if let parsed = URLComponents(string: url) {
                "postgres://\(parsed.host ?? "")\(parsed.port.map { ":\($0)" } ?? "")\(parsed.path)"
            } else {
                "postgres://…"
            }
        }
    }
}

/// Which parts of Herald a node runs.
public enum HeraldRole: String, Sendable, CaseIterable {
    /// The API and the dispatcher.
    case all
    /// The API only.
    case api
    /// The dispatcher only.
    case worker
}

/// Everything `buildApplication` needs. Flags, then `HERALD_*` variables, then these defaults.
public struct HeraldConfiguration: Sendable {
    public var database: DatabaseLocation = .sqliteFile("herald.sqlite")
    public var host = "127.0.0.1"
    /// 0 picks a free port.
    public var port = 8071
    /// An admin token to accept (stored hashed). With none and no admin token stored, one is made.
    public var token: String?
    public var role: HeraldRole = .all
    /// Seconds between attempts after the first.
    public var retrySchedule: [Int] = [5, 300, 1800, 7200, 18000, 36000, 36000]
    /// Seconds an attempt may take.
    public var requestTimeout: Double = 30
    /// Seconds a claim lasts before another worker may take the delivery over; nil: the larger of
    /// 120 and 4 × `requestTimeout`.
    public var leaseDuration: Double?
    /// CIDRs that outbound deliveries may reach even though they are private or loopback.
    public var allowedNetworks: [String] = []
    /// The main key (32 bytes) that seals endpoint secrets; from `HERALD_MAIN_KEY`, else a key file
    /// beside the database.
    public var mainKey: [UInt8]?
    public var sqliteSynchronous: SQLiteStore.Configuration.Synchronous = .full
    /// Largest message payload, in bytes.
    public var maxPayloadBytes = 1 << 20
    /// Send `svix-*` signature headers as well as `webhook-*`.
    public var sendSvixHeaders = false
    /// Attempts in flight at once, and per endpoint.
    public var deliveryConcurrency = 1000
    public var perEndpointConcurrency = 16
    /// Outbound HTTP clients (destinations) kept at once; each holds at most 64 connections.
    public var maxHTTPClients = 128
    /// Seconds a resolved host name is kept.
    public var dnsCacheTTL: Double = 60
    /// Seconds a request head may take to arrive (from the accept, or the next request's first
    /// byte), its body after the head, and a kept-alive connection may sit idle.
    public var headerTimeout: Double = 10
    public var bodyTimeout: Double = 30
    public var idleTimeout: Double = 60
    /// Open API connections at most; nil: what the descriptor limit leaves after the outbound and
    /// database reserve (`ConnectionBudget`).
    public var maxConnections: Int?
    /// Quotas (endpoints per application, headers, event types) and the byte bound of list pages.
    public var apiLimits = APILimits()
    /// When set, `GET /metrics` requires `Authorization: Bearer <metricsToken>`.
    public var metricsToken: String?
    /// Seconds whole messages (with their deliveries and attempts) are kept after they were created.
    public var messageRetention: Double = 90 * 86400
    /// Seconds between two runs of the retention purge.
    public var retentionInterval: Double = 60
    /// The most pages the SQLite file may have (`PRAGMA max_page_count`): for testing a full disk.
    public var sqliteMaxPages: Int?

    public init() {}
}

/// The SQLite `synchronous` setting, re-exported for the command line.
public typealias HeraldSQLiteSynchronous = SQLiteStore.Configuration.Synchronous

/// How the process's descriptors are shared: outbound deliveries and the database get a reserve
/// that inbound API clients cannot take; the API may hold what is left.
public enum ConnectionBudget {
    /// Descriptors kept for the process itself: standard streams, the event loops' epoll and
    /// eventfd descriptors, logs, the listening socket.
    public static let processReserve = 256

    /// Outbound connections: one per delivery in flight, and as many again kept alive idle
    /// between bursts (closed after 60 s idle), plus DNS and client set-up. Nothing for `api`.
    public static func outboundReserve(_ configuration: HeraldConfiguration) -> Int {
        configuration.role == .api ? 0 : 2 * configuration.deliveryConcurrency + 64
    }

    /// The database: SQLite's file, WAL, shared memory and readers; PostgreSQL's pools (API,
    /// relaxed and `LISTEN`: about 1.25 × `pool_max` + 1).
    public static func databaseReserve(_ configuration: HeraldConfiguration) -> Int {
        switch configuration.database {
        case .sqliteFile, .sqliteMemory: 64
        case .postgres(let url):
            ((try? PostgresStore.Configuration(url: url).maximumConnections) ?? 20) * 5 / 4 + 16
        }
    }

    /// The open-file limit now (after `herald serve` raised the soft limit to the hard one).
    public static func descriptorLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        return Int(clamping: min(limit.rlim_cur, 1 << 20))  // RLIM_INFINITY is the largest value
    }

    /// Logs a warning when the open-file limit cannot hold the reserves and 64 API connections.
    static func warnIfTight(_ configuration: HeraldConfiguration, logger: Logger) {
        let limit = descriptorLimit()
        let reserve = outboundReserve(configuration) + databaseReserve(configuration) + processReserve
        guard limit < reserve + 64 else { return }
        logger.warning("the open-file limit is too low for the delivery concurrency: raise ulimit -n, or lower --delivery-concurrency",
                       metadata: ["herald.nofile": "\(limit)", "herald.nofile.reserve": "\(reserve)"])
    }

    /// The default maximum of open API connections: the descriptor limit less every reserve, and
    /// never below 64.
    public static func defaultMaxConnections(_ configuration: HeraldConfiguration, descriptorLimit: Int = descriptorLimit()) -> Int {
        max(64, descriptorLimit - outboundReserve(configuration) - databaseReserve(configuration) - processReserve)
    }
}
