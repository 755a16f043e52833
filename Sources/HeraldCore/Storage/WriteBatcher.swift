import Synchronization

/// Group commit for `publish`: concurrent requests that arrive while a transaction is being
/// committed wait here, and the next transaction commits them all with one fsync.
///
/// The first request to find the batcher idle starts a drain task. The task takes every waiting
/// request (up to `maxBatch`), runs `execute` on them (one write transaction with a savepoint per
/// request, so one request's conflict rolls back only that request), resumes each caller with its
/// own result, and loops while requests keep arriving. Requests that arrive during a commit form the
/// next batch, so under load the batch grows with the commit latency and a lone request pays no wait.
///
/// A lock guards the queue rather than an actor: every publish and every attempt record passes
/// through here, and an actor would cost each of them a hop onto its executor.
public final class WriteBatcher<Request: Sendable, Output: Sendable>: Sendable {
    /// Runs a batch in one transaction: one result per request, in order. Throws when the
    /// transaction as a whole failed (then nothing was written and every request gets the error).
    public typealias Executor = @Sendable ([Request]) async throws -> [Result<Output, StoreError>]

    private struct Waiter {
        let request: Request
        let continuation: CheckedContinuation<Output, any Error>
    }

    private struct Queue {
        var waiting: [Waiter] = []
        var draining = false
    }

    private let maxBatch: Int
    private let execute: Executor
    private let mapError: @Sendable (any Error) -> StoreError
    private let queue = Mutex(Queue())

    /// How many requests wait for the next batch (for tests).
    public var waitingCount: Int { queue.withLock { $0.waiting.count } }

    /// `mapError` translates a failed batch's error for its callers (the backend's error mapping).
    public init(maxBatch: Int, mapError: @escaping @Sendable (any Error) -> StoreError, execute: @escaping Executor) {
        self.maxBatch = max(1, maxBatch)
        self.mapError = mapError
        self.execute = execute
    }

    /// Runs `request` in the next batch; returns once that batch has committed.
    public func submit(_ request: Request) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            let startDrain = queue.withLock { queue -> Bool in
                queue.waiting.append(Waiter(request: request, continuation: continuation))
                guard !queue.draining else { return false }
                queue.draining = true
                return true
            }
            if startDrain { Task { await self.drain() } }
        }
    }

    /// Takes up to `maxBatch` waiting requests, or ends the drain (under the same lock, so a request
    /// that arrives just after finds `draining` false and starts the next one).
    private func nextBatch() -> [Waiter]? {
        queue.withLock { queue in
            guard !queue.waiting.isEmpty else {
                queue.draining = false
                return nil
            }
            let batch = Array(queue.waiting.prefix(maxBatch))
            queue.waiting.removeFirst(batch.count)
            return batch
        }
    }

    private func drain() async {
        while let batch = nextBatch() {
            do {
                let results = try await execute(batch.map(\.request))
                for (waiter, result) in zip(batch, results) {
                    waiter.continuation.resume(with: result.mapError { $0 as any Error })
                }
                // An executor must answer every request; never leave a caller hanging.
                for waiter in batch.dropFirst(results.count) {
                    waiter.continuation.resume(throwing: StoreError(.unavailable, "the write batch failed"))
                }
            } catch {
                let failure = mapError(error)
                for waiter in batch { waiter.continuation.resume(throwing: failure) }
            }
        }
    }
}


/// An attempt and the delivery state it leads to, recorded together.
public struct AttemptRecord: Sendable {
    public let attempt: Attempt
    public let delivery: Delivery

    public init(attempt: Attempt, delivery: Delivery) {
        self.attempt = attempt
        self.delivery = delivery
    }
}
