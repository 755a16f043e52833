import HeraldCore
import Metrics

/// The dispatcher's metrics (swift-metrics; exported in Prometheus format by `GET /metrics`).
/// The handles are made once, when the value is created (after `MetricsSystem.bootstrap`), so an
/// attempt does not look its metrics up by name in the factory.
public struct DeliveryMetrics: Sendable {
    private static let statusClasses = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"]
    private let attempts: [DeliveryStatus: [String: Counter]]
    private let attemptDuration = Timer(label: "herald_attempt_duration_seconds")
    private let publishToDelivery = Timer(label: "herald_publish_to_delivery_seconds")
    private let disabled = Counter(label: "herald_endpoints_disabled_total")
    private let inFlightGauge = Gauge(label: "herald_deliveries_in_flight")
    private let deliveriesByStatus: [DeliveryStatus: Gauge]

    public init() {
        var attempts: [DeliveryStatus: [String: Counter]] = [:]
        for status in [DeliveryStatus.success, .fail] {
            for statusClass in Self.statusClasses {
                attempts[status, default: [:]][statusClass] = Counter(label: "herald_attempts_total", dimensions: [("outcome", status.label), ("status_class", statusClass)])
            }
        }
        self.attempts = attempts
        var gauges: [DeliveryStatus: Gauge] = [:]
        for status in DeliveryStatus.allCases { gauges[status] = Gauge(label: "herald_deliveries", dimensions: [("status", status.text)]) }
        self.deliveriesByStatus = gauges
    }

    public func recordAttempt(status: DeliveryStatus, statusCode: Int, duration: Duration, publishToDelivery: Double?) {
        let statusClass = statusCode == 0 ? "none" : "\(statusCode / 100)xx"
        let outcome: DeliveryStatus = status == .success ? .success : .fail
        if let counter = attempts[outcome]?[statusClass] {
            counter.increment()
        } else {  // a status outside 100–599
            Counter(label: "herald_attempts_total", dimensions: [("outcome", status.label), ("status_class", statusClass)]).increment()
        }
        attemptDuration.recordNanoseconds(Int64(duration.components.seconds) * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
        if let seconds = publishToDelivery {
            self.publishToDelivery.recordNanoseconds(Int64(seconds * 1e9))
        }
    }

    public func endpointDisabled() {
        disabled.increment()
    }

    public func inFlight(_ count: Int) {
        inFlightGauge.record(count)
    }

    /// Deliveries by status, sampled from the store.
    public func deliveries(_ counts: [DeliveryStatus: Int]) {
        for status in DeliveryStatus.allCases {
            deliveriesByStatus[status]?.record(counts[status] ?? 0)
        }
    }
}


extension DeliveryStatus {
    var label: String { self == .success ? "success" : "failure" }
}
