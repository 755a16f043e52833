import Foundation
import HeraldApp
import HeraldCore
import HeraldPostgres
import HeraldTesting
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Logging
import Testing

/// Two API nodes on one PostgreSQL schema: the rules that must hold whichever node a request reaches.
@Suite("API: two nodes on PostgreSQL", .enabled(if: TestPostgres.url != nil, TestPostgres.skipReason))
struct MultiNodeAPITests {
    /// Builds two servers on one fresh schema and runs `body` with a client for each.
    func withTwoNodes(configure: (inout HeraldConfiguration) -> Void = { _ in },
                      _ body: @escaping @Sendable (APIClient, APIClient) async throws -> Void) async throws {
        let url = try #require(TestPostgres.freshSchemaURL())
        var configuration = HeraldConfiguration()
        configuration.database = .postgres(url)
        configuration.token = adminToken
        configuration.role = .api
        configuration.mainKey = (0..<32).map { _ in UInt8.random(in: 0...255) }
        configure(&configuration)
        var logger = Logger(label: "herald.test")
        logger.logLevel = .warning
        let first = try await HeraldServer.build(configuration: configuration, logger: logger)
        let second = try await HeraldServer.build(configuration: configuration, logger: logger)
        do {
            try await first.application.test(.router) { firstClient in
                try await second.application.test(.router) { secondClient in
                    try await body(APIClient(client: firstClient, server: first), APIClient(client: secondClient, server: second))
                }
            }
        } catch {
            await first.close()
            await second.close()
            throw error
        }
        try? await (first.store as? PostgresStore)?.dropSchema()
        await first.close()
        await second.close()
    }

    @Test func concurrentDuplicatesOnTwoNodesMakeOneMessageAndTheSameAnswer() async throws {
        try await withTwoNodes { first, second in
            _ = try await first.createApp("A", uid: "a")
            // 40 keys, each sent to both nodes at once: 80 publishes in flight, so that many pairs
            // race past the replay check together and meet at the database.
            let answers = try await withThrowingTaskGroup(of: (Int, APIAnswer).self) { group in
                for round in 0..<40 {
                    for node in [first, second] {
                        group.addTask {
                            (round, try await node.publish(app: "a", ["eventType": "e", "payload": ["round": round]],
                                                           headers: ["idempotency-key": "key-\(round)"]))
                        }
                    }
                }
                return try await group.reduce(into: [Int: [APIAnswer]]()) { $0[$1.0, default: []].append($1.1) }
            }
            for (round, pair) in answers {
                #expect(pair.allSatisfy { $0.status == .accepted }, "key-\(round): \(pair.map { "\($0.status) \($0.text)" })")
                #expect(Set(pair.map { $0.object["id"] as? String }).count == 1, "key-\(round)")
            }
            let list = try await second.call(.get, "/api/v1/app/a/msg?limit=100")
            #expect(list.data.count == 40)
        }
    }

    @Test func anEventIDTakenOnOneNodeIsAConflictOnTheOther() async throws {
        try await withTwoNodes { first, second in
            _ = try await first.createApp("A", uid: "a")
            let stored = try await first.publish(app: "a", ["eventType": "e", "eventId": "evt-1", "payload": [:]])
            #expect(stored.status == .accepted)
            let again = try await second.publish(app: "a", ["eventType": "e", "eventId": "evt-1", "payload": [:]])
            #expect(again.status == .conflict)
            #expect(again.object["code"] as? String != nil)
            let read = try await second.call(.get, "/api/v1/app/a/msg/evt-1")
            #expect(read.object["id"] as? String == stored.object["id"] as? String)
            // An application uid taken on one node is taken on the other.
            let duplicate = try await second.call(.post, "/api/v1/app", json: ["name": "B", "uid": "a"])
            #expect(duplicate.status == .conflict)
        }
    }

    @Test func aTokenRevokedOnOneNodeIsRefusedByTheOtherWithinItsCacheLifetime() async throws {
        try await withTwoNodes { first, second in
            let created = try await first.call(.post, "/api/v1/token", json: ["name": "shared"])
            let token = try #require(created.object["token"] as? String)
            let id = try #require(created.object["id"] as? String)
            #expect(try await second.call(.get, "/api/v1/app", token: token).status == .ok)  // now cached there
            #expect(try await first.call(.delete, "/api/v1/token/\(id)").status == .noContent)
            #expect(try await first.call(.get, "/api/v1/app", token: token).status == .unauthorized, "at once on the revoking node")
            let deadline = ContinuousClock.now + .seconds(15)
            var refused = false
            while !refused, ContinuousClock.now < deadline {
                refused = try await second.call(.get, "/api/v1/app", token: token).status == .unauthorized
                if !refused { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(refused, "the other node refuses the revoked token once its 5 s cache entry lapses")
        }
    }

    @Test func concurrentEndpointCreatesOnTwoNodesStayWithinTheQuota() async throws {
        try await withTwoNodes(configure: { $0.apiLimits.maxEndpointsPerApplication = 4 }) { first, second in
            _ = try await first.createApp("A", uid: "a")
            let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for index in 0..<12 {
                    let node = index.isMultiple(of: 2) ? first : second
                    group.addTask { try await node.call(.post, "/api/v1/app/a/endpoint", json: ["url": "https://example.com/\(index)"]).status }
                }
                return try await group.reduce(into: [HTTPResponse.Status]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == .created }.count == 4)
            #expect(statuses.filter { $0 == .unprocessableContent }.count == 8)
            #expect(try await second.call(.get, "/api/v1/app/a/endpoint").data.count == 4)
        }
    }
}
