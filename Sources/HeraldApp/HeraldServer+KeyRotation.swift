import Crypto
import Foundation
import HeraldCore
import HeraldPostgres
import HeraldSQLite
import Logging

/// What `HeraldServer.rotateMainKey` did.
public struct MainKeyRotationOutcome: Sendable {
    public var rotation: MainKeyRotation
    /// The key file that now holds the new key, when the key lives in a file beside a SQLite
    /// database; nil when the caller must set `HERALD_MAIN_KEY` to the new key.
    public var keyFile: String?
}

extension HeraldServer {
    /// Re-seals every secret of the configured database under a new main key, in one transaction
    /// (`MainKeyRotating`). The database is opened with the current key first, so a wrong current
    /// key changes nothing. With a key file beside a SQLite database, the new key (`newKey`, or a
    /// random one) replaces the file's; with `HERALD_MAIN_KEY` or PostgreSQL, `newKey` is required
    /// and every node must then start with it. Herald should not be running meanwhile: a node
    /// still on the old key cannot open what was re-sealed.
    ///
    /// ```swift
    /// let outcome = try await HeraldServer.rotateMainKey(configuration: configuration, newKey: nil, logger: logger)
    /// print(outcome.rotation.endpoints, outcome.keyFile ?? "set HERALD_MAIN_KEY")
    /// ```
    public static func rotateMainKey(configuration: HeraldConfiguration, newKey: [UInt8]?, logger: Logger) async throws -> MainKeyRotationOutcome {
        if let newKey, newKey.count != 32 { throw HeraldStartupError("the new main key must be 32 bytes in base64 or hex") }
        var keyFile: MainKeyFile?
        switch configuration.database {
        case .sqliteMemory:
            throw HeraldStartupError("--database: an in-memory database has no key to rotate")
        case .sqliteFile(let path):
            if configuration.mainKey == nil {
                keyFile = MainKeyFile(databasePath: path)
                guard FileManager.default.fileExists(atPath: path) else { throw HeraldStartupError("--database: sqlite:\(path) does not exist") }
            }
        case .postgres:
            break
        }
        if keyFile == nil, newKey == nil {
            throw HeraldStartupError("--new-key is required when the key comes from HERALD_MAIN_KEY (make one with: openssl rand -base64 32)")
        }
        let store = try await openStore(configuration, logger: logger)
        let rotation: MainKeyRotation
        do {
            rotation = try await rotate(store, keyFile: keyFile, newKey: newKey)
        } catch {
            await close(store)
            throw error
        }
        await close(store)
        return MainKeyRotationOutcome(rotation: rotation, keyFile: keyFile?.path)
    }

    private static func rotate(_ store: any HeraldStore, keyFile: MainKeyFile?, newKey: [UInt8]?) async throws -> MainKeyRotation {
        guard let rotating = store as? any MainKeyRotating else {
            throw HeraldStartupError("--database: this database does not seal secrets under a main key")
        }
        let key = newKey.map { SymmetricKey(data: $0) } ?? SymmetricKey(size: .bits256)
        try keyFile?.stage(key)
        let rotation: MainKeyRotation
        do {
            rotation = try await rotating.rotateMainKey(to: AESGCMSealer(key: key))
        } catch let error as StoreError {
            keyFile?.removeStaged()
            throw HeraldStartupError("the key rotation failed and changed nothing: \(error.message)")
        }
        try keyFile?.commitStaged()
        return rotation
    }
}
