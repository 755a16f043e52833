import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import NIOCore
import Testing
import WebhookSignature
import WebhookSignatureHummingbird

/// Counts handler runs, so tests can tell whether the handler ran.
actor Calls {
    var bodies: [String] = []
    func record(_ body: String) { bodies.append(body) }
}

@Suite("WebhookVerificationMiddleware")
struct WebhookVerificationMiddlewareTests {
    static let secret = WebhookSecret.generate()

    func makeApp(calls: Calls, dedup: (any WebhookDeduplicator)? = InMemoryWebhookDeduplicator(), maxBody: Int = 1024, handlerStatus: HTTPResponse.Status = .noContent) throws -> some ApplicationProtocol {
        let router = Router(context: BasicWebhookRequestContext.self)
        router.group("webhooks")
            .add(middleware: WebhookVerificationMiddleware(
                verifier: StandardWebhook(keys: [.secret(Self.secret)]),
                deduplicator: dedup,
                configuration: .init(maxBodySize: maxBody)))
            .post { request, context in
                let body = try await request.body.collect(upTo: .max)
                await calls.record(String(buffer: body) + "|" + (context.webhook?.id ?? "nil"))
                return Response(status: handlerStatus)
            }
        return Application(router: router)
    }

    func signedHeaders(_ body: String, id: String = "msg_1", timestamp: Date = Date()) throws -> HTTPFields {
        var fields = HTTPFields()
        for header in try StandardWebhook(keys: [.secret(Self.secret)]).sign(payload: Array(body.utf8), id: id, timestamp: timestamp) {
            fields[HTTPField.Name(header.name)!] = header.value
        }
        return fields
    }

    @Test func validWebhookReachesTheHandlerWithItsExactBytes() async throws {
        let calls = Calls()
        let body = #"{"type": "user.created",  "data": {}}"#
        try await makeApp(calls: calls).test(.router) { client in
            try await client.execute(uri: "/webhooks", method: .post, headers: try signedHeaders(body), body: ByteBuffer(string: body)) { response in
                #expect(response.status == .noContent)
            }
        }
        #expect(await calls.bodies == [body + "|msg_1"])
    }

    @Test func badSignatureGets401WithTheReasonAndNoHandlerRun() async throws {
        let calls = Calls()
        try await makeApp(calls: calls).test(.router) { client in
            try await client.execute(uri: "/webhooks", method: .post, headers: try signedHeaders("original"), body: ByteBuffer(string: "tampered")) { response in
                #expect(response.status == .unauthorized)
                #expect(response.headers[.contentType] == "application/json")
                let json = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: String]
                #expect(json?["error"] == "no_matching_signature")
                #expect(json?["message"]?.isEmpty == false)
            }
            try await client.execute(uri: "/webhooks", method: .post, body: ByteBuffer(string: "x")) { response in
                #expect(response.status == .unauthorized)
                let json = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: String]
                #expect(json?["error"] == "missing_header")
            }
            let old = Date().addingTimeInterval(-600)
            try await client.execute(uri: "/webhooks", method: .post, headers: try signedHeaders("x", timestamp: old), body: ByteBuffer(string: "x")) { response in
                let json = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: String]
                #expect(json?["error"] == "timestamp_outside_tolerance")
            }
        }
        #expect(await calls.bodies.isEmpty)
    }

    @Test func bodyOverTheLimitGets413() async throws {
        let calls = Calls()
        let body = String(repeating: "a", count: 2000)
        try await makeApp(calls: calls, maxBody: 1024).test(.router) { client in
            try await client.execute(uri: "/webhooks", method: .post, headers: try signedHeaders(body), body: ByteBuffer(string: body)) { response in
                #expect(response.status == .contentTooLarge)
                let json = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: String]
                #expect(json?["error"] == "payload_too_large")
            }
        }
        #expect(await calls.bodies.isEmpty)
    }

    @Test func duplicateIdGets200WithoutRunningTheHandlerAgain() async throws {
        let calls = Calls()
        try await makeApp(calls: calls).test(.router) { client in
            for _ in 0..<3 {
                try await client.execute(uri: "/webhooks", method: .post, headers: try signedHeaders("once", id: "msg_dup"), body: ByteBuffer(string: "once")) { response in
                    #expect(response.status.code / 100 == 2)
                }
            }
        }
        #expect(await calls.bodies == ["once|msg_dup"])
    }

    @Test func failedHandlerForgetsTheIdSoTheRetryIsProcessed() async throws {
        let calls = Calls()
        try await makeApp(calls: calls, handlerStatus: .internalServerError).test(.router) { client in
            for _ in 0..<2 {
                try await client.execute(uri: "/webhooks", method: .post, headers: try signedHeaders("retry", id: "msg_r"), body: ByteBuffer(string: "retry")) { response in
                    #expect(response.status == .internalServerError)
                }
            }
        }
        #expect(await calls.bodies.count == 2)
    }

    @Test func withoutADeduplicatorEveryDeliveryRuns() async throws {
        let calls = Calls()
        try await makeApp(calls: calls, dedup: nil).test(.router) { client in
            for _ in 0..<2 {
                try await client.execute(uri: "/webhooks", method: .post, headers: try signedHeaders("again", id: "msg_a"), body: ByteBuffer(string: "again")) { _ in }
            }
        }
        #expect(await calls.bodies.count == 2)
    }
}

/// A gate the handler waits at until the test opens it.
actor Gate {
    private var open = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private(set) var arrived = 0
    func wait() async {
        arrived += 1
        if open { return }
        await withCheckedContinuation { waiters.append($0) }
    }
    func release() {
        open = true
        for waiter in waiters { waiter.resume() }
        waiters = []
    }
}

@Suite("WebhookVerificationMiddleware, copies in flight")
struct WebhookInFlightDuplicateTests {
    static let secret = WebhookSecret.generate()

    func makeApp(calls: Calls, gate: Gate, dedup: any WebhookDeduplicator, status: @escaping @Sendable () -> HTTPResponse.Status) -> some ApplicationProtocol {
        let router = Router(context: BasicWebhookRequestContext.self)
        router.group("webhooks")
            .add(middleware: WebhookVerificationMiddleware(verifier: StandardWebhook(keys: [.secret(Self.secret)]), deduplicator: dedup))
            .post { request, context in
                let body = try await request.body.collect(upTo: .max)
                await gate.wait()
                await calls.record(String(buffer: body))
                return Response(status: status())
            }
        return Application(router: router)
    }

    func headers(_ body: String, id: String) throws -> HTTPFields {
        var fields = HTTPFields()
        for header in try StandardWebhook(keys: [.secret(Self.secret)]).sign(payload: Array(body.utf8), id: id, timestamp: Date()) {
            fields[HTTPField.Name(header.name)!] = header.value
        }
        return fields
    }

    /// Waits (at most 10 s) until `condition` holds.
    func eventually(_ condition: @Sendable () async -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            await Task.yield()
        }
        return await condition()
    }

    @Test(arguments: [HTTPResponse.Status.noContent, .internalServerError])
    func aRetryWhileTheFirstCopyRunsIsAskedToComeBackAndSeesItsOutcome(_ firstOutcome: HTTPResponse.Status) async throws {
        let calls = Calls()
        let gate = Gate()
        let dedup = InMemoryWebhookDeduplicator()
        let outcome = firstOutcome
        let app = makeApp(calls: calls, gate: gate, dedup: dedup) { outcome }
        let body = #"{"n":1}"#
        try await app.test(.router) { client in
            let signed = try headers(body, id: "msg_inflight")
            async let first = client.execute(uri: "/webhooks", method: .post, headers: signed, body: ByteBuffer(string: body)) { $0.status }
            #expect(await eventually { await gate.arrived == 1 }, "the first copy is in the handler")
            // The sender timed out and retried while the first copy is still being handled.
            try await client.execute(uri: "/webhooks", method: .post, headers: signed, body: ByteBuffer(string: body)) { response in
                #expect(response.status == .conflict, "not acknowledged as a duplicate while the first copy may still fail")
                #expect(response.headers[.retryAfter] == "5")
                let json = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: String]
                #expect(json?["error"] == "in_progress")
            }
            await gate.release()
            #expect(try await first == outcome)
            // The sender's next retry sees what the first copy did.
            try await client.execute(uri: "/webhooks", method: .post, headers: signed, body: ByteBuffer(string: body)) { response in
                if outcome == .noContent {
                    #expect(response.status == .ok, "processed: acknowledged without running again")
                } else {
                    #expect(response.status == outcome, "the first copy failed: this retry is processed")
                }
            }
        }
        #expect(await calls.bodies.count == (firstOutcome == .noContent ? 1 : 2))
        #expect(await dedup.inProgressCount == 0)
    }

    @Test func aClaimThatNeverFinishesExpires() async {
        let dedup = InMemoryWebhookDeduplicator(claimTimeout: 60)
        let start = Date(timeIntervalSince1970: 1_000_000)
        #expect(await dedup.claim("msg_a", now: start) == .new)
        #expect(await dedup.claim("msg_a", now: start.addingTimeInterval(59)) == .inProgress)
        #expect(await dedup.claim("msg_a", now: start.addingTimeInterval(61)) == .new, "a handler that never returned does not block its id")
        await dedup.complete("msg_a", now: start.addingTimeInterval(62))
        #expect(await dedup.claim("msg_a", now: start.addingTimeInterval(63)) == .processed)
        #expect(await dedup.markSeen("msg_b", now: start) == true)
        #expect(await dedup.claim("msg_b", now: start) == .processed, "markSeen claims and completes at once")
        await dedup.forget("msg_b")
        #expect(await dedup.claim("msg_b", now: start) == .new)
    }

    @Test func claimsAreBounded() async {
        let dedup = InMemoryWebhookDeduplicator(capacity: 10, claimTimeout: 3600)
        let now = Date(timeIntervalSince1970: 1_000_000)
        for index in 0..<50 { _ = await dedup.claim("msg_\(index)", now: now.addingTimeInterval(Double(index))) }
        #expect(await dedup.inProgressCount <= 10)
        #expect(await dedup.claim("msg_49", now: now.addingTimeInterval(50)) == .inProgress, "the newest claims are kept")
    }
}
