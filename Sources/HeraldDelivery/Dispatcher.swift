import Foundation
import HeraldCore
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// The delivery engine, a `Service`: claims due deliveries with a lease, keeps at most
/// `concurrency` requests in flight (and `perEndpointConcurrency` per endpoint), and wakes as soon
/// as a message is published. A slot is free again once its request is answered: recording the
/// attempt (a group commit) does not hold the endpoint's slot, though at most `concurrency`
/// attempts wait to be recorded before new requests wait too. On graceful shutdown it stops claiming, lets attempts in flight finish
/// for up to `shutdownGracePeriod`, then cancels the rest (their leases lapse and they are retried).
///
/// ```swift
/// let dispatcher = Dispatcher(store: store, transport: HTTPClientTransport(policy: policy), logger: logger)
/// let group = ServiceGroup(services: [dispatcher, api], logger: logger)
/// try await group.run()
/// ```
public final class Dispatcher: Service, Sendable {
    public struct Configuration: Sendable {
        public var processor = DeliveryProcessor.Configuration()
        /// Requests in flight at once (and, apart from those, attempts waiting to be recorded).
        public var concurrency = 64
        /// Requests in flight to one endpoint at once.
        public var perEndpointConcurrency = 16
        /// How long a claim lasts; a crashed worker's deliveries are taken over after it.
        public var leaseDuration: TimeInterval = 120
        /// How often to look for due retries when nothing wakes the dispatcher.
        public var pollInterval: Duration = .milliseconds(500)
        /// How long in-flight attempts may take to finish on shutdown.
        public var shutdownGracePeriod: Duration = .seconds(10)

        public init() {}
    }

    let store: any HeraldStore
    let transport: any WebhookTransport
    let processor: DeliveryProcessor
    let configuration: Configuration
    public let wakeup: DeliveryWakeup
    let logger: Logger
    let metrics: DeliveryMetrics
    let now: @Sendable () -> Date
    private let state = NIOLockedValueBox(State())

    struct State {
        /// Requests in flight.
        var sending = 0
        /// Attempts answered and being recorded.
        var recording = 0
        var perEndpoint: [EndpointID: Int] = [:]
        /// Whether the loop runs and takes hand-overs.
        var accepting = false
        /// Claimed deliveries waiting for a slot (the loop's own list, counted here for hand-overs).
        var held = 0
        /// Handed over by the API, not yet picked up by the loop.
        var inbox: [(Delivery, Message)] = []
        /// The API (or an attempt: a 410, a failure streak) changed applications or endpoints since
        /// the loop last loaded endpoints.
        var endpointsChanged = false
    }

    public init(store: any HeraldStore, transport: any WebhookTransport, configuration: Configuration = .init(),
                wakeup: DeliveryWakeup = DeliveryWakeup(), logger: Logger, metrics: DeliveryMetrics = DeliveryMetrics(),
                now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.transport = transport
        self.configuration = configuration
        self.wakeup = wakeup
        self.logger = logger
        self.metrics = metrics
        self.now = now
        var processorConfiguration = configuration.processor
        processorConfiguration.requestTimeout = min(processorConfiguration.requestTimeout, configuration.leaseDuration / 2)
        let state = self.state
        self.processor = DeliveryProcessor(store: store, transport: transport, configuration: processorConfiguration,
                                           now: now, metrics: metrics, logger: logger,
                                           endpointChanged: { state.withLockedValue { $0.endpointsChanged = true } })
    }

    /// Attempts in flight right now: requests not answered yet, and attempts not recorded yet.
    public var inFlight: Int { state.withLockedValue { $0.sending + $0.recording } }

    /// Requests in flight right now.
    var sending: Int { state.withLockedValue { $0.sending } }

    public func run() async throws {
        let stopping = NIOLockedValueBox(false)
        try await withGracefulShutdownHandler {
            try await self.loop(stopping: stopping)
        } onGracefulShutdown: {
            stopping.withLockedValue { $0 = true }
            self.wakeup.signal()
        }
    }

    private func loop(stopping: NIOLockedValueBox<Bool>) async throws {
        logger.info("dispatcher started", metadata: ["herald.dispatcher.concurrency": "\(configuration.concurrency)"])
        state.withLockedValue { $0.accepting = true }
        await withDiscardingTaskGroup { group in
            var held: [Delivery] = []  // claimed, waiting for an endpoint slot
            var targets = DeliveryTargets()  // the endpoints and messages of `held`
            var lastSample = ContinuousClock.now - .seconds(60)
            var lastSweep = ContinuousClock.now
            // A claim is a write transaction: run it only when work may be waiting (a signal of
            // stored work, a full batch last time, released claims) or once per poll interval (retries
            // falling due), not at every wake-up.
            var lastClaim = ContinuousClock.now - .seconds(60)
            var claimAgain = true
            while !stopping.withLockedValue({ $0 }) {
                let current = now()
                if ContinuousClock.now - lastSample >= .seconds(5) {
                    lastSample = ContinuousClock.now
                    if let counts = try? await store.deliveryCounts() { metrics.deliveries(counts) }
                }
                // Once a second (leases last minutes): release held deliveries whose lease would
                // lapse before they could finish, forget the messages nothing held needs, and
                // forget every endpoint, so an endpoint's changes (a rotated secret, a new URL,
                // disabled) apply within a second even to deliveries that keep waiting for it.
                // Between sweeps, new work reuses the endpoints already loaded (a busy dispatcher reads
                // an endpoint about once a second, not once per delivery), unless this node's API
                // changed one: then they are all read again at once (a rotated secret signs the next
                // message). Other nodes' changes apply at the next sweep.
                let swept = ContinuousClock.now - lastSweep >= .seconds(1)
                let changed = state.withLockedValue { state in defer { state.endpointsChanged = false }; return state.endpointsChanged }
                if changed { targets.endpoints = [:] }
                if swept {
                    lastSweep = ContinuousClock.now
                    let deadline = current.addingTimeInterval(processor.configuration.requestTimeout + 1)
                    let lapsing = held.filter { ($0.leaseExpiresAt ?? current) < deadline }
                    if !lapsing.isEmpty {
                        held.removeAll { ($0.leaseExpiresAt ?? current) < deadline }
                        try? await store.releaseClaims(lapsing)
                        claimAgain = true
                    }
                    targets.endpoints = [:]
                }
                if held.isEmpty {
                    targets.messages = [:]
                } else if swept {
                    let heldMessages = Set(held.map(\.messageID))
                    targets.messages = targets.messages.filter { heldMessages.contains($0.key) }
                }
                // New work: deliveries the API published claimed for this dispatcher (with their
                // message), then a claim of due ones.
                var fresh: [Delivery] = []
                for (delivery, message) in state.withLockedValue({ state in defer { state.inbox = [] }; return state.inbox }) {
                    fresh.append(delivery)
                    targets.messages[message.id] = message
                }
                let busy = sending
                let free = configuration.concurrency - busy - held.count - fresh.count
                // Claim in batches: when idle, at once; when busy, once a quarter of the slots are free.
                let mayBeWaiting = claimAgain || wakeup.hasNewWork || ContinuousClock.now - lastClaim >= configuration.pollInterval
                if free > 0 && (busy == 0 || free >= max(1, configuration.concurrency / 4)) && mayBeWaiting {
                    wakeup.claimingNewWork()
                    lastClaim = ContinuousClock.now
                    claimAgain = false
                    do {
                        let claimed = try await store.claimDueDeliveries(now: current, limit: free, leaseUntil: current.addingTimeInterval(configuration.leaseDuration))
                        claimAgain = claimed.count >= free  // a full batch: more may be due
                        fresh += claimed
                    } catch {
                        claimAgain = true
                        logger.warning("could not claim deliveries", metadata: ["herald.error": "\(error)"])
                    }
                }
                // The endpoints and messages not loaded yet (of new work; after a sweep or a change,
                // of held work too), in one read. If that fails, the new work is handed back at once
                // rather than left to its lease, and held work waits for the next sweep.
                let reloadHeld = swept || changed
                let unloaded = (reloadHeld ? held + fresh : fresh).filter {
                    targets.endpoints[$0.endpointID] == nil || targets.messages[$0.messageID] == nil
                }
                if !unloaded.isEmpty {
                    do {
                        let loaded = try await store.deliveryTargets(for: unloaded)
                        targets.endpoints.merge(loaded.endpoints) { _, new in new }
                        targets.messages.merge(loaded.messages) { _, new in new }
                        // What the read did not find was deleted, and its deliveries with it.
                        let gone = { (delivery: Delivery) in targets.endpoints[delivery.endpointID] == nil || targets.messages[delivery.messageID] == nil }
                        fresh.removeAll(where: gone)
                        if reloadHeld { held.removeAll(where: gone) }
                    } catch {
                        logger.warning("could not load deliveries", metadata: ["herald.error": "\(error)"])
                        try? await store.releaseClaims(fresh)
                        fresh = []
                    }
                }
                held += fresh
                var waiting: [Delivery] = []
                for (index, delivery) in held.enumerated() {
                    let endpoint = targets.endpoints[delivery.endpointID]
                    let message = targets.messages[delivery.messageID]
                    // Not loaded (the read failed): loaded again after the next sweep.
                    guard endpoint != nil, message != nil else { waiting.append(delivery); continue }
                    enum Start { case started, endpointBusy, full }
                    let start = state.withLockedValue { state -> Start in
                        guard state.sending < configuration.concurrency, state.recording < configuration.concurrency else { return .full }
                        guard state.perEndpoint[delivery.endpointID, default: 0] < configuration.perEndpointConcurrency else { return .endpointBusy }
                        state.sending += 1
                        state.perEndpoint[delivery.endpointID, default: 0] += 1
                        return .started
                    }
                    if start == .full {  // no slot for any of the rest either
                        waiting += held[index...]
                        break
                    }
                    guard start == .started else { waiting.append(delivery); continue }
                    group.addTask {
                        do {
                            // Once answered, the request's slots are free; the attempt is being recorded.
                            try await self.processor.process(delivery, endpoint: endpoint, message: message) {
                                self.state.withLockedValue { state in
                                    state.sending -= 1
                                    state.recording += 1
                                    state.perEndpoint[delivery.endpointID, default: 1] -= 1
                                    if state.perEndpoint[delivery.endpointID] == 0 { state.perEndpoint[delivery.endpointID] = nil }
                                }
                                self.wakeup.nudge()
                            }
                        } catch {
                            self.logger.warning("attempt could not be recorded", metadata: [
                                "herald.message.id": "\(delivery.messageID)", "herald.endpoint.id": "\(delivery.endpointID)",
                                "herald.error": "\(error)",
                            ])
                        }
                        self.state.withLockedValue { $0.recording -= 1 }
                        self.metrics.inFlight(self.sending)
                        self.wakeup.nudge()
                    }
                }
                metrics.inFlight(sending)
                held = waiting
                state.withLockedValue { $0.held = waiting.count }
                await wakeup.wait(upTo: configuration.pollInterval)
            }
            logger.info("dispatcher stopping", metadata: ["herald.dispatcher.in_flight": "\(inFlight)"])
            // Claimed but not started (hand-overs included): give them back so they need not wait for the lease.
            held += state.withLockedValue { state in
                state.accepting = false
                defer { state.inbox = [] }
                return state.inbox.map(\.0)
            }
            do { try await store.releaseClaims(held) } catch {
                logger.warning("could not release claims", metadata: ["herald.error": "\(error)"])
            }
            // Let in-flight attempts finish for a while, then cancel them.
            let grace = configuration.shutdownGracePeriod
            let finished = await withTaskGroup(of: Bool.self) { race in
                race.addTask { [self] in
                    while self.inFlight > 0 { await self.wakeup.wait(upTo: .milliseconds(50)) }
                    return true
                }
                race.addTask { try? await Task.sleep(for: grace); return false }
                let first = await race.next() ?? false
                race.cancelAll()
                return first
            }
            if !finished { group.cancelAll() }
        }
        await transport.shutdown()
        logger.info("dispatcher stopped")
    }

}

extension Dispatcher: DeliveryHandOver {
    /// A lease while the loop runs and has a free slot for more; nil otherwise. Several publishes
    /// at once may each get one, so the dispatcher may briefly hold more than its concurrency:
    /// the extra deliveries wait for a slot under their lease.
    public func leaseForNewDeliveries() -> Date? {
        let room = state.withLockedValue { state in
            state.accepting && state.sending + state.held + state.inbox.count < configuration.concurrency
        }
        return room ? now().addingTimeInterval(configuration.leaseDuration) : nil
    }

    public func endpointsChanged() {
        state.withLockedValue { $0.endpointsChanged = true }
    }

    public func take(_ deliveries: [Delivery], of message: Message) -> Bool {
        guard !deliveries.isEmpty else { return true }
        let taken = state.withLockedValue { state -> Bool in
            guard state.accepting else { return false }
            state.inbox += deliveries.map { ($0, message) }
            return true
        }
        if taken { wakeup.nudge() }
        return taken
    }
}
