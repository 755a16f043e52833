import Foundation
import HeraldCore
@testable import HeraldPostgres
@testable import HeraldSQLite
import HeraldTesting
import Logging
import Testing

@Suite("SQLite retention, full disk and backup")
struct SQLiteRetentionTests {
    private func publish(_ store: SQLiteStore, app: ApplicationID, bytes: Int, at created: Date = Date()) async throws -> Message {
        let payload = Array(#"{"pad":""#.utf8) + (0..<bytes).map { _ in UInt8.random(in: 97...122) } + Array(#""}"#.utf8)
        let message = Message(id: .generate(at: created), appID: app, eventType: "e", payload: payload, createdAt: created)
        _ = try await store.publish(PublishRequest(message: message))
        return message
    }

    /// A size cap (`max_page_count`): writes fail with `.storageFull`, what is stored stays
    /// readable, and writes succeed again once space is freed, on the same connections.
    @Test func aFullDatabaseFailsWritesWithStorageFullAndRecovers() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = SQLiteStore.Configuration()
        configuration.maxPageCount = 300
        let store = try SQLiteStore(path: directory.path("full.sqlite"), configuration: configuration, sealer: XORSealer())
        let kept = Application(name: "kept")
        let bulk = Application(name: "bulk")
        try await store.createApplication(kept)
        try await store.createApplication(bulk)
        let first = try await publish(store, app: kept.id, bytes: 100)
        var stored: [Message] = []
        var failure: StoreError?
        for _ in 0..<1000 {
            do { stored.append(try await publish(store, app: bulk.id, bytes: 6000)) } catch let error as StoreError {
                failure = error
                break
            }
        }
        let full = try #require(failure, "the capped database never filled")
        #expect(full.code == .storageFull, "\(full.code): \(full.message)")
        #expect(full.message.contains("full"))
        #expect(!stored.isEmpty)
        for message in stored + [first] {
            #expect(try await store.message(app: message.appID, ref: message.id.rawValue)?.payload == message.payload)
        }
        try await store.deleteApplication(bulk.id)
        _ = try await publish(store, app: kept.id, bytes: 6000)
        #expect(try await store.listMessages(app: kept.id, filter: MessageFilter(), PageRequest(limit: 10)).items.count == 2)
        try store.close()
    }

    /// A steady publish-and-purge: freed pages are reused, so the file stops growing.
    @Test func purgedPagesAreReusedSoTheFileLevelsOff() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try SQLiteStore(path: directory.path("steady.sqlite"), sealer: XORSealer())
        let app = Application(name: "steady")
        try await store.createApplication(app)
        try await store.createEndpoint(Endpoint(appID: app.id, url: "https://example.com", secrets: [EndpointSecret(key: [1, 2, 3])]))
        // The database's size in pages, WAL included (what the file grows to at the next checkpoint).
        func size() async throws -> Int { try await store.read { db in try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0 } }
        let origin = Date()
        var sizes: [Int] = []
        // 30 rounds of 50 messages; each round, the messages of two rounds ago expire.
        for round in 0..<30 {
            let created = origin.addingTimeInterval(Double(round))
            for _ in 0..<50 { _ = try await publish(store, app: app.id, bytes: 2000, at: created) }
            while try await store.purgeMessages(createdBefore: created.addingTimeInterval(-1.5), now: created, limit: 64).messages == 64 {}
            sizes.append(try await size())
        }
        let live = try await store.listMessages(app: app.id, filter: MessageFilter(), PageRequest(limit: 250)).items.count
        #expect(live == 100, "the last two rounds are kept")
        let warm = sizes[10], last = sizes[29]
        #expect(Double(last) < Double(warm) * 1.25, "the database kept growing (pages per round): \(sizes)")
        try store.close()
    }

    /// The online backup of a live database is a complete, openable copy, created 0600.
    @Test func backupCopiesALiveDatabase() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try SQLiteStore(path: directory.path("live.sqlite"), sealer: XORSealer())
        let app = Application(name: "live")
        try await store.createApplication(app)
        var published: [Message] = []
        for _ in 0..<50 { published.append(try await publish(store, app: app.id, bytes: 100)) }
        let copyPath = directory.path("copy.sqlite")
        #expect(try SQLiteBackup.copy(from: directory.path("live.sqlite"), to: copyPath) > 0)
        let attributes = try FileManager.default.attributesOfItem(atPath: copyPath)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(throws: StoreError.self) { try SQLiteBackup.copy(from: directory.path("live.sqlite"), to: copyPath) }
        let copy = try SQLiteStore(path: copyPath, sealer: XORSealer())
        for message in published { #expect(try await copy.message(app: app.id, ref: message.id.rawValue) != nil) }
        try copy.close()
        try store.close()
    }
}

@Suite("PostgreSQL retention and full disk", .enabled(if: TestPostgres.url != nil, TestPostgres.skipReason))
struct PostgresRetentionTests {
    /// Four purgers on two nodes at once, while a third publishes: every old message is deleted
    /// exactly once (no double work, no deadlock), recent ones stay.
    @Test func nodesPurgeAtOnceWithoutDoubleWork() async throws {
        try await withPostgresStore { first in
            try await withSecondNode(of: first) { second in
                let app = Application(name: "A")
                try await first.createApplication(app)
                try await first.createEndpoint(Endpoint(appID: app.id, url: "https://example.com/a", secrets: [EndpointSecret(key: [1])]))
                try await first.createEndpoint(Endpoint(appID: app.id, url: "https://example.com/b", secrets: [EndpointSecret(key: [2])]))
                let old = Date().addingTimeInterval(-3600)
                for index in 0..<400 {
                    _ = try await first.publish(PublishRequest(message: Message(
                        appID: app.id, eventType: "e", payload: Array("{}".utf8), createdAt: old.addingTimeInterval(Double(index) / 1000))))
                }
                let now = Date()
                let results = try await withThrowingTaskGroup(of: PurgeResult.self) { group in
                    for purger in 0..<4 {
                        let store = purger.isMultiple(of: 2) ? first : second
                        group.addTask {
                            var total = PurgeResult()
                            while true {
                                let batch = try await store.purgeMessages(createdBefore: now.addingTimeInterval(-60), now: now, limit: 25)
                                total = total + batch
                                if batch.messages < 25 { return total }
                            }
                        }
                    }
                    group.addTask {
                        for _ in 0..<100 {
                            _ = try await second.publish(PublishRequest(message: Message(appID: app.id, eventType: "e", payload: Array("{}".utf8))))
                        }
                        return PurgeResult()
                    }
                    return try await group.reduce(into: [PurgeResult]()) { $0.append($1) }
                }
                let total = results.reduce(PurgeResult(), +)
                #expect(total.messages == 400 && total.deliveries == 800)
                #expect(results.filter { $0.messages > 0 }.count >= 2, "more than one purger took part")
                let left = try await first.listMessages(app: app.id, filter: MessageFilter(), PageRequest(limit: 250))
                #expect(left.items.count == 100 && left.items.allSatisfy { $0.createdAt > now.addingTimeInterval(-60) })
                #expect(try await first.deliveryCounts()[.pending] == 200)
            }
        }
    }

    /// SQLSTATE 53100 (disk_full), raised by the server, becomes `.storageFull`.
    @Test func diskFullIsStorageFull() async throws {
        try await withPostgresStore { store in
            do {
                try await store.rows("DO $$ BEGIN RAISE EXCEPTION 'no space left' USING ERRCODE = 'disk_full'; END $$")
                Issue.record("the statement did not fail")
            } catch let error as StoreError {
                #expect(error.code == .storageFull && error.message.contains("53100"), "\(error.code): \(error.message)")
            }
        }
    }
}
