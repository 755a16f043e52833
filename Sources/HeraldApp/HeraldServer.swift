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
        let api = HeraldAPI(store: store, configuration: .init(maxPayloadBytes: configuration.maxPayloadBytes, onNewWork: { wakeup?.signal() },
                                                               deliveryHandOver: dispatcher))
        let router = api.buildRouter()
        if let metrics {
            router.get("metrics") { _, _ in
                Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                         body: .init(byteBuffer: ByteBuffer(bytes: metrics.emitToBuffer())))
            }
        }
        let application = Hummingbird.Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "Herald"),
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
            let key = try mainKey(configuration: configuration, databasePath: path)
            do {
                return try SQLiteStore(path: path, configuration: sqliteConfiguration(configuration), sealer: AESGCMSealer(key: key))
            } catch let error as StoreError {
                throw HeraldStartupError("--database: cannot open sqlite:\(path): \(error.message)")
            }
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

    static func close(_ store: any HeraldStore) async {
        if let postgres = store as? PostgresStore { await postgres.close() }
    }

    /// The main key: `HERALD_MAIN_KEY` (base64 or hex of 32 bytes), else `<database>.key` beside the
    /// database, created with mode 0600 on first start.
    static func mainKey(configuration: HeraldConfiguration, databasePath: String) throws -> SymmetricKey {
        if let bytes = configuration.mainKey {
            guard bytes.count == 32 else { throw HeraldStartupError("HERALD_MAIN_KEY must be 32 bytes in base64 or hex") }
            return SymmetricKey(data: bytes)
        }
        let keyPath = databasePath + ".key"
        let manager = FileManager.default
        if manager.fileExists(atPath: keyPath) {
            guard let data = manager.contents(atPath: keyPath), let decoded = Data(base64Encoded: String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)), decoded.count == 32 else {
                throw HeraldStartupError("main key file \(keyPath) is unreadable or not 32 bytes of base64")
            }
            return SymmetricKey(data: decoded)
        }
        let key = SymmetricKey(size: .bits256)
        let text = key.withUnsafeBytes { Data($0).base64EncodedString() } + "\n"
        let directory = (keyPath as NSString).deletingLastPathComponent
        if !directory.isEmpty, !manager.fileExists(atPath: directory) {
            throw HeraldStartupError("--database: directory \(directory) does not exist")
        }
        guard manager.createFile(atPath: keyPath, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw HeraldStartupError("cannot write the main key file \(keyPath)")
        }
        return key
    }

    /// Registers the given token, or makes one when no admin token exists yet. Returns a made token.
    static func ensureAdminToken(store: any HeraldStore, given: String?) async throws -> String? {
        if let given {
            let hash = APITokenText.hash(given)
            if try await store.token(hash: hash) == nil {
                try await store.createToken(APIToken(hash: hash, scope: .admin))
            }
            return nil
        }
        guard try await store.adminTokenCount() == 0 else { return nil }
        let token = APITokenText.generate()
        try await store.createToken(APIToken(hash: APITokenText.hash(token), scope: .admin))
        return token
    }
}
