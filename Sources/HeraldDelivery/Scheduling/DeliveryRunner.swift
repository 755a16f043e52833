import Foundation
import HeraldCore
import Logging
import NIOConcurrencyHelpers

/// Runs attempts in the dispatcher's task group and keeps the counts the admission policy reads:
/// requests in flight (in all and per endpoint), their payload bytes, and attempts answered but not
/// recorded yet. A request's slots are free as soon as it is answered; at most `concurrency`
/// attempts wait to be recorded before new requests wait too.
final class DeliveryRunner: Sendable {
    struct Counts {
        var load = AdmissionPolicy.Load()
        /// Answered, being recorded.
        var recording = 0
        /// Endpoints with `endpointCap` or more requests in flight (kept as they change: every
        /// publish asks).
        var busy: Set<EndpointID> = []
    }

    let processor: DeliveryProcessor
    let wakeup: DeliveryWakeup
    let metrics: DeliveryMetrics
    let logger: Logger
    let recordingLimit: Int
    let endpointCap: Int
    private let counts = NIOLockedValueBox(Counts())

    init(processor: DeliveryProcessor, wakeup: DeliveryWakeup, metrics: DeliveryMetrics, logger: Logger, recordingLimit: Int,
         endpointCap: Int) {
        self.endpointCap = endpointCap
        self.processor = processor
        self.wakeup = wakeup
        self.metrics = metrics
        self.logger = logger
        self.recordingLimit = recordingLimit
    }

    /// The load right now, for the admission policy.
    var load: AdmissionPolicy.Load { counts.withLockedValue { $0.load } }
    /// Requests in flight.
    var sending: Int { counts.withLockedValue { $0.load.inFlight } }
    /// Requests in flight and attempts not recorded yet.
    var inFlight: Int { counts.withLockedValue { $0.load.inFlight + $0.recording } }
    /// Whether attempts waiting to be recorded leave room for more requests.
    var mayStart: Bool { counts.withLockedValue { $0.recording < recordingLimit } }
    /// Endpoints at their cap (`endpointCap` requests in flight).
    var busyEndpoints: Set<EndpointID> { counts.withLockedValue { $0.busy } }

    /// Starts one attempt of `delivery` in `group`. `failure` records a failed attempt with that
    /// reason instead of sending anything. Returns the load with it counted (read under the same
    /// lock, so admitting a batch takes the lock once per delivery).
    @discardableResult
    func start(_ delivery: Delivery, endpoint: Endpoint, message: Message, failure: String? = nil,
               in group: inout DiscardingTaskGroup) -> AdmissionPolicy.Load {
        let bytes = message.payload?.count ?? 0
        let suspect = AdmissionPolicy.isSuspect(delivery)
        let load = counts.withLockedValue { counts -> AdmissionPolicy.Load in
            counts.load.inFlight += 1
            counts.load.inFlightBytes += bytes
            counts.load.perEndpoint[delivery.endpointID, default: 0] += 1
            counts.load.perApplication[delivery.appID, default: 0] += 1
            if counts.load.perEndpoint[delivery.endpointID, default: 0] >= endpointCap { counts.busy.insert(delivery.endpointID) }
            if suspect { counts.load.suspects += 1 }
            return counts.load
        }
        group.addTask {
            do {
                // Once answered, the request's slots are free; the attempt is being recorded.
                try await self.processor.process(delivery, endpoint: endpoint, message: message, failure: failure) {
                    self.counts.withLockedValue { counts in
                        counts.load.inFlight -= 1
                        counts.load.inFlightBytes -= bytes
                        counts.recording += 1
                        counts.load.perEndpoint[delivery.endpointID, default: 1] -= 1
                        let left = counts.load.perEndpoint[delivery.endpointID] ?? 0
                        if left == 0 { counts.load.perEndpoint[delivery.endpointID] = nil }
                        if left < self.endpointCap { counts.busy.remove(delivery.endpointID) }
                        counts.load.perApplication[delivery.appID, default: 1] -= 1
                        if counts.load.perApplication[delivery.appID] == 0 { counts.load.perApplication[delivery.appID] = nil }
                        if suspect { counts.load.suspects -= 1 }
                    }
                    self.wakeup.nudge()
                }
            } catch {
                self.logger.warning("attempt could not be recorded", metadata: [
                    "herald.message.id": "\(delivery.messageID)", "herald.endpoint.id": "\(delivery.endpointID)",
                    "herald.error": "\(error)",
                ])
            }
            self.counts.withLockedValue { $0.recording -= 1 }
            self.metrics.inFlight(self.sending)
            self.wakeup.nudge()
        }
        return load
    }
}
