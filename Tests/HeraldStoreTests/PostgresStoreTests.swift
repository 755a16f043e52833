import Foundation
import Synchronization
import HeraldCore
@testable import HeraldPostgres
import HeraldTesting
import Logging
import PostgresNIO
import Testing

/// Connects a store to a fresh schema of the test server, runs `body`, then drops the schema.
func withPostgresStore<T: Sendable>(url: String? = nil, sealer: (any SecretSealer)? = XORSealer(),
                                    _ body: (PostgresStore) async throws -> T) async throws -> T {
    let url = try #require(url ?? TestPostgres.freshSchemaURL())
    var logger = Logger(label: "herald.test.postgres")
    logger.logLevel = .warning
    let store = try await PostgresStore.connect(configuration: try .init(url: url), sealer: sealer, logger: logger)
    do {
        let result = try await body(store)
        try await store.dropSchema()
        await store.close()
        return result
    } catch {
        try? await store.dropSchema()
        await store.close()
        throw error
    }
}

/// A second node: another pool on the same schema.
func withSecondNode<T: Sendable>(of store: PostgresStore, _ body: (PostgresStore) async throws -> T) async throws -> T {
    var logger = Logger(label: "herald.test.postgres.second")
    logger.logLevel = .warning
    let second = try await PostgresStore.connect(configuration: store.configuration, sealer: XORSealer(), logger: logger)
    do {
        let result = try await body(second)
        await second.close()
        return result
    } catch {
        await second.close()
        throw error
    }
}

@Test("PostgreSQL tests run in CI")
func postgresIsAvailableWhenRequired() {
    if TestPostgres.isRequired {
        #expect(TestPostgres.url != nil, "CI=true but HERALD_TEST_POSTGRES_URL is not set: the PostgreSQL tests would be skipped")
    }
}

@Suite("PostgreSQL store", .enabled(if: TestPostgres.url != nil, TestPostgres.skipReason))
struct PostgresStoreTests {
    @Test("Store conformance on PostgreSQL", arguments: StoreConformance.Check.allCases)
    func conformance(_ check: StoreConformance.Check) async throws {
        try await withPostgresStore { store in
            try await StoreConformance { store }.run(check)
        }
    }

    @Test func migrationsAreSafeWhenSeveralNodesStartAtOnce() async throws {
        let url = try #require(TestPostgres.freshSchemaURL())
        let logger = {
            var logger = Logger(label: "herald.test.postgres")
            logger.logLevel = .error
            return logger
        }()
        // Six nodes migrate the same empty schema concurrently: all start, and the schema works.
        let stores = try await withThrowingTaskGroup(of: PostgresStore.self) { group in
            for _ in 0..<6 {
                group.addTask { try await PostgresStore.connect(configuration: try .init(url: url), sealer: XORSealer(), logger: logger) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(stores.count == 6)
        let app = Application(name: "A")
        try await stores[0].createApplication(app)
        #expect(try await stores[5].application(ref: app.id.rawValue)?.name == "A")
        // Starting again on a migrated schema changes nothing.
        let again = try await PostgresStore.connect(configuration: try .init(url: url), sealer: XORSealer(), logger: logger)
        #expect(try await again.application(ref: app.id.rawValue)?.name == "A")
        await again.close()
        try await stores[0].dropSchema()
        for store in stores { await store.close() }
    }

    /// Deployments in different schemas of one server start independently; a node whose own
    /// schema stays locked waits for it, and gives up after its start-up timeout with the reason.
    @Test func aLockedSchemaHoldsOnlyItsOwnNodesAndTheirErrorSaysWhy() async throws {
        try await withPostgresStore { store in
            let schema = try #require(store.configuration.schema)
            var logger = Logger(label: "herald.test.postgres.locked")
            logger.logLevel = .critical
            // A session holds schema A's migration table, as a long migration would.
            let (locked, isLocked) = AsyncStream<Void>.makeStream()
            let (released, release) = AsyncStream<Void>.makeStream()
            defer { release.finish() }  // Even when an expectation below throws.
            let holder = Task { [logger] in
                try await store.transaction { connection in
                    try await connection.rows("LOCK TABLE herald_migrations IN ACCESS EXCLUSIVE MODE", logger: logger)
                    isLocked.yield()
                    for await _ in released { break }
                }
            }
            for await _ in locked { break }

            // A node of schema A waits behind it...
            let waiterDone = Mutex(false)
            var patient = store.configuration
            patient.startupTimeout = .seconds(60)
            let waiter = Task { [patient, logger] in
                defer { waiterDone.withLock { $0 = true } }
                return try await PostgresStore.connect(configuration: patient, sealer: XORSealer(), logger: logger)
            }
            try await waitUntil("the node of schema A waits for the lock") {
                let rows = try await store.rows(PostgresQuery(unsafeSQL:
                    "SELECT count(*) AS n FROM pg_locks WHERE NOT granted AND relation = '\"\(schema)\".herald_migrations'::regclass"))
                return try rows.first?.value("n", as: Int.self) ?? 0 > 0
            }

            // ...another with a short start-up timeout gives up, saying why (the lock, not an
            // "aborted transaction")...
            var hasty = store.configuration
            hasty.startupTimeout = .seconds(8)
            let error = await #expect(throws: StoreError.self) {
                _ = try await PostgresStore.connect(configuration: hasty, sealer: XORSealer(), logger: logger)
            }
            #expect(error?.code == .unavailable)
            #expect(error?.message.contains("stayed locked") == true, "\(String(describing: error))")
            #expect(error?.message.contains("25P02") == false, "\(String(describing: error))")

            // ...while a deployment in another schema of the same server starts meanwhile.
            var other = try PostgresStore.Configuration(url: try #require(TestPostgres.freshSchemaURL()))
            other.startupTimeout = .seconds(60)
            let otherStore = try await PostgresStore.connect(configuration: other, sealer: XORSealer(), logger: logger)
            #expect(!waiterDone.withLock { $0 }, "the other schema's node started only after schema A's node gave up")
            try await otherStore.createApplication(Application(name: "B"))
            try await otherStore.dropSchema()
            await otherStore.close()

            // Once the lock goes, the waiting node starts and sees schema A's data.
            let app = Application(name: "A")
            try await store.createApplication(app)
            release.yield()
            try await holder.value
            let second = try await waiter.value
            #expect(try await second.application(ref: app.id.rawValue)?.name == "A")
            await second.close()
        }
    }

    @Test func aSchemaMigratedByANewerHeraldIsRefusedAndKept() async throws {
        try await withPostgresStore { store in
            let app = Application(name: "Kept")
            try await store.createApplication(app)
            try await store.rows("INSERT INTO herald_migrations (name, applied_at) VALUES ('v99-from-the-future', 0)")
            let error = await #expect(throws: StoreError.self) {
                _ = try await PostgresStore.connect(configuration: store.configuration, logger: Logger(label: "t"))
            }
            #expect(error?.code == .corrupt)
            #expect(error?.message.contains("v99-from-the-future") == true, "\(String(describing: error))")
            // Nothing stored was touched.
            #expect(try await store.application(ref: app.id.rawValue)?.name == "Kept")
        }
    }

    @Test func claimsFromTwoNodesNeverOverlap() async throws {
        try await withPostgresStore { first in
            try await withSecondNode(of: first) { second in
                let app = Application(name: "A")
                try await first.createApplication(app)
                let endpoint = Endpoint(appID: app.id, url: "https://example.com/hook", secrets: [EndpointSecret(key: [1, 2, 3])])
                try await first.createEndpoint(endpoint)
                let published = Date()
                for index in 0..<300 {
                    _ = try await (index.isMultiple(of: 2) ? first : second).publish(PublishRequest(
                        message: Message(appID: app.id, eventType: "user.created", payload: Array("{}".utf8), createdAt: published)))
                }
                let now = published.addingTimeInterval(1)
                // Four claimers on two pools race, ten at a time, until the queue is empty.
                let claims = try await withThrowingTaskGroup(of: [String].self) { group in
                    for claimer in 0..<4 {
                        let store = claimer.isMultiple(of: 2) ? first : second
                        group.addTask {
                            var mine: [String] = []
                            while true {
                                let batch = try await store.claimDueDeliveries(now: now, limit: 10, leaseUntil: now.addingTimeInterval(60))
                                if batch.isEmpty { return mine }
                                mine += batch.map(\.messageID.rawValue)
                            }
                        }
                    }
                    return try await group.reduce(into: [[String]]()) { $0.append($1) }
                }
                let all = claims.flatMap { $0 }
                #expect(all.count == 300)
                #expect(Set(all).count == 300, "a delivery was claimed twice while its lease held")
                #expect(claims.filter { !$0.isEmpty }.count >= 2, "both nodes took part")
                // A lapsed lease is taken over, once.
                let later = now.addingTimeInterval(61)
                let takeover = try await second.claimDueDeliveries(now: later, limit: 500, leaseUntil: later.addingTimeInterval(60))
                #expect(takeover.count == 300)
                #expect(try await first.claimDueDeliveries(now: later, limit: 500, leaseUntil: later.addingTimeInterval(60)).isEmpty)
            }
        }
    }

    @Test func aPublishOnOneNodeWakesTheOthers() async throws {
        try await withPostgresStore { first in
            try await withSecondNode(of: first) { second in
                let app = Application(name: "A")
                try await first.createApplication(app)
                try await first.createEndpoint(Endpoint(appID: app.id, url: "https://example.com/hook", secrets: [EndpointSecret(key: [1])]))
                let wakeups = WakeupCounter()
                let listener = Task { await second.listenForNewWork { wakeups.increment() } }
                defer { listener.cancel() }
                // The listener wakes once when it subscribes.
                try await waitUntil("the listener subscribed") { wakeups.count >= 1 }
                let before = wakeups.count
                _ = try await first.publish(PublishRequest(message: Message(appID: app.id, eventType: "a.b", payload: Array("{}".utf8))))
                try await waitUntil("the publish on the first node woke the second") { wakeups.count > before }
                listener.cancel()
                await listener.value
            }
        }
    }

    @Test func theSameEventIDOrIdempotencyKeyFromTwoNodesAtOnceIsStoredOnce() async throws {
        try await withPostgresStore { first in
            try await withSecondNode(of: first) { second in
                let app = Application(name: "A")
                try await first.createApplication(app)
                try await first.createEndpoint(Endpoint(appID: app.id, url: "https://example.com/hook", secrets: [EndpointSecret(key: [1])]))
                for round in 0..<20 {
                    let now = Date()
                    let outcomes = await withTaskGroup(of: Bool.self) { group in
                        for node in [first, second, first, second] {
                            group.addTask {
                                let message = Message(appID: app.id, eventID: round.isMultiple(of: 2) ? "evt-\(round)" : nil,
                                                      eventType: "a.b", payload: Array("{}".utf8), createdAt: now)
                                let record = round.isMultiple(of: 2) ? nil : IdempotencyRecord(
                                    key: "key-\(round)", statusCode: 202, body: [1], createdAt: now, expiresAt: now.addingTimeInterval(3600))
                                do {
                                    _ = try await node.publish(PublishRequest(message: message, idempotency: record))
                                    return true
                                } catch let error as StoreError {
                                    #expect(error.code == .conflict)
                                    return false
                                } catch {
                                    Issue.record("unexpected \(error)")
                                    return false
                                }
                            }
                        }
                        return await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
                    }
                    #expect(outcomes == 1, "round \(round): \(outcomes) publishes succeeded")
                }
                let messages = try await first.listMessages(app: app.id, filter: MessageFilter(), PageRequest(limit: 250))
                #expect(messages.items.count == 20)
            }
        }
    }

    @Test func anUnreachableServerFailsWithAClearErrorThatHidesThePassword() async throws {
        var configuration = try PostgresStore.Configuration(url: "postgres://herald:s3cr3t-pw@127.0.0.1:1/herald?sslmode=disable")
        configuration.startupTimeout = .seconds(3)
        configuration.connectTimeout = .seconds(1)
        let error = await #expect(throws: StoreError.self) {
            _ = try await PostgresStore.connect(configuration: configuration, logger: Logger(label: "t"))
        }
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("127.0.0.1:1") == true, "\(String(describing: error))")
        #expect(error?.message.contains("s3cr3t-pw") == false)
    }

    @Test func badURLsAreRejectedWithTheirReason() throws {
        #expect(throws: StoreError.self) { try PostgresStore.Configuration(url: "postgres:///nohost") }
        #expect(throws: StoreError.self) { try PostgresStore.Configuration(url: "postgres://h/db?sslmode=sometimes") }
        #expect(throws: StoreError.self) { try PostgresStore.Configuration(url: "postgres://h/db?schema=bad;drop") }
        #expect(throws: StoreError.self) { try PostgresStore.Configuration(url: "postgres://h/db?pool_max=1") }
        #expect(throws: StoreError.self) { try PostgresStore.Configuration(url: "postgres://h/db?operation_timeout=0") }
        #expect(throws: StoreError.self) { try PostgresStore.Configuration(url: "postgres://h/db?connect_timeout=soon") }
        #expect(try PostgresStore.Configuration(url: "postgres://h/db?operation_timeout=5").operationTimeout == .seconds(5))
        let parsed = try PostgresStore.Configuration(url: "postgresql://u:p%40ss@db.internal:6543/herald?sslmode=require&pool_max=40&schema=h1")
        #expect(parsed.host == "db.internal")
        #expect(parsed.port == 6543)
        #expect(parsed.username == "u")
        #expect(parsed.password == "p@ss")
        #expect(parsed.database == "herald")
        #expect(parsed.tls == .require)
        #expect(parsed.maximumConnections == 40)
        #expect(parsed.schema == "h1")
        #expect(!parsed.safeDescription.contains("p@ss"))
    }
}

/// Counts wake-ups from a notification listener.
final class WakeupCounter: Sendable {
    private let value = Mutex(0)
    func increment() { value.withLock { $0 += 1 } }
    var count: Int { value.withLock { $0 } }
}

/// Polls `condition` until it holds, failing after `timeout`.
func waitUntil(_ what: String, timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while clock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("timed out waiting until \(what)")
}
