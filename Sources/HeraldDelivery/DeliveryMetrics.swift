import HeraldCore
import Metrics

/// The dispatcher's metrics (swift-metrics; exported in Prometheus format by `GET /metrics`).
public struct DeliveryMetrics: Sendable {
    public init() {}

    public func recordAttempt(status: DeliveryStatus, statusCode: Int, duration: Duration, publishToDelivery: Double?) {
        let statusClass = statusCode == 0 ? "none" : "\(statusCode / 100)xx"
        Counter(label: "herald_attempts_total", dimensions: [("outcome", status.label), ("status_class", statusClass)]).increment()
        Timer(label: "herald_attempt_duration_seconds").recordNanoseconds(Int64(duration.components.seconds) * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
        if let publishToDelivery {
            Timer(label: "herald_publish_to_delivery_seconds").recordNanoseconds(Int64(publishToDelivery * 1e9))
        }
    }

    public func endpointDisabled() {
        Counter(label: "herald_endpoints_disabled_total").increment()
    }

    public func inFlight(_ count: Int) {
        Gauge(label: "herald_deliveries_in_flight").record(count)
    }

    /// Deliveries by status, sampled from the store.
    public func deliveries(_ counts: [DeliveryStatus: Int]) {
        for status in DeliveryStatus.allCases {
            Gauge(label: "herald_deliveries", dimensions: [("status", status.text)]).record(counts[status] ?? 0)
        }
    }
}


extension DeliveryStatus {
    var label: String { self == .success ? "success" : "failure" }
}
