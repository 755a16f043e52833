import Foundation
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
