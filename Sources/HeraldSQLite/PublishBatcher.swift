import HeraldCore

/// Group commit for `publish`: concurrent requests that arrive while a transaction is being
/// committed wait here, and the next transaction commits them all with one fsync.
///
/// The first request to find the batcher idle starts a drain task. The task takes every waiting
/// request (up to `maxBatch`), runs `execute` on them (one write transaction with a savepoint per
/// request, so one request's conflict rolls back only that request), resumes each caller with its
/// own result, and loops while requests keep arriving. Requests that arrive during a commit form the
/// next batch, so under load the batch grows with the commit latency and a lone request pays no wait.
actor WriteBatcher<Request: Sendable, Output: Sendable> {
    /// Runs a batch in one transaction: one result per request, in order. Throws when the
    /// transaction as a whole failed (then nothing was written and every request gets the error).
    typealias Executor = @Sendable ([Request]) async throws -> [Result<Output, StoreError>]

    private struct Waiter {
        let request: Request
        let continuation: CheckedContinuation<Output, any Error>
    }

    private let maxBatch: Int
    private let execute: Executor
    private var waiting: [Waiter] = []
    private var draining = false

    /// How many requests wait for the next batch (for tests).
    var waitingCount: Int { waiting.count }

    init(maxBatch: Int, execute: @escaping Executor) {
        self.maxBatch = max(1, maxBatch)
        self.execute = execute
    }

    /// Runs `request` in the next batch; returns once that batch has committed.
    func submit(_ request: Request) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            waiting.append(Waiter(request: request, continuation: continuation))
            if !draining {
                draining = true
                Task { await self.drain() }
            }
        }
    }

    private func drain() async {
        while !waiting.isEmpty {
            let batch = Array(waiting.prefix(maxBatch))
            waiting.removeFirst(batch.count)
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
                let failure = SQLiteErrorMapping.storeError(error)
                for waiter in batch { waiter.continuation.resume(throwing: failure) }
            }
        }
        draining = false
    }
}

/// Group commit for `publish`.
typealias PublishBatcher = WriteBatcher<PublishRequest, PublishResult>

extension WriteBatcher where Request == PublishRequest, Output == PublishResult {
    /// Publishes `request` in the next batch; returns once that batch has committed.
    func publish(_ request: PublishRequest) async throws -> PublishResult { try await submit(request) }
}

/// An attempt and the delivery state it leads to, recorded together.
struct AttemptRecord: Sendable {
    let attempt: Attempt
    let delivery: Delivery
}
