import NIOConcurrencyHelpers

/// Counts the deliveries of one group of messages (by payload index): every arrival, the distinct
/// indices (at-least-once delivery may repeat one), the publish→arrival latency of indices whose
/// send time was recorded, and optionally every arrival's time (for steady rates).
final class ArrivalCounter: Sendable {
    private struct State {
        var sent: [Int: ContinuousClock.Instant] = [:]
        var seen = Set<Int>()
        var total = 0
        var latencies: [Double] = []
        var latencyOf: [Int: Double] = [:]
        var times: [ContinuousClock.Instant] = []
        var first: ContinuousClock.Instant?
        var last: ContinuousClock.Instant?
    }

    private let state = NIOLockedValueBox(State())
    private let keepTimes: Bool

    init(keepTimes: Bool = false) {
        self.keepTimes = keepTimes
    }

    /// Records when message `index` was published (what its latency counts from).
    func sent(_ index: Int, at instant: ContinuousClock.Instant) {
        state.withLockedValue { $0.sent[index] = instant }
    }

    func arrived(_ index: Int?, at instant: ContinuousClock.Instant) {
        state.withLockedValue { state in
            state.total += 1
            if state.first == nil { state.first = instant }
            state.last = instant
            if keepTimes { state.times.append(instant) }
            guard let index, state.seen.insert(index).inserted else { return }
            if let sent = state.sent[index] {
                let latency = seconds(instant - sent)
                state.latencies.append(latency)
                state.latencyOf[index] = latency
            }
        }
    }

    /// Distinct indices that arrived.
    var unique: Int { state.withLockedValue { $0.seen.count } }
    /// Every arrival, repeats included.
    var total: Int { state.withLockedValue { $0.total } }
    var lastArrival: ContinuousClock.Instant? { state.withLockedValue { $0.last } }
    func latencies() -> [Double] { state.withLockedValue { $0.latencies } }
    func times() -> [ContinuousClock.Instant] { state.withLockedValue { $0.times } }
    /// The publish→arrival latency of message `index`, once it arrived (and its send time was recorded).
    func latency(of index: Int) -> Double? { state.withLockedValue { $0.latencyOf[index] } }

    /// Waits until message `index` arrived, or `deadline`; returns its latency, nil when it did not arrive.
    func wait(for index: Int, until deadline: ContinuousClock.Instant) async -> Double? {
        while true {
            if let latency = latency(of: index) { return latency }
            if ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Waits until at least `count` distinct indices arrived, or `deadline`; returns whether they did.
    func wait(forUnique count: Int, until deadline: ContinuousClock.Instant) async -> Bool {
        while true {
            if unique >= count { return true }
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// A duration in seconds.
func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

/// Nearest-rank percentile of sorted values; nan when there are none.
func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let rank = Int((p * Double(sorted.count)).rounded(.up))
    return sorted[min(max(rank, 1), sorted.count) - 1]
}
