import Foundation
import HeraldCore
import Testing

@Suite("RetryPolicy")
struct RetryPolicyTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test(arguments: Array(1...7))
    func followsTheScheduleWithinTwentyPercentJitter(attempt: Int) {
        let policy = RetryPolicy()
        var rng = SystemRandomNumberGenerator()
        let base = policy.schedule[attempt - 1]
        for _ in 0..<200 {
            let next = policy.nextAttempt(after: attempt, outcome: .status(500, retryAfter: nil), now: now, random: &rng)!
            let delay = next.timeIntervalSince(now)
            #expect(delay >= base * 0.8 - 0.001 && delay <= base * 1.2 + 0.001)
        }
    }

    @Test func jitterActuallySpreadsTheDelays() {
        var rng = SystemRandomNumberGenerator()
        let delays = Set((0..<50).map { _ in RetryPolicy().nextAttempt(after: 2, outcome: .networkError, now: now, random: &rng)!.timeIntervalSince(now) })
        #expect(delays.count > 40)
    }

    @Test func givesUpAfterTheLastScheduledAttempt() {
        let policy = RetryPolicy()
        var rng = SystemRandomNumberGenerator()
        #expect(policy.maxAttempts == 8)
        #expect(policy.nextAttempt(after: 8, outcome: .status(500, retryAfter: nil), now: now, random: &rng) == nil)
    }

    @Test(arguments: [RetryPolicy.Outcome.timeout, .status(429, retryAfter: nil)])
    func timeoutAnd429WaitAtLeastAMinute(outcome: RetryPolicy.Outcome) {
        var rng = SystemRandomNumberGenerator()
        let next = RetryPolicy().nextAttempt(after: 1, outcome: outcome, now: now, random: &rng)!
        #expect(next.timeIntervalSince(now) >= 60)
    }

    @Test func retryAfterIsHonouredWithinBounds() {
        let policy = RetryPolicy()
        var rng = SystemRandomNumberGenerator()
        let honoured = policy.nextAttempt(after: 1, outcome: .status(503, retryAfter: 600), now: now, random: &rng)!
        #expect(honoured.timeIntervalSince(now) >= 600)
        let capped = policy.nextAttempt(after: 1, outcome: .status(429, retryAfter: 10 * 86400), now: now, random: &rng)!
        #expect(capped.timeIntervalSince(now) <= policy.maxRetryAfter + 0.001)
        // A shorter Retry-After never makes the retry earlier than the schedule.
        let shorter = policy.nextAttempt(after: 3, outcome: .status(503, retryAfter: 1), now: now, random: &rng)!
        #expect(shorter.timeIntervalSince(now) >= 1800 * 0.8)
    }

    @Test func parsesRetryAfterSecondsAndHTTPDates() {
        #expect(RetryPolicy.parseRetryAfter("120", now: now) == 120)
        let date = RetryPolicy.parseRetryAfter("Fri, 15 Jan 2027 08:00:00 GMT", now: Date(timeIntervalSince1970: 1_800_000_000))
        #expect(date != nil)
        #expect(RetryPolicy.parseRetryAfter("soon", now: now) == nil)
        #expect(RetryPolicy.parseRetryAfter("-5", now: now) == nil)
    }
}

/// Values from a receiver or a setting never trap the arithmetic, and are clamped.
@Suite("RetryPolicy: checked conversions")
struct RetryPolicyClampingTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func aHugeRetryAfterIsClampedNotATrap() {
        #expect(RetryPolicy.parseRetryAfter("99999999999999999999", now: now) == RetryPolicy.maxDelay)
        #expect(RetryPolicy.parseRetryAfter("9223372036854775807", now: now) == RetryPolicy.maxDelay)
        #expect(RetryPolicy.parseRetryAfter(String(repeating: "9", count: 1000), now: now) == nil)  // not a header value
    }

    @Test func aNegativeRetryAfterIsIgnored() {
        #expect(RetryPolicy.parseRetryAfter("-5", now: now) == nil)
        #expect(RetryPolicy.parseRetryAfter("+5", now: now) == nil)
        #expect(RetryPolicy.parseRetryAfter("", now: now) == nil)
    }

    @Test func aFarFutureOrPastHTTPDateIsClamped() {
        #expect(RetryPolicy.parseRetryAfter("Fri, 31 Dec 9999 23:59:59 GMT", now: now) == RetryPolicy.maxDelay)
        #expect(RetryPolicy.parseRetryAfter("Thu, 01 Jan 1970 00:00:00 GMT", now: now) == 0)
    }

    @Test(arguments: [Double.infinity, .nan, 1e300, -1e300, .greatestFiniteMagnitude])
    func anyRetryAfterGivesAFiniteDateWithinTheBound(retryAfter: Double) throws {
        var rng = SystemRandomNumberGenerator()
        let policy = RetryPolicy(maxRetryAfter: .infinity)
        let next = try #require(policy.nextAttempt(after: 1, outcome: .status(503, retryAfter: retryAfter), now: now, random: &rng))
        let delay = next.timeIntervalSince(now)
        #expect(delay.isFinite && delay >= 0 && delay <= RetryPolicy.maxDelay * 1.2 + 1)
    }

    @Test func oddSchedulesAndJitterDoNotTrap() throws {
        var rng = SystemRandomNumberGenerator()
        for (schedule, jitter) in [([Double.infinity], 0.2), ([.nan], 0.2), ([-5], 0.2), ([5], .infinity), ([5], .nan), ([5], 7)] {
            let next = try #require(RetryPolicy(schedule: schedule, jitter: jitter).nextAttempt(after: 1, outcome: .networkError, now: now, random: &rng))
            let delay = next.timeIntervalSince(now)
            #expect(delay.isFinite && delay >= 0 && delay <= RetryPolicy.maxDelay, "\(schedule) \(jitter): \(delay)")
        }
    }
}
