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
        attemptDuration.recordNanoseconds(Self.nanoseconds(duration))
        if let seconds = publishToDelivery {
            // From stored timestamps: a clock step or an odd row must not trap the conversion.
            self.publishToDelivery.recordNanoseconds(Self.nanoseconds(seconds: seconds))
        }
    }

    /// `duration` in nanoseconds, clamped to 0 … 100 years.
    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        return min(seconds, maxSeconds) * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// `seconds` in nanoseconds, clamped to 0 … 100 years (NaN is 0).
    static func nanoseconds(seconds: Double) -> Int64 {
        guard seconds.isFinite, seconds > 0 else { return seconds == .infinity ? maxSeconds * 1_000_000_000 : 0 }
        return Int64(min(seconds, Double(maxSeconds)) * 1e9)
    }

    private static let maxSeconds: Int64 = 100 * 365 * 86_400

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
