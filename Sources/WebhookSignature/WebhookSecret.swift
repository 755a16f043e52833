#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Crypto

/// A symmetric Standard Webhooks secret: `whsec_` followed by base64 (padding optional).
///
/// ```swift
/// let secret = try WebhookSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
/// let fresh = WebhookSecret.generate()
/// print(fresh.encoded) // whsec_…, to hand to the receiver
/// ```
///
/// Its `description` is redacted so it can never leak into a log by accident.
public struct WebhookSecret: Sendable, Hashable, CustomStringConvertible, CustomReflectable {
    public static let prefix = "whsec_"

    /// The key bytes used for HMAC-SHA256.
    public let bytes: [UInt8]

    /// Raw key bytes, for callers that keep secrets in their own format.
    public init(bytes: [UInt8]) throws(WebhookVerificationError) {
        guard !bytes.isEmpty else { throw .malformedSecret("the secret is empty") }
        self.bytes = bytes
    }

    /// Parses `whsec_<base64>`, or bare base64, with or without padding.
    public init(_ text: String) throws(WebhookVerificationError) {
        let trimmed = text.trimmingWhitespace()
        let body = trimmed.hasPrefix(Self.prefix) ? String(trimmed.dropFirst(Self.prefix.count)) : trimmed
        guard !body.isEmpty else { throw .malformedSecret("the secret is empty after '\(Self.prefix)'") }
        guard let bytes = ByteEncoding.base64Decode(body), !bytes.isEmpty else {
            throw .malformedSecret("expected '\(Self.prefix)' followed by base64")
        }
        self.bytes = bytes
    }

    /// A new random secret of `byteCount` bytes (24 by default, as Svix issues).
    public static func generate(byteCount: Int = 24) -> WebhookSecret {
        let key = SymmetricKey(size: .init(bitCount: byteCount * 8))
        let bytes = key.withUnsafeBytes { Array($0) }
        return try! WebhookSecret(bytes: bytes)  // never empty
    }

    /// The `whsec_…` text form.
    public var encoded: String { Self.prefix + ByteEncoding.base64Encode(bytes) }

    public var description: String { "whsec_<redacted>" }
    /// Keeps the key bytes out of `dump` and debuggers' summaries.
    public var customMirror: Mirror { Mirror(self, children: []) }

    /// HMAC-SHA256 of `content` with this secret.
    func mac(_ content: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: content, using: SymmetricKey(data: bytes)))
    }
}

/// An ed25519 signing key for Standard Webhooks `v1a`: `whsk_` + base64 of the 32-byte seed,
/// or of the 64-byte seed ‖ public key form.
///
/// ```swift
/// let key = Ed25519SigningKey.generate()
/// print(key.encoded, key.publicKey.encoded) // whsk_…, whpk_…
/// ```
public struct Ed25519SigningKey: Sendable, CustomStringConvertible, CustomReflectable {
    public static let prefix = "whsk_"
    let key: Curve25519.Signing.PrivateKey

    public init(_ text: String) throws(WebhookVerificationError) {
        let trimmed = text.trimmingWhitespace()
        guard trimmed.hasPrefix(Self.prefix) else {
            throw .malformedSecret("an ed25519 signing key starts with '\(Self.prefix)'")
        }
        guard let bytes = ByteEncoding.base64Decode(trimmed.dropFirst(Self.prefix.count)) else {
            throw .malformedSecret("expected '\(Self.prefix)' followed by base64")
        }
        try self.init(bytes: bytes)
    }

    /// 32 bytes (seed) or 64 bytes (seed ‖ public key, which must match the seed).
    public init(bytes: [UInt8]) throws(WebhookVerificationError) {
        guard bytes.count == 32 || bytes.count == 64 else {
            throw .malformedSecret("an ed25519 signing key is 32 or 64 bytes, not \(bytes.count)")
        }
        guard let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: bytes[0..<32]) else {
            throw .malformedSecret("not a valid ed25519 seed")
        }
        if bytes.count == 64, !constantTimeEquals(Array(key.publicKey.rawRepresentation), bytes[32..<64]) {
            throw .malformedSecret("the public half of the 64-byte key does not match its seed")
        }
        self.key = key
    }

    public static func generate() -> Ed25519SigningKey {
        let key = Curve25519.Signing.PrivateKey()
        return try! Ed25519SigningKey(bytes: Array(key.rawRepresentation))  // always 32 bytes
    }

    public var publicKey: Ed25519PublicKey { Ed25519PublicKey(key: key.publicKey) }

    /// The 32-byte seed (the private part); `init(bytes:)` takes it back.
    public var seed: [UInt8] { Array(key.rawRepresentation) }

    /// The `whsk_…` text form (seed ‖ public key, as the Standard Webhooks libraries write it).
    public var encoded: String {
        Self.prefix + ByteEncoding.base64Encode(Array(key.rawRepresentation) + Array(key.publicKey.rawRepresentation))
    }

    public var description: String { "whsk_<redacted>" }
    public var customMirror: Mirror { Mirror(self, children: []) }

    func sign(_ content: [UInt8]) -> [UInt8] {
        // swift-crypto only fails here on a broken key, which init already rejected.
        Array((try? key.signature(for: content)) ?? Data())
    }
}

/// An ed25519 public key for verifying Standard Webhooks `v1a`: `whpk_` + base64 of 32 bytes.
public struct Ed25519PublicKey: Sendable, CustomStringConvertible {
    public static let prefix = "whpk_"
    let key: Curve25519.Signing.PublicKey

    init(key: Curve25519.Signing.PublicKey) { self.key = key }

    public init(_ text: String) throws(WebhookVerificationError) {
        let trimmed = text.trimmingWhitespace()
        guard trimmed.hasPrefix(Self.prefix) else {
            throw .malformedSecret("an ed25519 public key starts with '\(Self.prefix)'")
        }
        guard let bytes = ByteEncoding.base64Decode(trimmed.dropFirst(Self.prefix.count)) else {
            throw .malformedSecret("expected '\(Self.prefix)' followed by base64")
        }
        try self.init(bytes: bytes)
    }

    public init(bytes: [UInt8]) throws(WebhookVerificationError) {
        guard bytes.count == 32, let key = try? Curve25519.Signing.PublicKey(rawRepresentation: bytes) else {
            throw .malformedSecret("an ed25519 public key is 32 bytes")
        }
        self.key = key
    }

    public var encoded: String { Self.prefix + ByteEncoding.base64Encode(Array(key.rawRepresentation)) }

    /// Public keys are not secret; the description is the encoded key.
    public var description: String { encoded }

    func isValid(signature: [UInt8], for content: [UInt8]) -> Bool {
        key.isValidSignature(signature, for: content)
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        let text = String(self)
        guard let start = text.firstIndex(where: { !$0.isWhitespace }) else { return "" }
        let end = text.lastIndex(where: { !$0.isWhitespace })!
        return String(text[start...end])
    }
}
