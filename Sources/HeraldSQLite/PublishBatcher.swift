import HeraldCore
import Synchronization

/// Group commit for `publish`.
typealias PublishBatcher = WriteBatcher<PublishRequest, PublishResult>

extension WriteBatcher where Request == PublishRequest, Output == PublishResult {
    /// Publishes `request` in the next batch; returns once that batch has committed.
    func publish(_ request: PublishRequest) async throws -> PublishResult { try await submit(request) }
}


