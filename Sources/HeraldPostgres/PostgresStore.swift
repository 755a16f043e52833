import Foundation
import HeraldCore
import Logging
import NIOCore
import PostgresNIO

/// The multi-node `HeraldStore`: PostgreSQL through PostgresNIO's connection pool. Several Herald
/// processes share one database: deliveries are claimed with `FOR UPDATE SKIP LOCKED` under leases,
/// and every write that makes work due sends a `NOTIFY` that wakes the workers of every node
/// (`listenForNewWork`).
///
/// `connect` starts the pool and runs the migrations (safe when several nodes start at once);
/// `close` stops the pool.
///
/// ```swift
/// let store = try await PostgresStore.connect(
///     configuration: try .init(url: "postgres://herald@127.0.0.1:5432/herald"), logger: logger)
/// try await store.createApplication(Application(name: "Acme"))
/// await store.close()
/// ```
public final class PostgresStore: HeraldStore {
    /// The `LISTEN`/`NOTIFY` channel that announces new due deliveries.
    public static let notificationChannel = "herald_deliveries"

    public let configuration: Configuration
    let client: PostgresClient
    /// A second pool whose sessions commit without waiting for the WAL flush
    /// (`synchronous_commit=off`), for writes whose loss in a database crash is harmless: a claim
    /// (the delivery stays due) or an attempt record (the delivery is attempted again). Publishes
    /// and every API write go through `client`, durably.
    let relaxedClient: PostgresClient
    let announcer: WorkAnnouncer
    /// Group commit for attempt records: the attempts answered while one batch is being written
    /// go in the next one, one statement for them all.
    let attemptBatcher: WriteBatcher<AttemptRecord, Void>
    let secrets: EndpointSecretsCodec
    let logger: Logger
    /// Runs the pools; cancelled by `close`.
    private let poolTask: Task<Void, Never>

    private init(configuration: Configuration, client: PostgresClient, relaxedClient: PostgresClient, poolTask: Task<Void, Never>,
                 sealer: (any SecretSealer)?, logger: Logger) {
        self.configuration = configuration
        self.client = client
        self.relaxedClient = relaxedClient
        self.announcer = WorkAnnouncer(client: client, logger: logger)
        let timeout = configuration.operationTimeout
        self.attemptBatcher = WriteBatcher(maxBatch: 256, mapError: PostgresErrorMapping.storeError) { records in
            try await Self.recordAttempts(records, pool: relaxedClient, timeout: timeout, logger: logger)
            return records.map { _ in .success(()) }
        }
        self.poolTask = poolTask
        self.secrets = EndpointSecretsCodec(sealer: sealer)
        self.logger = logger
    }

    /// Starts the connection pool, waits for the first connection (at most
    /// `configuration.startupTimeout`), and migrates the schema. Throws a `StoreError` naming the
    /// server (never the password) when PostgreSQL cannot be reached or the schema is newer than
    /// this build.
    public static func connect(configuration: Configuration, sealer: (any SecretSealer)? = nil,
                               logger: Logger) async throws -> PostgresStore {
        try await probe(configuration, logger: logger)
        // The pool retries failed connections by itself and says so on every retry; Herald reports
        // outages through its own failing operations instead.
        var poolLogger = logger
        poolLogger.logLevel = max(logger.logLevel, .error)
        let client = PostgresClient(configuration: configuration.clientConfiguration(), backgroundLogger: poolLogger)
        let relaxedClient = PostgresClient(configuration: configuration.clientConfiguration(relaxed: true), backgroundLogger: poolLogger)
        let poolTask = Task {
            await withDiscardingTaskGroup { group in
                group.addTask { await client.run() }
                group.addTask { await relaxedClient.run() }
            }
        }
        let store = PostgresStore(configuration: configuration, client: client, relaxedClient: relaxedClient, poolTask: poolTask,
                                  sealer: sealer, logger: logger)
        do {
            // A wrong key is refused before the migrations write anything.
            if let sealer { try await store.checkMainKeyBeforeMigrating(sealer: sealer) }
            try await withDeadline(configuration.startupTimeout) {
                try await PostgresMigrations.migrate(client: client, schema: configuration.schema,
                                                     timeout: configuration.startupTimeout, logger: logger)
            }
            if let sealer { try await store.establishMainKeyCheck(sealer: sealer) }
        } catch {
            await store.close()
            if let mapped = error as? StoreError, mapped.code == .wrongKey { throw mapped }
            // A newer schema is reported as it is; anything else as the server being unusable.
            if case let mapped = PostgresErrorMapping.storeError(error), mapped.code == .corrupt { throw mapped }
            throw StoreError(.unavailable, "cannot use PostgreSQL at \(configuration.safeDescription): \(PostgresErrorMapping.reason(error))")
        }
        return store
    }

    /// Opens and closes one connection, retrying for up to `startupTimeout` (the server may be
    /// starting too), so that a wrong host, password or database name fails start-up at once with
    /// the server's reason rather than as a pool that retries for ever.
    static func probe(_ configuration: Configuration, logger: Logger) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: configuration.startupTimeout)
        var lastError: any Error = StoreError(.unavailable, "no connection attempt finished")
        var quiet = logger
        quiet.logLevel = .critical
        while clock.now < deadline {
            do {
                let connection = try await withDeadline(configuration.connectTimeout) { [quiet] in
                    try await PostgresConnection.connect(configuration: try configuration.connectionConfiguration(), id: 0, logger: quiet)
                }
                try? await connection.close()
                return
            } catch {
                // Wrong credentials or a missing database will not fix themselves.
                if let state = PostgresErrorMapping.sqlState(error), state.hasPrefix("28") || state == "3D000" {
                    lastError = error
                    break
                }
                if case .unavailable = (lastError as? StoreError)?.code {
                    logger.warning("PostgreSQL is not reachable yet; retrying", metadata: [
                        "herald.database": "\(configuration.safeDescription)",
                        "herald.error": "\(PostgresErrorMapping.reason(error))",
                        "herald.retry.until": "\(configuration.startupTimeout)"])
                }
                lastError = error
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw StoreError(.unavailable, "cannot use PostgreSQL at \(configuration.safeDescription): \(PostgresErrorMapping.reason(lastError))")
    }

    /// Stops the pool; queries fail afterwards.
    public func close() async {
        poolTask.cancel()
        await poolTask.value
    }

    // MARK: Queries

    /// Runs one statement on a pooled connection and returns its rows. `relaxed` runs it on the
    /// pool that does not wait for the WAL flush (see `relaxedClient`).
    @discardableResult
    func rows(_ query: PostgresQuery, relaxed: Bool = false) async throws -> [PostgresRandomAccessRow] {
        let pool = relaxed ? relaxedClient : client
        let logger = self.logger
        do {
            return try await withDeadline(configuration.operationTimeout) {
                var result: [PostgresRandomAccessRow] = []
                for try await row in try await pool.query(query, logger: logger) {
                    result.append(row.makeRandomAccess())
                }
                return result
            }
        } catch {
            throw PostgresErrorMapping.storeError(error)
        }
    }

    /// Runs `body` in a transaction (committed when it returns, rolled back when it throws).
    func transaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let client = self.client
        let logger = self.logger
        do {
            return try await withDeadline(configuration.operationTimeout) {
                try await client.withTransaction(logger: logger) { connection in
                    try await body(connection)
                }
            }
        } catch {
            throw PostgresErrorMapping.storeError(error)
        }
    }

    // MARK: Wake-ups

    /// Calls `onNewWork` whenever another node (another `PostgresStore`) publishes, resends,
    /// recovers or hands back claims (a `NOTIFY` on `notificationChannel`), and once after each
    /// (re)subscription in case one was missed while disconnected. This store's own writes are not
    /// reported: its process wakes its dispatcher directly. Holds one pooled connection; reconnects with a short backoff when it drops.
    /// Returns when the calling task is cancelled.
    public func listenForNewWork(_ onNewWork: @escaping @Sendable () -> Void) async {
        var backoff: Duration = .milliseconds(100)
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    // The connection stops listening (UNLISTEN) before it goes back to the pool.
                    try await connection.listen(on: Self.notificationChannel) { notifications in
                        backoff = .milliseconds(100)
                        onNewWork()
                        let ownID = announcer.nodeID
                        for try await notification in notifications where notification.payload != ownID {
                            onNewWork()
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("lost the PostgreSQL notification connection; reconnecting",
                               metadata: ["herald.error": "\(PostgresErrorMapping.reason(error))"])
            }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }

}

extension PostgresStore {
    /// Drops this store's schema and everything in it, when the configuration names one (test
    /// tear-down). Does nothing for the default schema.
    public func dropSchema() async throws {
        guard let schema = configuration.schema else { return }
        // A plain identifier, checked by the configuration.
        try await rows(PostgresQuery(unsafeSQL: "DROP SCHEMA IF EXISTS \"\(schema)\" CASCADE"))
    }
}
