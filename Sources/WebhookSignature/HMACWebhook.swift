import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A shared secret used as an HMAC key exactly as its text is given (GitHub, Stripe, Slack,
/// Shopify and generic schemes do not decode it). Its description is redacted.
public struct HMACSecret: Sendable, Hashable, CustomStringConvertible, CustomReflectable, ExpressibleByStringLiteral {
    public let bytes: [UInt8]

    public init(_ text: String) { self.bytes = Array(text.utf8) }
    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(stringLiteral value: String) { self.init(value) }

    public var description: String { "<redacted>" }
    public var customMirror: Mirror { Mirror(self, children: []) }
}

/// The hash function of an HMAC scheme.
public enum HMACAlgorithm: String, Sendable, CaseIterable {
    case sha256
    case sha512

    func mac(_ content: [UInt8], key: [UInt8]) -> [UInt8] {
        let key = SymmetricKey(data: key)
        switch self {
        case .sha256: return Array(HMAC<SHA256>.authenticationCode(for: content, using: key))
        case .sha512: return Array(HMAC<SHA512>.authenticationCode(for: content, using: key))
        }
    }

    var byteCount: Int { self == .sha256 ? 32 : 64 }
}

/// How a MAC is written in its header.
public enum SignatureEncoding: String, Sendable, CaseIterable {
    case hex
    case base64

    func encode(_ bytes: [UInt8]) -> String {
        self == .hex ? ByteEncoding.hexEncode(bytes) : ByteEncoding.base64Encode(bytes)
    }

    func decode(_ text: some StringProtocol) -> [UInt8]? {
        self == .hex ? ByteEncoding.hexDecode(text) : ByteEncoding.base64Decode(text)
    }
}

/// A body-only HMAC in one header, the shape most providers use: a header name, SHA-256 or
/// SHA-512, hex or base64, and an optional prefix such as `sha256=`. There is no timestamp, so
/// there is no replay window: deduplicate by the id header where the provider sends one.
///
/// ```swift
/// let github = GenericHMACWebhook.github(secrets: ["It's a Secret to Everybody"])
/// let custom = GenericHMACWebhook(name: "acme", signatureHeader: "X-Acme-Signature",
///                                 algorithm: .sha512, encoding: .base64, secrets: ["s3cret"])
/// ```
public struct GenericHMACWebhook: WebhookVerifier, WebhookSigner {
    public let name: String
    public let signatureHeader: String
    public let algorithm: HMACAlgorithm
    public let encoding: SignatureEncoding
    public let prefix: String
    public let idHeader: String?
    public let secrets: [HMACSecret]

    public init(
        name: String = "hmac",
        signatureHeader: String,
        algorithm: HMACAlgorithm = .sha256,
        encoding: SignatureEncoding = .hex,
        prefix: String = "",
        idHeader: String? = nil,
        secrets: [HMACSecret]
    ) {
        self.name = name
        self.signatureHeader = signatureHeader
        self.algorithm = algorithm
        self.encoding = encoding
        self.prefix = prefix
        self.idHeader = idHeader
        self.secrets = secrets
    }

    /// GitHub: `X-Hub-Signature-256: sha256=<hex>`, id in `X-GitHub-Delivery`.
    public static func github(secrets: [HMACSecret]) -> Self {
        .init(name: "github", signatureHeader: "X-Hub-Signature-256", algorithm: .sha256, encoding: .hex,
              prefix: "sha256=", idHeader: "X-GitHub-Delivery", secrets: secrets)
    }

    /// Shopify: `X-Shopify-Hmac-Sha256: <base64>`, id in `X-Shopify-Webhook-Id`.
    public static func shopify(secrets: [HMACSecret]) -> Self {
        .init(name: "shopify", signatureHeader: "X-Shopify-Hmac-Sha256", algorithm: .sha256, encoding: .base64,
              prefix: "", idHeader: "X-Shopify-Webhook-Id", secrets: secrets)
    }

    public func sign(payload: [UInt8], id: String, timestamp: Date) throws(WebhookVerificationError) -> [(name: String, value: String)] {
        guard let secret = secrets.first else { throw .malformedSecret("no secret given") }
        var headers = [(name: signatureHeader, value: prefix + encoding.encode(algorithm.mac(payload, key: secret.bytes)))]
        if let idHeader { headers.append((idHeader, id)) }
        return headers
    }

    public func verify(payload: [UInt8], headers: WebhookHeaders, now: Date) throws(WebhookVerificationError) -> VerifiedWebhook {
        let values = headers.values(signatureHeader)
        guard !values.isEmpty else { throw .missingHeader(signatureHeader) }
        let macs = secrets.map { algorithm.mac(payload, key: $0.bytes) }
        var sawWellFormed = false
        var matched = false
        for value in values {
            let trimmed = value.trimmingWhitespace()
            guard trimmed.utf8.count <= 1024, trimmed.lowercased().hasPrefix(prefix.lowercased()) else { continue }
            guard let given = encoding.decode(trimmed.dropFirst(prefix.count)), given.count == algorithm.byteCount else { continue }
            sawWellFormed = true
            for mac in macs where constantTimeEquals(mac, given) { matched = true }
        }
        guard sawWellFormed else {
            throw .malformedHeader(signatureHeader, "expected \(prefix.isEmpty ? "" : "'\(prefix)' then ")a \(encoding.rawValue) \(algorithm.rawValue) HMAC")
        }
        guard matched else { throw .noMatchingSignature }
        return VerifiedWebhook(scheme: name, id: idHeader.flatMap { headers[$0] }, timestamp: nil)
    }
}

/// Stripe: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">[,v1=…]`, keyed with the
/// secret's text as given (`whsec_…` is not decoded), with a tolerance (300 s by default).
public struct StripeWebhook: WebhookVerifier, WebhookSigner {
    public static let signatureHeader = "Stripe-Signature"
    public let secrets: [HMACSecret]
    public let tolerance: Int64?

    public init(secrets: [HMACSecret], tolerance: Int64? = 300) {
        self.secrets = secrets
        self.tolerance = tolerance
    }

    static func content(timestamp: Int64, payload: [UInt8]) -> [UInt8] {
        Array("\(timestamp).".utf8) + payload
    }

    public func sign(payload: [UInt8], id: String, timestamp: Date) throws(WebhookVerificationError) -> [(name: String, value: String)] {
        guard !secrets.isEmpty else { throw .malformedSecret("no secret given") }
        let seconds = timestamp.unixSeconds
        let content = Self.content(timestamp: seconds, payload: payload)
        let signatures = secrets.map { "v1=" + ByteEncoding.hexEncode(HMACAlgorithm.sha256.mac(content, key: $0.bytes)) }
        return [(Self.signatureHeader, (["t=\(seconds)"] + signatures).joined(separator: ","))]
    }

    public func verify(payload: [UInt8], headers: WebhookHeaders, now: Date) throws(WebhookVerificationError) -> VerifiedWebhook {
        guard let header = headers[Self.signatureHeader] else { throw .missingHeader(Self.signatureHeader) }
        guard header.utf8.count <= 16_384 else { throw .malformedHeader(Self.signatureHeader, "too long") }
        var timestampText: Substring?
        var candidates: [[UInt8]] = []
        for item in header.split(separator: ",") {
            guard let equals = item.firstIndex(of: "=") else { continue }
            let key = item[..<equals].trimmingWhitespace()
            let value = item[item.index(after: equals)...]
            if key == "t", timestampText == nil { timestampText = value }
            if key == "v1", let bytes = ByteEncoding.hexDecode(value.trimmingWhitespace()), bytes.count == 32 { candidates.append(bytes) }
        }
        guard let timestampText else { throw .malformedHeader(Self.signatureHeader, "no 't=' timestamp") }
        guard let timestamp = parseUnixSeconds(String(timestampText)) else { throw .malformedTimestamp(Self.signatureHeader) }
        try checkTolerance(timestamp, now: now, tolerance: tolerance)
        let content = Self.content(timestamp: timestamp, payload: payload)
        let macs = secrets.map { HMACAlgorithm.sha256.mac(content, key: $0.bytes) }
        var matched = false
        for candidate in candidates {
            for mac in macs where constantTimeEquals(mac, candidate) { matched = true }
        }
        guard matched else { throw .noMatchingSignature }
        return VerifiedWebhook(scheme: "stripe", id: nil, timestamp: timestamp)
    }
}

/// Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<ts>:<body>">` with
/// `X-Slack-Request-Timestamp`, and a tolerance (300 s by default, as Slack advises).
public struct SlackWebhook: WebhookVerifier, WebhookSigner {
    public static let signatureHeader = "X-Slack-Signature"
    public static let timestampHeader = "X-Slack-Request-Timestamp"
    public let secrets: [HMACSecret]
    public let tolerance: Int64?

    public init(secrets: [HMACSecret], tolerance: Int64? = 300) {
        self.secrets = secrets
        self.tolerance = tolerance
    }

    static func content(timestamp: Int64, payload: [UInt8]) -> [UInt8] {
        Array("v0:\(timestamp):".utf8) + payload
    }

    public func sign(payload: [UInt8], id: String, timestamp: Date) throws(WebhookVerificationError) -> [(name: String, value: String)] {
        guard let secret = secrets.first else { throw .malformedSecret("no secret given") }
        let seconds = timestamp.unixSeconds
        let mac = HMACAlgorithm.sha256.mac(Self.content(timestamp: seconds, payload: payload), key: secret.bytes)
        return [(Self.timestampHeader, String(seconds)), (Self.signatureHeader, "v0=" + ByteEncoding.hexEncode(mac))]
    }

    public func verify(payload: [UInt8], headers: WebhookHeaders, now: Date) throws(WebhookVerificationError) -> VerifiedWebhook {
        guard let timestampText = headers[Self.timestampHeader] else { throw .missingHeader(Self.timestampHeader) }
        guard let signature = headers[Self.signatureHeader] else { throw .missingHeader(Self.signatureHeader) }
        guard let timestamp = parseUnixSeconds(timestampText) else { throw .malformedTimestamp(Self.timestampHeader) }
        try checkTolerance(timestamp, now: now, tolerance: tolerance)
        let trimmed = signature.trimmingWhitespace()
        guard trimmed.hasPrefix("v0="), let given = ByteEncoding.hexDecode(trimmed.dropFirst(3)), given.count == 32 else {
            throw .malformedHeader(Self.signatureHeader, "expected 'v0=' then a hex HMAC-SHA256")
        }
        let content = Self.content(timestamp: timestamp, payload: payload)
        var matched = false
        for secret in secrets where constantTimeEquals(HMACAlgorithm.sha256.mac(content, key: secret.bytes), given) { matched = true }
        guard matched else { throw .noMatchingSignature }
        return VerifiedWebhook(scheme: "slack", id: nil, timestamp: timestamp)
    }
}
