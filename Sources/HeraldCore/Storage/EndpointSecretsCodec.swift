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
        let plain = [UInt8](try encoder.encode(stored))
        guard let sealer else { return (plain, false) }
        do {
            return (try sealer.seal(plain), true)
        } catch {
            throw StoreError(.unavailable, "endpoint secrets could not be sealed")
        }
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
}
