import Foundation
import HeraldAPI
import HeraldCore
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// A dispatcher stand-in: grants a lease, then takes the deliveries or refuses them.
final class RecordingHandOver: DeliveryHandOver {
    let lease: Date?
    let accepts: Bool
    let taken = NIOLockedValueBox<[Delivery]>([])
    let endpointChanges = NIOLockedValueBox(0)

    init(lease: Date?, accepts: Bool) {
        self.lease = lease
        self.accepts = accepts
    }

    func leaseForNewDeliveries() -> Date? { lease }

    func take(_ deliveries: [Delivery], of message: Message) -> Bool {
        guard accepts else { return false }
        taken.withLockedValue { $0 += deliveries }
        return true
    }

    func endpointsChanged() { endpointChanges.withLockedValue { $0 += 1 } }
}

/// The API's side of the hand-over: what a publish stores and what happens when the dispatcher
/// cannot take its deliveries after all.
@Suite("API: hand-over of published deliveries")
struct HandOverAPITests {
    static let token = "hand_over_token_0123456789"

    /// Publishes one message to an application with two endpoints through the real router.
    func publish(handOver: RecordingHandOver?) async throws -> (InMemoryStore, MessageID, wakeups: Int) {
        let store = InMemoryStore()
        try await store.createToken(APIToken(hash: APITokenText.hash(Self.token), scope: .admin))
        let app = Application(uid: "acme", name: "Acme")
        try await store.createApplication(app)
        for index in 0..<2 {
            try await store.createEndpoint(Endpoint(appID: app.id, url: "https://example.com/\(index)", secrets: [EndpointSecret(key: Array(repeating: 1, count: 24))]))
        }
        let wakeups = NIOLockedValueBox(0)
        let api = HeraldAPI(store: store, configuration: .init(onNewWork: { wakeups.withLockedValue { $0 += 1 } }, deliveryHandOver: handOver))
        let router = api.buildRouter()
        let id = try await Hummingbird.Application(router: router).test(.router) { client in
            let body = ByteBuffer(string: #"{"eventType":"user.created","payload":{"a":1}}"#)
            return try await client.execute(uri: "/api/v1/app/acme/msg", method: .post,
                                            headers: [.authorization: "Bearer \(Self.token)", .contentType: "application/json"], body: body) { response in
                #expect(response.status == .accepted)
                let object = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                return MessageID(rawValue: try #require(object?["id"] as? String))
            }
        }
        return (store, id, wakeups.withLockedValue { $0 })
    }

    @Test func aDispatcherWithRoomGetsTheDeliveriesClaimedAndNoWakeUp() async throws {
        let lease = Date().addingTimeInterval(120)
        let handOver = RecordingHandOver(lease: lease, accepts: true)
        let (store, id, wakeups) = try await publish(handOver: handOver)
        let taken = handOver.taken.withLockedValue { $0 }
        #expect(taken.count == 2 && taken.allSatisfy { $0.messageID == id && $0.status == .sending && $0.leaseExpiresAt == lease })
        #expect(try await store.claimDueDeliveries(now: Date(), limit: 10, leaseUntil: lease).isEmpty, "nobody else can claim them")
        #expect(wakeups == 0)
    }

    @Test func deliveriesTheDispatcherRefusesAreReleasedForAnyWorker() async throws {
        let lease = Date().addingTimeInterval(120)
        let (store, id, wakeups) = try await publish(handOver: RecordingHandOver(lease: lease, accepts: false))
        let claimable = try await store.claimDueDeliveries(now: Date(), limit: 10, leaseUntil: lease)
        #expect(claimable.count == 2 && claimable.allSatisfy { $0.messageID == id }, "released at once, not left to the lease")
        #expect(wakeups == 1)
    }

    @Test func withoutRoomOrWithoutADispatcherTheyArePending() async throws {
        for handOver in [RecordingHandOver(lease: nil, accepts: true), nil] {
            let (store, id, wakeups) = try await publish(handOver: handOver)
            #expect(handOver?.taken.withLockedValue { $0 }.isEmpty ?? true)
            let claimable = try await store.claimDueDeliveries(now: Date(), limit: 10, leaseUntil: Date().addingTimeInterval(60))
            #expect(claimable.count == 2 && claimable.allSatisfy { $0.messageID == id })
            #expect(wakeups == 1)
        }
    }

    /// The dispatcher reuses endpoints it loaded; every change through the API must tell it, and
    /// reads and failed requests must not.
    @Test func endpointAndApplicationChangesTellTheDispatcher() async throws {
        let store = InMemoryStore()
        try await store.createToken(APIToken(hash: APITokenText.hash(Self.token), scope: .admin))
        let app = Application(uid: "acme", name: "Acme")
        try await store.createApplication(app)
        let endpoint = Endpoint(appID: app.id, url: "https://example.com/0", secrets: [EndpointSecret(key: Array(repeating: 1, count: 24))])
        try await store.createEndpoint(endpoint)
        let handOver = RecordingHandOver(lease: nil, accepts: true)
        let router = HeraldAPI(store: store, configuration: .init(deliveryHandOver: handOver)).buildRouter()
        let headers: HTTPFields = [.authorization: "Bearer \(Self.token)", .contentType: "application/json"]
        try await Hummingbird.Application(router: router).test(.router) { client in
            let changes = { handOver.endpointChanges.withLockedValue { $0 } }
            try await client.execute(uri: "/api/v1/app/acme/endpoint/\(endpoint.id)", method: .get, headers: headers) { #expect($0.status == .ok) }
            #expect(changes() == 0, "a read changes nothing")
            try await client.execute(uri: "/api/v1/app/acme/endpoint/\(endpoint.id)/secret/rotate", method: .post, headers: headers,
                                     body: ByteBuffer(string: "{}")) { #expect($0.status.code < 300) }
            #expect(changes() == 1, "a rotated secret")
            try await client.execute(uri: "/api/v1/app/acme/endpoint/\(endpoint.id)", method: .patch, headers: headers,
                                     body: ByteBuffer(string: #"{"url":"https://example.com/new"}"#)) { #expect($0.status == .ok) }
            #expect(changes() == 2, "a new URL")
            try await client.execute(uri: "/api/v1/app/acme/endpoint/ep_missing", method: .patch, headers: headers,
                                     body: ByteBuffer(string: #"{"url":"https://example.com/x"}"#)) { #expect($0.status == .notFound) }
            #expect(changes() == 2, "a failed request changed nothing")
            try await client.execute(uri: "/api/v1/app/acme", method: .delete, headers: headers) { #expect($0.status == .noContent) }
            #expect(changes() == 3, "a deleted application takes its endpoints with it")
        }
    }
}
