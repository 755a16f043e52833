import Foundation

/// When to attempt a delivery again.
///
/// The default schedule after the first attempt is 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, each with
/// ±20 % jitter. A timeout or a 429 waits at least 60 s; `Retry-After` is honoured up to
/// `maxRetryAfter`; a manual attempt is never retried; after the last delay the delivery fails.
///
/// ```swift
/// let policy = RetryPolicy()
/// policy.nextAttempt(after: 1, outcome: .status(500, retryAfter: nil), now: now, random: &rng)  // ≈ now + 5 s
/// ```
public struct RetryPolicy: Sendable, Hashable {
    /// Seconds to wait before attempt 2, 3, …
    public var schedule: [TimeInterval]
    /// ±fraction applied to each delay.
    public var jitter: Double
    /// The least wait after a timeout or a 429.
    public var throttledMinimum: TimeInterval
    /// The most a `Retry-After` may ask for.
    public var maxRetryAfter: TimeInterval

    public init(schedule: [TimeInterval] = [5, 300, 1800, 7200, 18000, 36000, 36000], jitter: Double = 0.2,
                throttledMinimum: TimeInterval = 60, maxRetryAfter: TimeInterval = 6 * 3600) {
        self.schedule = schedule
        self.jitter = jitter
        self.throttledMinimum = throttledMinimum
        self.maxRetryAfter = maxRetryAfter
    }

    /// The longest delay any retry is scheduled after (a year), whatever the schedule, a
    /// `Retry-After` or an HTTP date asks for: a later date would not fit the stores' timestamps.
    public static let maxDelay: TimeInterval = 366 * 86_400

    /// How many attempts a delivery gets in all.
    public var maxAttempts: Int { schedule.count + 1 }

    /// What an attempt came to, as far as retrying is concerned.
    public enum Outcome: Sendable, Hashable {
        /// An HTTP answer with its status and its `Retry-After` in seconds, if any.
        case status(Int, retryAfter: TimeInterval?)
        /// No answer within the deadline.
        case timeout
        /// No answer at all: refused connection, reset, DNS failure, blocked destination.
        case networkError
    }

    /// When to try again after attempt number `attempt` (1-based) failed, or nil to give up.
    public func nextAttempt(after attempt: Int, outcome: Outcome, now: Date, random: inout some RandomNumberGenerator) -> Date? {
        guard attempt >= 1, attempt <= schedule.count else { return nil }
        var delay = Self.clamped(schedule[attempt - 1])
        let jitter = jitter.isFinite ? min(max(jitter, 0), 1) : 0  // a wider range would not be a finite one
        if jitter > 0 {
            delay *= Double.random(in: (1 - jitter)...(1 + jitter), using: &random)
        }
        switch outcome {
        case .timeout:
            delay = max(delay, throttledMinimum)
        case .status(let code, let retryAfter):
            if code == 429 { delay = max(delay, throttledMinimum) }
            if let retryAfter, retryAfter > 0, code == 429 || code == 503 || (300..<600).contains(code) {
                delay = max(delay, min(Self.clamped(retryAfter), Self.clamped(maxRetryAfter)))
            }
        case .networkError:
            break
        }
        return now.addingTimeInterval(Self.clamped(delay))
    }

    /// `seconds` within 0 … `maxDelay`; NaN is 0.
    static func clamped(_ seconds: TimeInterval) -> TimeInterval {
        guard !seconds.isNaN else { return 0 }
        return min(max(seconds, 0), maxDelay)
    }

    /// Parses a `Retry-After` value: delay-seconds or an HTTP date, as seconds from `now` within
    /// 0 … `maxDelay` (a huge number or a far-future date is clamped, a past date is 0). Nil when it
    /// is neither (a negative number included).
    public static func parseRetryAfter(_ value: String, now: Date) -> TimeInterval? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, trimmed.utf8.count <= 64 else { return nil }  // valid values are ≤ 29 characters
        if trimmed.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            // Digits only: too many for an Int is still a (very long) delay.
            return clamped(Int(trimmed).map(TimeInterval.init) ?? maxDelay)
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: trimmed) else { return nil }
        return clamped(date.timeIntervalSince(now))
    }
}
