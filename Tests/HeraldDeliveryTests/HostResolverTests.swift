@testable import HeraldDelivery
import NIOConcurrencyHelpers
import Testing

@Suite("Caching host resolver")
struct HostResolverTests {
    static let local = [IPAddress("127.0.0.1")!]

    /// A clock the test moves by hand.
    final class ManualClock: Sendable {
        let instant = NIOLockedValueBox(ContinuousClock.now)
        func advance(_ by: Duration) { instant.withLockedValue { $0 += by } }
        var now: @Sendable () -> ContinuousClock.Instant { { [instant] in instant.withLockedValue { $0 } } }
    }

    @Test func answersAreCachedForTheirTTL() async throws {
        let fake = FakeHostResolver(answers: ["a.test": Self.local])
        let clock = ManualClock()
        let resolver = CachingHostResolver(base: fake, configuration: .init(positiveTTL: .seconds(60)), now: clock.now)
        for _ in 0..<5 { #expect(try await resolver.resolve("a.test") == Self.local) }
        #expect(try await resolver.resolve("A.TEST") == Self.local)  // names are case-insensitive
        #expect(fake.calls("a.test") == 1)
        clock.advance(.seconds(59))
        _ = try await resolver.resolve("a.test")
        #expect(fake.calls("a.test") == 1)
        clock.advance(.seconds(2))
        _ = try await resolver.resolve("a.test")
        #expect(fake.calls("a.test") == 2)
    }

    @Test func failuresAreCachedForTheNegativeTTL() async throws {
        let fake = FakeHostResolver()
        let clock = ManualClock()
        let resolver = CachingHostResolver(base: fake, configuration: .init(negativeTTL: .seconds(5)), now: clock.now)
        for _ in 0..<3 {
            await #expect(throws: DeliveryRefusal.self) { try await resolver.resolve("nope.test") }
        }
        #expect(fake.calls("nope.test") == 1)
        clock.advance(.seconds(6))
        await #expect(throws: DeliveryRefusal.self) { try await resolver.resolve("nope.test") }
        #expect(fake.calls("nope.test") == 2)
    }

    @Test func concurrentLookupsOfOneHostShareOneCall() async throws {
        let fake = FakeHostResolver(answers: ["a.test": Self.local], gated: ["a.test"])
        // No cache at all: only the single-flight can keep this to one call.
        let resolver = CachingHostResolver(base: fake, configuration: .init(maxEntries: 0))
        try await withThrowingTaskGroup(of: [IPAddress].self) { group in
            for _ in 0..<100 { group.addTask { try await resolver.resolve("a.test") } }
            #expect(await holdsSoon { resolver.waitingCallers == 100 })
            #expect(resolver.lookupsInFlight == 1)
            fake.openGate()
            var answered = 0
            for try await addresses in group {
                #expect(addresses == Self.local)
                answered += 1
            }
            #expect(answered == 100)
        }
        #expect(fake.calls("a.test") == 1)
        #expect(resolver.entryCount == 0)
    }

    @Test func theCacheNeverHoldsMoreThanItsBoundAndDropsTheOldest() async throws {
        let hosts = (0..<50).map { "h\($0).test" }
        let fake = FakeHostResolver(answers: Dictionary(uniqueKeysWithValues: hosts.map { ($0, Self.local) }))
        let resolver = CachingHostResolver(base: fake, configuration: .init(maxEntries: 8))
        for host in hosts {
            _ = try await resolver.resolve(host)
            #expect(resolver.entryCount <= 8)
        }
        #expect(resolver.entryCount == 8)
        _ = try await resolver.resolve("h49.test")  // among the newest: still cached
        #expect(fake.calls("h49.test") == 1)
        _ = try await resolver.resolve("h0.test")  // the oldest: evicted long ago
        #expect(fake.calls("h0.test") == 2)
        // Refreshing the same hosts over and over keeps the bound too.
        for _ in 0..<20 { for host in hosts.prefix(3) { _ = try await resolver.resolve(host) } }
        #expect(resolver.entryCount <= 8)
    }

    @Test func aCancelledCallerStopsWaitingAndTheLookupStillFillsTheCache() async throws {
        let fake = FakeHostResolver(answers: ["slow.test": Self.local], gated: ["slow.test"])
        let resolver = CachingHostResolver(base: fake)
        let caller = Task { try await resolver.resolve("slow.test") }
        #expect(await holdsSoon { resolver.waitingCallers == 1 })
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
        #expect(resolver.lookupsInFlight == 1)  // still running, nobody waiting
        fake.openGate()
        #expect(await holdsSoon { resolver.entryCount == 1 && resolver.lookupsInFlight == 0 })
        #expect(try await resolver.resolve("slow.test") == Self.local)
        #expect(fake.calls("slow.test") == 1)
    }

    @Test func anEnormousTTLIsClampedNotATrap() async throws {
        let fake = FakeHostResolver(answers: ["a.test": Self.local])
        let resolver = CachingHostResolver(base: fake, configuration: .init(positiveTTL: .seconds(Int64.max), negativeTTL: .seconds(Int64.max)))
        #expect(try await resolver.resolve("a.test") == Self.local)
        await #expect(throws: DeliveryRefusal.self) { try await resolver.resolve("b.test") }
        #expect(resolver.entryCount == 2)
    }

    @Test func ipLiteralsNeverReachTheResolver() async throws {
        let fake = FakeHostResolver()
        let policy = OutboundNetworkPolicy(allowed: [CIDR("127.0.0.0/8")!, CIDR("::1/128")!], resolver: fake)
        #expect(try await policy.vet(host: "127.0.0.1").description == "127.0.0.1")
        #expect(try await policy.vet(host: "[::1]").description == "::1")
        #expect(fake.totalCalls == 0)
    }

    @Test func theSystemResolverReadsLocalhostWithoutDNSAndStops() async throws {
        // localhost comes from /etc/hosts: no nameserver involved.
        let resolver = SystemHostResolver(threads: 2)
        let addresses = try await resolver.resolve("localhost")
        #expect(addresses.contains { $0.description == "127.0.0.1" || $0.description == "::1" })
        await resolver.shutdown()
        await #expect(throws: DeliveryRefusal.self) { try await resolver.resolve("localhost") }
        await SystemHostResolver(threads: 2).shutdown()  // never started: nothing to stop
    }
}
