import Foundation
import HeraldCore
import Testing

// Admin token listing and revocation, quotas, and pages bounded in bytes.
extension StoreConformance {
    /// Admin tokens are listed with their name and expiry (app-portal tokens are not), paged by
    /// id; revoking deletes one admin token and reports whether there was one.
    public func testAdminTokens() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        var admins: [APIToken] = []
        for index in 1...4 {
            let token = APIToken(id: .generate(at: at(Double(index))), hash: Array(repeating: UInt8(index), count: 32), scope: .admin,
                                 createdAt: at(Double(index)), expiresAt: index == 2 ? at(100) : nil, name: "ci-\(index)")
            try await store.createToken(token)
            admins.append(token)
        }
        let scoped = APIToken(id: .generate(at: at(9)), hash: Array(repeating: 9, count: 32), scope: .application(app.id), createdAt: at(9))
        try await store.createToken(scoped)
        #expect(try await store.token(hash: admins[1].hash)?.name == "ci-2")
        #expect(try await store.token(hash: admins[1].hash)?.expiresAt == at(100))
        let listed = try await store.listAdminTokens(PageRequest(limit: 250))
        #expect(listed.items == admins, "admin tokens only, in id order, with names and expiry")
        try await checkPaging("admin tokens", all: admins, key: { $0.id.rawValue }) { try await store.listAdminTokens($0) }

        #expect(try await store.revokeAdminToken(id: admins[0].id))
        #expect(try await store.token(hash: admins[0].hash) == nil, "a revoked token is gone")
        #expect(try await !store.revokeAdminToken(id: admins[0].id), "revoking twice finds nothing")
        #expect(try await !store.revokeAdminToken(id: scoped.id), "an app-portal token is not an admin token")
        #expect(try await store.token(hash: scoped.hash) != nil)
        #expect(try await store.listAdminTokens(PageRequest(limit: 250)).items.map(\.id) == admins.dropFirst().map(\.id))
        #expect(try await store.adminTokenCount() == 3)
    }

    /// `createEndpoint(_:limit:)` and `createEventType(_:limit:)` refuse past the limit with
    /// `.limitExceeded`, per application for endpoints; concurrent creates do not overshoot.
    public func testQuotas() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store, uid: "full")
        let other = try await makeApplication(store, uid: "other")
        func endpoint(_ app: ApplicationID, _ index: Int) -> Endpoint {
            Endpoint(appID: app, url: "https://example.com/\(index)", secrets: [EndpointSecret(key: Array(repeating: 7, count: 24))])
        }
        for index in 0..<3 { try await store.createEndpoint(endpoint(app.id, index), limit: 3) }
        await expectError(.limitExceeded, "a fourth endpoint with a limit of 3") {
            try await store.createEndpoint(endpoint(app.id, 3), limit: 3)
        }
        try await store.createEndpoint(endpoint(other.id, 0), limit: 3)
        await expectError(.notFound, "an endpoint of a missing application") {
            try await store.createEndpoint(endpoint(ApplicationID.generate(), 0), limit: 3)
        }
        #expect(try await store.listEndpoints(app: app.id, PageRequest(limit: 250)).items.count == 3)

        // Twelve concurrent creates against a limit of 5 on an empty application: exactly 5 stored.
        let racing = try await makeApplication(store, uid: "racing")
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<12 {
                group.addTask { (try? await store.createEndpoint(endpoint(racing.id, index), limit: 5)) != nil }
            }
            var created = 0
            for await ok in group where ok { created += 1 }
            return created
        }
        #expect(outcomes == 5)
        #expect(try await store.listEndpoints(app: racing.id, PageRequest(limit: 250)).items.count == 5)

        for index in 0..<2 { try await store.createEventType(EventType(name: "type.\(index)", description: ""), limit: 2) }
        await expectError(.limitExceeded, "a third event type with a limit of 2") {
            try await store.createEventType(EventType(name: "type.2", description: ""), limit: 2)
        }
        await expectError(.conflict, "a taken name is a conflict, not a full quota") {
            try await store.createEventType(EventType(name: "type.0", description: ""), limit: 2)
        }
    }

    /// A page stops before its content (payloads, responses) passes `maxContentBytes`, with at
    /// least one item, and is then not done; following the iterators gives every item exactly
    /// once. `withContent: false` gives the items without payloads (event types without schemas).
    public func testContentBudget() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        let endpoint = try await makeEndpoint(store, app: app.id)
        var published: [Message] = []
        for index in 0..<7 {
            let created = at(Double(index))
            let body = #"{"pad":""# + String(repeating: "x", count: 990) + #""}"#  // 1,000 bytes
            let message = Message(id: .generate(at: created), appID: app.id, eventType: "big", payload: Array(body.utf8), createdAt: created)
            published.append(try await store.publish(PublishRequest(message: message)).message)
        }
        for order in [ListOrder.ascending, .descending] {
            var seen: [MessageID] = []
            var delivered: [MessageID] = []
            var iterator: String?
            var pages = 0
            while pages < 20 {
                let request = PageRequest(limit: 250, iterator: iterator, order: order, maxContentBytes: 2_500)
                let page = try await store.listMessages(app: app.id, filter: MessageFilter(), request)
                let deliveredPage = try await store.listDeliveredMessages(app: app.id, endpoint: endpoint.id, status: nil,
                                                                          filter: MessageFilter(), request)
                pages += 1
                #expect(page.items.count == min(2, 7 - seen.count), "2,500 bytes hold two 1,000-byte payloads")
                #expect(page.items.allSatisfy { $0.payload?.count == 1_000 })
                #expect(deliveredPage.items.map(\.message.id) == page.items.map(\.id))
                #expect(deliveredPage.items.allSatisfy { $0.message.payload?.count == 1_000 })
                seen += page.items.map(\.id)
                delivered += deliveredPage.items.map(\.message.id)
                if page.done { break }
                iterator = page.iterator
            }
            let expected = order == .ascending ? published.map(\.id) : published.reversed().map(\.id)
            #expect(seen == expected, "every message once, in order (\(order))")
            #expect(delivered == expected)
        }
        // One item that alone is over the budget still comes back.
        let single = try await store.listMessages(app: app.id, filter: MessageFilter(), PageRequest(limit: 250, maxContentBytes: 10))
        #expect(single.items.count == 1 && !single.done)
        // Without content: no payloads, and no byte bound.
        let bare = try await store.listMessages(app: app.id, filter: MessageFilter(),
                                                PageRequest(limit: 250, maxContentBytes: 10, withContent: false))
        #expect(bare.items.count == 7 && bare.done)
        #expect(bare.items.allSatisfy { $0.payload == nil })
        let bareDelivered = try await store.listDeliveredMessages(app: app.id, endpoint: endpoint.id, status: nil, filter: MessageFilter(),
                                                                  PageRequest(limit: 250, withContent: false))
        #expect(bareDelivered.items.count == 7 && bareDelivered.items.allSatisfy { $0.message.payload == nil })

        // Event types: schemas count; without content they are not read.
        for index in 0..<3 {
            let schema = #"{"1":{"description":""# + String(repeating: "s", count: 980) + #""}}"#
            try await store.createEventType(EventType(name: "big.\(index)", description: "", schemas: Array(schema.utf8)))
        }
        let types = try await store.listEventTypes(PageRequest(limit: 250, maxContentBytes: 2_500), includeArchived: false)
        #expect(types.items.map(\.name) == ["big.0", "big.1"] && !types.done)
        let moreTypes = try await store.listEventTypes(PageRequest(limit: 250, iterator: types.iterator, maxContentBytes: 2_500), includeArchived: false)
        #expect(moreTypes.items.map(\.name) == ["big.2"] && moreTypes.done)
        let bareTypes = try await store.listEventTypes(PageRequest(limit: 250, maxContentBytes: 10, withContent: false), includeArchived: false)
        #expect(bareTypes.items.count == 3 && bareTypes.done && bareTypes.items.allSatisfy { $0.schemas == nil })

        // Attempts: responses count against the budget too.
        let delivery = try #require(try await store.delivery(message: published[0].id, endpoint: endpoint.id))
        for index in 0..<3 {
            var attempt = makeAttempt(for: delivery, code: 500, status: .pending, at: Double(10 + index))
            attempt.response = String(repeating: "r", count: 1_000)
            try await store.recordAttempt(attempt, delivery: delivery)
        }
        let attempts = try await store.listAttempts(app: app.id, filter: AttemptFilter(), PageRequest(limit: 250, maxContentBytes: 1_500))
        #expect(attempts.items.count == 1 && !attempts.done)
        let rest = try await store.listAttempts(app: app.id, filter: AttemptFilter(), PageRequest(limit: 250, iterator: attempts.iterator, maxContentBytes: 2_000))
        #expect(rest.items.count == 2 && rest.done)
    }
}
