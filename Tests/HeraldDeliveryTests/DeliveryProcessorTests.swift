import Foundation
import HeraldCore
import HeraldDelivery
import Logging
import NIOConcurrencyHelpers
import Testing
import WebhookSignature

/// A store with one application, one endpoint and one published message, claimed and ready.
struct Fixture {
    let store = InMemoryStore()
    let clock = ManualClock()
    let secret = WebhookSecret.generate()
    var app: Application!
    var endpoint: Endpoint!
    var message: Message!

    static func make(headers: [String: String] = [:]) async throws -> Fixture {
        var fixture = Fixture()
        fixture.app = Application(name: "A", createdAt: fixture.clock.now)
        try await fixture.store.createApplication(fixture.app)
        fixture.endpoint = Endpoint(appID: fixture.app.id, url: "https://hooks.example.com/in", headers: headers,
                                    secrets: [EndpointSecret(key: fixture.secret.bytes)], createdAt: fixture.clock.now)
        try await fixture.store.createEndpoint(fixture.endpoint)
        fixture.message = Message(appID: fixture.app.id, eventType: "user.created", payload: Array(#"{"id": 1}"#.utf8), createdAt: fixture.clock.now)
        _ = try await fixture.store.publish(PublishRequest(message: fixture.message))
        return fixture
    }

    func processor(_ transport: FakeTransport, configure: (inout DeliveryProcessor.Configuration) -> Void = { _ in }) -> DeliveryProcessor {
        var configuration = DeliveryProcessor.Configuration()
        configure(&configuration)
        let clock = self.clock
        return DeliveryProcessor(queue: store, transport: transport, configuration: configuration, now: { clock.now }, logger: Logger(label: "test"))
    }

    /// Claims the delivery when due, as the dispatcher would.
    func claim() async throws -> Delivery {
        let claimed = try await store.claimDueDeliveries(now: clock.now, limit: 10, leaseUntil: clock.now.addingTimeInterval(120))
        return try #require(claimed.first)
    }

    func delivery() async throws -> Delivery {
        try #require(try await store.delivery(message: message.id, endpoint: endpoint.id))
    }

    func attempts() async throws -> [Attempt] {
        try await store.listAttempts(app: app.id, filter: AttemptFilter(), PageRequest(limit: 250)).items
    }
}

@Suite("DeliveryProcessor: every state transition")
struct DeliveryProcessorTests {
    @Test func successRecordsTheAttemptAndFinishesTheDelivery() async throws {
        let fixture = try await Fixture.make()
        let transport = FakeTransport([.status(204)])
        let result = try await fixture.processor(transport).process(try await fixture.claim())
        #expect(result?.status == .success)
        let delivery = try await fixture.delivery()
        #expect(delivery.status == .success && delivery.attemptCount == 1 && delivery.nextAttemptAt == nil && delivery.leaseExpiresAt == nil)
        let attempt = try #require(try await fixture.attempts().first)
        #expect(attempt.responseStatusCode == 204 && attempt.status == .success && attempt.triggerType == .scheduled)
        #expect(attempt.url == "https://hooks.example.com/in")
        #expect(attempt.responseDurationMs == 3)
    }

    @Test func theRequestIsSignedWithTheExactBytesAndCarriesTheHeaders() async throws {
        let fixture = try await Fixture.make(headers: ["X-Tenant": "t1"])
        let transport = FakeTransport()
        try await fixture.processor(transport) { $0.sendSvixHeaders = true }.process(try await fixture.claim())
        let request = try #require(transport.sent.first)
        #expect(request.body == fixture.message.payload)
        let headers = WebhookHeaders(request.headers.map { ($0.name, $0.value) })
        #expect(headers["webhook-id"] == fixture.message.id.rawValue)
        #expect(headers["svix-id"] == fixture.message.id.rawValue)
        #expect(headers["content-type"] == "application/json")
        #expect(headers["user-agent"]?.hasPrefix("Herald/") == true)
        #expect(headers["x-tenant"] == "t1")
        #expect(headers["webhook-timestamp"] == String(Int64(fixture.clock.now.timeIntervalSince1970)))
        let verifier = StandardWebhook(keys: [.secret(fixture.secret)])
        #expect(throws: Never.self) { try verifier.verify(payload: request.body, headers: headers, now: fixture.clock.now) }
    }

    @Test func duringRotationEveryActiveKeySigns() async throws {
        var fixture = try await Fixture.make()
        let newSecret = WebhookSecret.generate()
        fixture.endpoint.secrets = [EndpointSecret(key: newSecret.bytes), EndpointSecret(key: fixture.secret.bytes, expiresAt: fixture.clock.now.addingTimeInterval(3600)),
                                    EndpointSecret(key: WebhookSecret.generate().bytes, expiresAt: fixture.clock.now.addingTimeInterval(-1))]
        try await fixture.store.updateEndpoint(fixture.endpoint)
        let transport = FakeTransport()
        try await fixture.processor(transport).process(try await fixture.claim())
        let request = try #require(transport.sent.first)
        let headers = WebhookHeaders(request.headers.map { ($0.name, $0.value) })
        #expect(headers["webhook-signature"]?.split(separator: " ").count == 2)  // the expired key does not sign
        for secret in [newSecret, fixture.secret] {
            #expect(throws: Never.self) { try StandardWebhook(keys: [.secret(secret)]).verify(payload: request.body, headers: headers, now: fixture.clock.now) }
        }
    }

    @Test func ed25519EndpointsGetV1aSignaturesThatThePublicKeyVerifies() async throws {
        var fixture = try await Fixture.make()
        let signing = Ed25519SigningKey.generate()
        fixture.endpoint.secrets = [EndpointSecret(key: signing.seed, kind: .ed25519),
                                    EndpointSecret(key: fixture.secret.bytes, expiresAt: fixture.clock.now.addingTimeInterval(60))]
        try await fixture.store.updateEndpoint(fixture.endpoint)
        let transport = FakeTransport()
        try await fixture.processor(transport).process(try await fixture.claim())
        let request = try #require(transport.sent.first)
        let headers = WebhookHeaders(request.headers.map { ($0.name, $0.value) })
        #expect(headers["webhook-signature"]?.hasPrefix("v1a,") == true)
        #expect(headers["webhook-signature"]?.contains(" v1,") == true)
        let verifier = StandardWebhook(keys: [.publicKey(signing.publicKey)])
        #expect(throws: Never.self) { try verifier.verify(payload: request.body, headers: headers, now: fixture.clock.now) }
    }

    @Test func a500IsRetriedOnScheduleWithTheSameWebhookId() async throws {
        let fixture = try await Fixture.make()
        let transport = FakeTransport([.status(500), .status(502), .status(200)])
        let processor = fixture.processor(transport)
        try await processor.process(try await fixture.claim())
        var delivery = try await fixture.delivery()
        #expect(delivery.status == .pending && delivery.attemptCount == 1)
        let firstDelay = delivery.nextAttemptAt!.timeIntervalSince(fixture.clock.now)
        #expect(firstDelay >= 4 && firstDelay <= 6)
        // Not due yet: nothing to claim.
        let early = try await fixture.store.claimDueDeliveries(now: fixture.clock.now, limit: 10, leaseUntil: fixture.clock.now.addingTimeInterval(120))
        #expect(early.isEmpty)
        fixture.clock.advance(6)
        try await processor.process(try await fixture.claim())
        delivery = try await fixture.delivery()
        let secondDelay = delivery.nextAttemptAt!.timeIntervalSince(fixture.clock.now)
        #expect(secondDelay >= 240 && secondDelay <= 360)
        fixture.clock.advance(360)
        try await processor.process(try await fixture.claim())
        delivery = try await fixture.delivery()
        #expect(delivery.status == .success && delivery.attemptCount == 3)
        let ids = Set(transport.sent.map { WebhookHeaders($0.headers.map { ($0.name, $0.value) })["webhook-id"] })
        #expect(ids == [fixture.message.id.rawValue])
        let timestamps = Set(transport.sent.map { WebhookHeaders($0.headers.map { ($0.name, $0.value) })["webhook-timestamp"] })
        #expect(timestamps.count == 3)  // each attempt is signed at its own time
        #expect(try await fixture.attempts().map(\.responseStatusCode).sorted() == [200, 500, 502])
    }

    @Test func afterTheLastAttemptTheDeliveryFails() async throws {
        let fixture = try await Fixture.make()
        let transport = FakeTransport(Array(repeating: .status(500), count: 3))
        let processor = fixture.processor(transport) { $0.retryPolicy.schedule = [1, 1] }
        for _ in 0..<3 {
            try await processor.process(try await fixture.claim())
            fixture.clock.advance(2)
        }
        let delivery = try await fixture.delivery()
        #expect(delivery.status == .fail && delivery.attemptCount == 3 && delivery.nextAttemptAt == nil)
        let none = try await fixture.store.claimDueDeliveries(now: fixture.clock.now.addingTimeInterval(86400), limit: 10, leaseUntil: fixture.clock.now)
        #expect(none.isEmpty)
    }

    @Test(arguments: [TransportResponse.Outcome.timeout, .status(429)])
    func timeoutsAnd429sWaitAtLeastAMinute(outcome: TransportResponse.Outcome) async throws {
        let fixture = try await Fixture.make()
        try await fixture.processor(FakeTransport([outcome])).process(try await fixture.claim())
        let delivery = try await fixture.delivery()
        #expect(delivery.status == .pending)
        #expect(delivery.nextAttemptAt!.timeIntervalSince(fixture.clock.now) >= 60)
        let attempt = try #require(try await fixture.attempts().first)
        if outcome == .timeout {
            #expect(attempt.responseStatusCode == 0 && attempt.response.contains("timed out"))
        }
    }

    @Test func retryAfterIsHonoured() async throws {
        let fixture = try await Fixture.make()
        try await fixture.processor(FakeTransport([.status(503)], retryAfter: "900")).process(try await fixture.claim())
        let delivery = try await fixture.delivery()
        #expect(delivery.nextAttemptAt!.timeIntervalSince(fixture.clock.now) >= 900)
    }

    @Test func networkErrorsAreRecordedWithStatusZeroAndTheReason() async throws {
        let fixture = try await Fixture.make()
        try await fixture.processor(FakeTransport([.failed("connection refused")])).process(try await fixture.claim())
        let attempt = try #require(try await fixture.attempts().first)
        #expect(attempt.responseStatusCode == 0 && attempt.response == "connection refused" && attempt.status == .fail)
        #expect(try await fixture.delivery().status == .pending)
    }

    @Test func gone410DisablesTheEndpointAndStopsRetrying() async throws {
        let fixture = try await Fixture.make()
        try await fixture.processor(FakeTransport([.status(410)])).process(try await fixture.claim())
        #expect(try await fixture.delivery().status == .fail)
        let endpoint = try #require(try await fixture.store.endpoint(app: fixture.app.id, ref: fixture.endpoint.id.rawValue))
        #expect(endpoint.disabled)
    }

    @Test func redirectsAreFailuresAndRetried() async throws {
        let fixture = try await Fixture.make()
        try await fixture.processor(FakeTransport([.status(302)])).process(try await fixture.claim())
        let delivery = try await fixture.delivery()
        #expect(delivery.status == .pending)
        #expect(try await fixture.attempts().first?.status == .fail)
    }

    @Test func manualResendIsAttemptedOnceAndNotRetried() async throws {
        let fixture = try await Fixture.make()
        let processor = fixture.processor(FakeTransport([.status(500), .status(500)]))
        try await fixture.store.resend(app: fixture.app.id, message: fixture.message.id, endpoint: fixture.endpoint.id, now: fixture.clock.now)
        let claimed = try await fixture.claim()
        #expect(claimed.trigger == .manual)
        try await processor.process(claimed)
        let delivery = try await fixture.delivery()
        #expect(delivery.status == .fail && delivery.nextAttemptAt == nil)
        #expect(try await fixture.attempts().first?.triggerType == .manual)
    }

    @Test func anEndpointFailingForFiveDaysIsDisabledAndASuccessHeals() async throws {
        let fixture = try await Fixture.make()
        let processor = fixture.processor(FakeTransport([.status(500), .status(200), .status(500), .status(500)]))
        try await processor.process(try await fixture.claim())
        var endpoint = try #require(try await fixture.store.endpoint(app: fixture.app.id, ref: fixture.endpoint.id.rawValue))
        #expect(endpoint.failingSince == fixture.clock.now && !endpoint.disabled)
        // A success clears the failing streak.
        fixture.clock.advance(10)
        try await processor.process(try await fixture.claim())
        endpoint = try #require(try await fixture.store.endpoint(app: fixture.app.id, ref: fixture.endpoint.id.rawValue))
        #expect(endpoint.failingSince == nil)
        // Fail now, and again five days later: disabled.
        try await fixture.store.resend(app: fixture.app.id, message: fixture.message.id, endpoint: fixture.endpoint.id, now: fixture.clock.now)
        try await processor.process(try await fixture.claim())
        fixture.clock.advance(5 * 86400 + 1)
        try await fixture.store.resend(app: fixture.app.id, message: fixture.message.id, endpoint: fixture.endpoint.id, now: fixture.clock.now)
        try await processor.process(try await fixture.claim())
        endpoint = try #require(try await fixture.store.endpoint(app: fixture.app.id, ref: fixture.endpoint.id.rawValue))
        #expect(endpoint.disabled)
    }

    @Test func disabledEndpointsAndExpungedPayloadsFailWithoutSending() async throws {
        var fixture = try await Fixture.make()
        fixture.endpoint.disabled = true
        try await fixture.store.updateEndpoint(fixture.endpoint)
        let transport = FakeTransport()
        try await fixture.processor(transport).process(try await fixture.claim())
        #expect(transport.sent.isEmpty)
        #expect(try await fixture.delivery().status == .fail)

        let other = try await Fixture.make()
        try await other.store.expungeMessagePayload(app: other.app.id, id: other.message.id)
        let transport2 = FakeTransport()
        try await other.processor(transport2).process(try await other.claim())
        #expect(transport2.sent.isEmpty)
        #expect(try await other.attempts().first?.response.contains("expunged") == true)
    }
}

/// The dispatcher frees an endpoint's slot when the processor says the request is over, so that
/// recording the attempt (a group commit) does not hold the slot: the signal must come exactly
/// once, after the request, on every path.
@Suite("DeliveryProcessor: the answered signal")
struct DeliveryProcessorAnsweredTests {
    final class Calls: Sendable {
        let sentAtCall = NIOLockedValueBox<[Int]>([])
        func signal(_ transport: FakeTransport) -> @Sendable () -> Void {
            { self.sentAtCall.withLockedValue { $0.append(transport.sent.count) } }
        }
        var all: [Int] { sentAtCall.withLockedValue { $0 } }
    }

    @Test func comesOnceAfterTheRequestIsAnswered() async throws {
        let fixture = try await Fixture.make()
        let transport = FakeTransport([.status(500)], delay: .milliseconds(20))
        let calls = Calls()
        let result = try await fixture.processor(transport).process(try await fixture.claim(), endpoint: fixture.endpoint,
                                                                     message: fixture.message, answered: calls.signal(transport))
        #expect(calls.all == [1], "once, with the request already sent")
        #expect(result?.status == .pending)
        #expect(try await fixture.attempts().count == 1)
    }

    @Test func comesOnceWhenNothingIsSent() async throws {
        let fixture = try await Fixture.make()
        let transport = FakeTransport()
        var disabled = fixture.endpoint!
        disabled.disabled = true
        let calls = Calls()
        let claimed = try await fixture.claim()
        _ = try await fixture.processor(transport).process(claimed, endpoint: disabled, message: fixture.message, answered: calls.signal(transport))
        #expect(calls.all == [0], "a disabled endpoint: no request, one signal")
        let gone = Calls()
        #expect(try await fixture.processor(transport).process(claimed, endpoint: fixture.endpoint, message: nil, answered: gone.signal(transport)) == nil)
        #expect(gone.all == [0], "a deleted message: nothing recorded, still one signal")
    }

    /// The dispatcher keeps copies of endpoints: a processor that changes one must say so.
    @Test func anEndpointTheProcessorDisablesIsReported() async throws {
        let fixture = try await Fixture.make()
        let changes = NIOLockedValueBox(0)
        let processor = DeliveryProcessor(queue: fixture.store, transport: FakeTransport([.status(204), .status(410)]),
                                          now: { fixture.clock.now }, logger: Logger(label: "test"),
                                          endpointChanged: { changes.withLockedValue { $0 += 1 } })
        _ = try await processor.process(try await fixture.claim(), endpoint: fixture.endpoint, message: fixture.message)
        #expect(changes.withLockedValue { $0 } == 0, "a healthy endpoint succeeding changes nothing")
        let second = Message(appID: fixture.app.id, eventType: "user.created", payload: Array("{}".utf8), createdAt: fixture.clock.now)
        _ = try await fixture.store.publish(PublishRequest(message: second))
        _ = try await processor.process(try await fixture.claim(), endpoint: fixture.endpoint, message: second)
        #expect(try await fixture.store.endpoint(app: fixture.app.id, ref: fixture.endpoint.id.rawValue)?.disabled == true)
        #expect(changes.withLockedValue { $0 } == 1, "410 Gone disabled it")
    }
}
