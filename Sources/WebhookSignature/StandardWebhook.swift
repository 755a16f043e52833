#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A key that signs or verifies Standard Webhooks: an HMAC secret (`whsec_`, signature `v1,`),
/// an ed25519 signing key (`whsk_`, `v1a,`), or an ed25519 public key (`whpk_`, verify only).
public enum StandardWebhookKey: Sendable, CustomStringConvertible {
    case secret(WebhookSecret)
    case signingKey(Ed25519SigningKey)
    case publicKey(Ed25519PublicKey)

    /// Parses by prefix: `whsk_`, `whpk_`, otherwise a `whsec_` (or bare base64) secret.
    public init(_ text: String) throws(WebhookVerificationError) {
        let trimmed = text.trimmingWhitespace()
        if trimmed.hasPrefix(Ed25519SigningKey.prefix) {
            self = .signingKey(try Ed25519SigningKey(trimmed))
        } else if trimmed.hasPrefix(Ed25519PublicKey.prefix) {
            self = .publicKey(try Ed25519PublicKey(trimmed))
        } else {
            self = .secret(try WebhookSecret(trimmed))
        }
    }

    public var description: String {
        switch self {
        case .secret(let secret): secret.description
        case .signingKey(let key): key.description
        case .publicKey(let key): key.description
        }
    }
}

/// Standard Webhooks (https://www.standardwebhooks.com), the scheme Svix and Herald send.
///
/// Signs `{id}.{timestamp}.{body}`; headers `webhook-id`, `webhook-timestamp`,
/// `webhook-signature` (the `svix-*` names are accepted as aliases). The signature header holds
/// space-separated `v1,<base64 HMAC-SHA256>` and `v1a,<base64 ed25519>` entries, one per key, so a
/// sender can sign with old and new keys while rotating.
///
/// ```swift
/// let scheme = try StandardWebhook(keys: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
/// let headers = try scheme.sign(payload: Array(body.utf8), id: "msg_1", timestamp: Date())
/// let verified = try scheme.verify(payload: Array(body.utf8), headers: WebhookHeaders(headers))
/// ```
public struct StandardWebhook: WebhookVerifier, WebhookSigner {
    public static let idHeaders = ["webhook-id", "svix-id"]
    public static let timestampHeaders = ["webhook-timestamp", "svix-timestamp"]
    public static let signatureHeaders = ["webhook-signature", "svix-signature"]
    /// A signature header longer than this is refused before any work is done.
    public static let maxSignatureHeaderLength = 16_384

    public let keys: [StandardWebhookKey]
    /// Seconds the timestamp may differ from now; nil disables the check (not recommended).
    public let tolerance: Int64?

    public init(keys: [StandardWebhookKey], tolerance: Int64? = 300) {
        self.keys = keys
        self.tolerance = tolerance
    }

    /// Parses each key by its prefix (`whsec_`, `whsk_`, `whpk_`).
    public init(keys: [String], tolerance: Int64? = 300) throws(WebhookVerificationError) {
        var parsed: [StandardWebhookKey] = []
        for key in keys { parsed.append(try StandardWebhookKey(key)) }
        guard !parsed.isEmpty else { throw .malformedSecret("no secret given") }
        self.init(keys: parsed, tolerance: tolerance)
    }

    /// The bytes that are signed: `{id}.{timestamp}.{payload}`.
    public static func signedContent(id: String, timestamp: Int64, payload: [UInt8]) -> [UInt8] {
        var content = Array("\(id).\(timestamp).".utf8)
        content.append(contentsOf: payload)
        return content
    }

    /// The `webhook-signature` value: one entry per key that can sign, space-separated.
    public func signature(payload: [UInt8], id: String, timestamp: Int64) throws(WebhookVerificationError) -> String {
        let content = Self.signedContent(id: id, timestamp: timestamp, payload: payload)
        var entries: [String] = []
        for key in keys {
            switch key {
            case .secret(let secret): entries.append("v1," + ByteEncoding.base64Encode(secret.mac(content)))
            case .signingKey(let key): entries.append("v1a," + ByteEncoding.base64Encode(key.sign(content)))
            case .publicKey: continue
            }
        }
        guard !entries.isEmpty else { throw .malformedSecret("a public key (whpk_) can verify but not sign") }
        return entries.joined(separator: " ")
    }

    public func sign(payload: [UInt8], id: String, timestamp: Date) throws(WebhookVerificationError) -> [(name: String, value: String)] {
        let seconds = timestamp.unixSeconds
        return [
            ("webhook-id", id),
            ("webhook-timestamp", String(seconds)),
            ("webhook-signature", try signature(payload: payload, id: id, timestamp: seconds)),
        ]
    }

    public func verify(payload: [UInt8], headers: WebhookHeaders, now: Date) throws(WebhookVerificationError) -> VerifiedWebhook {
        guard let id = headers.first(of: Self.idHeaders) else { throw .missingHeader("webhook-id") }
        guard let timestampHeader = headers.first(of: Self.timestampHeaders) else { throw .missingHeader("webhook-timestamp") }
        guard let signatureHeader = headers.first(of: Self.signatureHeaders) else { throw .missingHeader("webhook-signature") }
        guard !id.value.isEmpty else { throw .malformedHeader(id.name, "empty") }
        guard let timestamp = parseUnixSeconds(timestampHeader.value) else { throw .malformedTimestamp(timestampHeader.name) }
        try checkTolerance(timestamp, now: now, tolerance: tolerance)
        guard signatureHeader.value.utf8.count <= Self.maxSignatureHeaderLength else {
            throw .malformedHeader(signatureHeader.name, "longer than \(Self.maxSignatureHeaderLength) bytes")
        }

        let content = Self.signedContent(id: id.value, timestamp: timestamp, payload: payload)
        var macs: [[UInt8]]?  // computed once, only if a v1 entry is present
        for entry in Self.parseSignatureHeader(signatureHeader.value) {
            switch entry.version {
            case "v1":
                if macs == nil {
                    macs = keys.compactMap { if case .secret(let s) = $0 { s.mac(content) } else { nil } }
                }
                // Check every candidate without stopping early, so timing says nothing about which key.
                var matched = false
                for mac in macs! where constantTimeEquals(mac, entry.signature) { matched = true }
                if matched { return VerifiedWebhook(scheme: "standard", id: id.value, timestamp: timestamp) }
            case "v1a":
                guard entry.signature.count == 64 else { continue }
                for key in keys {
                    let publicKey: Ed25519PublicKey
                    switch key {
                    case .secret: continue
                    case .signingKey(let signing): publicKey = signing.publicKey
                    case .publicKey(let verifying): publicKey = verifying
                    }
                    if publicKey.isValid(signature: entry.signature, for: content) {
                        return VerifiedWebhook(scheme: "standard", id: id.value, timestamp: timestamp)
                    }
                }
            default:
                continue
            }
        }
        throw .noMatchingSignature
    }

    /// Splits a signature header into `(version, decoded signature)` entries, skipping malformed ones.
    public static func parseSignatureHeader(_ value: String) -> [(version: String, signature: [UInt8])] {
        var entries: [(version: String, signature: [UInt8])] = []
        for token in value.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
            guard let comma = token.firstIndex(of: ",") else { continue }
            let version = token[..<comma]
            let encoded = token[token.index(after: comma)...]
            guard !version.isEmpty, let bytes = ByteEncoding.base64Decode(encoded) else { continue }
            entries.append((String(version), bytes))
        }
        return entries
    }
}
