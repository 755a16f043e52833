import NIOConcurrencyHelpers

/// A bounded cache and single-flight in front of another resolver.
///
/// - Answers are kept for `positiveTTL` (addresses) or `negativeTTL` (no such host, lookup
///   failed), in at most `maxEntries` entries; past that the oldest entry goes. getaddrinfo gives
///   no record TTL, so the cache's TTL is the only one.
/// - One lookup per host at a time: callers that ask for a host while its lookup runs wait for
///   that lookup instead of starting another.
/// - A caller that is cancelled (the delivery transport cancels at the attempt's deadline) stops
///   waiting at once, with `CancellationError`; the lookup itself runs on, in a task of its own,
///   and its answer fills the cache for the next caller. So a hung nameserver costs each attempt
///   at most its own deadline, and never holds up lookups of other hosts here (the base
///   resolver's thread pool is the only thing they share).
///
/// ```swift
/// let resolver = CachingHostResolver(base: SystemHostResolver(threads: 16))
/// let addresses = try await resolver.resolve("hooks.example.com")   // cached for 60 s
/// ```
public final class CachingHostResolver: HostResolver {
    /// How long and how many answers are kept.
    public struct Configuration: Sendable, Hashable {
        /// How long addresses are kept (at most a year; zero or less keeps none).
        public var positiveTTL: Duration
        /// How long a failed lookup is remembered (at most a year; zero or less keeps none).
        public var negativeTTL: Duration
        /// The most hosts kept; 0 keeps none (lookups are still shared while they run).
        public var maxEntries: Int

        public init(positiveTTL: Duration = .seconds(60), negativeTTL: Duration = .seconds(5), maxEntries: Int = 10_000) {
            self.positiveTTL = positiveTTL
            self.negativeTTL = negativeTTL
            self.maxEntries = maxEntries
        }
    }

    private struct Entry {
        var result: Result<[IPAddress], DeliveryRefusal>
        var expires: ContinuousClock.Instant
        var sequence: UInt64
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// Insertion order for eviction; items whose sequence no longer matches their entry are stale.
        var order: [(key: String, sequence: UInt64)] = []
        var orderHead = 0
        /// Hosts being looked up → the callers waiting for them, by caller id.
        var lookups: [String: [UInt64: CheckedContinuation<[IPAddress], any Error>]] = [:]
        var nextID: UInt64 = 0
    }

    private let base: any HostResolver
    public let configuration: Configuration
    private let now: @Sendable () -> ContinuousClock.Instant
    private let state = NIOLockedValueBox(State())

    /// A cache in front of `base`.
    public convenience init(base: any HostResolver, configuration: Configuration = .init()) {
        self.init(base: base, configuration: configuration, now: { ContinuousClock.now })
    }

    /// A cache with an injected clock, for tests of expiry.
    init(base: any HostResolver, configuration: Configuration, now: @escaping @Sendable () -> ContinuousClock.Instant) {
        self.base = base
        var configuration = configuration
        // Clamped so that `now + ttl` cannot overflow the instant's arithmetic.
        let year = Duration.seconds(366 * 86_400)
        configuration.positiveTTL = min(configuration.positiveTTL, year)
        configuration.negativeTTL = min(configuration.negativeTTL, year)
        self.configuration = configuration
        self.now = now
    }

    /// How many hosts the cache holds now (expired ones included until they are replaced or evicted).
    var entryCount: Int { state.withLockedValue { $0.entries.count } }
    /// How many lookups are running now.
    var lookupsInFlight: Int { state.withLockedValue { $0.lookups.count } }
    /// How many callers are waiting for a lookup now.
    var waitingCallers: Int { state.withLockedValue { $0.lookups.values.reduce(0) { $0 + $1.count } } }

    public func resolve(_ host: String) async throws -> [IPAddress] {
        let key = host.lowercased()
        let (cached, id) = state.withLockedValue { state -> (Result<[IPAddress], DeliveryRefusal>?, UInt64) in
            state.nextID += 1
            if let entry = state.entries[key], entry.expires > now() { return (entry.result, state.nextID) }
            return (nil, state.nextID)
        }
        if let cached { return try cached.get() }

        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[IPAddress], any Error>) in
                enum Action { case answer(Result<[IPAddress], DeliveryRefusal>), cancelled, wait, start }
                let action = state.withLockedValue { state -> Action in
                    if let entry = state.entries[key], entry.expires > now() { return .answer(entry.result) }
                    // Checked under the lock that `onCancel` takes, so a cancellation is seen either here or there.
                    if Task.isCancelled { return .cancelled }
                    if state.lookups[key] != nil {
                        state.lookups[key]![id] = continuation
                        return .wait
                    }
                    state.lookups[key] = [id: continuation]
                    return .start
                }
                switch action {
                case .answer(let result): continuation.resume(with: result.mapError { $0 as any Error })
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .wait: break
                case .start:
                    // Not a child of the caller: the lookup outlives a caller that stops waiting.
                    Task { await self.lookUp(host, key: key) }
                }
            }
        } onCancel: {
            let waiter = state.withLockedValue { $0.lookups[key]?.removeValue(forKey: id) }
            waiter?.resume(throwing: CancellationError())
        }
    }

    private func lookUp(_ host: String, key: String) async {
        let result: Result<[IPAddress], DeliveryRefusal>
        do {
            let addresses = try await base.resolve(host)
            result = addresses.isEmpty ? .failure(DeliveryRefusal("could not resolve host \(host)")) : .success(addresses)
        } catch let refusal as DeliveryRefusal {
            result = .failure(refusal)
        } catch {
            result = .failure(DeliveryRefusal("could not resolve host \(host): \(String(describing: error).prefix(200))"))
        }
        let waiters = state.withLockedValue { state in
            let waiters = state.lookups.removeValue(forKey: key) ?? [:]
            store(result, for: key, in: &state)
            return waiters
        }
        for waiter in waiters.values { waiter.resume(with: result.mapError { $0 as any Error }) }
    }

    private func store(_ result: Result<[IPAddress], DeliveryRefusal>, for key: String, in state: inout State) {
        let ttl: Duration
        switch result {
        case .success: ttl = configuration.positiveTTL
        case .failure: ttl = configuration.negativeTTL
        }
        guard configuration.maxEntries > 0, ttl > .zero else { return }
        state.nextID += 1
        state.entries[key] = Entry(result: result, expires: now() + ttl, sequence: state.nextID)
        state.order.append((key, state.nextID))
        while state.entries.count > configuration.maxEntries, state.orderHead < state.order.count {
            let oldest = state.order[state.orderHead]
            state.orderHead += 1
            if state.entries[oldest.key]?.sequence == oldest.sequence { state.entries.removeValue(forKey: oldest.key) }
        }
        // Refreshed hosts leave stale items behind: compact once they outnumber the live ones.
        if state.order.count - state.orderHead > 2 * max(state.entries.count, 16) || state.orderHead > 4096 {
            let entries = state.entries
            state.order = state.order[state.orderHead...].filter { entries[$0.key]?.sequence == $0.sequence }
            state.orderHead = 0
        }
    }
}
