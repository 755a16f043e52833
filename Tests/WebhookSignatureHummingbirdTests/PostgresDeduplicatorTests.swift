import Foundation
import HeraldTesting
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Logging
import NIOCore
import PostgresNIO
import Testing
import WebhookSignature
import WebhookSignatureHummingbird
import WebhookSignaturePostgres

/// Runs `body` with `count` deduplicators, each on a client of its own (as separate receiver
/// processes would be), sharing one fresh table; drops the table afterwards.
func withSharedDeduplicators<T: Sendable>(_ count: Int, ttl: TimeInterval = 3600, claimTimeout: TimeInterval = 300,
                                          _ body: @Sendable ([PostgresWebhookDeduplicator]) async throws -> T) async throws -> T {
    let url = try #require(TestPostgres.url.flatMap(URLComponents.init(string:)))
    let configuration = PostgresClient.Configuration(
        host: url.host ?? "127.0.0.1", port: url.port ?? 5432, username: url.user ?? "postgres", password: url.password,
        database: String(url.path.dropFirst()).isEmpty ? "postgres" : String(url.path.dropFirst()), tls: .disable)
    let table = "dedup_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
    let clients = (0..<count).map { _ in PostgresClient(configuration: configuration) }
    return try await withThrowingTaskGroup(of: Void.self) { group in
        for client in clients { group.addTask { await client.run() } }
        defer { group.cancelAll() }
        let deduplicators = clients.map { PostgresWebhookDeduplicator(client: $0, table: table, ttl: ttl, claimTimeout: claimTimeout) }
        try await deduplicators[0].prepare()
        try await deduplicators[1 % count].prepare()  // idempotent
        do {
            let result = try await body(deduplicators)
            _ = try await clients[0].query(PostgresQuery(unsafeSQL: "DROP TABLE \(table)"))
            return result
        } catch {
            _ = try? await clients[0].query(PostgresQuery(unsafeSQL: "DROP TABLE \(table)"))
            throw error
        }
    }
}

@Suite("PostgresWebhookDeduplicator", .enabled(if: TestPostgres.url != nil, TestPostgres.skipReason))
struct PostgresDeduplicatorTests {
    /// Signing and waiting as in the in-process tests.
    static let secret = WebhookInFlightDuplicateTests.secret
    let helpers = WebhookInFlightDuplicateTests()
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("an id claimed by one process is in progress for the others, processed once completed, new again once forgotten")
    func sharedClaims() async throws {
        let t0 = self.t0
        try await withSharedDeduplicators(2) { dedups in
            let (a, b) = (dedups[0], dedups[1])
            #expect(await a.claim("msg_1", now: t0) == .new)
            #expect(await b.claim("msg_1", now: t0) == .inProgress)
            #expect(await a.claim("msg_1", now: t0) == .inProgress)
            await a.forget("msg_1")  // the handler failed
            #expect(await b.claim("msg_1", now: t0) == .new)
            await b.complete("msg_1", now: t0)
            #expect(await a.claim("msg_1", now: t0) == .processed)
            #expect(await b.markSeen("msg_1", now: t0) == false)
            #expect(await a.markSeen("msg_2", now: t0) == true)
            #expect(await b.claim("msg_2", now: t0) == .processed)
        }
    }

    @Test("claims expire after claimTimeout, processed ids after ttl, and the purge removes expired rows")
    func expiry() async throws {
        let t0 = self.t0
        try await withSharedDeduplicators(2, ttl: 100, claimTimeout: 10) { dedups in
            let (a, b) = (dedups[0], dedups[1])
            #expect(await a.claim("stuck", now: t0) == .new)  // its process died while handling it
            #expect(await b.claim("stuck", now: t0.addingTimeInterval(9)) == .inProgress)
            #expect(await b.claim("stuck", now: t0.addingTimeInterval(10)) == .new)
            await b.complete("stuck", now: t0.addingTimeInterval(10))
            #expect(await a.claim("stuck", now: t0.addingTimeInterval(109)) == .processed)
            #expect(await a.claim("stuck", now: t0.addingTimeInterval(110)) == .new)
            for n in 0..<20 { #expect(await a.markSeen("old-\(n)", now: t0)) }
            let stored = try await a.count()
            let firstBatch = try await b.purgeExpired(now: t0.addingTimeInterval(100), limit: 5)
            let rest = try await b.purgeExpired(now: t0.addingTimeInterval(100))
            let left = try await a.count()
            #expect(stored == 21)
            #expect(firstBatch == 5)
            #expect(rest == 15)
            #expect(left == 1)
        }
    }

    @Test("many processes claiming one id at once: exactly one gets it")
    func concurrentClaims() async throws {
        let t0 = self.t0
        try await withSharedDeduplicators(4) { dedups in
            for round in 0..<20 {
                let claims = await withTaskGroup(of: WebhookClaim.self) { group in
                    for index in 0..<16 { group.addTask { await dedups[index % 4].claim("race-\(round)", now: t0) } }
                    return await group.reduce(into: []) { $0.append($1) }
                }
                #expect(claims.filter { $0 == .new }.count == 1, "round \(round): \(claims)")
            }
        }
    }

    /// The issue's scenario across two receiver processes: a handler that takes a while and fails,
    /// a duplicate sent (to the other process) while it runs, the sender's retry after the failure.
    @Test("a copy sent to another process while the first is handled gets a retryable 409; the retry is handled once, successfully")
    func retryAcrossProcesses() async throws {
        try await withSharedDeduplicators(2) { dedups in
            let calls = Calls()
            let gate = Gate()
            let outcomes = Outcomes([.internalServerError, .noContent])
            let first = receiver(dedup: dedups[0], calls: calls, gate: gate, outcomes: outcomes)
            let second = receiver(dedup: dedups[1], calls: calls, gate: nil, outcomes: outcomes)
            let body = #"{"n":7}"#
            let signed = try helpers.headers(body, id: "msg_across")
            try await first.test(.router) { firstClient in
                try await second.test(.router) { secondClient in
                    async let firstCopy = firstClient.execute(uri: "/webhooks", method: .post, headers: signed, body: ByteBuffer(string: body)) { $0.status }
                    #expect(await helpers.eventually { await gate.arrived == 1 }, "the first copy is in the handler")
                    // The sender timed out and sent it again; it reached the other process.
                    try await secondClient.execute(uri: "/webhooks", method: .post, headers: signed, body: ByteBuffer(string: body)) { response in
                        #expect(response.status == .conflict)
                        #expect(response.headers[.retryAfter] != nil)
                    }
                    await gate.release()
                    #expect(try await firstCopy == .internalServerError)
                    // The sender retries: now it is handled, successfully.
                    try await secondClient.execute(uri: "/webhooks", method: .post, headers: signed, body: ByteBuffer(string: body)) { response in
                        #expect(response.status == .noContent)
                    }
                    // Any later copy, on either process, is a duplicate.
                    for client in [firstClient, secondClient] as [any TestClientProtocol] {
                        try await client.execute(uri: "/webhooks", method: .post, headers: signed, body: ByteBuffer(string: body)) { response in
                            #expect(response.status == .ok)
                        }
                    }
                }
            }
            #expect(await calls.bodies.count == 2, "handled twice: the failed first copy and the successful retry")
            #expect(await outcomes.successes == 1)
        }
    }

    func receiver(dedup: PostgresWebhookDeduplicator, calls: Calls, gate: Gate?, outcomes: Outcomes) -> some ApplicationProtocol {
        let router = Router(context: BasicWebhookRequestContext.self)
        router.group("webhooks")
            .add(middleware: WebhookVerificationMiddleware(verifier: StandardWebhook(keys: [.secret(Self.secret)]), deduplicator: dedup))
            .post { request, _ in
                let body = try await request.body.collect(upTo: .max)
                await gate?.wait()
                await calls.record(String(buffer: body))
                return Response(status: await outcomes.next())
            }
        return Application(router: router)
    }
}

/// The statuses a handler answers with, in turn.
actor Outcomes {
    private var queue: [HTTPResponse.Status]
    private(set) var successes = 0
    init(_ queue: [HTTPResponse.Status]) { self.queue = queue }
    func next() -> HTTPResponse.Status {
        let status = queue.isEmpty ? .noContent : queue.removeFirst()
        if (200..<300).contains(status.code) { successes += 1 }
        return status
    }
}
