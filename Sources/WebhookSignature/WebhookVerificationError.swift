/// Why a webhook failed verification, or why a secret or key could not be used.
///
/// The description is safe to show to a user or write to a log: it never contains a secret,
/// a key, or the signature that was expected.
///
/// ```swift
/// do { try verifier.verify(payload: body, headers: headers) }
/// catch let error where error.code == .timestampOutsideTolerance { … }
/// ```
public struct WebhookVerificationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is. Compare against the static members.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case missingHeader = "missing_header"
            case malformedHeader = "malformed_header"
            case malformedTimestamp = "malformed_timestamp"
            case timestampOutsideTolerance = "timestamp_outside_tolerance"
            case noMatchingSignature = "no_matching_signature"
            case malformedSecret = "malformed_secret"
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A required header (id, timestamp or signature) is absent.
        public static let missingHeader = Code(.missingHeader)
        /// A header is present but holds nothing usable.
        public static let malformedHeader = Code(.malformedHeader)
        /// The timestamp header is not a whole number of seconds.
        public static let malformedTimestamp = Code(.malformedTimestamp)
        /// The timestamp is too far in the past or the future: possibly a replay.
        public static let timestampOutsideTolerance = Code(.timestampOutsideTolerance)
        /// No signature in the header matches any candidate secret or key.
        public static let noMatchingSignature = Code(.noMatchingSignature)
        /// A secret or key could not be parsed.
        public static let malformedSecret = Code(.malformedSecret)

        /// A stable, machine-readable name such as `no_matching_signature`.
        public var description: String { base.rawValue }
    }

    /// The kind of failure.
    public let code: Code
    /// A sentence for humans. Never holds secrets or expected signatures.
    public let message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    static func missingHeader(_ name: String) -> Self {
        .init(code: .missingHeader, message: "missing header '\(name)'")
    }

    static func malformedHeader(_ name: String, _ why: String) -> Self {
        .init(code: .malformedHeader, message: "malformed header '\(name)': \(why)")
    }

    static func malformedTimestamp(_ name: String) -> Self {
        .init(code: .malformedTimestamp, message: "header '\(name)' is not a Unix timestamp in whole seconds")
    }

    static func outsideTolerance(timestamp: Int64, now: Int64, tolerance: Int64) -> Self {
        let age = now - timestamp
        let detail = age >= 0 ? "is \(age) s old" : "is \(-age) s in the future"
        return .init(
            code: .timestampOutsideTolerance,
            message: "timestamp \(detail), outside the tolerance of \(tolerance) s (a replay, or a clock out of sync)"
        )
    }

    static let noMatchingSignature = Self(
        code: .noMatchingSignature,
        message: "no signature matched: the payload was changed, or it was signed with another secret"
    )

    static func malformedSecret(_ why: String) -> Self {
        .init(code: .malformedSecret, message: "malformed secret: \(why)")
    }
}
