import Foundation
import HeraldCore
@testable import HeraldPostgres
@testable import HeraldSQLite
import HeraldTesting
import Logging
import Testing

/// The main key check and rotation, on SQLite and PostgreSQL: a store opened with another key is
/// refused; `rotateMainKey` moves endpoint secrets and stored responses to a new key together
/// with the check value.
@Suite("Main key")
struct MainKeyTests {
    static let oldKey = XORSealer(pad: 0x5A)
    static let newKey = XORSealer(pad: 0x33)

    struct Fixture {
        let app = Application(uid: "acme", name: "Acme")
        let endpoint: Endpoint
        let unreadable: Endpoint
        let record: IdempotencyRecord
        let published: IdempotencyRecord

        init() {
            endpoint = Endpoint(appID: app.id, uid: "ep", url: "https://example.com", headers: ["Authorization": "Bearer hdr"],
                                secrets: [EndpointSecret(key: Array(0..<24)), EndpointSecret(key: [9, 9, 9], expiresAt: Date(timeIntervalSinceReferenceDate: 9e8))])
            unreadable = Endpoint(appID: app.id, uid: "lost", url: "https://example.com/lost", secrets: [EndpointSecret(key: [7, 7, 7])])
            let now = Date()
            record = IdempotencyRecord(key: "k1", statusCode: 200, body: Array(#"{"token":"portal_secret_token"}"#.utf8),
                                       createdAt: now, expiresAt: now.addingTimeInterval(3600))
            published = IdempotencyRecord(key: "k2", statusCode: 202, body: Array(#"{"id":"msg"}"#.utf8),
                                          createdAt: now, expiresAt: now.addingTimeInterval(3600))
        }

        /// Stores the fixture with the old key; `spoil` then makes `unreadable`'s secrets
        /// something no key opens, as if restored from another database.
        func store(in store: any HeraldStore, spoil: (String) async throws -> Void) async throws {
            try await store.createApplication(app)
            try await store.createEndpoint(endpoint)
            try await store.createEndpoint(unreadable)
            try await spoil(unreadable.id.rawValue)
            try await store.saveIdempotencyRecord(record)
            _ = try await store.publish(PublishRequest(message: Message(appID: app.id, eventType: "a", payload: Array("{}".utf8)), idempotency: published))
        }

        func expectReadable(_ store: any HeraldStore) async throws {
            let stored = try await store.endpoint(app: app.id, ref: "ep")
            #expect(stored?.secrets == endpoint.secrets)
            #expect(stored?.headers == endpoint.headers)
            #expect(stored?.unreadable == nil)
            #expect(try await store.idempotencyRecord(key: "k1", now: Date())?.body == record.body)
            #expect(try await store.idempotencyRecord(key: "k2", now: Date())?.body == published.body)
            #expect(try await store.endpoint(app: app.id, ref: "lost")?.unreadable != nil)
        }
    }

    @Test("SQLite: another key is refused; a rotation moves every secret and stored response to the new key")
    func sqlite() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path("k.sqlite")
        let fixture = Fixture()
        do {
            let store = try SQLiteStore(path: path, sealer: Self.oldKey)
            try await fixture.store(in: store) { id in
                try await store.writer.write { db in
                    try db.execute(sql: "UPDATE endpoints SET secrets = X'02ABCD' WHERE id = ?", arguments: [id])
                }
            }
            try await fixture.expectReadable(store)
            try store.close()
        }
        // The database and its WAL (the -shm file is shared memory, where readers take their locks).
        func stored() throws -> [Data] { try [path, path + "-wal"].map { (try? Data(contentsOf: URL(fileURLWithPath: $0))) ?? Data() } }
        let before = try stored()
        #expect(throws: MainKeyCheck.mismatch) { try SQLiteStore(path: path, sealer: Self.newKey) }
        #expect(try stored() == before, "a refused start changed the database files")

        let store = try SQLiteStore(path: path, sealer: Self.oldKey)
        let rotation = try await store.rotateMainKey(to: Self.newKey)
        #expect(rotation == MainKeyRotation(endpoints: 1, unreadableEndpoints: 1, idempotencyRecords: 2))
        try store.close()

        #expect(throws: MainKeyCheck.mismatch) { try SQLiteStore(path: path, sealer: Self.oldKey) }
        let reopened = try SQLiteStore(path: path, sealer: Self.newKey)
        try await fixture.expectReadable(reopened)
        // The unreadable endpoint can still be deleted.
        let lost = try #require(try await reopened.endpoint(app: fixture.app.id, ref: "lost"))
        try await reopened.deleteEndpoint(app: fixture.app.id, id: lost.id)
        try reopened.close()
    }

    @Test("PostgreSQL: another key is refused before migrating; a rotation moves every secret and stored response")
    func postgres() async throws {
        guard TestPostgres.url != nil else { return }
        var logger = Logger(label: "herald.test.mainkey")
        logger.logLevel = .warning
        let fixture = Fixture()
        try await withPostgresStore(sealer: Self.oldKey) { store in
            try await fixture.store(in: store) { id in
                try await store.rows("UPDATE endpoints SET secrets = '\\x02abcd'::bytea WHERE id = \(id)")
            }
            try await fixture.expectReadable(store)
            await #expect(throws: MainKeyCheck.mismatch) {
                try await PostgresStore.connect(configuration: store.configuration, sealer: Self.newKey, logger: logger)
            }
            #expect(try await store.rotateMainKey(to: Self.newKey) == MainKeyRotation(endpoints: 1, unreadableEndpoints: 1, idempotencyRecords: 2))
            await #expect(throws: MainKeyCheck.mismatch) {
                try await PostgresStore.connect(configuration: store.configuration, sealer: Self.oldKey, logger: logger)
            }
            let reopened = try await PostgresStore.connect(configuration: store.configuration, sealer: Self.newKey, logger: logger)
            do {
                try await fixture.expectReadable(reopened)
                await reopened.close()
            } catch {
                await reopened.close()
                throw error
            }
        }
    }
}
