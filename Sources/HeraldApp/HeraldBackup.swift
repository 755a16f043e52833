import Foundation
import HeraldCore
import HeraldSQLite
#if canImport(Glibc)
import Glibc
#endif

/// `herald backup`: a consistent copy of a live SQLite database, with its main key file, that
/// `herald serve --database sqlite:PATH` opens as it is.
public enum HeraldBackup {
    /// What a backup wrote.
    public struct Result: Sendable {
        public var pages: Int
        /// Where the main key file was copied, or nil when the key comes from `HERALD_MAIN_KEY`
        /// or the source has no key file.
        public var keyFile: String?
    }

    /// Copies `database` (a SQLite file) to `destination`, and its `<database>.key` to
    /// `<destination>.key` (mode 0600) unless `mainKeyFromEnvironment`. Throws a
    /// `HeraldStartupError` with one line to print.
    public static func run(database: DatabaseLocation, destination: String, replace: Bool,
                           mainKeyFromEnvironment: Bool) throws -> Result {
        let source: String
        switch database {
        case .sqliteFile(let path): source = path
        case .sqliteMemory: throw HeraldStartupError("--database: an in-memory database cannot be backed up")
        case .postgres:
            throw HeraldStartupError("herald backup copies SQLite databases; back up PostgreSQL with pg_dump (see the README's Backups section)")
        }
        guard !destination.isEmpty else { throw HeraldStartupError("the backup PATH is empty") }
        guard (source as NSString).standardizingPath != (destination as NSString).standardizingPath else {
            throw HeraldStartupError("the backup PATH is the database itself")
        }
        let manager = FileManager.default
        let sourceKey = source + ".key"
        let destinationKey = destination + ".key"
        let copyKey = !mainKeyFromEnvironment && manager.fileExists(atPath: sourceKey)
        if copyKey && !replace && manager.fileExists(atPath: destinationKey) {
            throw HeraldStartupError("\(destinationKey) already exists (use --force to replace it)")
        }
        let pages: Int
        do {
            pages = try SQLiteBackup.copy(from: source, to: destination, replace: replace)
        } catch let error as StoreError {
            throw HeraldStartupError("cannot back up sqlite:\(source): \(error.message)")
        }
        guard copyKey else { return Result(pages: pages, keyFile: nil) }
        guard let key = manager.contents(atPath: sourceKey) else { throw HeraldStartupError("cannot read the main key file \(sourceKey)") }
        try? manager.removeItem(atPath: destinationKey)
        // Mode 0600 from the start: never readable by others, not even for a moment.
        let descriptor = open(destinationKey, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw HeraldStartupError("cannot write the main key file \(destinationKey)") }
        defer { close(descriptor) }
        let written = key.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard written == key.count, fsync(descriptor) == 0 else { throw HeraldStartupError("cannot write the main key file \(destinationKey)") }
        return Result(pages: pages, keyFile: destinationKey)
    }
}
