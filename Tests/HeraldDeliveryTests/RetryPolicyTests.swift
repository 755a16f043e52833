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
