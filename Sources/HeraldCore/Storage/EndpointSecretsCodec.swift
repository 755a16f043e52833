import Foundation

/// Turns an endpoint's secrets into the bytes of its `secrets` column and back: JSON, sealed by the
/// `SecretSealer` when there is one. Secret bytes are written nowhere else. Every backend stores
/// secrets through it, so a database copied between backends reads back the same.
public struct EndpointSecretsCodec: Sendable {
    public let sealer: (any SecretSealer)?

    public init(sealer: (any SecretSealer)?) { self.sealer = sealer }

    /// The stored form of one secret.
    private struct StoredSecret: Codable {
        var key: String
        var expiresAt: Double?
        /// Absent for HMAC keys (rows written before ed25519 keys existed read as HMAC).
        var kind: String?
    }

    /// The column value and whether it is sealed.
    public func seal(_ secrets: [EndpointSecret]) throws -> (bytes: [UInt8], sealed: Bool) {
        let stored = secrets.map { StoredSecret(key: Data($0.key).base64EncodedString(), expiresAt: $0.expiresAt?.timeIntervalSinceReferenceDate, kind: $0.kind == .hmac ? nil : $0.kind.rawValue) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return try sealBytes([UInt8](try encoder.encode(stored)))
    }

    public func open(_ bytes: [UInt8], sealed: Bool) throws -> [EndpointSecret] {
        var plain = bytes
        if sealed {
            guard let sealer else { throw StoreError(.corrupt, "endpoint secrets are sealed and no sealer is configured") }
            do {
                plain = try sealer.open(bytes)
            } catch {
                throw StoreError(.corrupt, "endpoint secrets could not be unsealed")
            }
        }
        guard let stored = try? JSONDecoder().decode([StoredSecret].self, from: Data(plain)) else {
            throw StoreError(.corrupt, "endpoint secrets could not be read back")
        }
        return try stored.map { secret in
            guard let key = Data(base64Encoded: secret.key) else { throw StoreError(.corrupt, "endpoint secrets could not be read back") }
            let kind = try secret.kind.map { text -> EndpointSecret.Kind in
                guard let kind = EndpointSecret.Kind(rawValue: text) else { throw StoreError(.corrupt, "endpoint secrets could not be read back") }
                return kind
            } ?? .hmac
            return EndpointSecret(key: [UInt8](key), expiresAt: secret.expiresAt.map(Date.init(timeIntervalSinceReferenceDate:)), kind: kind)
        }
    }

    /// The stored form of sensitive bytes (secrets, an idempotency record's response, which may
    /// hold a secret or a token): sealed when there is a sealer, as they are otherwise.
    public func sealBytes(_ plain: [UInt8]) throws -> (bytes: [UInt8], sealed: Bool) {
        guard let sealer else { return (plain, false) }
        do {
            return (try sealer.seal(plain), true)
        } catch {
            throw StoreError(.unavailable, "a secret could not be sealed under the main key")
        }
    }

    /// The plain bytes of what `sealBytes` stored.
    public func openBytes(_ bytes: [UInt8], sealed: Bool) throws -> [UInt8] {
        guard sealed else { return bytes }
        guard let sealer, let plain = try? sealer.open(bytes) else {
            throw StoreError(.corrupt, "a stored response could not be unsealed")
        }
        return plain
    }
}

extension EndpointSecretsCodec {
    /// `request` with its idempotency record's response sealed (`PublishRequest.idempotencyBodySealed`
    /// says whether it is), for a backend to store as it is.
    public func sealingRecord(of request: PublishRequest) throws -> PublishRequest {
        guard var record = request.idempotency else { return request }
        var request = request
        let sealed = try sealBytes(record.body)
        record.body = sealed.bytes
        request.idempotency = record
        request.idempotencyBodySealed = sealed.sealed
        return request
    }
}

extension EndpointSecretsCodec {
    /// The prefix of a sealed text column (an endpoint's custom headers, which often carry an
    /// `Authorization` token). A JSON object never starts with it, so rows written before sealing
    /// existed read back as they are.
    static let sealedTextPrefix = "sealed:"

    /// The stored form of an endpoint's headers (their JSON text): `sealed:<base64>` under the
    /// main key when there is a sealer, the text itself otherwise.
    public func sealText(_ text: String) throws -> String {
        guard sealer != nil else { return text }
        return Self.sealedTextPrefix + Data(try sealBytes(Array(text.utf8)).bytes).base64EncodedString()
    }

    /// The text that `sealText` stored.
    public func openText(_ stored: String) throws -> String {
        guard stored.hasPrefix(Self.sealedTextPrefix) else { return stored }
        guard let sealed = Data(base64Encoded: String(stored.dropFirst(Self.sealedTextPrefix.count))) else {
            throw StoreError(.corrupt, "a sealed column could not be read back")
        }
        guard let text = String(validating: try openBytes([UInt8](sealed), sealed: true), as: UTF8.self) else {
            throw StoreError(.corrupt, "a sealed column could not be read back")
        }
        return text
    }
}
