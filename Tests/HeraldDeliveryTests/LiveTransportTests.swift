import Foundation
import HeraldCore
import HeraldDelivery
import Logging
import ServiceLifecycle
import Testing

/// The real AsyncHTTPClient transport against a real receiver on 127.0.0.1.
@Suite("Live transport on 127.0.0.1", .serialized)
struct LiveTransportTests {
    let loopback = OutboundNetworkPolicy(allowed: [CIDR("127.0.0.0/8")!])

    func send(_ transport: HTTPClientTransport, _ url: String, timeout: TimeInterval = 5) async -> TransportResponse {
        await transport.send(OutboundRequest(url: url, headers: [("content-type", "application/json")], body: Array("{}".utf8), timeout: timeout))
    }

    @Test func successAnd500ThenSuccess() async throws {
        let receiver = try await ScriptedReceiver()
        let transport = HTTPClientTransport(policy: loopback)
        #expect(await send(transport, receiver.url("/ok")).outcome == .status(200))
        let first = await send(transport, receiver.url("/fail-once"))
        #expect(first.outcome == .status(500) && first.body == "boom")
        #expect(await send(transport, receiver.url("/fail-once")).outcome == .status(200))
        await transport.shutdown()
        await receiver.stop()
    }

    @Test func aSilentReceiverTimesOutAtTheDeadline() async throws {
        let receiver = try await ScriptedReceiver()
        let transport = HTTPClientTransport(policy: loopback)
        let response = await send(transport, receiver.url("/hang"), timeout: 1)
        #expect(response.outcome == .timeout)
        #expect(response.duration < .seconds(5))
        await transport.shutdown()
        await receiver.stop()
    }

    @Test func aConnectionClosedMidResponseIsAFailure() async throws {
        let receiver = try await ScriptedReceiver()
        let transport = HTTPClientTransport(policy: loopback)
        let response = await send(transport, receiver.url("/close"))
        if case .failed = response.outcome {} else { Issue.record("expected a failure, got \(response.outcome)") }
        await transport.shutdown()
        await receiver.stop()
    }

    @Test func aTricklingReceiverIsCutOffAtTheTotalDeadline() async throws {
        let receiver = try await ScriptedReceiver()
        let transport = HTTPClientTransport(policy: loopback)
        let started = ContinuousClock.now
        let response = await send(transport, receiver.url("/trickle"), timeout: 1)
        #expect(response.outcome == .timeout)
        #expect(ContinuousClock.now - started < .seconds(5))
        await transport.shutdown()
        await receiver.stop()
    }

    @Test func redirectsAreNotFollowed() async throws {
        let receiver = try await ScriptedReceiver()
        let transport = HTTPClientTransport(policy: loopback)
        #expect(await send(transport, receiver.url("/redirect")).outcome == .status(302))
        #expect(receiver.hitCount("/target") == 0)
        await transport.shutdown()
        await receiver.stop()
    }

    @Test func goneIsReported() async throws {
        let receiver = try await ScriptedReceiver()
        let transport = HTTPClientTransport(policy: loopback)
        #expect(await send(transport, receiver.url("/gone")).outcome == .status(410))
        await transport.shutdown()
        await receiver.stop()
    }

    @Test func aHugeResponseIsCappedAt20000Bytes() async throws {
        let receiver = try await ScriptedReceiver()
        let transport = HTTPClientTransport(policy: loopback)
        let response = await send(transport, receiver.url("/big"), timeout: 10)
        #expect(response.outcome == .status(200))
        #expect(response.body.utf8.count == TransportResponse.maxResponseBytes)
        await transport.shutdown()
        await receiver.stop()
    }

    @Test func loopbackIsRefusedUnlessAllowedAndTheReceiverIsNeverContacted() async throws {
        let receiver = try await ScriptedReceiver()
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy())
        let response = await send(transport, receiver.url("/ok"))
        guard case .failed(let reason) = response.outcome else { Issue.record("loopback was reached"); return }
        #expect(reason.contains("loopback"))
        let byName = await send(transport, "http://localhost:\(receiver.port)/ok")
        if case .failed = byName.outcome {} else { Issue.record("localhost was reached") }
        #expect(receiver.hitCount("/ok") == 0)
        await transport.shutdown()
        await receiver.stop()
    }
}

/// The dispatcher with the real transport: a trickling endpoint does not hold up the others.
@Suite("Dispatcher live", .serialized)
struct DispatcherLiveTests {
    @Test func slowEndpointsDoNotWedgeTheWorker() async throws {
        let receiver = try await ScriptedReceiver()
        let store = InMemoryStore()
        let app = Application(name: "A")
        try await store.createApplication(app)
        let slow = Endpoint(appID: app.id, url: receiver.url("/trickle"), eventTypes: ["slow"], secrets: [EndpointSecret(key: Array(repeating: 1, count: 24))])
        let fast = Endpoint(appID: app.id, url: receiver.url("/ok"), eventTypes: ["fast"], secrets: [EndpointSecret(key: Array(repeating: 2, count: 24))])
        try await store.createEndpoint(slow)
        try await store.createEndpoint(fast)
        for _ in 0..<4 { _ = try await store.publish(PublishRequest(message: Message(appID: app.id, eventType: "slow", payload: Array("{}".utf8)))) }
        for _ in 0..<20 { _ = try await store.publish(PublishRequest(message: Message(appID: app.id, eventType: "fast", payload: Array("{}".utf8)))) }

        var configuration = Dispatcher.Configuration()
        configuration.processor.requestTimeout = 3
        configuration.concurrency = 4
        configuration.perEndpointConcurrency = 2
        configuration.pollInterval = .milliseconds(50)
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: [CIDR("127.0.0.0/8")!]))
        let dispatcher = Dispatcher(queue: store, transport: transport, configuration: configuration, logger: Logger(label: "test"))
        let group = ServiceGroup(services: [dispatcher], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            // All 20 fast deliveries succeed while the slow ones are still trickling.
            let deadline = ContinuousClock.now + .seconds(20)
            var delivered = 0
            while ContinuousClock.now < deadline {
                let stats = try await store.endpointStats(app: app.id, endpoint: fast.id, since: nil, until: nil)
                delivered = stats.success
                if delivered == 20 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(delivered == 20)
            let slowStats = try await store.endpointStats(app: app.id, endpoint: slow.id, since: nil, until: nil)
            #expect(slowStats.success == 0)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(dispatcher.inFlight == 0)
        await transport.shutdown()
        await receiver.stop()
    }
}
