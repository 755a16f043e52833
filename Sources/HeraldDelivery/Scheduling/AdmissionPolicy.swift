import Foundation
import HeraldCore

/// Decides what the dispatcher may start now: a pure value with no I/O, so every rule is tested
/// with plain values and times (the time is always passed in; nothing reads a clock).
///
/// The rules, in order:
/// 1. **Global budget.** At most `concurrency` requests in flight, and at most
///    `maxInFlightBytes` of payload in them (one delivery always fits, whatever its size).
/// 2. **Per-endpoint cap.** At most `perEndpointConcurrency` requests in flight to one endpoint,
///    counting every node's (the queue reports them) — so work that waits on a busy endpoint is
///    never claimed and never takes budget another endpoint could use.
/// 3. **Per-application cap.** One application may fill the budget only up to
///    `concurrency - applicationReserve`: the rest is kept for the other applications, so an
///    application with a thousand slow endpoints cannot hold every slot while another waits.
/// 4. **Turns.** A claim's budget is dealt one delivery at a time, round-robin over the
///    applications with work due, and within an application round-robin over its endpoints,
///    longest-waiting first. An application with 1,000 busy endpoints gets the same share as one
///    with a single endpoint; an endpoint with 100,000 deliveries due gets the same share as one
///    with one. Budget an application cannot use (its endpoints are at their caps or have no more
///    due) goes to the others.
/// 5. **Poison.** A delivery that was in flight when its worker stopped
///    `DeliveryQueueLimits.maxInterruptions` times in a row is failed without being sent; one that
///    was interrupted twice is started only when no other such delivery is in flight, so a delivery
///    that kills the process cannot take innocent ones down with it again and again.
///
/// Flow-control rules (throttle, pause, FIFO) belong here as further checks in `admit` and
/// `quotas`.
///
/// ```swift
/// var policy = AdmissionPolicy(configuration: .init(concurrency: 1000, perEndpointConcurrency: 16))
/// let quotas = policy.quotas(for: scan.due, budget: 200, local: load)
/// ```
public struct AdmissionPolicy: Sendable {
    public struct Configuration: Sendable, Hashable {
        /// Requests in flight at once, over every endpoint.
        public var concurrency: Int
        /// Requests in flight to one endpoint at once (over every node).
        public var perEndpointConcurrency: Int
        /// Payload bytes in flight at once (a single larger delivery is still admitted alone).
        public var maxInFlightBytes: Int
        /// Slots one application can never take: kept for the others (a tenth of the budget).
        public var applicationReserve: Int

        public init(concurrency: Int = 1000, perEndpointConcurrency: Int = 16, maxInFlightBytes: Int = 256 << 20,
                    applicationReserve: Int? = nil) {
            self.concurrency = max(1, concurrency)
            self.perEndpointConcurrency = max(1, perEndpointConcurrency)
            self.maxInFlightBytes = max(1, maxInFlightBytes)
            self.applicationReserve = min(max(0, applicationReserve ?? concurrency / 10), max(0, concurrency - 1))
        }

        /// Requests one application may have in flight.
        public var perApplicationConcurrency: Int { concurrency - applicationReserve }
    }

    /// What this dispatcher has in flight now.
    public struct Load: Sendable, Hashable {
        public var inFlight = 0
        public var inFlightBytes = 0
        public var perEndpoint: [EndpointID: Int] = [:]
        public var perApplication: [ApplicationID: Int] = [:]
        /// In flight among deliveries interrupted twice or more (at most one at a time).
        public var suspects = 0

        public init(inFlight: Int = 0, inFlightBytes: Int = 0, perEndpoint: [EndpointID: Int] = [:],
                    perApplication: [ApplicationID: Int] = [:], suspects: Int = 0) {
            self.inFlight = inFlight
            self.inFlightBytes = inFlightBytes
            self.perEndpoint = perEndpoint
            self.perApplication = perApplication
            self.suspects = suspects
        }
    }

    /// What `admit` decided for one claimed delivery.
    public enum Decision: Sendable, Hashable {
        /// Start the attempt now.
        case start
        /// Hand it back to the queue: its endpoint (or its application) is at its cap, and it is
        /// claimed again when its turn comes.
        case waitForEndpoint
        /// Keep it until the global budget (requests, bytes, or the one-suspect rule) has room.
        case waitForBudget
        /// Do not send it: record a failed attempt with this reason.
        case fail(String)
    }

    public let configuration: Configuration
    /// Which application the next claim's deal starts with (turns between claims too).
    private var turn = 0

    public init(configuration: Configuration = .init()) {
        self.configuration = configuration
    }

    /// How many deliveries of each endpoint to claim, dealing `budget` out in turns (see the type's
    /// rules). `due` comes from `DeliveryQueue.dueEndpoints`; `local` is this dispatcher's load,
    /// which may know of requests the queue does not count yet.
    public mutating func quotas(for due: [DueEndpoint], budget: Int, local: Load) -> [EndpointID: Int] {
        guard budget > 0, !due.isEmpty else { return [:] }
        // Each application's endpoints that have room, longest-waiting first.
        var byApp: [ApplicationID: [(id: EndpointID, room: Int)]] = [:]
        for endpoint in due.sorted(by: { ($0.earliestDue, $0.endpointID) < ($1.earliestDue, $1.endpointID) }) {
            let busy = max(endpoint.inFlight, local.perEndpoint[endpoint.endpointID] ?? 0)
            let room = configuration.perEndpointConcurrency - busy
            if room > 0 { byApp[endpoint.appID, default: []].append((endpoint.endpointID, room)) }
        }
        // Each application's room under its cap (this dispatcher's count: the queue does not
        // report applications).
        var appRoom: [ApplicationID: Int] = [:]
        for app in byApp.keys {
            let room = configuration.perApplicationConcurrency - (local.perApplication[app] ?? 0)
            if room > 0 { appRoom[app] = room } else { byApp[app] = nil }
        }
        guard !byApp.isEmpty else { return [:] }
        var apps = byApp.keys.sorted()
        let start = turn % apps.count
        apps = Array(apps[start...] + apps[..<start])
        turn &+= 1
        var next: [ApplicationID: Int] = [:]  // each application's next endpoint to serve
        var quotas: [EndpointID: Int] = [:]
        var left = budget
        while left > 0 && !apps.isEmpty {
            var stillOpen: [ApplicationID] = []
            for app in apps where left > 0 {
                var endpoints = byApp[app]!
                var index = next[app, default: 0] % endpoints.count
                endpoints[index].room -= 1
                quotas[endpoints[index].id, default: 0] += 1
                left -= 1
                appRoom[app, default: 0] -= 1
                if appRoom[app, default: 0] <= 0 {
                    endpoints = []  // the application is at its cap
                } else if endpoints[index].room == 0 {
                    endpoints.remove(at: index)
                } else {
                    index += 1
                }
                byApp[app] = endpoints
                next[app] = index
                if !endpoints.isEmpty { stillOpen.append(app) }
            }
            if left > 0 { apps = stillOpen }
        }
        return quotas
    }

    /// Whether a claimed delivery may start now, given the load (updated by the caller when it
    /// starts one). `payloadBytes` is the size of the body it would send.
    public func admit(_ delivery: Delivery, payloadBytes: Int, load: Load) -> Decision {
        if delivery.interruptedCount >= DeliveryQueueLimits.maxInterruptions {
            return .fail(DeliveryQueueLimits.interruptedReason(delivery.interruptedCount))
        }
        if load.inFlight >= configuration.concurrency { return .waitForBudget }
        if load.inFlight > 0 && load.inFlightBytes + payloadBytes > configuration.maxInFlightBytes { return .waitForBudget }
        if (load.perEndpoint[delivery.endpointID] ?? 0) >= configuration.perEndpointConcurrency { return .waitForEndpoint }
        if (load.perApplication[delivery.appID] ?? 0) >= configuration.perApplicationConcurrency { return .waitForEndpoint }
        if delivery.interruptedCount >= 2 && load.suspects > 0 { return .waitForBudget }
        return .start
    }

    /// Whether `delivery` counts toward `Load.suspects` while in flight.
    public static func isSuspect(_ delivery: Delivery) -> Bool { delivery.interruptedCount >= 2 }
}
