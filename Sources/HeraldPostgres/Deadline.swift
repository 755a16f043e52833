import HeraldCore
import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO

/// Runs `body` and returns its result, or throws an `.unavailable` `StoreError` once `limit` has
/// passed, whichever comes first. Unlike a task group, it does not wait for `body` to notice the
/// cancellation: a call stuck in the driver (seen across a PostgreSQL restart) cannot hold the
/// caller — an API request, a lock — for ever. `body` is cancelled at the deadline.
func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let outcome = DeadlineOutcome<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            outcome.start(continuation)
            let work = Task {
                do { outcome.finish(.success(try await body())) } catch { outcome.finish(.failure(error)) }
            }
            // A timer on an event loop, not a sleeping task: a cancelled NIO timer is freed at once,
            // while a cancelled `Task.sleep` holds its allocation until the original deadline.
            let timer = PostgresClient.defaultEventLoopGroup.any().scheduleTask(in: TimeAmount(limit)) {
                if outcome.finish(.failure(StoreError(.unavailable, "the database did not answer within \(limit)"))) {
                    work.cancel()
                }
            }
            outcome.onFinish { timer.cancel() }
            outcome.onCancel { work.cancel() }
        }
    } onCancel: {
        outcome.cancel()
    }
}

/// The one result a `withDeadline` call resumes with. `@unchecked Sendable`: every field is
/// behind the lock.
private final class DeadlineOutcome<T: Sendable>: @unchecked Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var finished = false
        var cancelled = false
        var onFinish: (@Sendable () -> Void)?
        var onCancel: (@Sendable () -> Void)?
    }
    private let state = NIOLockedValueBox(State())

    func start(_ continuation: CheckedContinuation<T, any Error>) {
        state.withLockedValue { $0.continuation = continuation }
    }

    /// Resumes the caller with `result` unless it was resumed already; returns whether it did.
    @discardableResult
    func finish(_ result: Result<T, any Error>) -> Bool {
        let (continuation, action) = state.withLockedValue { state -> (CheckedContinuation<T, any Error>?, (@Sendable () -> Void)?) in
            guard !state.finished else { return (nil, nil) }
            state.finished = true
            // Drop every reference to the tasks, so that nothing keeps a finished call's result alive.
            defer { state.continuation = nil; state.onFinish = nil; state.onCancel = nil }
            return (state.continuation, state.onFinish)
        }
        guard let continuation else { return false }
        continuation.resume(with: result)
        action?()
        return true
    }

    func onFinish(_ action: @escaping @Sendable () -> Void) {
        let runNow = state.withLockedValue { state -> Bool in
            if state.finished { return true }
            state.onFinish = action
            return false
        }
        if runNow { action() }
    }

    func onCancel(_ action: @escaping @Sendable () -> Void) {
        let runNow = state.withLockedValue { state -> Bool in
            guard !state.finished else { return false }
            state.onCancel = action
            return state.cancelled
        }
        if runNow { action() }
    }

    func cancel() {
        let action = state.withLockedValue { state -> (@Sendable () -> Void)? in
            state.cancelled = true
            return state.onCancel
        }
        action?()
    }
}
