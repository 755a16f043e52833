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
}
