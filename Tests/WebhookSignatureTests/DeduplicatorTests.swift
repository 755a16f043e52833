import Foundation
import Testing
import WebhookSignature

@Suite("In-memory deduplicator")
struct DeduplicatorTests {
    let t0 = Date(timeIntervalSince1970: 1_700_000_000)

    @Test func secondSightingIsADuplicate() async {
        let dedup = InMemoryWebhookDeduplicator(ttl: 60, capacity: 10)
        #expect(await dedup.markSeen("msg_1", now: t0))
        #expect(await !dedup.markSeen("msg_1", now: t0.addingTimeInterval(30)))
        #expect(await dedup.markSeen("msg_2", now: t0.addingTimeInterval(30)))
    }

    @Test func entriesExpireAfterTheTTL() async {
        let dedup = InMemoryWebhookDeduplicator(ttl: 60, capacity: 10)
        #expect(await dedup.markSeen("msg_1", now: t0))
        #expect(await dedup.markSeen("msg_1", now: t0.addingTimeInterval(61)))
        #expect(await dedup.count == 1)
    }

    @Test func sizeIsBoundedOldestEvictedFirst() async {
        let dedup = InMemoryWebhookDeduplicator(ttl: 3600, capacity: 100)
        for i in 0..<1000 { _ = await dedup.markSeen("msg_\(i)", now: t0) }
        #expect(await dedup.count == 100)
        #expect(await !dedup.markSeen("msg_999", now: t0))  // newest kept
        #expect(await dedup.markSeen("msg_0", now: t0))     // oldest evicted
    }

    @Test func forgetLetsTheNextDeliveryThrough() async {
        let dedup = InMemoryWebhookDeduplicator(ttl: 3600, capacity: 10)
        #expect(await dedup.markSeen("msg_1", now: t0))
        await dedup.forget("msg_1")
        #expect(await dedup.markSeen("msg_1", now: t0.addingTimeInterval(1)))
        #expect(await !dedup.markSeen("msg_1", now: t0.addingTimeInterval(2)))
        // The stale queue entry from the first sighting does not evict the second one early.
        for i in 0..<5 { _ = await dedup.markSeen("other_\(i)", now: t0.addingTimeInterval(3)) }
        #expect(await !dedup.markSeen("msg_1", now: t0.addingTimeInterval(4)))
    }

    @Test func concurrentSightingsAdmitExactlyOne() async {
        let dedup = InMemoryWebhookDeduplicator()
        let admitted = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<50 { group.addTask { await dedup.markSeen("msg_same") } }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(admitted == 1)
    }
}
