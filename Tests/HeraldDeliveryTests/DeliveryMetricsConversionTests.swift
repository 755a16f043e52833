import HeraldCore
@testable import HeraldDelivery
import Testing

/// Durations from stored timestamps never trap the metrics' nanosecond conversions.
@Suite("Delivery metrics: checked conversions")
struct DeliveryMetricsConversionTests {
    static let century: Int64 = 100 * 365 * 86_400 * 1_000_000_000

    @Test func publishToDeliveryIsClamped() {
        #expect(DeliveryMetrics.nanoseconds(seconds: 1.5) == 1_500_000_000)
        #expect(DeliveryMetrics.nanoseconds(seconds: 1e300) == Self.century)
        #expect(DeliveryMetrics.nanoseconds(seconds: .infinity) == Self.century)
        #expect(DeliveryMetrics.nanoseconds(seconds: -5) == 0)
        #expect(DeliveryMetrics.nanoseconds(seconds: .nan) == 0)
    }

    @Test func attemptDurationIsClamped() {
        #expect(DeliveryMetrics.nanoseconds(.milliseconds(1500)) == 1_500_000_000)
        #expect(DeliveryMetrics.nanoseconds(.seconds(Int64.max)) == Self.century)
        #expect(DeliveryMetrics.nanoseconds(.seconds(-3)) == 0)
        DeliveryMetrics().recordAttempt(status: .fail, statusCode: 0, duration: .seconds(Int64.max), publishToDelivery: -1e300)
    }
}
