import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The main key of a SQLite database, kept beside it as `<database>.key` (base64, mode 0600 from
/// the moment it exists). A key rotation first writes the new key as `<database>.key.new`, then
/// re-seals the database, then renames the new file over the old: a rotation cut short at any
/// point leaves a key that opens the database (`HeraldServer.openSQLite` finishes the rename).
struct MainKeyFile {
    let path: String
    var stagedPath: String { path + ".new" }

    init(databasePath: String) { path = databasePath + ".key" }

    /// The key in the file, or nil when there is no file.
    func read() throws -> SymmetricKey? { try Self.read(at: path) }
    /// The key a rotation staged, or nil.
    func readStaged() throws -> SymmetricKey? { try Self.read(at: stagedPath) }

    static func read(at path: String) throws -> SymmetricKey? {
        let manager = FileManager.default
        guard manager.fileExists(atPath: path) else { return nil }
        guard let data = manager.contents(atPath: path),
              let decoded = Data(base64Encoded: String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)),
              decoded.count == 32 else {
            throw HeraldStartupError("main key file \(path) is unreadable or not 32 bytes of base64")
        }
        return SymmetricKey(data: decoded)
    }

    /// Writes a new key file; fails if one exists.
    func create(_ key: SymmetricKey) throws { try Self.write(key, to: path, exclusive: true) }

    /// Writes the key a rotation moves to, replacing a staged key left by an earlier one.
    func stage(_ key: SymmetricKey) throws { try Self.write(key, to: stagedPath, exclusive: false) }

    /// Makes the staged key the key (an atomic rename).
    func commitStaged() throws {
        guard rename(stagedPath, path) == 0 else {
            throw HeraldStartupError("cannot rename \(stagedPath) to \(path): \(String(cString: strerror(errno)))")
        }
        Self.syncDirectory(of: path)
    }

    func remove() { unlink(path) }
    func removeStaged() { unlink(stagedPath) }

    /// Creates the file with mode 0600 (never readable by others, not even for a moment), writes
    /// the key and syncs it to disk.
    private static func write(_ key: SymmetricKey, to path: String, exclusive: Bool) throws {
        let text = key.withUnsafeBytes { Data($0).base64EncodedString() } + "\n"
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC)
        let descriptor = open(path, flags, 0o600)
        guard descriptor >= 0 else {
            throw HeraldStartupError("cannot write the main key file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        // An existing staged file keeps its mode through O_TRUNC: make sure of 0600.
        fchmod(descriptor, 0o600)
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(descriptor) == 0 else {
            throw HeraldStartupError("cannot write the main key file \(path): \(String(cString: strerror(errno)))")
        }
        syncDirectory(of: path)
    }

    private static func syncDirectory(of path: String) {
        let directory = (path as NSString).deletingLastPathComponent
        let descriptor = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        fsync(descriptor)
        close(descriptor)
    }
}
