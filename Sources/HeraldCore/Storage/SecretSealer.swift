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
