import Foundation

/// One outgoing webhook POST.
public struct OutboundRequest: Sendable {
    public var url: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// Total time the attempt may take, connection and body included.
    public var timeout: TimeInterval

    public init(url: String, headers: [(name: String, value: String)], body: [UInt8], timeout: TimeInterval) {
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }
}

/// What came back from an attempt.
public struct TransportResponse: Sendable, Hashable {
    public enum Outcome: Sendable, Hashable {
        /// An HTTP answer (redirects included: they are never followed).
        case status(Int)
        /// The deadline passed.
        case timeout
        /// No usable answer: the message says why (refused, reset, closed, blocked by policy…).
        case failed(String)
    }

    public var outcome: Outcome
    /// At most `maxResponseBytes` of the response body (lossy UTF-8).
    public var body: String
    /// The `Retry-After` header, if any.
    public var retryAfter: String?
    public var duration: Duration

    public init(outcome: Outcome, body: String = "", retryAfter: String? = nil, duration: Duration) {
        self.outcome = outcome
        self.body = body
        self.retryAfter = retryAfter
        self.duration = duration
    }

    /// The most of a response body that is read and kept.
    public static let maxResponseBytes = 20_000
}

/// Sends webhook requests. Production uses `HTTPClientTransport`; tests inject a fake.
public protocol WebhookTransport: Sendable {
    func send(_ request: OutboundRequest) async -> TransportResponse
    /// Releases connections; called once the dispatcher has stopped.
    func shutdown() async
}

extension WebhookTransport {
    public func shutdown() async {}
}
