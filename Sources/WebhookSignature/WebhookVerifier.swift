#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What a successful verification established about a webhook.
public struct VerifiedWebhook: Sendable, Hashable {
    /// The scheme that verified it, such as `standard` or `github`.
    public let scheme: String
    /// The sender's id for this webhook (stable across retries), when the scheme carries one:
    /// the key for deduplication.
    public let id: String?
    /// The signed timestamp, in Unix seconds, when the scheme carries one.
    public let timestamp: Int64?

    public init(scheme: String, id: String?, timestamp: Int64?) {
        self.scheme = scheme
        self.id = id
        self.timestamp = timestamp
    }
}

/// Verifies a webhook's signature over its raw body.
///
/// ```swift
/// let verifier = try StandardWebhook(secrets: ["whsec_…"])
/// let webhook = try verifier.verify(payload: rawBody, headers: WebhookHeaders(request.headers))
/// ```
public protocol WebhookVerifier: Sendable {
    /// Checks the headers' signature over `payload`, and the signed timestamp against `now`
    /// (pass the time the request was received when verifying from a queue).
    func verify(payload: [UInt8], headers: WebhookHeaders, now: Date) throws(WebhookVerificationError) -> VerifiedWebhook
}

/// Produces the headers that sign a payload.
public protocol WebhookSigner: Sendable {
    /// The headers to send with `payload`. `id` and `timestamp` are used by schemes that sign them.
    func sign(payload: [UInt8], id: String, timestamp: Date) throws(WebhookVerificationError) -> [(name: String, value: String)]
}

extension WebhookVerifier {
    /// Verifies against the current time.
    public func verify(payload: [UInt8], headers: WebhookHeaders) throws(WebhookVerificationError) -> VerifiedWebhook {
        try verify(payload: payload, headers: headers, now: Date())
    }

    /// Verifies a UTF-8 payload.
    public func verify(payload: String, headers: WebhookHeaders, now: Date = Date()) throws(WebhookVerificationError) -> VerifiedWebhook {
        try verify(payload: Array(payload.utf8), headers: headers, now: now)
    }
}

/// Parses a Unix timestamp in whole seconds: ASCII digits only, no sign, no fraction.
func parseUnixSeconds(_ text: String) -> Int64? {
    let trimmed = text.trimmingWhitespace()
    guard !trimmed.isEmpty, trimmed.utf8.count <= 18,
          trimmed.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
    else { return nil }
    return Int64(trimmed)
}

/// Throws when `timestamp` is further than `tolerance` seconds from `now`. A nil tolerance disables the check.
func checkTolerance(_ timestamp: Int64, now: Date, tolerance: Int64?) throws(WebhookVerificationError) {
    guard let tolerance else { return }
    let nowSeconds = Int64(now.timeIntervalSince1970.rounded(.down))
    if timestamp < nowSeconds - tolerance || timestamp > nowSeconds + tolerance {
        throw .outsideTolerance(timestamp: timestamp, now: nowSeconds, tolerance: tolerance)
    }
}

extension Date {
    var unixSeconds: Int64 { Int64(timeIntervalSince1970.rounded(.down)) }
}
