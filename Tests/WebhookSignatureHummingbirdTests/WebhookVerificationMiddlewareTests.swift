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
