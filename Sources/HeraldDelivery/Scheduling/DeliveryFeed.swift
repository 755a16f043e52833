import Foundation
import HeraldCore
import Logging

/// The dispatcher's supply of work: claims due deliveries in the amounts the admission policy
/// deals out, takes over lapsed claims, and keeps the endpoints and messages they need. Owned by
/// the dispatcher's loop (one task), so it is a plain value.
///
/// Everything it holds is bounded: claimed deliveries waiting for a global slot (at most the
/// budget a claim was given), and the endpoints and messages of those and of the ones in flight.
struct DeliveryFeed {
    struct Configuration {
        var leaseDuration: TimeInterval
        var pollInterval: Duration
        /// Endpoints a claim examines at most (the walk over endpoints goes on from there next time).
        var scanLimit = 2000
    }

    let queue: any DeliveryQueue
    let configuration: Configuration
    let logger: Logger

    /// Claimed, waiting for a global slot.
    var held: [Delivery] = []
    /// The endpoints and messages of held work (and, until the next sweep, of recent work).
    var targets = DeliveryTargets()
    /// Where the walk over endpoints with work goes on.
    private var cursor: EndpointID?
    private var lastClaim = ContinuousClock.now - .seconds(60)
    private var lastLapsedClaim = ContinuousClock.now - .seconds(60)
    /// Whether more may be due than the last claim took.
    private(set) var claimAgain = true
    /// When each unreadable endpoint was last logged (at most once a minute each; bounded).
    private var warned: [EndpointID: ContinuousClock.Instant] = [:]

    init(queue: any DeliveryQueue, configuration: Configuration, logger: Logger) {
        self.queue = queue
        self.configuration = configuration
        self.logger = logger
    }

    /// Whether a claim is worth a query now: work was signalled, the last claim was cut short, or
    /// a poll interval passed (retries falling due).
    func shouldClaim(signalled: Bool) -> Bool {
        claimAgain || signalled || ContinuousClock.now - lastClaim >= configuration.pollInterval
    }

    mutating func needClaim() { claimAgain = true }

    /// Claims up to `budget` deliveries: lapsed claims first (once a second: leases last minutes),
    /// then due ones in the amounts `policy` deals out over the endpoints that have work due.
    mutating func claim(budget: Int, now: Date, policy: inout AdmissionPolicy, load: AdmissionPolicy.Load) async -> [Delivery] {
        lastClaim = ContinuousClock.now
        claimAgain = false
        let lease = now.addingTimeInterval(configuration.leaseDuration)
        var claimed: [Delivery] = []
        do {
            if ContinuousClock.now - lastLapsedClaim >= .seconds(1) {
                lastLapsedClaim = ContinuousClock.now
                claimed = try await queue.claimLapsedDeliveries(now: now, limit: budget, leaseUntil: lease)
                if claimed.count >= budget { claimAgain = true; return claimed }
            }
            let startedAt = cursor
            var scan = try await queue.dueEndpoints(now: now, after: cursor, limit: configuration.scanLimit)
            if scan.due.isEmpty && startedAt != nil {
                // The walk reached the end of what it had left: start over from the first endpoint.
                scan = try await queue.dueEndpoints(now: now, after: nil, limit: configuration.scanLimit)
            }
            cursor = scan.next
            let room = budget - claimed.count
            let quotas = policy.quotas(for: scan.due, budget: room, local: load)
            let due = try await queue.claimDueDeliveries(now: now, quotas: quotas, leaseUntil: lease)
            claimed += due
            // The whole budget was used, or endpoints are left to examine: more may be due.
            if due.count >= room || scan.next != nil { claimAgain = true }
        } catch {
            claimAgain = true
            logger.warning("could not claim deliveries", metadata: ["herald.error": "\(error)"])
        }
        return claimed
    }

    /// Loads the endpoints and messages not loaded yet of `fresh` (and of held work when `reload`).
    /// Deliveries whose endpoint or message is gone were deleted with it and are dropped; if the
    /// read fails, `fresh` is handed back to the queue and the held work waits for the next try.
    mutating func load(_ fresh: [Delivery], reload: Bool) async -> [Delivery] {
        var fresh = fresh
        let unloaded = (reload ? held + fresh : fresh).filter {
            targets.endpoints[$0.endpointID] == nil || targets.messages[$0.messageID] == nil
        }
        guard !unloaded.isEmpty else { return fresh }
        do {
            let loaded = try await queue.deliveryTargets(for: unloaded)
            targets.endpoints.merge(loaded.endpoints) { _, new in new }
            targets.messages.merge(loaded.messages) { _, new in new }
            let gone = { [targets] (delivery: Delivery) in
                targets.endpoints[delivery.endpointID] == nil || targets.messages[delivery.messageID] == nil
            }
            fresh.removeAll(where: gone)
            if reload { held.removeAll(where: gone) }
            for (id, endpoint) in loaded.endpoints {
                guard let reason = endpoint.unreadable else { continue }
                let now = ContinuousClock.now
                if let last = warned[id], now - last < .seconds(60) { continue }
                if warned.count >= 1000 { warned = warned.filter { now - $0.value < .seconds(60) } }
                warned[id] = now
                logger.warning("endpoint cannot be read; its deliveries fail", metadata: [
                    "herald.endpoint.id": "\(id)", "herald.endpoint.reason": "\(reason)"])
            }
        } catch {
            logger.warning("could not load deliveries", metadata: ["herald.error": "\(error)"])
            try? await queue.releaseClaims(fresh)
            return []
        }
        return fresh
    }

    /// Once a second: hands back held deliveries whose lease would lapse before they could finish,
    /// forgets every endpoint (so other nodes' changes apply within a second even to work that
    /// keeps waiting) and the messages nothing held needs.
    mutating func sweep(now: Date, requestTimeout: TimeInterval) async {
        let deadline = now.addingTimeInterval(requestTimeout + 1)
        let lapsing = held.filter { ($0.leaseExpiresAt ?? now) < deadline }
        if !lapsing.isEmpty {
            held.removeAll { ($0.leaseExpiresAt ?? now) < deadline }
            try? await queue.releaseClaims(lapsing)
            claimAgain = true
        }
        targets.endpoints = [:]
        let needed = Set(held.map(\.messageID))
        targets.messages = targets.messages.filter { needed.contains($0.key) }
    }

    /// Hands deliveries back to the queue (pending, due at once), to be claimed when their turn
    /// comes.
    mutating func release(_ deliveries: [Delivery]) async {
        guard !deliveries.isEmpty else { return }
        do { try await queue.releaseClaims(deliveries) } catch {
            logger.warning("could not release claims", metadata: ["herald.error": "\(error)"])
        }
        claimAgain = true
    }
}
