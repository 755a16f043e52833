import Foundation
import HeraldCore
import Logging
import ServiceLifecycle

/// Every `interval`, deletes expired `Idempotency-Key` records, drops message payloads whose
/// `payloadRetentionPeriod` has ended, and deletes whole messages (with their deliveries and
/// attempts) older than `messageRetention`, so the database does not grow without bound.
///
/// Messages go in batches of `batchSize`, each a short transaction of its own; after each batch
/// the service pauses as long as the batch took, so the purge holds the database's one writer
/// (SQLite) at most half of the time and publishes never wait for more than one batch.
struct RetentionService: Service {
    let store: any HeraldStore
    let interval: Duration
    /// Seconds a message is kept after it was created.
    let messageRetention: Double
    var batchSize = 256
    let logger: Logger

    init(store: any HeraldStore, interval: Duration, messageRetention: Double = 90 * 86400, logger: Logger) {
        self.store = store
        self.interval = interval
        self.messageRetention = messageRetention
        self.logger = logger
    }

    func run() async throws {
        while !Task.isShuttingDownGracefully {
            do {
                let result = try await purgeOnce(now: Date())
                if result != PurgeResult() {
                    logger.info("purged expired data", metadata: [
                        "herald.purge.idempotency_records": "\(result.idempotencyRecords)",
                        "herald.purge.payloads": "\(result.payloads)",
                        "herald.purge.messages": "\(result.messages)",
                        "herald.purge.deliveries": "\(result.deliveries)",
                        "herald.purge.attempts": "\(result.attempts)",
                    ])
                }
            } catch {
                logger.warning("purge failed", metadata: ["herald.error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }

    /// One round: everything expired at `now`, messages batch by batch until none is left (or
    /// shutdown begins).
    func purgeOnce(now: Date) async throws -> PurgeResult {
        var result = try await store.purgeExpired(now: now)
        let cutoff = now.addingTimeInterval(-messageRetention)
        let clock = ContinuousClock()
        while !Task.isShuttingDownGracefully {
            let started = clock.now
            let batch = try await store.purgeMessages(createdBefore: cutoff, now: now, limit: batchSize)
            result = result + batch
            if batch.messages < batchSize { break }
            let elapsed = clock.now - started
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: elapsed) }
        }
        return result
    }
}
