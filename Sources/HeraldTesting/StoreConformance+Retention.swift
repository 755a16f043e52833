import Foundation
import HeraldCore
import Testing

extension StoreConformance {
    /// `purgeMessages` with an injected `now`: the oldest messages before the cutoff go in batches
    /// of `limit`, with their deliveries and attempts; one in flight under a live lease waits for
    /// its lease; recent messages stay listable, countable and deliverable.
    public func testMessageRetention() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        let first = try await makeEndpoint(store, app: app.id, uid: "first", second: 0)
        let second = try await makeEndpoint(store, app: app.id, uid: "second", second: 1)
        var old: [PublishResult] = []
        for second in [10.0, 20, 30] { old.append(try await publish(store, app: app.id, eventID: "old-\(Int(second))", at: second)) }
        for delivery in old[0].deliveries {
            var failed = delivery
            failed.status = .pending
            failed.attemptCount = 1
            try await store.recordAttempt(makeAttempt(for: delivery, code: 500, status: .fail, at: 11), delivery: failed)
        }
        // Old, but in flight until 2,000.
        let busy = Message(id: .generate(at: at(40)), appID: app.id, eventType: "user.created", payload: Array("{}".utf8), createdAt: at(40))
        _ = try await store.publish(PublishRequest(message: busy, claimUntil: at(2000)))
        let recent = try await publish(store, app: app.id, eventID: "recent", at: 1000)
        try await store.recordAttempt(makeAttempt(for: recent.deliveries[0], code: 500, status: .fail, at: 1001),
                                      delivery: recent.deliveries[0])

        #expect(try await store.purgeMessages(createdBefore: at(500), now: at(1100), limit: 2)
                == PurgeResult(messages: 2, deliveries: 4, attempts: 2), "the two oldest first")
        #expect(try await store.purgeMessages(createdBefore: at(500), now: at(1100), limit: 2)
                == PurgeResult(messages: 1, deliveries: 2, attempts: 0), "the third; the one in flight waits")
        #expect(try await store.purgeMessages(createdBefore: at(500), now: at(1100), limit: 2) == PurgeResult())

        for result in old {
            #expect(try await store.message(app: app.id, ref: result.message.id.rawValue) == nil)
            #expect(try await store.message(app: app.id, ref: result.message.eventID ?? "") == nil)
            for endpoint in [first, second] {
                #expect(try await store.delivery(message: result.message.id, endpoint: endpoint.id) == nil)
            }
            let attempts = try await store.listAttempts(app: app.id, filter: AttemptFilter(messageID: result.message.id), PageRequest(limit: 10))
            #expect(attempts.items.isEmpty)
        }
        let listed = try await store.listMessages(app: app.id, filter: MessageFilter(), PageRequest(limit: 10))
        #expect(listed.items.map(\.id) == [busy.id, recent.message.id], "only what is left")
        #expect(try await store.message(app: app.id, ref: "recent")?.id == recent.message.id)
        let attempts = try await store.listAttempts(app: app.id, filter: AttemptFilter(), PageRequest(limit: 10))
        #expect(attempts.items.map(\.messageID) == [recent.message.id])
        let delivered = try await store.listDeliveredMessages(app: app.id, endpoint: first.id, status: nil, filter: MessageFilter(),
                                                              PageRequest(limit: 10))
        #expect(Set(delivered.items.map(\.message.id)) == [busy.id, recent.message.id])
        let stats = try await store.endpointStats(app: app.id, endpoint: second.id, since: nil, until: nil)
        #expect(stats.pending == 1 && stats.sending == 1 && stats.success == 0 && stats.fail == 0)
        #expect(try await store.deliveryCounts()[.pending] == 2)

        // The recent message is still delivered.
        let claimed = try await store.claimDueDeliveries(now: at(1100), limit: 10, leaseUntil: at(1200))
        #expect(Set(claimed.map(\.messageID)) == [recent.message.id] && claimed.count == 2)
        for delivery in claimed {
            var done = delivery
            done.status = .success
            done.leaseExpiresAt = nil
            try await store.recordAttempt(makeAttempt(for: delivery, code: 200, status: .success, at: 1101), delivery: done)
        }
        #expect(try await store.delivery(message: recent.message.id, endpoint: first.id)?.status == .success)

        // Once its lease lapsed, the busy one goes too; an attempt finishing afterwards records nothing.
        #expect(try await store.purgeMessages(createdBefore: at(500), now: at(2001), limit: 2)
                == PurgeResult(messages: 1, deliveries: 2, attempts: 0))
        #expect(try await store.message(app: app.id, ref: busy.id.rawValue) == nil)
        let late = Delivery(messageID: busy.id, endpointID: first.id, appID: app.id, status: .success, nextAttemptAt: nil,
                            eventType: "user.created", channels: nil,
                            createdAt: at(40))
        try await store.recordAttempt(makeAttempt(for: late, code: 200, status: .success, at: 2002), delivery: late)
        #expect(try await store.delivery(message: busy.id, endpoint: first.id) == nil)
        #expect(try await store.listAttempts(app: app.id, filter: AttemptFilter(), PageRequest(limit: 10)).items.count == 3)
        // The recent message and its eventId stay; an old eventId may be used again.
        await expectError(.conflict, "the recent eventId") { try await publish(store, app: app.id, eventID: "recent", at: 3000) }
        _ = try await publish(store, app: app.id, eventID: "old-10", at: 3000)
    }
}
