import Foundation
import HeraldCore
@testable import HeraldDelivery
import Logging
import ServiceLifecycle
import Testing

/// No stored endpoint can crash or stall the transport: bad URLs and headers fail with a reason,
/// clients are bounded and retired, DNS runs inside the attempt's deadline.
@Suite("Transport hardening", .serialized)
struct TransportHardeningTests {
    static let loopback = [CIDR("127.0.0.0/8")!]

    func send(_ transport: HTTPClientTransport, _ url: String, headers: [(name: String, value: String)] = [], timeout: TimeInterval = 5) async -> TransportResponse {
        await transport.send(OutboundRequest(url: url, headers: [("content-type", "application/json")] + headers, body: Array("{}".utf8), timeout: timeout))
    }

    func failureReason(_ response: TransportResponse) -> String? {
        if case .failed(let reason) = response.outcome { return reason }
        return nil
    }

    // MARK: Checked conversions

    @Test(arguments: ["http://127.0.0.1:65536/ok", "http://127.0.0.1:0/ok", "http://127.0.0.1:99999999999999999999/ok", "http://127.0.0.1:/ok"])
    func aStoredURLWithAnImpossiblePortFailsWithAReasonInsteadOfTrapping(url: String) async throws {
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: Self.loopback))
        let response = await send(transport, url)
        let reason = try #require(failureReason(response), "\(response.outcome)")
        #expect(reason.contains("invalid endpoint URL") && reason.contains("port"), "\(reason)")
        #expect(transport.liveClientCount == 0)
        await transport.shutdown()
    }

    @Test(arguments: ["ftp://127.0.0.1/x", "http:///x", "http://127.0.0.1/a b", "https://user:secret@127.0.0.1/"])
    func otherStoredURLsTheAPINowRefusesFailToo(url: String) async throws {
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: Self.loopback))
        let response = await send(transport, url)
        let reason = try #require(failureReason(response))
        #expect(reason.hasPrefix("invalid endpoint URL"))
        #expect(!reason.contains("secret"))
        await transport.shutdown()
    }

    @Test func aStoredHeaderWithAControlCharacterFailsWithoutQuotingItsValue() async throws {
        let receiver = try await ScriptedReceiver()
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: Self.loopback))
        let bad = await send(transport, receiver.url("/ok"), headers: [("authorization", "Bearer sekrit\r\nx-injected: 1")])
        let reason = try #require(failureReason(bad))
        #expect(reason.contains("authorization") && !reason.contains("sekrit"), "\(reason)")
        let badName = await send(transport, receiver.url("/ok"), headers: [("bad name", "v")])
        #expect(self.failureReason(badName) != nil)
        #expect(receiver.hitCount("/ok") == 0)
        #expect(await send(transport, receiver.url("/ok"), headers: [("x-tab", "a\tb")]).outcome == .status(200))
        await transport.shutdown()
        await receiver.stop()
    }

    @Test(arguments: [Double.nan, -1, 0, -Double.infinity])
    func anUnusableTimeoutFailsWithAReason(timeout: Double) async throws {
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: Self.loopback))
        let response = await send(transport, "http://127.0.0.1:1/ok", timeout: timeout)
        let reason = try #require(failureReason(response))
        #expect(reason.contains("timeout"))
        await transport.shutdown()
    }

    @Test(arguments: [Double.infinity, 1e300])
    func aHugeTimeoutIsClampedNotATrap(timeout: Double) async throws {
        let receiver = try await ScriptedReceiver()
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: Self.loopback))
        #expect(await send(transport, receiver.url("/ok"), timeout: timeout).outcome == .status(200))
        await transport.shutdown()
        await receiver.stop()
    }

    @Test func anOverlongRetryAfterHeaderIsDropped() async throws {
        let receiver = try await ScriptedReceiver()
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: Self.loopback))
        let response = await send(transport, receiver.url("/retry-after-huge"))
        #expect(response.outcome == .status(503))
        #expect(response.retryAfter == nil)
        await transport.shutdown()
        await receiver.stop()
    }

    // MARK: Bounded clients

    @Test func clientsAreBoundedAndEvictedOnesAreShutDown() async throws {
        var receivers: [ScriptedReceiver] = []
        for _ in 0..<5 { receivers.append(try await ScriptedReceiver()) }
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: Self.loopback), configuration: .init(maxClients: 2, sharesPlainHTTPClient: false))
        for receiver in receivers {
            #expect(await send(transport, receiver.url("/ok")).outcome == .status(200))
            #expect(transport.cachedClientCount <= 2)
        }
        for receiver in receivers { #expect(receiver.hitCount("/ok") == 1) }
        #expect(transport.cachedClientCount == 2)
        #expect(await holdsSoon { transport.liveClientCount == 2 }, "evicted clients still alive: \(transport.liveClientCount)")
        // And again, in the other order: every request still succeeds.
        for receiver in receivers.reversed() { #expect(await send(transport, receiver.url("/ok")).outcome == .status(200)) }
        #expect(await holdsSoon { transport.liveClientCount == 2 })
        await transport.shutdown()
        #expect(transport.liveClientCount == 0)
        for receiver in receivers { await receiver.stop() }
    }

    @Test func plainHTTPSharesOneClientThatIsRenewedAfterItsDestinationLimit() async throws {
        var receivers: [ScriptedReceiver] = []
        for _ in 0..<5 { receivers.append(try await ScriptedReceiver()) }
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: Self.loopback),
                                            configuration: .init(maxClients: 2, maxSharedDestinations: 2))
        for _ in 0..<2 {
            for receiver in receivers {
                #expect(await send(transport, receiver.url("/ok")).outcome == .status(200))
            }
        }
        for receiver in receivers { #expect(receiver.hitCount("/ok") == 2, "sent to the vetted address, same path") }
        #expect(transport.cachedClientCount == 0, "no client per destination")
        #expect(await holdsSoon { transport.liveClientCount == 1 }, "replaced shared clients are shut down: \(transport.liveClientCount)")
        await transport.shutdown()
        #expect(transport.liveClientCount == 0)
        for receiver in receivers { await receiver.stop() }
    }

    @Test func aPinnedURLKeepsItsPathQueryAndHostButNotItsFragment() throws {
        let v4 = try #require(IPAddress("127.0.0.1"))
        let pinned = try #require(HTTPClientTransport.pinned("http://hooks.example.com:8080/in/x?a=1&b=%20#frag", to: v4, port: 8080))
        #expect(pinned.url == "http://127.0.0.1:8080/in/x?a=1&b=%20")
        #expect(pinned.host == "hooks.example.com:8080")
        let v6 = try #require(IPAddress("::1"))
        let bare = try #require(HTTPClientTransport.pinned("http://example.com?q", to: v6, port: 80))
        #expect(bare.url == "http://[::1]:80/?q" && bare.host == "example.com")
    }

    @Test func evictionIsLeastRecentlyUsed() async throws {
        var receivers: [ScriptedReceiver] = []
        for _ in 0..<3 { receivers.append(try await ScriptedReceiver()) }
        let (a, b, c) = (receivers[0], receivers[1], receivers[2])
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: Self.loopback), configuration: .init(maxClients: 2, sharesPlainHTTPClient: false))
        for receiver in [a, b, a, c] { #expect(await send(transport, receiver.url("/ok")).outcome == .status(200)) }
        // b was used less recently than a: b went, although a was created first.
        let ports = transport.cachedDestinations
        #expect(ports.contains { $0.contains(":\(a.port)|") })
        #expect(ports.contains { $0.contains(":\(c.port)|") })
        #expect(!ports.contains { $0.contains(":\(b.port)|") })
        await transport.shutdown()
        for receiver in receivers { await receiver.stop() }
    }

    @Test func aClientEvictedDuringASlowRequestIsShutDownOnlyAfterIt() async throws {
        let slow = try await ScriptedReceiver()
        let other = try await ScriptedReceiver()
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: Self.loopback), configuration: .init(maxClients: 1, sharesPlainHTTPClient: false))
        let held = Task { await send(transport, slow.url("/held"), timeout: 30) }
        #expect(await holdsSoon { slow.hitCount("/held") == 1 })
        // A second destination evicts the slow request's client while it is in flight.
        #expect(await send(transport, other.url("/ok")).outcome == .status(200))
        #expect(transport.cachedClientCount == 1)
        #expect(transport.liveClientCount == 2)  // the evicted one drains
        slow.openGate()
        let response = await held.value
        #expect(response.outcome == .status(200) && response.body == "held")
        #expect(await holdsSoon { transport.liveClientCount == 1 })
        await transport.shutdown()
        await slow.stop()
        await other.stop()
    }

    @Test func afterShutdownAttemptsFailAndCreateNoClient() async throws {
        let receiver = try await ScriptedReceiver()
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: Self.loopback))
        #expect(await send(transport, receiver.url("/ok")).outcome == .status(200))
        await transport.shutdown()
        let late = await send(transport, receiver.url("/ok"))
        #expect(failureReason(late) != nil)
        #expect(transport.liveClientCount == 0)
        await receiver.stop()
    }

    // MARK: DNS

    @Test func aHungNameserverTimesOutOnlyItsOwnAttemptsAtTheirDeadline() async throws {
        let receiver = try await ScriptedReceiver()
        let fake = FakeHostResolver(answers: ["fast.test": [IPAddress("127.0.0.1")!]], gated: ["hung.test"])
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: Self.loopback, resolver: fake))
        let hung = (0..<3).map { _ in Task { await send(transport, "http://hung.test:\(receiver.port)/ok", timeout: 1) } }
        #expect(await holdsSoon { fake.calls("hung.test") == 1 })
        // While hung.test's lookup hangs, fast.test delivers.
        for _ in 0..<5 { #expect(await send(transport, "http://fast.test:\(receiver.port)/ok").outcome == .status(200)) }
        // The hung attempts end at their deadline although the lookup is still hanging.
        for attempt in hung {
            let response = await attempt.value
            let reason = try #require(failureReason(response), "\(response.outcome)")
            #expect(reason.contains("DNS lookup for hung.test timed out"), "\(reason)")
            #expect(response.duration >= .milliseconds(990))
        }
        #expect(fake.calls("hung.test") == 1)  // one lookup for the three attempts
        #expect(fake.calls("fast.test") == 1)  // cached after the first
        #expect(receiver.hitCount("/ok") == 5)
        fake.openGate()
        await transport.shutdown()
        await receiver.stop()
    }

    @Test func ipLiteralDestinationsNeverTouchTheResolver() async throws {
        let receiver = try await ScriptedReceiver()
        let fake = FakeHostResolver()
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: Self.loopback, resolver: fake))
        #expect(await send(transport, receiver.url("/ok")).outcome == .status(200))
        #expect(fake.totalCalls == 0)
        await transport.shutdown()
        await receiver.stop()
    }

    @Test func anUnknownHostFailsWithAReason() async throws {
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: Self.loopback, resolver: FakeHostResolver()))
        let response = await send(transport, "http://nope.test/ok")
        let reason = try #require(failureReason(response))
        #expect(reason.contains("could not resolve host nope.test"))
        await transport.shutdown()
    }
}

/// The dispatcher with the real transport: endpoints stored by an older version with URLs the API
/// now refuses get failed attempts with the reason, and the process (and the other endpoints) go on.
@Suite("Dispatcher live: stored bad URLs", .serialized)
struct DispatcherStoredBadURLTests {
    @Test func endpointsWithImpossiblePortsFailTheirAttemptsAndOthersDeliver() async throws {
        let receiver = try await ScriptedReceiver()
        let store = InMemoryStore()
        let app = Application(name: "A")
        try await store.createApplication(app)
        let key = EndpointSecret(key: Array(repeating: 1, count: 24))
        // Written to the store directly: the API would refuse them.
        let bad = [
            Endpoint(appID: app.id, url: "http://127.0.0.1:65536/", secrets: [key]),
            Endpoint(appID: app.id, url: "http://127.0.0.1:0/", secrets: [key]),
            Endpoint(appID: app.id, url: "http://127.0.0.1:99999999999999999999/", secrets: [key]),
        ]
        let good = Endpoint(appID: app.id, url: receiver.url("/ok"), secrets: [key])
        for endpoint in bad + [good] { try await store.createEndpoint(endpoint) }
        _ = try await store.publish(PublishRequest(message: Message(appID: app.id, eventType: "e", payload: Array("{}".utf8))))

        var configuration = Dispatcher.Configuration()
        configuration.pollInterval = .milliseconds(50)
        let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(allowed: [CIDR("127.0.0.0/8")!]))
        let dispatcher = Dispatcher(queue: store, transport: transport, configuration: configuration, logger: Logger(label: "test"))
        let group = ServiceGroup(services: [dispatcher], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let attempted = await holdsSoon {
                let page = try? await store.listAttempts(app: app.id, filter: AttemptFilter(), PageRequest(limit: 250))
                return (page?.items.count ?? 0) >= 4
            }
            #expect(attempted)
            let attempts = try await store.listAttempts(app: app.id, filter: AttemptFilter(), PageRequest(limit: 250)).items
            for endpoint in bad {
                let attempt = try #require(attempts.first { $0.endpointID == endpoint.id })
                #expect(attempt.status == .fail)
                #expect(attempt.response.contains("invalid endpoint URL") && attempt.response.contains("port"), "\(attempt.response)")
            }
            #expect(attempts.first { $0.endpointID == good.id }?.status == .success)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        await receiver.stop()
    }
}
