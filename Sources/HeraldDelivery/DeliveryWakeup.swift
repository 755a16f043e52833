import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Wakes the dispatcher as soon as there may be work: a message was published, a resend or
/// recover was queued, or an attempt finished and freed a slot. Signals coalesce; one waiter.
/// `signal()` also says that work may have been stored for a claim (`hasNewWork`); the dispatcher's
/// own wake-ups (a slot freed, a hand-over) use `nudge()`, which does not, so that they do not each
/// cost a claim query.
///
/// ```swift
/// let wakeup = DeliveryWakeup()
/// wakeup.signal()                              // from the API after a publish commits
/// await wakeup.wait(upTo: .seconds(1))         // in the dispatcher loop
/// ```
public final class DeliveryWakeup: Sendable {
    private struct State {
        var pending = false
        /// Work may have been stored since the dispatcher's last claim.
        var newWork = false
        var waiter: CheckedContinuation<Void, Never>?
        /// Which `wait` is current, so that a late timer of an earlier wait wakes nothing.
        var generation: UInt64 = 0
        var timedOut: UInt64 = 0
    }
    private let state = NIOLockedValueBox(State())

    public init() {}

    /// Wakes the dispatcher: work may have been stored (a publish, a resend, a recover, a release).
    public func signal() { wake(newWork: true) }

    /// Wakes the dispatcher for something it knows of already (a freed slot, a hand-over in memory).
    func nudge() { wake(newWork: false) }

    /// Whether `signal()` was called since the last `claimingNewWork()`.
    var hasNewWork: Bool { state.withLockedValue { $0.newWork } }

    /// Clears `hasNewWork`; call it just before a claim, so a signal during the claim is kept.
    func claimingNewWork() { state.withLockedValue { $0.newWork = false } }

    private func wake(newWork: Bool) {
        let waiter = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            if newWork { state.newWork = true }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.pending = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns at the next signal (or at once if one came since the last wait), or after `timeout`.
    /// The timeout is an event-loop timer, freed as soon as it is cancelled (the dispatcher waits
    /// once per completed attempt; a cancelled `Task.sleep` would keep its allocation for the
    /// whole timeout).
    public func wait(upTo timeout: Duration) async {
        let generation = state.withLockedValue { state -> UInt64 in
            state.generation &+= 1
            return state.generation
        }
        let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: TimeAmount(timeout)) { [self] in
            self.expire(generation)
        }
        await waitForSignal(generation)
        timer.cancel()
    }

    private func expire(_ generation: UInt64) {
        let waiter = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            guard state.generation == generation else { return nil }
            state.timedOut = generation
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    private func waitForSignal(_ generation: UInt64) async {
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLockedValue { state -> Bool in
                if state.pending {
                    state.pending = false
                    return true
                }
                if state.timedOut == generation { return true }
                state.waiter = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }
}
