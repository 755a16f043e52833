import Foundation

/// An endpoint with pending deliveries due: a candidate for the dispatcher's next claim.
public struct DueEndpoint: Sendable, Hashable {
    public var endpointID: EndpointID
    public var appID: ApplicationID
    /// The earliest `nextAttemptAt` of its pending deliveries.
    public var earliestDue: Date
    /// Its deliveries claimed right now under an unexpired lease, by any worker (this one included).
    public var inFlight: Int

    public init(endpointID: EndpointID, appID: ApplicationID, earliestDue: Date, inFlight: Int) {
        self.endpointID = endpointID
        self.appID = appID
        self.earliestDue = earliestDue
        self.inFlight = inFlight
    }
}

/// One step of a walk over the endpoints with pending work (`DeliveryQueue.dueEndpoints`).
public struct DueEndpointScan: Sendable, Hashable {
    /// The endpoints examined that have work due, in endpoint id order.
    public var due: [DueEndpoint]
    /// Where the next step starts (`after:`); nil when the walk reached the last endpoint.
    public var next: EndpointID?

    public init(due: [DueEndpoint], next: EndpointID?) {
        self.due = due
        self.next = next
    }
}

/// A narrow write of an endpoint's health, made by the dispatcher. It touches `failingSince` and
/// `disabled` only (and the row's version and `updatedAt`), so it never undoes a change that the
/// API made meanwhile (a rotated secret, a new URL).
public enum EndpointHealthChange: Sendable, Hashable {
    /// The endpoint started failing at this time (written only if it was not failing already).
    case failing(since: Date)
    /// An attempt succeeded: the failure streak ends (written only if there was one).
    case healthy
    /// Disabled (410 Gone, or failing for too long); written only if it was enabled.
    case disabled
}

/// Limits shared by every queue backend.
public enum DeliveryQueueLimits {
    /// A delivery held by a worker that stopped this many times in a row is failed instead of
    /// claimed again.
    public static let maxInterruptions = 3
    /// The attempt text recorded for such a delivery.
    public static func interruptedReason(_ count: Int) -> String {
        "not attempted again: the worker holding this delivery stopped \(count) times in a row while it was in flight (a crash or kill each time); recover or resend it to try again"
    }
}

/// The durable delivery queue: everything the dispatcher needs from storage, and nothing else.
/// Every backend conforms (`HeraldStore` refines it), and the same conformance suite checks them.
///
/// The dispatcher's claim is two steps: `dueEndpoints` lists the endpoints that have work due (with
/// how much of theirs is in flight on every worker), the admission policy decides how many
/// deliveries each may start, and `claimDueDeliveries(now:quotas:leaseUntil:)` claims exactly
/// those, oldest first per endpoint. So a backlog on one endpoint is never claimed ahead of another
/// endpoint's new message, and work that an endpoint's cap would hold back is never claimed at all.
///
/// ```swift
/// let scan = try await queue.dueEndpoints(now: now, after: nil, limit: 1000)
/// let quotas = policy.quotas(for: scan.due, budget: 64)
/// let claimed = try await queue.claimDueDeliveries(now: now, quotas: quotas, leaseUntil: now + 120)
/// ```
public protocol DeliveryQueue: Sendable {
    /// Walks the endpoints that have `pending` deliveries, in endpoint id order, starting after
    /// `after` (nil: from the first), examining at most `limit` of them, and returns those with a
    /// delivery due at or before `now`. Costs one index seek per endpoint examined, whatever the
    /// number of deliveries queued.
    func dueEndpoints(now: Date, after: EndpointID?, limit: Int) async throws -> DueEndpointScan
    /// Claims, for each endpoint of `quotas`, up to that many of its due `pending` deliveries (oldest
    /// `nextAttemptAt` first) and marks them `sending` with `leaseExpiresAt = leaseUntil`,
    /// atomically, so two workers never claim the same delivery.
    func claimDueDeliveries(now: Date, quotas: [EndpointID: Int], leaseUntil: Date) async throws -> [Delivery]
    /// Claims up to `limit` `sending` deliveries whose lease lapsed before `now` (their worker
    /// stopped), oldest lease first; each one's `interruptedCount` goes up by one.
    func claimLapsedDeliveries(now: Date, limit: Int, leaseUntil: Date) async throws -> [Delivery]
    /// Loads the endpoints and messages of `deliveries` in one read (deleted ones are absent). An
    /// endpoint whose secrets cannot be read is present, with `unreadable` set.
    func deliveryTargets(for deliveries: [Delivery]) async throws -> DeliveryTargets
    /// Stores an attempt and the delivery's new state in one transaction (`interruptedCount` back
    /// to 0).
    func recordAttempt(_ attempt: Attempt, delivery: Delivery) async throws
    /// Hands back deliveries this worker claimed but will not attempt: each that is still `sending`
    /// under the same lease becomes `pending` again, due at once. Not an interruption.
    func releaseClaims(_ deliveries: [Delivery]) async throws
    /// How many deliveries are in each status, over every application (for metrics).
    func deliveryCounts() async throws -> [DeliveryStatus: Int]
    /// Makes every `sending` delivery `pending` again, counting an interruption for each. Only for a
    /// store no other worker shares (SQLite at start-up: the previous process died holding them).
    /// Returns how many.
    func releaseAllClaims() async throws -> Int
    /// Writes an endpoint's health narrowly (see `EndpointHealthChange`). Returns whether it changed
    /// anything (false when the endpoint is gone or already in that state).
    @discardableResult
    func recordEndpointHealth(app: ApplicationID, endpoint: EndpointID, _ change: EndpointHealthChange, at date: Date) async throws -> Bool
}

extension DeliveryQueue {
    /// Claims up to `limit` due deliveries, at most `perEndpoint` of each endpoint, taking
    /// endpoints in turn (oldest due first within each), and lapsed ones. A convenience over the
    /// two-step claim for tools and tests; the dispatcher uses its admission policy instead.
    public func claimDueDeliveries(now: Date, limit: Int, leaseUntil: Date, perEndpoint: Int = .max) async throws -> [Delivery] {
        guard limit > 0 else { return [] }
        var claimed = try await claimLapsedDeliveries(now: now, limit: limit, leaseUntil: leaseUntil)
        var quotas: [EndpointID: Int] = [:]
        var room = limit - claimed.count
        var cursor: EndpointID?
        while room > 0 {
            let scan = try await dueEndpoints(now: now, after: cursor, limit: 1000)
            let due = scan.due
            // Round-robin until the room is shared out: each endpoint takes one more per round.
            var open = due.filter { perEndpoint - $0.inFlight > 0 }
            var round = 0
            while room > 0, !open.isEmpty {
                round += 1
                open.removeAll { perEndpoint - $0.inFlight < round }
                for endpoint in open where room > 0 {
                    quotas[endpoint.endpointID, default: 0] += 1
                    room -= 1
                }
                if round >= limit { break }
            }
            guard let next = scan.next else { break }
            cursor = next
        }
        claimed += try await claimDueDeliveries(now: now, quotas: quotas, leaseUntil: leaseUntil)
        return claimed
    }
}
