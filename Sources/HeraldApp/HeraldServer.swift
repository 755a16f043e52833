import Crypto
import Foundation
import HeraldAPI
import HeraldDelivery
import NIOCore
import Prometheus
import ServiceLifecycle
import HeraldCore
import HeraldPostgres
import HeraldSQLite
import Hummingbird
import Logging

/// The composition root: opens and migrates the store before the socket opens, makes sure an admin
/// token exists, and builds the Hummingbird application.
///
/// ```swift
/// var configuration = HeraldConfiguration()
/// configuration.database = .sqliteFile("herald.sqlite")
/// let server = try await HeraldServer.build(configuration: configuration, logger: logger)
/// if let token = server.generatedAdminToken { print(token) }
/// try await server.application.runService()
/// ```
public struct HeraldServer: Sendable {
    public typealias App = Hummingbird.Application<RouterResponder<APIRequestContext>>

    public let application: App
    public let store: any HeraldStore
    /// The admin token made on this start, to show once; nil when one already existed or was given.
    public let generatedAdminToken: String?
    /// The delivery engine, unless the role is `api`.
    public let dispatcher: Dispatcher?
    /// The background services (retention, and the dispatcher unless the role is `api`); the
    /// application runs them beside the API, a `worker` runs them alone.
    public let services: [any Service]

    public static func build(
        configuration: HeraldConfiguration,
        logger: Logger,
        metrics: PrometheusCollectorRegistry? = nil,
        transport: (any WebhookTransport)? = nil,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws -> HeraldServer {
        let store = try await openStore(configuration, logger: logger)
        let generated: String?
        do {
            generated = try await ensureAdminToken(store: store, given: configuration.token)
        } catch {
            await close(store)
            throw error
        }
        if configuration.role != .api, case .sqliteFile = configuration.database {
            // One process owns a SQLite file: deliveries left `sending` by a crash can go again now.
            let released = try await store.releaseAllClaims()
            if released > 0 { logger.notice("re-queued deliveries interrupted by the last stop", metadata: ["herald.deliveries": "\(released)"]) }
        }

        var services: [any Service] = []
        if let postgres = store as? PostgresStore {
            // First in the list, so the group stops it last: everything else still has the pool.
            services.append(PostgresPoolService(store: postgres))
        }
        services.append(RetentionService(store: store, interval: .seconds(configuration.retentionInterval),
                                         messageRetention: configuration.messageRetention, logger: logger))
        var dispatcher: Dispatcher?
        if configuration.role != .api {
            let networks = configuration.allowedNetworks.compactMap(CIDR.init)
            var transportConfiguration = HTTPClientTransport.Configuration(maxClients: configuration.maxHTTPClients)
            transportConfiguration.dnsCache.positiveTTL = .seconds(configuration.dnsCacheTTL)
            let transport = transport ?? HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: networks), configuration: transportConfiguration)
            var dispatcherConfiguration = Dispatcher.Configuration()
            dispatcherConfiguration.processor.retryPolicy.schedule = configuration.retrySchedule.map(TimeInterval.init)
            dispatcherConfiguration.processor.requestTimeout = configuration.requestTimeout
            dispatcherConfiguration.processor.sendSvixHeaders = configuration.sendSvixHeaders
            dispatcherConfiguration.leaseDuration = configuration.leaseDuration ?? max(120, configuration.requestTimeout * 4)
            dispatcherConfiguration.concurrency = configuration.deliveryConcurrency
            dispatcherConfiguration.perEndpointConcurrency = configuration.perEndpointConcurrency
            let created = Dispatcher(queue: store, transport: transport, configuration: dispatcherConfiguration, logger: logger)
            dispatcher = created
            services.append(created)
            if let postgres = store as? PostgresStore {
                // Publishes, resends and recoveries on any node wake this node's dispatcher.
                services.append(PostgresWakeupService(store: postgres, wakeup: created.wakeup))
            }
        }
        let wakeup = dispatcher?.wakeup
        var apiConfiguration = HeraldAPI.Configuration(maxPayloadBytes: configuration.maxPayloadBytes, onNewWork: { wakeup?.signal() },
                                                       deliveryHandOver: dispatcher)
        apiConfiguration.limits = configuration.apiLimits
        let api = HeraldAPI(store: store, configuration: apiConfiguration)
        let router = api.buildRouter()
        if let metrics {
            let metricsToken = configuration.metricsToken.map { Array("Bearer \($0)".utf8) }
            router.get("metrics") { request, _ in
                if let metricsToken {
                    let given = Array((request.headers[.authorization] ?? "").utf8)
                    guard MetricsAuthorization.matches(given, metricsToken) else { return MetricsAuthorization.unauthorized }
                }
                return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                                body: .init(byteBuffer: ByteBuffer(bytes: metrics.emitToBuffer())))
            }
        }
        var guardConfiguration = ConnectionGuard.Configuration()
        guardConfiguration.headerTimeout = .milliseconds(Int64(configuration.headerTimeout * 1000))
        guardConfiguration.bodyTimeout = .milliseconds(Int64(configuration.bodyTimeout * 1000))
        guardConfiguration.idleTimeout = .milliseconds(Int64(configuration.idleTimeout * 1000))
        let limiter = ConnectionLimiter(maximum: configuration.maxConnections ?? ConnectionBudget.defaultMaxConnections(configuration))
        ConnectionBudget.warnIfTight(configuration, logger: logger)
        let application = Hummingbird.Application(
            router: router,
            server: ConnectionGuard.http1(configuration: guardConfiguration, limiter: limiter),
            // A deep accept queue: a burst of thousands of connects is accepted, not dropped.
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "Herald", backlog: 4096),
            services: services,
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.port) },
            logger: logger
        )
        return HeraldServer(application: application, store: store, generatedAdminToken: generated, dispatcher: dispatcher, services: services)
    }

    /// Opens the configured store; migrations run before this returns.
    public static func openStore(_ configuration: HeraldConfiguration, logger: Logger) async throws -> any HeraldStore {
        switch configuration.database {
        case .sqliteMemory:
            let key = SymmetricKey(size: .bits256)
            return try SQLiteStore(path: ":memory:", configuration: sqliteConfiguration(configuration), sealer: AESGCMSealer(key: key))
        case .sqliteFile(let path):
            return try openSQLite(path: path, configuration: configuration, logger: logger)
        case .postgres(let url):
            let postgresConfiguration: PostgresStore.Configuration
            do {
                postgresConfiguration = try PostgresStore.Configuration(url: url)
            } catch let error as StoreError {
                throw HeraldStartupError("--database: \(error.message)")
            }
            // Every node must seal and open endpoint secrets with the same key, so it cannot be a
            // file that one node makes for itself.
            guard let bytes = configuration.mainKey else {
                throw HeraldStartupError("HERALD_MAIN_KEY is required with PostgreSQL (32 bytes in base64 or hex, the same on every node); make one with: openssl rand -base64 32")
            }
            guard bytes.count == 32 else { throw HeraldStartupError("HERALD_MAIN_KEY must be 32 bytes in base64 or hex") }
            do {
                return try await PostgresStore.connect(configuration: postgresConfiguration,
                                                       sealer: AESGCMSealer(key: SymmetricKey(data: bytes)), logger: logger)
            } catch let error as StoreError where error.code == .wrongKey {
                throw HeraldStartupError("HERALD_MAIN_KEY is not the key this database's secrets were sealed with; start with the key it was created with (to change keys use: herald key rotate)")
            } catch let error as StoreError {
                throw HeraldStartupError("--database: \(error.message)")
            }
        }
    }

    static func sqliteConfiguration(_ configuration: HeraldConfiguration) -> SQLiteStore.Configuration {
        var sqlite = SQLiteStore.Configuration(synchronous: configuration.sqliteSynchronous)
        sqlite.maxPageCount = configuration.sqliteMaxPages
        return sqlite
    }

    /// Releases what the store holds (PostgreSQL's connection pool). For a server whose services
    /// never ran (tests); a running server closes its pool when its services stop.
    public func close() async {
        await Self.close(store)
    }

    public static func close(_ store: any HeraldStore) async {
        if let postgres = store as? PostgresStore { await postgres.close() }
        if let sqlite = store as? SQLiteStore { try? sqlite.close() }
    }

    /// Opens a SQLite file with its main key: `HERALD_MAIN_KEY` (base64 or hex of 32 bytes), else
    /// `<database>.key` beside the database (`MainKeyFile`), created with mode 0600 on first start.
    /// A key that is not the database's is refused before anything is written; a key file made
    /// for a database that turns out to need another is removed again.
    static func openSQLite(path: String, configuration: HeraldConfiguration, logger: Logger) throws -> SQLiteStore {
        func open(_ key: SymmetricKey) throws -> SQLiteStore {
            do {
                return try SQLiteStore(path: path, configuration: sqliteConfiguration(configuration), sealer: AESGCMSealer(key: key))
            } catch let error as StoreError where error.code == .wrongKey {
                throw error
            } catch let error as StoreError {
                throw HeraldStartupError("--database: cannot open sqlite:\(path): \(error.message)")
            }
        }
        let wrongKey = "is not the key sqlite:\(path) was sealed with; start with the key it was created with (to change keys use: herald key rotate)"
        if let bytes = configuration.mainKey {
            guard bytes.count == 32 else { throw HeraldStartupError("HERALD_MAIN_KEY must be 32 bytes in base64 or hex") }
            do { return try open(SymmetricKey(data: bytes)) } catch let error as StoreError where error.code == .wrongKey {
                throw HeraldStartupError("HERALD_MAIN_KEY \(wrongKey)")
            }
        }
        let file = MainKeyFile(databasePath: path)
        if let key = try file.read() {
            do {
                let store = try open(key)
                file.removeStaged()  // a rotation that stopped before it re-sealed anything
                return store
            } catch let error as StoreError where error.code == .wrongKey {
                // A rotation that stopped after re-sealing, before renaming its key into place.
                guard let staged = try file.readStaged(), let store = try? open(staged) else {
                    throw HeraldStartupError("main key file \(file.path) \(wrongKey)")
                }
                try file.commitStaged()
                logger.notice("finished an interrupted main key rotation", metadata: ["herald.key_file": "\(file.path)"])
                return store
            }
        }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty, !FileManager.default.fileExists(atPath: directory) {
            throw HeraldStartupError("--database: directory \(directory) does not exist")
        }
        let key = SymmetricKey(size: .bits256)
        try file.create(key)
        do {
            return try open(key)
        } catch let error as StoreError where error.code == .wrongKey {
            file.remove()
            throw HeraldStartupError("main key file \(file.path) is missing and sqlite:\(path) holds secrets sealed with another key: restore the key file, or set HERALD_MAIN_KEY")
        } catch {
            file.remove()
            throw error
        }
    }

    /// Registers the given token (earlier tokens stay valid: revoke them with `herald token revoke`),
    /// or makes one when no admin token exists yet. Returns a made token.
    static func ensureAdminToken(store: any HeraldStore, given: String?) async throws -> String? {
        if let given {
            let hash = APITokenText.hash(given)
            if try await store.token(hash: hash) == nil {
                try await store.createToken(APIToken(hash: hash, scope: .admin, name: "--token"))
            }
            return nil
        }
        guard try await store.adminTokenCount() == 0 else { return nil }
        let token = APITokenText.generate()
        try await store.createToken(APIToken(hash: APITokenText.hash(token), scope: .admin, name: "first start"))
        return token
    }
}

/// `/metrics` behind `--metrics-token`.
enum MetricsAuthorization {
    /// Constant-time comparison of the whole header with `Bearer <token>`.
    static func matches(_ given: [UInt8], _ expected: [UInt8]) -> Bool {
        guard given.count == expected.count else { return false }
        var difference: UInt8 = 0
        for index in given.indices { difference |= given[index] ^ expected[index] }
        return difference == 0
    }

    static var unauthorized: Response {
        Response(status: .unauthorized, headers: [.contentType: "application/json", .wwwAuthenticate: "Bearer"],
                 body: .init(byteBuffer: ByteBuffer(string: #"{"code":"authentication_failed","detail":"/metrics needs 'Authorization: Bearer <metrics token>' (--metrics-token)"}"#)))
    }
}
