import Foundation
import HeraldCore
import Testing

/// The behaviour every `HeraldStore` backend must have, checked with Swift Testing expectations.
/// Each check gets a fresh store from `makeStore`, so checks are independent.
///
/// ```swift
/// @Test(arguments: StoreConformance.Check.allCases)
/// func conformance(_ check: StoreConformance.Check) async throws {
///     try await StoreConformance { InMemoryStore() }.run(check)
/// }
/// ```
public struct StoreConformance: Sendable {
    /// One group of checks.
    public enum Check: String, CaseIterable, Sendable, CustomStringConvertible {
        case applications
        case endpoints
        case eventTypes
        case publishFiltering
        case publishEventIDConflict
        case publishCreatesApplication
        case publishIdempotency
        case messageLookup
        case listMessages
        case resend
        case recover
        case endpointStats
        case claimDueDeliveries
        case concurrentClaims
        case releaseClaims
        case publishClaimed
        case purgeExpired
        case attempts
        case deliveredMessagesAndDestinations
        case idempotencyRecords
        case tokens
        case deleteCascades
        case fairClaims
        case interruptions
        case endpointHealth
        case publishClaimExcept
        case concurrentEndpointWrites
        case adminTokens
        case quotas
        case contentBudget
        case messageRetention

        public var description: String { rawValue }
    }

    let makeStore: @Sendable () async throws -> any HeraldStore

    /// `makeStore` returns a fresh, empty store each time it is called.
    public init(makeStore: @escaping @Sendable () async throws -> any HeraldStore) {
        self.makeStore = makeStore
    }

    /// Runs every check.
    public func runAll() async throws {
        for check in Check.allCases { try await run(check) }
    }

    /// Runs one check on a fresh store.
    public func run(_ check: Check) async throws {
        switch check {
        case .applications: try await testApplications()
        case .endpoints: try await testEndpoints()
        case .eventTypes: try await testEventTypes()
        case .publishFiltering: try await testPublishFiltering()
        case .publishEventIDConflict: try await testPublishEventIDConflict()
        case .publishCreatesApplication: try await testPublishCreatesApplication()
        case .publishIdempotency: try await testPublishIdempotency()
        case .messageLookup: try await testMessageLookup()
        case .listMessages: try await testListMessages()
        case .resend: try await testResend()
        case .recover: try await testRecover()
        case .endpointStats: try await testEndpointStats()
        case .claimDueDeliveries: try await testClaimDueDeliveries()
        case .concurrentClaims: try await testConcurrentClaims()
        case .releaseClaims: try await testReleaseClaims()
        case .publishClaimed: try await testPublishClaimed()
        case .purgeExpired: try await testPurgeExpired()
        case .attempts: try await testAttempts()
        case .deliveredMessagesAndDestinations: try await testDeliveredMessagesAndDestinations()
        case .idempotencyRecords: try await testIdempotencyRecords()
        case .tokens: try await testTokens()
        case .deleteCascades: try await testDeleteCascades()
        case .fairClaims: try await testFairClaims()
        case .interruptions: try await testInterruptions()
        case .endpointHealth: try await testEndpointHealth()
        case .publishClaimExcept: try await testPublishClaimExcept()
        case .concurrentEndpointWrites: try await testConcurrentEndpointWrites()
        case .adminTokens: try await testAdminTokens()
        case .quotas: try await testQuotas()
        case .contentBudget: try await testContentBudget()
        case .messageRetention: try await testMessageRetention()
        }
    }

    // MARK: Applications

    /// CRUD, lookup by id and uid, uid conflicts, paging.
    public func testApplications() async throws {
        let store = try await makeStore()
        let acme = Application(id: .generate(at: at(0)), uid: "acme", name: "Acme", throttleRate: 10,
                               metadata: ["tier": "gold"], createdAt: at(0))
        try await store.createApplication(acme)
        #expect(try await store.application(ref: acme.id.rawValue) == acme)
        #expect(try await store.application(ref: "acme") == acme)
        #expect(try await store.application(ref: "nope") == nil)

        await expectError(.conflict, "a taken uid") {
            try await store.createApplication(Application(uid: "acme", name: "Other"))
        }
        await expectError(.conflict, "a taken id") {
            try await store.createApplication(Application(id: acme.id, name: "Same id"))
        }

        var others: [Application] = [acme]
        for index in 1...5 {
            let app = Application(id: .generate(at: at(Double(index))), uid: index.isMultiple(of: 2) ? "app-\(index)" : nil,
                                  name: "App \(index)", createdAt: at(Double(index)))
            try await store.createApplication(app)
            others.append(app)
        }
        try await checkPaging("applications", all: others, key: { $0.id.rawValue }) { try await store.listApplications($0) }

        var renamed = acme
        renamed.name = "Acme Inc"
        renamed.uid = "acme-inc"
        renamed.metadata = [:]
        renamed.updatedAt = at(100)
        try await store.updateApplication(renamed)
        #expect(try await store.application(ref: "acme-inc") == renamed)
        #expect(try await store.application(ref: "acme") == nil)
        renamed.uid = "app-2"
        await expectError(.conflict, "updating to a taken uid") { try await store.updateApplication(renamed) }
        await expectError(.notFound, "updating a missing application") {
            try await store.updateApplication(Application(name: "Ghost"))
        }

        try await store.deleteApplication(acme.id)
        #expect(try await store.application(ref: acme.id.rawValue) == nil)
        await expectError(.notFound, "deleting a deleted application") { try await store.deleteApplication(acme.id) }
        // The uid is free again.
        try await store.createApplication(Application(uid: "acme-inc", name: "New Acme"))
    }

    // MARK: Endpoints

    /// CRUD scoped per application, uid conflicts, secrets and every field round-trip, paging.
    public func testEndpoints() async throws {
        let store = try await makeStore()
        let appA = try await makeApplication(store, uid: "a")
        let appB = try await makeApplication(store, uid: "b")
        let full = Endpoint(id: .generate(at: at(1)), appID: appA.id, uid: "main", url: "https://example.com/hook",
                            description: "Main", disabled: true, eventTypes: ["a.b", "c.d"], channels: ["eu"],
                            throttleRate: 5, metadata: ["k": "v"], headers: ["X-Custom": "1"],
                            secrets: [EndpointSecret(key: Array(0..<24)), EndpointSecret(key: [9, 9, 9], expiresAt: at(3600.123456))],
                            createdAt: at(1.5), updatedAt: at(2.25), failingSince: at(1.75))
        try await store.createEndpoint(full)
        #expect(try await store.endpoint(app: appA.id, ref: full.id.rawValue) == full)
        #expect(try await store.endpoint(app: appA.id, ref: "main") == full)
        #expect(try await store.endpoint(app: appB.id, ref: full.id.rawValue) == nil, "another app's endpoint is not visible")
        #expect(try await store.endpoint(app: appB.id, ref: "main") == nil)

        let empty = Endpoint(id: .generate(at: at(2)), appID: appA.id, url: "https://example.com/2", eventTypes: [],
                             channels: [], secrets: [], createdAt: at(2))
        try await store.createEndpoint(empty)
        #expect(try await store.endpoint(app: appA.id, ref: empty.id.rawValue) == empty, "empty arrays stay empty, not nil")

        await expectError(.conflict, "a taken endpoint uid") {
            try await store.createEndpoint(Endpoint(appID: appA.id, uid: "main", url: "https://x", secrets: []))
        }
        let sameUIDOtherApp = Endpoint(id: .generate(at: at(3)), appID: appB.id, uid: "main", url: "https://b",
                                       secrets: [EndpointSecret(key: [1])], createdAt: at(3))
        try await store.createEndpoint(sameUIDOtherApp)
        #expect(try await store.endpoint(app: appB.id, ref: "main") == sameUIDOtherApp)
        await expectError(.notFound, "an endpoint of a missing application") {
            try await store.createEndpoint(Endpoint(appID: .generate(), url: "https://x", secrets: []))
        }

        var listed = [full, empty]
        for index in 4...8 {
            let endpoint = Endpoint(id: .generate(at: at(Double(index))), appID: appA.id, url: "https://e/\(index)",
                                    secrets: [EndpointSecret(key: [UInt8(index)])], createdAt: at(Double(index)))
            try await store.createEndpoint(endpoint)
            listed.append(endpoint)
        }
        try await checkPaging("endpoints", all: listed, key: { $0.id.rawValue }) { try await store.listEndpoints(app: appA.id, $0) }
        let allA = try await store.listEndpoints(app: appA.id, PageRequest(limit: 250)).items
        #expect(allA == listed.sorted { $0.id < $1.id }, "listed endpoints round-trip")
        #expect(try await store.listEndpoints(app: appB.id, PageRequest()).items == [sameUIDOtherApp])

        var updated = full
        updated.uid = "renamed"
        updated.disabled = false
        updated.eventTypes = nil
        updated.channels = nil
        updated.secrets = [EndpointSecret(key: [7, 7]), EndpointSecret(key: Array(0..<24), expiresAt: at(99))]
        updated.failingSince = nil
        try await store.updateEndpoint(updated)
        updated.version += 1
        #expect(try await store.endpoint(app: appA.id, ref: "renamed") == updated, "written, and its version went up by one")
        #expect(try await store.endpoint(app: appA.id, ref: "main") == nil)
        var stale = updated
        stale.version -= 1
        stale.description = "a write over an older version"
        await expectError(.stale, "updating over a version that is no longer stored") { try await store.updateEndpoint(stale) }
        #expect(try await store.endpoint(app: appA.id, ref: "renamed") == updated, "the stale write changed nothing")
        var taken = updated
        taken.uid = nil
        try await store.updateEndpoint(taken)
        taken.version += 1
        let other = Endpoint(appID: appA.id, uid: "other", url: "https://o", secrets: [])
        try await store.createEndpoint(other)
        taken.uid = "other"
        await expectError(.conflict, "updating to a taken endpoint uid") { try await store.updateEndpoint(taken) }
        var wrongApp = updated
        wrongApp.appID = appB.id
        await expectError(.notFound, "updating through another app") { try await store.updateEndpoint(wrongApp) }

        await expectError(.notFound, "deleting through another app") { try await store.deleteEndpoint(app: appB.id, id: full.id) }
        try await store.deleteEndpoint(app: appA.id, id: full.id)
        #expect(try await store.endpoint(app: appA.id, ref: full.id.rawValue) == nil)
        await expectError(.notFound, "deleting a deleted endpoint") { try await store.deleteEndpoint(app: appA.id, id: full.id) }
    }

    // MARK: Event types

    /// CRUD by name, conflicts, archived filtering, paging by name.
    public func testEventTypes() async throws {
        let store = try await makeStore()
        let paid = EventType(name: "invoice.paid", description: "Paid", deprecated: true, schemas: Array(#"{"1":{}}"#.utf8),
                             featureFlag: "beta", createdAt: at(1), updatedAt: at(2))
        try await store.createEventType(paid)
        #expect(try await store.eventType(name: "invoice.paid") == paid)
        #expect(try await store.eventType(name: "nope") == nil)
        await expectError(.conflict, "a taken event type name") {
            try await store.createEventType(EventType(name: "invoice.paid", description: "again"))
        }
        var all = [paid]
        for (index, name) in ["user.created", "a.first", "zeta.last", "user.deleted", "m.middle"].enumerated() {
            let type = EventType(name: name, description: name, archived: index.isMultiple(of: 2), createdAt: at(Double(index)))
            try await store.createEventType(type)
            all.append(type)
        }
        try await checkPaging("event types incl. archived", all: all, key: { $0.name }) {
            try await store.listEventTypes($0, includeArchived: true)
        }
        try await checkPaging("event types", all: all.filter { !$0.archived }, key: { $0.name }) {
            try await store.listEventTypes($0, includeArchived: false)
        }
        var archived = paid
        archived.archived = true
        archived.schemas = nil
        archived.featureFlag = nil
        archived.updatedAt = at(50)
        try await store.updateEventType(archived)
        #expect(try await store.eventType(name: "invoice.paid") == archived)
        let visible = try await store.listEventTypes(PageRequest(limit: 250), includeArchived: false).items.map(\.name)
        #expect(!visible.contains("invoice.paid"))
        await expectError(.notFound, "updating a missing event type") {
            try await store.updateEventType(EventType(name: "ghost", description: ""))
        }
        try await store.deleteEventType(name: "invoice.paid")
        #expect(try await store.eventType(name: "invoice.paid") == nil)
        await expectError(.notFound, "deleting a deleted event type") { try await store.deleteEventType(name: "invoice.paid") }
    }

    // MARK: Publishing

    /// Svix's filtering rules: disabled endpoints get nothing, nil or empty eventTypes mean all types,
    /// channels must overlap; `onlyEndpoint` overrides them.
    public func testPublishFiltering() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        let other = try await makeApplication(store)
        func endpoint(_ second: Double, disabled: Bool = false, types: [String]? = nil, channels: [String]? = nil,
                      app appID: ApplicationID? = nil) async throws -> Endpoint {
            let endpoint = Endpoint(id: .generate(at: at(second)), appID: appID ?? app.id, url: "https://e/\(second)",
                                    disabled: disabled, eventTypes: types, channels: channels,
                                    secrets: [EndpointSecret(key: [1, 2, 3])], createdAt: at(second))
            try await store.createEndpoint(endpoint)
            return endpoint
        }
        let all = try await endpoint(1)
        let emptyTypes = try await endpoint(2, types: [])
        let typed = try await endpoint(3, types: ["user.created", "user.deleted"])
        let otherType = try await endpoint(4, types: ["invoice.paid"])
        let disabled = try await endpoint(5, disabled: true)
        let channelEU = try await endpoint(6, channels: ["eu", "ap"])
        let channelUS = try await endpoint(7, channels: ["us"])
        let emptyChannels = try await endpoint(8, channels: [])
        _ = try await endpoint(9, app: other.id)

        let withChannels = try await publish(store, app: app.id, type: "user.created", channels: ["eu"], at: 100)
        #expect(withChannels.deliveries.map(\.endpointID) == [all.id, emptyTypes.id, typed.id, channelEU.id, emptyChannels.id],
                "deliveries go to matching endpoints, sorted by endpoint id")
        let noChannels = try await publish(store, app: app.id, type: "user.created", at: 101)
        #expect(noChannels.deliveries.map(\.endpointID) == [all.id, emptyTypes.id, typed.id, emptyChannels.id])
        let invoice = try await publish(store, app: app.id, type: "invoice.paid", channels: ["us", "eu"], at: 102)
        #expect(invoice.deliveries.map(\.endpointID) == [all.id, emptyTypes.id, otherType.id, channelEU.id, channelUS.id, emptyChannels.id])

        for delivery in withChannels.deliveries {
            let stored = try #require(try await store.delivery(message: withChannels.message.id, endpoint: delivery.endpointID))
            #expect(stored == delivery)
            #expect(stored.status == .pending)
            #expect(stored.trigger == .scheduled)
            #expect(stored.attemptCount == 0)
            #expect(stored.nextAttemptAt == withChannels.message.createdAt)
            #expect(stored.eventType == "user.created")
            #expect(stored.channels == ["eu"])
            #expect(stored.appID == app.id)
        }
        #expect(try await store.delivery(message: withChannels.message.id, endpoint: disabled.id) == nil)
        #expect(try await store.delivery(message: withChannels.message.id, endpoint: channelUS.id) == nil)

        let only = try await store.publish(PublishRequest(
            message: Message(id: .generate(at: at(103)), appID: app.id, eventType: "nothing.matches", payload: [1], createdAt: at(103)),
            onlyEndpoint: disabled.id))
        #expect(only.deliveries.map(\.endpointID) == [disabled.id], "onlyEndpoint ignores the filters")
    }

    /// A repeated eventId within an application is a conflict and writes nothing; another
    /// application may use the same eventId.
    public func testPublishEventIDConflict() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        let other = try await makeApplication(store)
        let endpoint = try await makeEndpoint(store, app: app.id)
        let first = try await publish(store, app: app.id, eventID: "evt-1", at: 1)
        #expect(first.deliveries.count == 1)

        let duplicate = Message(id: .generate(at: at(2)), appID: app.id, eventID: "evt-1", eventType: "user.created",
                                payload: [1], createdAt: at(2))
        let record = IdempotencyRecord(key: "k-dup", statusCode: 202, body: [1], createdAt: at(2), expiresAt: at(3600))
        await expectError(.conflict, "a repeated eventId") {
            _ = try await store.publish(PublishRequest(message: duplicate, idempotency: record))
        }
        #expect(try await store.message(app: app.id, ref: duplicate.id.rawValue) == nil, "the conflicting message is not stored")
        #expect(try await store.delivery(message: duplicate.id, endpoint: endpoint.id) == nil, "nor its deliveries")
        #expect(try await store.idempotencyRecord(key: "k-dup", now: at(2)) == nil, "nor its idempotency record")
        #expect(try await store.message(app: app.id, ref: "evt-1")?.id == first.message.id)

        let elsewhere = try await publish(store, app: other.id, eventID: "evt-1", at: 3)
        #expect(try await store.message(app: other.id, ref: "evt-1")?.id == elsewhere.message.id)
        let page = try await store.listMessages(app: app.id, filter: MessageFilter(), PageRequest())
        #expect(page.items.map(\.id) == [first.message.id])
    }

    /// `applicationToCreate` creates the application, or reuses the one with its uid; without it a
    /// missing application is not found.
    public func testPublishCreatesApplication() async throws {
        let store = try await makeStore()
        let newApp = Application(id: .generate(at: at(0)), uid: "auto", name: "Auto", createdAt: at(0))
        let message = Message(id: .generate(at: at(1)), appID: newApp.id, eventType: "user.created", payload: [1], createdAt: at(1))
        let created = try await store.publish(PublishRequest(message: message, applicationToCreate: newApp))
        #expect(created.message.appID == newApp.id)
        #expect(try await store.application(ref: "auto") == newApp)
        #expect(try await store.message(app: newApp.id, ref: message.id.rawValue) == created.message)

        let sameUID = Application(id: .generate(at: at(2)), uid: "auto", name: "Auto again", createdAt: at(2))
        let second = Message(id: .generate(at: at(3)), appID: sameUID.id, eventType: "user.created", payload: [2], createdAt: at(3))
        let reused = try await store.publish(PublishRequest(message: second, applicationToCreate: sameUID))
        #expect(reused.message.appID == newApp.id, "the application with the uid is reused")
        #expect(try await store.application(ref: sameUID.id.rawValue) == nil)
        #expect(try await store.message(app: newApp.id, ref: second.id.rawValue) != nil)

        await expectError(.notFound, "publishing to a missing application") {
            _ = try await store.publish(PublishRequest(message: Message(appID: .generate(), eventType: "x", payload: [1])))
        }
    }

    /// The idempotency record is stored with the message; an unexpired key is a conflict that writes nothing.
    public func testPublishIdempotency() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        let record = IdempotencyRecord(key: "k1", statusCode: 202, body: Array(#"{"id":"x"}"#.utf8), createdAt: at(1), expiresAt: at(1000))
        let message = Message(id: .generate(at: at(1)), appID: app.id, eventType: "user.created", payload: [1], createdAt: at(1))
        _ = try await store.publish(PublishRequest(message: message, idempotency: record))
        #expect(try await store.idempotencyRecord(key: "k1", now: at(2)) == record)

        let again = Message(id: .generate(at: at(2)), appID: app.id, eventType: "user.created", payload: [2], createdAt: at(2))
        var second = record
        second.createdAt = at(2)
        second.body = [9]
        await expectError(.conflict, "an unexpired idempotency key") {
            _ = try await store.publish(PublishRequest(message: again, idempotency: second))
        }
        #expect(try await store.message(app: app.id, ref: again.id.rawValue) == nil)
        #expect(try await store.idempotencyRecord(key: "k1", now: at(2)) == record)

        // Once expired, the key can be used again.
        var later = record
        later.createdAt = at(2000)
        later.expiresAt = at(3000)
        let third = Message(id: .generate(at: at(2000)), appID: app.id, eventType: "user.created", payload: [3], createdAt: at(2000))
        _ = try await store.publish(PublishRequest(message: third, idempotency: later))
        #expect(try await store.idempotencyRecord(key: "k1", now: at(2001)) == later)
    }

    // MARK: Messages

    /// Lookup by id and eventId, scoped to the application; payload expunge.
    public func testMessageLookup() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        let other = try await makeApplication(store)
        let message = Message(id: .generate(at: at(1)), appID: app.id, eventID: "evt", eventType: "user.created",
                              payload: Array(#"{"a":1}"#.utf8), channels: ["x", "y"], createdAt: at(1.125), payloadExpiresAt: at(86400.5))
        let result = try await store.publish(PublishRequest(message: message))
        #expect(result.message == message)
        #expect(try await store.message(app: app.id, ref: message.id.rawValue) == message)
        #expect(try await store.message(app: app.id, ref: "evt") == message)
        #expect(try await store.message(app: other.id, ref: message.id.rawValue) == nil)
        #expect(try await store.message(app: other.id, ref: "evt") == nil)
        #expect(try await store.message(app: app.id, ref: "missing") == nil)

        await expectError(.notFound, "expunging through another app") {
            try await store.expungeMessagePayload(app: other.id, id: message.id)
        }
        try await store.expungeMessagePayload(app: app.id, id: message.id)
        var expunged = message
        expunged.payload = nil
        #expect(try await store.message(app: app.id, ref: "evt") == expunged)
        await expectError(.notFound, "expunging a missing message") {
            try await store.expungeMessagePayload(app: app.id, id: .generate())
        }
    }

    /// Every message filter, and paging in both orders with iterators and prevIterators.
    public func testListMessages() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        let other = try await makeApplication(store)
        let shapes: [(String, [String]?)] = [
            ("user.created", nil), ("user.deleted", ["eu"]), ("invoice.paid", ["eu", "us"]), ("user.created", ["us"]),
            ("invoice.paid", nil), ("user.created", ["eu"]), ("user.deleted", []), ("user.created", ["ap", "eu"]),
        ]
        var messages: [Message] = []
        for (index, shape) in shapes.enumerated() {
            messages.append(try await publish(store, app: app.id, type: shape.0, channels: shape.1, at: Double(index * 10)).message)
        }
        _ = try await publish(store, app: other.id, at: 5)

        let filters = [
            MessageFilter(),
            MessageFilter(eventTypes: []),
            MessageFilter(eventTypes: ["user.created"]),
            MessageFilter(eventTypes: ["user.created", "invoice.paid"]),
            MessageFilter(channel: "eu"),
            MessageFilter(channel: "nowhere"),
            MessageFilter(before: at(30)),
            MessageFilter(after: at(30)),
            MessageFilter(before: at(60), after: at(10)),
            MessageFilter(eventTypes: ["user.created"], channel: "eu", before: at(100), after: at(0)),
        ]
        for filter in filters {
            let expected = messages.filter { filter.matches(eventType: $0.eventType, channels: $0.channels, createdAt: $0.createdAt) }
            try await checkPaging("messages \(filter)", all: expected, key: { $0.id.rawValue }) {
                try await store.listMessages(app: app.id, filter: filter, $0)
            }
        }
        let everything = try await store.listMessages(app: app.id, filter: MessageFilter(), PageRequest(limit: 250))
        #expect(everything.items == messages, "listed messages round-trip")
    }

    // MARK: Resend and recover

    /// A resend queues a manual pending delivery, even to an endpoint the filters exclude.
    public func testResend() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        let other = try await makeApplication(store)
        let matching = try await makeEndpoint(store, app: app.id, second: 1)
        let excluded = try await makeEndpoint(store, app: app.id, second: 2, types: ["invoice.paid"])
        let foreign = try await makeEndpoint(store, app: other.id, second: 3)
        let published = try await publish(store, app: app.id, type: "user.created", at: 10)
        #expect(published.deliveries.map(\.endpointID) == [matching.id])

        try await store.resend(app: app.id, message: published.message.id, endpoint: excluded.id, now: at(50))
        let manual = try #require(try await store.delivery(message: published.message.id, endpoint: excluded.id))
        #expect(manual.status == .pending)
        #expect(manual.trigger == .manual)
        #expect(manual.nextAttemptAt == at(50))
        #expect(manual.leaseExpiresAt == nil)
        #expect(manual.appID == app.id)
        #expect(manual.eventType == "user.created")
        #expect(manual.createdAt == published.message.createdAt)

        // A failed delivery is queued again as manual, keeping its attempt count.
        var failed = try #require(try await store.delivery(message: published.message.id, endpoint: matching.id))
        failed.status = .fail
        failed.attemptCount = 3
        failed.nextAttemptAt = nil
        failed.lastAttemptAt = at(20)
        try await store.recordAttempt(makeAttempt(for: failed, code: 500, status: .fail, at: 20), delivery: failed)
        try await store.resend(app: app.id, message: published.message.id, endpoint: matching.id, now: at(60))
        let requeued = try #require(try await store.delivery(message: published.message.id, endpoint: matching.id))
        #expect(requeued.status == .pending)
        #expect(requeued.trigger == .manual)
        #expect(requeued.nextAttemptAt == at(60))
        #expect(requeued.attemptCount == 3)
        #expect(requeued.lastAttemptAt == at(20))

        await expectError(.notFound, "resending a missing message") {
            try await store.resend(app: app.id, message: .generate(), endpoint: matching.id, now: at(1))
        }
        await expectError(.notFound, "resending to another app's endpoint") {
            try await store.resend(app: app.id, message: published.message.id, endpoint: foreign.id, now: at(1))
        }
        await expectError(.notFound, "resending another app's message") {
            try await store.resend(app: other.id, message: published.message.id, endpoint: foreign.id, now: at(1))
        }
    }

    /// Recover re-queues only the endpoint's failed deliveries of messages created in the range.
    public func testRecover() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        let endpoint = try await makeEndpoint(store, app: app.id, second: 1)
        let bystander = try await makeEndpoint(store, app: app.id, second: 2)
        var failedInRange: Set<MessageID> = []
        for index in 0..<10 {
            let result = try await publish(store, app: app.id, at: Double(100 + index * 10))
            for var delivery in result.deliveries {
                // Even: failed; index 3: succeeded; others stay pending.
                if index.isMultiple(of: 2) {
                    delivery.status = .fail
                    delivery.attemptCount = 8
                    delivery.nextAttemptAt = nil
                } else if index == 3 {
                    delivery.status = .success
                    delivery.nextAttemptAt = nil
                } else {
                    continue
                }
                try await store.recordAttempt(makeAttempt(for: delivery, code: 500, status: delivery.status, at: 200), delivery: delivery)
            }
            if index.isMultiple(of: 2), (2...6).contains(index) { failedInRange.insert(result.message.id) }
        }
        // Messages 2...6 were created at 120...160.
        let count = try await store.recover(app: app.id, endpoint: endpoint.id, since: at(120), until: at(160), now: at(500))
        #expect(count == failedInRange.count)
        let deliveries = try await store.listDeliveredMessages(app: app.id, endpoint: endpoint.id, status: nil,
                                                               filter: MessageFilter(), PageRequest(limit: 250)).items
        #expect(deliveries.count == 10)
        for item in deliveries {
            let delivery = item.delivery
            if failedInRange.contains(item.message.id) {
                #expect(delivery.status == .pending)
                #expect(delivery.nextAttemptAt == at(500))
                #expect(delivery.attemptCount == 0)
                #expect(delivery.trigger == .scheduled)
                #expect(delivery.leaseExpiresAt == nil)
            } else {
                #expect(delivery.status != .pending || delivery.attemptCount == 0)
                #expect(delivery.nextAttemptAt != at(500))
            }
        }
        let bystanderFailed = try await store.listDeliveredMessages(app: app.id, endpoint: bystander.id, status: .fail,
                                                                    filter: MessageFilter(), PageRequest(limit: 250)).items
        #expect(bystanderFailed.count == 5, "another endpoint's deliveries are untouched")
        // Open-ended range: the remaining failed ones (index 0 is before `since`).
        #expect(try await store.recover(app: app.id, endpoint: endpoint.id, since: at(130), until: nil, now: at(600)) == 1)
        #expect(try await store.recover(app: app.id, endpoint: endpoint.id, since: at(0), until: nil, now: at(700)) == 1)
        #expect(try await store.recover(app: app.id, endpoint: endpoint.id, since: at(0), until: nil, now: at(800)) == 0)
    }

    /// Counts by status, for messages created in the range (both ends included).
    public func testEndpointStats() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        let endpoint = try await makeEndpoint(store, app: app.id, second: 1)
        let statuses: [DeliveryStatus] = [.success, .success, .fail, .pending, .sending, .success, .pending]
        for (index, status) in statuses.enumerated() {
            var delivery = try #require(try await publish(store, app: app.id, at: Double(10 * (index + 1))).deliveries.first)
            guard status != .pending else { continue }
            delivery.status = status
            try await store.recordAttempt(makeAttempt(for: delivery, code: 200, status: status, at: 300), delivery: delivery)
        }
        let all = try await store.endpointStats(app: app.id, endpoint: endpoint.id, since: nil, until: nil)
        #expect(all.success == 3 && all.fail == 1 && all.pending == 2 && all.sending == 1 && all.canceled == 0)
        let ranged = try await store.endpointStats(app: app.id, endpoint: endpoint.id, since: at(20), until: at(60))
        #expect(ranged.success == 2 && ranged.fail == 1 && ranged.pending == 1 && ranged.sending == 1)
        let other = try await makeApplication(store)
        let none = try await store.endpointStats(app: other.id, endpoint: endpoint.id, since: nil, until: nil)
        #expect(none == EndpointStats())
    }

    // MARK: The delivery queue

    /// Due pending deliveries and sending ones whose lease expired are claimed, oldest first.
    public func testClaimDueDeliveries() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        _ = try await makeEndpoint(store, app: app.id, second: 1)
        var due: [Delivery] = []
        for index in 0..<5 {
            due.append(contentsOf: try await publish(store, app: app.id, at: Double(100 - index * 10)).deliveries)
        }
        let future = try #require(try await publish(store, app: app.id, at: 1000).deliveries.first)
        var done = try #require(try await publish(store, app: app.id, at: 5).deliveries.first)
        done.status = .success
        done.nextAttemptAt = nil
        try await store.recordAttempt(makeAttempt(for: done, code: 200, status: .success, at: 6), delivery: done)

        #expect(try await store.claimDueDeliveries(now: at(500), limit: 0, leaseUntil: at(530)).isEmpty)
        let first = try await store.claimDueDeliveries(now: at(500), limit: 3, leaseUntil: at(530))
        let byAge = due.sorted { ($0.nextAttemptAt ?? .distantPast) < ($1.nextAttemptAt ?? .distantPast) }
        #expect(first.map(\.messageID) == byAge.prefix(3).map(\.messageID), "oldest nextAttemptAt first")
        for claimed in first {
            #expect(claimed.status == .sending)
            #expect(claimed.leaseExpiresAt == at(530))
            let stored = try await store.delivery(message: claimed.messageID, endpoint: claimed.endpointID)
            #expect(stored == claimed)
        }
        let rest = try await store.claimDueDeliveries(now: at(500), limit: 10, leaseUntil: at(530))
        #expect(rest.map(\.messageID) == byAge.suffix(2).map(\.messageID), "a leased delivery is not claimed again")
        #expect(try await store.claimDueDeliveries(now: at(520), limit: 10, leaseUntil: at(550)).isEmpty)
        #expect(try await store.claimDueDeliveries(now: at(530), limit: 10, leaseUntil: at(560)).isEmpty,
                "a lease that expires exactly now is still held")

        // A crashed worker's leases expire and another worker takes them over.
        let takenOver = try await store.claimDueDeliveries(now: at(531), limit: 10, leaseUntil: at(2000))
        #expect(Set(takenOver.map(\.messageID)) == Set(due.map(\.messageID)))
        #expect(takenOver.allSatisfy { $0.leaseExpiresAt == at(2000) && $0.status == .sending })
        #expect(!takenOver.contains { $0.messageID == future.messageID || $0.messageID == done.messageID })

        let later = try await store.claimDueDeliveries(now: at(1000), limit: 10, leaseUntil: at(1030))
        #expect(later.map(\.messageID) == [future.messageID], "pending is due at nextAttemptAt == now")
    }

    /// Concurrent claimers never get the same delivery twice.
    public func testConcurrentClaims() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        for index in 0..<4 { _ = try await makeEndpoint(store, app: app.id, second: Double(index)) }
        for index in 0..<50 { _ = try await publish(store, app: app.id, at: Double(index)) }
        let claimed = try await withThrowingTaskGroup(of: [String].self) { group in
            for _ in 0..<4 {
                group.addTask {
                    var mine: [String] = []
                    while true {
                        let batch = try await store.claimDueDeliveries(now: at(10_000), limit: 7, leaseUntil: at(20_000))
                        if batch.isEmpty { return mine }
                        mine.append(contentsOf: batch.map { "\($0.messageID)/\($0.endpointID)" })
                    }
                }
            }
            var all: [String] = []
            for try await part in group { all.append(contentsOf: part) }
            return all
        }
        #expect(claimed.count == 200)
        #expect(Set(claimed).count == claimed.count, "no delivery is claimed twice")
    }

    /// Released claims are due again at once; a claim taken over by another worker (new lease) is
    /// not released; releaseAllClaims frees every `sending` delivery.
    public func testReleaseClaims() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        _ = try await makeEndpoint(store, app: app.id, second: 1)
        for index in 0..<3 { _ = try await publish(store, app: app.id, at: Double(index)) }
        let first = try await store.claimDueDeliveries(now: at(100), limit: 2, leaseUntil: at(200))
        #expect(first.count == 2)
        try await store.releaseClaims([first[0]])
        let again = try await store.claimDueDeliveries(now: at(101), limit: 10, leaseUntil: at(300))
        #expect(Set(again.map(\.messageID)) == Set([first[0].messageID, try #require(try await remainingID(store, excluding: first))]))
        // first[0] was re-claimed under a new lease: releasing the old claim changes nothing.
        try await store.releaseClaims([first[0]])
        let reclaimed = try #require(try await store.delivery(message: first[0].messageID, endpoint: first[0].endpointID))
        #expect(reclaimed.status == .sending && reclaimed.leaseExpiresAt == at(300))
        let counts = try await store.deliveryCounts()
        #expect(counts[.sending] == 3 && counts[.pending, default: 0] == 0)
        let released = try await store.releaseAllClaims()
        #expect(released == 3)
        #expect(try await store.deliveryCounts() == [.pending: 3])
        let all = try await store.claimDueDeliveries(now: at(102), limit: 10, leaseUntil: at(400))
        #expect(all.count == 3)
    }

    /// A publish with `claimUntil` stores its deliveries claimed under that lease (for the
    /// publisher's own dispatcher): nobody claims them before the lease lapses, anybody after;
    /// releasing them makes them due at once.
    public func testPublishClaimed() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        let first = try await makeEndpoint(store, app: app.id, second: 1)
        _ = try await makeEndpoint(store, app: app.id, second: 2, types: ["other.type"])
        let third = try await makeEndpoint(store, app: app.id, second: 3)
        let message = Message(id: .generate(at: at(10)), appID: app.id, eventType: "user.created", payload: Array("{}".utf8), createdAt: at(10))
        let result = try await store.publish(PublishRequest(message: message, claimUntil: at(100)))
        #expect(result.deliveries.map(\.endpointID) == [first.id, third.id], "the filters still apply")
        #expect(result.deliveries.allSatisfy { $0.status == .sending && $0.leaseExpiresAt == at(100) })
        for delivery in result.deliveries {
            let stored = try #require(try await store.delivery(message: message.id, endpoint: delivery.endpointID))
            #expect(stored.status == .sending && stored.leaseExpiresAt == at(100) && stored.nextAttemptAt == at(10) && stored.attemptCount == 0)
        }
        #expect(try await store.claimDueDeliveries(now: at(50), limit: 10, leaseUntil: at(200)).isEmpty, "claimed: not due for others")
        // Unclaimed publishes still go to whoever claims.
        let other = try await publish(store, app: app.id, at: 11)
        #expect(other.deliveries.allSatisfy { $0.status == .pending && $0.leaseExpiresAt == nil })
        let due = try await store.claimDueDeliveries(now: at(50), limit: 10, leaseUntil: at(200))
        #expect(Set(due.map(\.messageID)) == [other.message.id])
        // Released: due at once. Lapsed: taken over.
        try await store.releaseClaims([result.deliveries[0]])
        let released = try await store.claimDueDeliveries(now: at(51), limit: 10, leaseUntil: at(200))
        #expect(released.map(\.endpointID) == [first.id])
        let lapsed = try await store.claimDueDeliveries(now: at(101), limit: 10, leaseUntil: at(300))
        #expect(lapsed.map(\.endpointID) == [third.id])
    }

    /// Expired idempotency records go; payloads past their retention are dropped, the rest kept.
    public func testPurgeExpired() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        try await store.saveIdempotencyRecord(IdempotencyRecord(key: "old", statusCode: 202, body: [1], createdAt: at(0), expiresAt: at(100)))
        try await store.saveIdempotencyRecord(IdempotencyRecord(key: "new", statusCode: 202, body: [2], createdAt: at(0), expiresAt: at(300)))
        let short = Message(appID: app.id, eventType: "e", payload: Array("{}".utf8), createdAt: at(0), payloadExpiresAt: at(150))
        let long = Message(appID: app.id, eventType: "e", payload: Array("{}".utf8), createdAt: at(1), payloadExpiresAt: at(10_000))
        _ = try await store.publish(PublishRequest(message: short))
        _ = try await store.publish(PublishRequest(message: long))
        let result = try await store.purgeExpired(now: at(200))
        #expect(result == PurgeResult(idempotencyRecords: 1, payloads: 1))
        #expect(try await store.idempotencyRecord(key: "old", now: at(50)) == nil)
        #expect(try await store.idempotencyRecord(key: "new", now: at(200))?.body == [2])
        #expect(try await store.message(app: app.id, ref: short.id.rawValue)?.payload == nil)
        #expect(try await store.message(app: app.id, ref: long.id.rawValue)?.payload == Array("{}".utf8))
        #expect(try await store.purgeExpired(now: at(200)) == PurgeResult(idempotencyRecords: 0, payloads: 0))
    }

    private func remainingID(_ store: any HeraldStore, excluding claimed: [Delivery]) async throws -> MessageID? {
        let page = try await store.listMessages(app: claimed[0].appID, filter: MessageFilter(), PageRequest(limit: 10))
        return page.items.map(\.id).first { id in !claimed.contains { $0.messageID == id } }
    }

    // MARK: Attempts

    /// recordAttempt stores the attempt and the delivery; listAttempts filters and pages; get and
    /// expunge are scoped to the application and message.
    public func testAttempts() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        let other = try await makeApplication(store)
        let endpointA = try await makeEndpoint(store, app: app.id, second: 1)
        let endpointB = try await makeEndpoint(store, app: app.id, second: 2)
        let foreignEndpoint = try await makeEndpoint(store, app: other.id, second: 3)
        let shapes: [(String, [String]?)] = [("user.created", ["eu"]), ("invoice.paid", nil), ("user.deleted", ["us", "eu"])]
        var messages: [Message] = []
        for (index, shape) in shapes.enumerated() {
            messages.append(try await publish(store, app: app.id, type: shape.0, channels: shape.1, at: Double(index * 100)).message)
        }
        let foreignMessage = try await publish(store, app: other.id, at: 1).message
        let codes = [200, 500, 0, 404, 301, 204, 429, 100]
        var attempts: [Attempt] = []
        var second = 1000.0
        for message in messages {
            for endpoint in [endpointA, endpointB] {
                for code in codes.prefix(3 + attempts.count % 4) {
                    second += 1
                    var delivery = try #require(try await store.delivery(message: message.id, endpoint: endpoint.id))
                    let status: DeliveryStatus = (200..<300).contains(code) ? .success : .fail
                    delivery.status = status
                    delivery.attemptCount += 1
                    delivery.lastAttemptAt = at(second)
                    delivery.nextAttemptAt = status == .success ? nil : at(second + 60)
                    let attempt = Attempt(id: .generate(at: at(second)), messageID: message.id, endpointID: endpoint.id,
                                          appID: app.id, url: "https://e", responseStatusCode: code, response: "body \(code)",
                                          responseDurationMs: code / 10, status: status,
                                          triggerType: code == 100 ? .manual : .scheduled, eventType: message.eventType,
                                          channels: message.channels, createdAt: at(second))
                    try await store.recordAttempt(attempt, delivery: delivery)
                    attempts.append(attempt)
                    #expect(try await store.delivery(message: message.id, endpoint: endpoint.id) == delivery)
                }
            }
        }
        var foreignDelivery = try #require(try await store.delivery(message: foreignMessage.id, endpoint: foreignEndpoint.id))
        foreignDelivery.status = .success
        try await store.recordAttempt(makeAttempt(for: foreignDelivery, code: 200, status: .success, at: 5000), delivery: foreignDelivery)

        let filters = [
            AttemptFilter(),
            AttemptFilter(endpointID: endpointB.id),
            AttemptFilter(messageID: messages[1].id),
            AttemptFilter(endpointID: endpointA.id, messageID: messages[2].id),
            AttemptFilter(status: .success),
            AttemptFilter(status: .fail),
            AttemptFilter(statusCodeClass: 0),
            AttemptFilter(statusCodeClass: 200),
            AttemptFilter(statusCodeClass: 400),
            AttemptFilter(statusCodeClass: 500),
            AttemptFilter(message: MessageFilter(eventTypes: ["user.created", "user.deleted"])),
            AttemptFilter(message: MessageFilter(channel: "eu")),
            AttemptFilter(message: MessageFilter(before: at(1010), after: at(1003))),
            AttemptFilter(endpointID: endpointA.id, status: .fail, statusCodeClass: 500, message: MessageFilter(channel: "us")),
        ]
        for filter in filters {
            let expected = attempts.filter { filter.matches($0) }
            try await checkPaging("attempts \(filter)", all: expected, key: { $0.id.rawValue }) {
                try await store.listAttempts(app: app.id, filter: filter, $0)
            }
        }
        let listed = try await store.listAttempts(app: app.id, filter: AttemptFilter(), PageRequest(limit: 250)).items
        #expect(listed == attempts, "listed attempts round-trip")

        let sample = attempts[4]
        #expect(try await store.attempt(app: app.id, message: sample.messageID, id: sample.id) == sample)
        #expect(try await store.attempt(app: app.id, message: messages.first { $0.id != sample.messageID }!.id, id: sample.id) == nil)
        #expect(try await store.attempt(app: other.id, message: sample.messageID, id: sample.id) == nil)
        await expectError(.notFound, "expunging through another app") {
            try await store.expungeAttemptResponse(app: other.id, message: sample.messageID, id: sample.id)
        }
        try await store.expungeAttemptResponse(app: app.id, message: sample.messageID, id: sample.id)
        var expunged = sample
        expunged.response = ""
        #expect(try await store.attempt(app: app.id, message: sample.messageID, id: sample.id) == expunged)
        await expectError(.notFound, "expunging a missing attempt") {
            try await store.expungeAttemptResponse(app: app.id, message: sample.messageID, id: .generate())
        }
    }

    /// An endpoint's delivered messages (by status and message filter) and a message's destinations.
    public func testDeliveredMessagesAndDestinations() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        var endpoints: [Endpoint] = []
        for index in 0..<5 {
            endpoints.append(try await makeEndpoint(store, app: app.id, second: Double(index), types: index == 4 ? ["invoice.paid"] : nil))
        }
        let target = endpoints[0]
        var delivered: [DeliveredMessage] = []
        for index in 0..<9 {
            let type = index.isMultiple(of: 3) ? "invoice.paid" : "user.created"
            let result = try await publish(store, app: app.id, type: type, channels: index.isMultiple(of: 2) ? ["eu"] : nil,
                                           at: Double(100 + index))
            var delivery = try #require(result.deliveries.first { $0.endpointID == target.id })
            if index % 3 == 1 {
                delivery.status = .fail
                try await store.recordAttempt(makeAttempt(for: delivery, code: 500, status: .fail, at: 300), delivery: delivery)
            }
            delivered.append(DeliveredMessage(delivery: delivery, message: result.message))
        }
        let cases: [(DeliveryStatus?, MessageFilter)] = [
            (nil, MessageFilter()), (.fail, MessageFilter()), (.pending, MessageFilter()), (.success, MessageFilter()),
            (nil, MessageFilter(eventTypes: ["invoice.paid"])), (nil, MessageFilter(channel: "eu")),
            (.pending, MessageFilter(before: at(106), after: at(101))),
        ]
        for (status, filter) in cases {
            let expected = delivered.filter {
                (status == nil || $0.delivery.status == status)
                    && filter.matches(eventType: $0.message.eventType, channels: $0.message.channels, createdAt: $0.message.createdAt)
            }
            try await checkPaging("delivered messages \(String(describing: status)) \(filter)", all: expected,
                                  key: { $0.message.id.rawValue }) {
                try await store.listDeliveredMessages(app: app.id, endpoint: target.id, status: status, filter: filter, $0)
            }
        }
        let roundTrip = try await store.listDeliveredMessages(app: app.id, endpoint: target.id, status: nil,
                                                              filter: MessageFilter(), PageRequest(limit: 250)).items
        #expect(roundTrip.map(\.delivery) == delivered.map(\.delivery))
        #expect(roundTrip.map(\.message) == delivered.map(\.message))

        let invoice = delivered[0].message
        let destinations = endpoints.map { MessageDestination(delivery: Delivery(messageID: invoice.id, endpointID: $0.id, appID: app.id,
                                                                                 nextAttemptAt: nil, eventType: "", channels: nil,
                                                                                 createdAt: invoice.createdAt), endpoint: $0) }
        try await checkPaging("destinations", all: destinations, key: { $0.endpoint.id.rawValue }) {
            try await store.listDestinations(app: app.id, message: invoice.id, $0)
        }
        let listed = try await store.listDestinations(app: app.id, message: invoice.id, PageRequest(limit: 250)).items
        #expect(listed.map(\.endpoint) == endpoints)
        #expect(listed.allSatisfy { $0.delivery.messageID == invoice.id })
        let userMessage = delivered[1].message
        let userDestinations = try await store.listDestinations(app: app.id, message: userMessage.id, PageRequest()).items
        #expect(userDestinations.map(\.endpoint.id) == endpoints.prefix(4).map(\.id))
        let other = try await makeApplication(store)
        #expect(try await store.listDestinations(app: other.id, message: invoice.id, PageRequest()).items.isEmpty)
    }

    // MARK: Idempotency and tokens

    /// First wins while unexpired; an expired record is invisible and replaced.
    public func testIdempotencyRecords() async throws {
        let store = try await makeStore()
        let first = IdempotencyRecord(key: "POST /msg k", statusCode: 202, body: [1, 2], createdAt: at(0), expiresAt: at(100))
        try await store.saveIdempotencyRecord(first)
        #expect(try await store.idempotencyRecord(key: first.key, now: at(50)) == first)
        #expect(try await store.idempotencyRecord(key: "other", now: at(50)) == nil)
        let second = IdempotencyRecord(key: first.key, statusCode: 409, body: [3], createdAt: at(60), expiresAt: at(160))
        try await store.saveIdempotencyRecord(second)
        #expect(try await store.idempotencyRecord(key: first.key, now: at(70)) == first, "an unexpired record is kept")
        #expect(try await store.idempotencyRecord(key: first.key, now: at(100)) == nil, "expired at expiresAt")
        let third = IdempotencyRecord(key: first.key, statusCode: 201, body: [4], createdAt: at(100), expiresAt: at(200))
        try await store.saveIdempotencyRecord(third)
        #expect(try await store.idempotencyRecord(key: first.key, now: at(150)) == third, "an expired record is replaced")
    }

    /// Create, lookup by hash, delete, admin count.
    public func testTokens() async throws {
        let store = try await makeStore()
        let app = try await makeApplication(store)
        #expect(try await store.adminTokenCount() == 0)
        let admin = APIToken(id: .generate(at: at(1)), hash: Array(repeating: 1, count: 32), scope: .admin, createdAt: at(1))
        let admin2 = APIToken(id: .generate(at: at(2)), hash: Array(repeating: 2, count: 32), scope: .admin, createdAt: at(2),
                              expiresAt: at(1000))
        let scoped = APIToken(id: .generate(at: at(3)), hash: Array(repeating: 3, count: 32), scope: .application(app.id), createdAt: at(3))
        for token in [admin, admin2, scoped] { try await store.createToken(token) }
        #expect(try await store.token(hash: admin.hash) == admin)
        #expect(try await store.token(hash: admin2.hash) == admin2)
        #expect(try await store.token(hash: scoped.hash) == scoped)
        #expect(try await store.token(hash: Array(repeating: 4, count: 32)) == nil)
        #expect(try await store.adminTokenCount() == 2)
        try await store.deleteToken(id: admin.id)
        #expect(try await store.token(hash: admin.hash) == nil)
        #expect(try await store.adminTokenCount() == 1)
        try await store.deleteToken(id: scoped.id)
        #expect(try await store.token(hash: scoped.hash) == nil)
        #expect(try await store.adminTokenCount() == 1)
    }

    // MARK: Deletion

    /// Deleting an application removes its endpoints, messages, deliveries, attempts and scoped
    /// tokens, and nothing of other applications; deleting an endpoint removes its deliveries and attempts.
    public func testDeleteCascades() async throws {
        let store = try await makeStore()
        let doomed = try await makeApplication(store, uid: "doomed")
        let kept = try await makeApplication(store, uid: "kept")
        var keptDelivery: Delivery?
        var doomedDelivery: Delivery?
        for app in [doomed, kept] {
            let endpoint = try await makeEndpoint(store, app: app.id, uid: "ep")
            var delivery = try #require(try await publish(store, app: app.id, eventID: "evt", at: 10).deliveries.first)
            delivery.status = .fail
            try await store.recordAttempt(makeAttempt(for: delivery, code: 500, status: .fail, at: 20), delivery: delivery)
            try await store.createToken(APIToken(hash: Array(app.id.rawValue.utf8), scope: .application(app.id)))
            #expect(endpoint.appID == app.id)
            if app == kept { keptDelivery = delivery } else { doomedDelivery = delivery }
        }
        try await store.createToken(APIToken(hash: [0xAD], scope: .admin))
        let gone = try #require(doomedDelivery)
        try await store.deleteApplication(doomed.id)

        #expect(try await store.application(ref: "doomed") == nil)
        #expect(try await store.endpoint(app: doomed.id, ref: "ep") == nil)
        #expect(try await store.message(app: doomed.id, ref: "evt") == nil)
        #expect(try await store.delivery(message: gone.messageID, endpoint: gone.endpointID) == nil)
        #expect(try await store.listAttempts(app: doomed.id, filter: AttemptFilter(), PageRequest()).items.isEmpty)
        #expect(try await store.listMessages(app: doomed.id, filter: MessageFilter(), PageRequest()).items.isEmpty)
        #expect(try await store.listEndpoints(app: doomed.id, PageRequest()).items.isEmpty)
        #expect(try await store.token(hash: Array(doomed.id.rawValue.utf8)) == nil)
        #expect(try await store.adminTokenCount() == 1)
        #expect(try await store.claimDueDeliveries(now: at(10_000), limit: 100, leaseUntil: at(10_100)).isEmpty,
                "no deliveries of the deleted application are left in the queue")
        // An attempt that was in flight when its application went: recorded as nothing, without error.
        var late = gone
        late.status = .success
        try await store.recordAttempt(makeAttempt(for: late, code: 200, status: .success, at: 30), delivery: late)
        #expect(try await store.delivery(message: gone.messageID, endpoint: gone.endpointID) == nil, "not brought back")
        #expect(try await store.listAttempts(app: doomed.id, filter: AttemptFilter(), PageRequest()).items.isEmpty)

        #expect(try await store.application(ref: "kept") == kept)
        let keptEndpoint = try #require(try await store.endpoint(app: kept.id, ref: "ep"))
        #expect(try await store.message(app: kept.id, ref: "evt") != nil)
        let survivor = try #require(keptDelivery)
        #expect(try await store.delivery(message: survivor.messageID, endpoint: survivor.endpointID) == survivor)
        #expect(try await store.listAttempts(app: kept.id, filter: AttemptFilter(), PageRequest()).items.count == 1)
        #expect(try await store.token(hash: Array(kept.id.rawValue.utf8)) != nil)

        try await store.deleteEndpoint(app: kept.id, id: keptEndpoint.id)
        #expect(try await store.delivery(message: survivor.messageID, endpoint: survivor.endpointID) == nil)
        #expect(try await store.listAttempts(app: kept.id, filter: AttemptFilter(), PageRequest()).items.isEmpty)
        #expect(try await store.message(app: kept.id, ref: "evt") != nil, "messages outlive their endpoints")
    }
}
