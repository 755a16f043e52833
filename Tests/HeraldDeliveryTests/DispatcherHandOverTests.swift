import Foundation
import HeraldCore
import HeraldDelivery
import Logging
import ServiceLifecycle
import Testing

/// Deliveries published claimed for this process's dispatcher and handed over in memory.
@Suite("Dispatcher hand-over")
struct DispatcherHandOverTests {
    /// Waits (at most 10 s) until `condition` holds.
    func eventually(_ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return false
    }

    @Test func handedOverDeliveriesAreSentWithoutAClaimAndOnlyWhileRunning() async throws {
        let store = InMemoryStore()
        let app = Application(name: "A")
        try await store.createApplication(app)
        let endpoint = Endpoint(appID: app.id, url: "https://example.com/hook", secrets: [EndpointSecret(key: Array(repeating: 3, count: 24))])
        try await store.createEndpoint(endpoint)
        var configuration = Dispatcher.Configuration()
        configuration.concurrency = 2
        configuration.pollInterval = .seconds(60)  // only a hand-over or a wake-up starts work
        let transport = FakeTransport(delay: .milliseconds(300))
        let dispatcher = Dispatcher(queue: store, transport: transport, configuration: configuration, logger: Logger(label: "test"))
        #expect(dispatcher.leaseForNewDeliveries() == nil, "not running: publishes store their deliveries pending")

        let group = ServiceGroup(services: [dispatcher], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            #expect(try await eventually { dispatcher.leaseForNewDeliveries() != nil })
            let lease = try #require(dispatcher.leaseForNewDeliveries())
            var messages: [Message] = []
            for _ in 0..<2 {
                let message = Message(appID: app.id, eventType: "e", payload: Array("{}".utf8))
                let result = try await store.publish(PublishRequest(message: message, claimUntil: lease))
                // Stored claimed: no claim of anyone's can take them.
                #expect(try await store.claimDueDeliveries(now: Date(), limit: 10, leaseUntil: lease).isEmpty)
                #expect(dispatcher.take(result.deliveries, of: result.message))
                messages.append(message)
            }
            // Both in flight (300 ms each): no room for more until one finishes.
            #expect(try await eventually { dispatcher.inFlight == 2 })
            #expect(dispatcher.leaseForNewDeliveries() == nil)
            #expect(try await eventually {
                try await store.endpointStats(app: app.id, endpoint: endpoint.id, since: nil, until: nil).success == 2
            })
            #expect(transport.sent.count == 2)
            #expect(Set(transport.sent.compactMap { $0.headers.first { $0.name == "webhook-id" }?.value }) == Set(messages.map(\.id.rawValue)))
            #expect(dispatcher.leaseForNewDeliveries() != nil)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        // Stopped: it takes no more, so the API releases such claims instead.
        let late = try await store.publish(PublishRequest(message: Message(appID: app.id, eventType: "e", payload: Array("{}".utf8)), claimUntil: Date().addingTimeInterval(60)))
        #expect(!dispatcher.take(late.deliveries, of: late.message))
        #expect(dispatcher.leaseForNewDeliveries() == nil)
    }
}
