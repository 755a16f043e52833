/// Encrypts endpoint secrets before a store writes them, and decrypts them when it reads them
/// back. The app layer provides an AES-GCM implementation; with no sealer, secrets are stored as
/// plain JSON.
///
/// ```swift
/// struct AESGCMSealer: SecretSealer {
///     let key: SymmetricKey
///     func seal(_ plaintext: [UInt8]) throws -> [UInt8] { … }
///     func open(_ sealed: [UInt8]) throws -> [UInt8] { … }
/// }
/// let store = try SQLiteStore(path: "herald.sqlite", sealer: AESGCMSealer(key: key))
/// ```
public protocol SecretSealer: Sendable {
    /// Returns the sealed form of `plaintext`.
    func seal(_ plaintext: [UInt8]) throws -> [UInt8]
    /// Returns the plaintext of bytes that `seal` produced; throws when they were tampered with.
    func open(_ sealed: [UInt8]) throws -> [UInt8]
}

/// The check value of a main key that a database keeps, so that a start with another key (or a
/// database restored without its key) is refused before anything is read or written with it.
///
/// The value is a known text sealed under the key: only the same key opens it back.
public enum MainKeyCheck {
    static let text = Array("herald main key check v1".utf8)

    /// The value to store for `sealer`'s key.
    public static func value(for sealer: any SecretSealer) throws -> [UInt8] {
        do {
            return try sealer.seal(text)
        } catch {
            throw StoreError(.unavailable, "the main key check could not be sealed")
        }
    }

    /// Whether `stored` is the check value of `sealer`'s key.
    public static func matches(_ stored: [UInt8], sealer: any SecretSealer) -> Bool {
        (try? sealer.open(stored)) == text
    }

    /// The error for a key that does not open the database.
    public static let mismatch = StoreError(.wrongKey, "the main key is not the one this database was sealed with")
}

/// What re-sealing a database under a new main key did.
public struct MainKeyRotation: Sendable, Hashable {
    /// Endpoints whose secrets (and headers) are now sealed under the new key.
    public var endpoints: Int
    /// Endpoints whose secrets could not be unsealed with the old key either: left as they were,
    /// still unreadable (delete or replace them).
    public var unreadableEndpoints: Int
    /// Idempotency records re-sealed.
    public var idempotencyRecords: Int

    public init(endpoints: Int, unreadableEndpoints: Int, idempotencyRecords: Int) {
        self.endpoints = endpoints
        self.unreadableEndpoints = unreadableEndpoints
        self.idempotencyRecords = idempotencyRecords
    }
}

/// A store that seals secrets under a main key and can move them all to a new one.
///
/// ```swift
/// let rotation = try await store.rotateMainKey(to: AESGCMSealer(key: newKey))
/// // now start Herald with the new key
/// ```
public protocol MainKeyRotating: Sendable {
    /// In one transaction, opens every sealed value (endpoint secrets, idempotency records) with
    /// the store's sealer, seals it under `newSealer`, and stores the new key's check value. A
    /// store used afterwards must be opened again with the new key.
    func rotateMainKey(to newSealer: any SecretSealer) async throws -> MainKeyRotation
}
