import NIOConcurrencyHelpers

/// Wakes the dispatcher as soon as there may be work: a message was published, a resend or
/// recover was queued, or an attempt finished and freed a slot. Signals coalesce; one waiter.
///
/// ```swift
/// let wakeup = DeliveryWakeup()
/// wakeup.signal()                              // from the API after a publish commits
/// await wakeup.wait(upTo: .seconds(1))         // in the dispatcher loop
/// ```
public final class DeliveryWakeup: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = NIOLockedValueBox(State())

    public init() {}

    public func signal() {
        let waiter = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
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
    public func wait(upTo timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitForSignal() }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
            self.signalIfWaiting()  // release the signal waiter if the timeout won
            await group.waitForAll()
        }
    }

    private func signalIfWaiting() {
        let waiter = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    private func waitForSignal() async {
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLockedValue { state -> Bool in
                if state.pending {
                    state.pending = false
                    return true
                }
                state.waiter = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }
}
