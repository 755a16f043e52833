import Foundation
import HeraldCore
import Logging
import ServiceLifecycle

/// Every `interval`, deletes expired `Idempotency-Key` records and drops message payloads whose
/// `payloadRetentionPeriod` has ended, so the database does not grow without bound.
struct RetentionService: Service {
    let store: any HeraldStore
    let interval: Duration
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully {
            do {
                let result = try await store.purgeExpired(now: Date())
                if result.idempotencyRecords > 0 || result.payloads > 0 {
                    logger.info("purged expired data", metadata: [
                        "herald.purge.idempotency_records": "\(result.idempotencyRecords)",
                        "herald.purge.payloads": "\(result.payloads)",
                    ])
                }
            } catch {
                logger.warning("purge failed", metadata: ["herald.error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}
