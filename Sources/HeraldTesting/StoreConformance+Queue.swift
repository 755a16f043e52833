import Foundation
import HeraldCore
import Testing

// The fair queue, interruptions and the dispatcher's narrow health writes.
extension StoreConformance {
    /// `dueEndpoints` walks the endpoints with pending work (any backlog costs one step), returns
    /// the due ones with every worker's in-flight count, and goes on from a cursor;
    /// `claimDueDeliveries(quotas:)` takes each endpoint's oldest due deliveries up to its quota.
    public func testFairClaims() async throws {
        let store = try await makeStore()
        let appA = try await makeApplication(store)
        let appB = try await makeApplication(store)
        let backlog = try await makeEndpoint(store, app: appA.id, second: 1, types: ["backlog"])
        let quiet = try await makeEndpoint(store, app: appA.id, second: 2, types: ["quiet"])
        let fresh = try await makeEndpoint(store, app: appB.id, second: 3, types: ["fresh"])
        let later = try await makeEndpoint(store, app: appB.id, second: 4, types: ["later"])
        for index in 0..<60 { _ = try await publish(store, app: appA.id, type: "backlog", at: Double(10 + index)) }
        _ = try await publish(store, app: appB.id, type: "fresh", at: 400)
        _ = try await publish(store, app: appB.id, type: "later", at: 5000)  // not due yet

        let scan = try await store.dueEndpoints(now: at(500), after: nil, limit: 100)
        #expect(scan.next == nil, "the walk reached the last endpoint")
        #expect(scan.due.map(\.endpointID) == [backlog.id, fresh.id].sorted(), "due endpoints only, in id order")
        let backlogDue = try #require(scan.due.first { $0.endpointID == backlog.id })
        #expect(backlogDue.appID == appA.id && backlogDue.earliestDue == at(10) && backlogDue.inFlight == 0)
        #expect(scan.due.first { $0.endpointID == fresh.id }?.earliestDue == at(400))
        #expect(!scan.due.contains { $0.endpointID == quiet.id || $0.endpointID == later.id })

        // A step of one endpoint at a time, from the cursor.
        let one = try await store.dueEndpoints(now: at(500), after: nil, limit: 1)
        #expect(one.due.map(\.endpointID) == [backlog.id] && one.next == backlog.id)
        var walked: [EndpointID] = one.due.map(\.endpointID)
        var cursor = one.next
        while let after = cursor {
            let step = try await store.dueEndpoints(now: at(500), after: after, limit: 1)
            walked += step.due.map(\.endpointID)
            cursor = step.next
        }
        #expect(walked == [backlog.id, fresh.id], "a walk in steps sees each due endpoint once")

        // Quotas: the backlog gives 5 (its oldest), the new message comes along in the same claim.
        let claimed = try await store.claimDueDeliveries(now: at(500), quotas: [backlog.id: 5, fresh.id: 3, quiet.id: 2], leaseUntil: at(600))
        #expect(claimed.filter { $0.endpointID == backlog.id }.map(\.nextAttemptAt) == (0..<5).map { at(Double(10 + $0)) })
        #expect(claimed.filter { $0.endpointID == fresh.id }.count == 1)
        #expect(claimed.allSatisfy { $0.status == .sending && $0.leaseExpiresAt == at(600) })
        #expect(try await store.claimDueDeliveries(now: at(500), quotas: [:], leaseUntil: at(600)).isEmpty)
        #expect(try await store.claimDueDeliveries(now: at(500), quotas: [fresh.id: 1], leaseUntil: at(600)).isEmpty, "claimed already")

        // In flight on any worker counts, until the lease lapses.
        let busy = try await store.dueEndpoints(now: at(500), after: nil, limit: 100)
        #expect(busy.due.first { $0.endpointID == backlog.id }?.inFlight == 5)
        #expect(!busy.due.contains { $0.endpointID == fresh.id }, "nothing left due for it")
        let lapsed = try await store.dueEndpoints(now: at(601), after: nil, limit: 100)
        #expect(lapsed.due.first { $0.endpointID == backlog.id }?.inFlight == 0, "lapsed leases are not in flight")
    }

    /// Lapsed claims and a restart count an interruption; a recorded attempt, a release, a resend
    /// and a recovery do not, or reset it.
    public func testInterruptions() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        _ = try await makeEndpoint(store, app: app.id, second: 1)
        let published = try #require(try await publish(store, app: app.id, at: 10).deliveries.first)
        var claim = try #require(try await store.claimDueDeliveries(now: at(20), limit: 10, leaseUntil: at(30)).first)
        #expect(claim.interruptedCount == 0)
        try await store.releaseClaims([claim])
        claim = try #require(try await store.claimDueDeliveries(now: at(21), limit: 10, leaseUntil: at(31)).first)
        #expect(claim.interruptedCount == 0, "a release is not an interruption")

        #expect(try await store.claimLapsedDeliveries(now: at(31), limit: 10, leaseUntil: at(40)).isEmpty, "not lapsed yet")
        let takenOver = try await store.claimLapsedDeliveries(now: at(32), limit: 10, leaseUntil: at(50))
        #expect(takenOver.map(\.interruptedCount) == [1] && takenOver.first?.leaseExpiresAt == at(50))
        #expect(try await store.delivery(message: published.messageID, endpoint: published.endpointID)?.interruptedCount == 1)
        #expect(try await store.releaseAllClaims() == 1)
        #expect(try await store.delivery(message: published.messageID, endpoint: published.endpointID)?.interruptedCount == 2,
                "a restart that finds it claimed counts too")
        var again = try #require(try await store.claimDueDeliveries(now: at(60), limit: 10, leaseUntil: at(70)).first)
        #expect(again.interruptedCount == 2)

        again.status = .pending
        again.attemptCount = 1
        again.nextAttemptAt = at(100)
        again.leaseExpiresAt = nil
        again.interruptedCount = 2
        try await store.recordAttempt(makeAttempt(for: again, code: 500, status: .fail, at: 61), delivery: again)
        #expect(try await store.delivery(message: published.messageID, endpoint: published.endpointID)?.interruptedCount == 0,
                "an attempt recorded ends the streak")

        _ = try await store.claimDueDeliveries(now: at(100), limit: 10, leaseUntil: at(110))
        _ = try await store.releaseAllClaims()
        try await store.resend(app: app.id, message: published.messageID, endpoint: published.endpointID, now: at(120))
        #expect(try await store.delivery(message: published.messageID, endpoint: published.endpointID)?.interruptedCount == 0,
                "a resend starts afresh")
    }

    /// Health writes change only `failingSince` and `disabled` (and bump the version), each only
    /// when it changes something, and never undo an update made since the endpoint was read.
    public func testEndpointHealth() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        let seen = try await makeEndpoint(store, app: app.id, second: 1)
        // The API rotates the secret and changes the URL after the dispatcher read the endpoint.
        var changed = seen
        changed.url = "https://example.com/new"
        changed.secrets = [EndpointSecret(key: Array(repeating: 9, count: 24))]
        try await store.updateEndpoint(changed)

        #expect(try await store.recordEndpointHealth(app: app.id, endpoint: seen.id, .failing(since: at(50)), at: at(50)))
        #expect(try await !store.recordEndpointHealth(app: app.id, endpoint: seen.id, .failing(since: at(60)), at: at(60)),
                "a streak already started keeps its start")
        var stored = try #require(try await store.endpoint(app: app.id, ref: seen.id.rawValue))
        #expect(stored.failingSince == at(50) && stored.updatedAt == at(50))
        #expect(stored.url == "https://example.com/new" && stored.secrets == changed.secrets, "the API's change is kept")
        #expect(stored.version == seen.version + 2, "every write bumps the version")

        // An API write over the version read before the health write is refused, so it cannot
        // undo it; read again and it goes through.
        var late = changed
        late.version = seen.version + 1
        late.description = "late"
        await expectError(.stale, "an update over a version the health write replaced") { try await store.updateEndpoint(late) }

        #expect(try await store.recordEndpointHealth(app: app.id, endpoint: seen.id, .disabled, at: at(70)))
        #expect(try await !store.recordEndpointHealth(app: app.id, endpoint: seen.id, .disabled, at: at(71)))
        #expect(try await store.recordEndpointHealth(app: app.id, endpoint: seen.id, .healthy, at: at(80)))
        #expect(try await !store.recordEndpointHealth(app: app.id, endpoint: seen.id, .healthy, at: at(81)))
        stored = try #require(try await store.endpoint(app: app.id, ref: seen.id.rawValue))
        #expect(stored.disabled && stored.failingSince == nil && stored.secrets == changed.secrets)
        let other = try await makeApplication(store)
        #expect(try await !store.recordEndpointHealth(app: other.id, endpoint: seen.id, .healthy, at: at(90)), "another application's")
        #expect(try await !store.recordEndpointHealth(app: app.id, endpoint: EndpointID.generate(), .disabled, at: at(90)), "gone")
    }

    /// `claimExcept` keeps an endpoint's deliveries pending in a claimed publish.
    public func testPublishClaimExcept() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        let first = try await makeEndpoint(store, app: app.id, second: 1)
        let busy = try await makeEndpoint(store, app: app.id, second: 2)
        let message = Message(id: .generate(at: at(10)), appID: app.id, eventType: "user.created", payload: Array("{}".utf8), createdAt: at(10))
        let result = try await store.publish(PublishRequest(message: message, claimUntil: at(100), claimExcept: [busy.id]))
        #expect(result.deliveries.first { $0.endpointID == first.id }?.status == .sending)
        #expect(result.deliveries.first { $0.endpointID == busy.id }.map { $0.status == .pending && $0.leaseExpiresAt == nil } == true)
        let stored = try #require(try await store.delivery(message: message.id, endpoint: busy.id))
        #expect(stored.status == .pending && stored.leaseExpiresAt == nil)
        let claimable = try await store.claimDueDeliveries(now: at(11), limit: 10, leaseUntil: at(200))
        #expect(claimable.map(\.endpointID) == [busy.id])
    }
}

extension StoreConformance {
    /// Many rounds of a secret rotation, another API change and the dispatcher's health writes,
    /// all at once: every round ends with the rotated secret and the other change both stored
    /// (`modifyEndpoint` re-reads on a version conflict), whatever the interleaving.
    public func testConcurrentEndpointWrites() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        let endpoint = try await makeEndpoint(store, app: app.id, second: 1)
        for round in 0..<40 {
            let secret = EndpointSecret(key: (0..<24).map { UInt8(truncatingIfNeeded: $0 &+ round) })
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    _ = try await store.modifyEndpoint(app: app.id, ref: endpoint.id.rawValue) { current in
                        current.secrets = [secret] + current.secrets.prefix(1).map { EndpointSecret(key: $0.key, expiresAt: at(99_999)) }
                    }
                }
                group.addTask {
                    _ = try await store.modifyEndpoint(app: app.id, ref: endpoint.id.rawValue) { current in
                        current.description = "round \(round)"
                    }
                }
                for health in 0..<4 {
                    group.addTask {
                        let change: EndpointHealthChange = health % 2 == 0 ? .failing(since: at(Double(round))) : .healthy
                        try await store.recordEndpointHealth(app: app.id, endpoint: endpoint.id, change, at: at(Double(round)))
                    }
                }
                try await group.waitForAll()
            }
            let stored = try #require(try await store.endpoint(app: app.id, ref: endpoint.id.rawValue))
            #expect(stored.secrets.first == secret, "round \(round): the rotation is never undone")
            #expect(stored.description == "round \(round)", "round \(round): the other change is never undone")
        }
    }
}
