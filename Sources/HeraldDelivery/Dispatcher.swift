import Foundation
import HeraldCore
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// The delivery engine, a `Service`, in three parts:
/// - a **feed** (`DeliveryFeed`) that claims due deliveries under a lease and keeps the
///   endpoints and messages they need;
/// - an **admission policy** (`AdmissionPolicy`, a pure value) that decides how many deliveries of
///   each endpoint a claim takes and which claimed ones may start: the global budget, the
///   per-endpoint cap, turns between endpoints and between applications, poison deliveries;
/// - a **runner** (`DeliveryRunner`) that executes attempts in a task group.
///
/// Work waiting on a busy endpoint is never claimed, so it never takes budget another endpoint
/// could use. The dispatcher wakes as soon as a message is published. On graceful shutdown it stops
/// claiming, lets attempts in flight finish for up to `shutdownGracePeriod`, then cancels the rest
/// (their leases lapse and they are retried).
///
/// ```swift
/// let dispatcher = Dispatcher(queue: store, transport: HTTPClientTransport(policy: policy), logger: logger)
/// let group = ServiceGroup(services: [dispatcher, api], logger: logger)
/// try await group.run()
/// ```
public final class Dispatcher: Service, Sendable {
    public struct Configuration: Sendable {
        public var processor = DeliveryProcessor.Configuration()
        /// Requests in flight at once (and, apart from those, attempts waiting to be recorded).
        /// Sized for the network, not for the CPU: receivers that take 100–300 ms need hundreds of
        /// requests in flight to reach thousands of deliveries a second.
        public var concurrency = 1000
        /// Requests in flight to one endpoint at once, over every node sharing the database.
        public var perEndpointConcurrency = 16
        /// Payload bytes in flight at once (one larger delivery still goes alone).
        public var maxInFlightBytes = 256 << 20
        /// How long a claim lasts; a crashed worker's deliveries are taken over after it.
        public var leaseDuration: TimeInterval = 120
        /// How often to look for due retries when nothing wakes the dispatcher.
        public var pollInterval: Duration = .milliseconds(500)
        /// How long in-flight attempts may take to finish on shutdown.
        public var shutdownGracePeriod: Duration = .seconds(10)

        public init() {}

        var admission: AdmissionPolicy.Configuration {
            AdmissionPolicy.Configuration(concurrency: concurrency, perEndpointConcurrency: perEndpointConcurrency,
                                          maxInFlightBytes: maxInFlightBytes)
        }
    }

    let queue: any DeliveryQueue
    let transport: any WebhookTransport
    let processor: DeliveryProcessor
    let runner: DeliveryRunner
    let configuration: Configuration
    public let wakeup: DeliveryWakeup
    let logger: Logger
    let metrics: DeliveryMetrics
    let now: @Sendable () -> Date
    private let state = NIOLockedValueBox(State())

    /// What the API's hand-over and the loop share.
    struct State {
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

    public init(queue: any DeliveryQueue, transport: any WebhookTransport, configuration: Configuration = .init(),
                wakeup: DeliveryWakeup = DeliveryWakeup(), logger: Logger, metrics: DeliveryMetrics = DeliveryMetrics(),
                now: @escaping @Sendable () -> Date = { Date() }) {
        self.queue = queue
        self.transport = transport
        self.configuration = configuration
        self.wakeup = wakeup
        self.logger = logger
        self.metrics = metrics
        self.now = now
        var processorConfiguration = configuration.processor
        processorConfiguration.requestTimeout = min(processorConfiguration.requestTimeout, configuration.leaseDuration / 2)
        let state = self.state
        self.processor = DeliveryProcessor(queue: queue, transport: transport, configuration: processorConfiguration,
                                           now: now, metrics: metrics, logger: logger,
                                           endpointChanged: { state.withLockedValue { $0.endpointsChanged = true } })
        self.runner = DeliveryRunner(processor: processor, wakeup: wakeup, metrics: metrics, logger: logger,
                                     recordingLimit: configuration.concurrency, endpointCap: configuration.perEndpointConcurrency)
    }

    /// Attempts in flight right now: requests not answered yet, and attempts not recorded yet.
    public var inFlight: Int { runner.inFlight }

    /// Requests in flight right now.
    var sending: Int { runner.sending }

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
        logger.info("dispatcher started", metadata: [
            "herald.dispatcher.concurrency": "\(configuration.concurrency)",
            "herald.dispatcher.endpoint_concurrency": "\(configuration.perEndpointConcurrency)",
        ])
        state.withLockedValue { $0.accepting = true }
        var feed = DeliveryFeed(queue: queue, configuration: .init(leaseDuration: configuration.leaseDuration,
                                                                   pollInterval: configuration.pollInterval), logger: logger)
        var policy = AdmissionPolicy(configuration: configuration.admission)
        await withDiscardingTaskGroup { group in
            var lastSample = ContinuousClock.now - .seconds(60)
            var lastSweep = ContinuousClock.now
            while !stopping.withLockedValue({ $0 }) {
                let current = now()
                if ContinuousClock.now - lastSample >= .seconds(5) {
                    lastSample = ContinuousClock.now
                    if let counts = try? await queue.deliveryCounts() { metrics.deliveries(counts) }
                }
                // Between sweeps, new work reuses the endpoints already loaded (a busy dispatcher
                // reads an endpoint about once a second, not once per delivery), unless this node's
                // API changed one: then they are all read again at once (a rotated secret signs the
                // next message). Other nodes' changes apply at the next sweep.
                let swept = ContinuousClock.now - lastSweep >= .seconds(1)
                let changed = state.withLockedValue { state in defer { state.endpointsChanged = false }; return state.endpointsChanged }
                if changed { feed.targets.endpoints = [:] }
                if swept {
                    lastSweep = ContinuousClock.now
                    await feed.sweep(now: current, requestTimeout: processor.configuration.requestTimeout)
                }
                // New work: deliveries the API published claimed for this dispatcher (with their
                // message), then a claim in the amounts the policy deals out.
                var fresh: [Delivery] = []
                for (delivery, message) in state.withLockedValue({ state in defer { state.inbox = [] }; return state.inbox }) {
                    fresh.append(delivery)
                    feed.targets.messages[message.id] = message
                }
                let busy = runner.sending
                let budget = configuration.concurrency - busy - feed.held.count - fresh.count
                // Claim in batches: when idle, at once; when busy, once a quarter of the slots are free.
                if budget > 0 && (busy == 0 || budget >= max(1, configuration.concurrency / 4))
                    && feed.shouldClaim(signalled: wakeup.hasNewWork) {
                    wakeup.claimingNewWork()
                    var load = runner.load
                    for delivery in feed.held + fresh {
                        load.perEndpoint[delivery.endpointID, default: 0] += 1
                        load.perApplication[delivery.appID, default: 0] += 1
                    }
                    fresh += await feed.claim(budget: budget, now: current, policy: &policy, load: load)
                }
                fresh = await feed.load(fresh, reload: swept || changed)
                feed.held += fresh
                await admit(&feed, policy: policy, group: &group)
                state.withLockedValue { $0.held = feed.held.count }
                await wakeup.wait(upTo: configuration.pollInterval)
            }
            logger.info("dispatcher stopping", metadata: ["herald.dispatcher.in_flight": "\(inFlight)"])
            // Claimed but not started (hand-overs included): give them back so they need not wait for the lease.
            feed.held += state.withLockedValue { state in
                state.accepting = false
                defer { state.inbox = [] }
                return state.inbox.map(\.0)
            }
            do { try await queue.releaseClaims(feed.held) } catch {
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

    /// Starts what the policy admits of the held work, in order; hands back to the queue what waits
    /// on a busy endpoint (it is claimed again when the endpoint has room and its turn comes), and
    /// keeps what waits for a global slot.
    private func admit(_ feed: inout DeliveryFeed, policy: AdmissionPolicy, group: inout DiscardingTaskGroup) async {
        var waiting: [Delivery] = []
        var handBack: [Delivery] = []
        var full = false
        // Read once, then as each start returns it (answers meanwhile only free more room).
        var load = runner.load
        for delivery in feed.held {
            guard !full, runner.mayStart else { waiting.append(delivery); full = true; continue }
            // Not loaded (the read failed): loaded again after the next sweep.
            guard let endpoint = feed.targets.endpoints[delivery.endpointID], let message = feed.targets.messages[delivery.messageID] else {
                waiting.append(delivery)
                continue
            }
            switch policy.admit(delivery, payloadBytes: message.payload?.count ?? 0, load: load) {
            case .start:
                load = runner.start(delivery, endpoint: endpoint, message: message, in: &group)
            case .fail(let reason):
                logger.warning("delivery failed without an attempt", metadata: [
                    "herald.message.id": "\(delivery.messageID)", "herald.endpoint.id": "\(delivery.endpointID)",
                    "herald.delivery.interrupted": "\(delivery.interruptedCount)"])
                load = runner.start(delivery, endpoint: endpoint, message: message, failure: reason, in: &group)
            case .waitForEndpoint:
                handBack.append(delivery)
            case .waitForBudget:
                waiting.append(delivery)
                if load.inFlight >= configuration.concurrency { full = true }
            }
        }
        metrics.inFlight(runner.sending)
        feed.held = waiting
        // Messages are kept only while held work needs them (payloads can be large).
        let needed = Set(waiting.map(\.messageID))
        if feed.targets.messages.count > needed.count {
            feed.targets.messages = feed.targets.messages.filter { needed.contains($0.key) }
        }
        await feed.release(handBack)
    }
}

extension Dispatcher: DeliveryHandOver {
    /// A lease while the loop runs and has a free slot for more; nil otherwise. Several publishes
    /// at once may each get one, so the dispatcher may briefly hold more than its concurrency:
    /// the extra deliveries wait for a slot under their lease.
    public func leaseForNewDeliveries() -> Date? {
        let sending = runner.sending
        let room = state.withLockedValue { state in
            state.accepting && sending + state.held + state.inbox.count < configuration.concurrency
        }
        return room ? now().addingTimeInterval(configuration.leaseDuration) : nil
    }

    public func busyEndpoints() -> Set<EndpointID> {
        runner.busyEndpoints
    }

    public func endpointsChanged() {
        state.withLockedValue { $0.endpointsChanged = true }
    }

    public func take(_ deliveries: [Delivery], of message: Message) -> Bool {
        let claimed = deliveries.filter { $0.status == .sending }
        guard !claimed.isEmpty else { return true }
        let taken = state.withLockedValue { state -> Bool in
            guard state.accepting else { return false }
            state.inbox += claimed.map { ($0, message) }
            return true
        }
        if taken { wakeup.nudge() }
        return taken
    }
}
