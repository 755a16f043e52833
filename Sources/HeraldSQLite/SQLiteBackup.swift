import Foundation
import GRDB
import HeraldCore
#if canImport(Glibc)
import Glibc
#endif

/// A consistent copy of a live SQLite database, made with SQLite's online backup: it reads one
/// snapshot (in WAL mode, without stopping writers) and copies every page of it.
///
/// ```swift
/// let pages = try SQLiteBackup.copy(from: "herald.sqlite", to: "backup.sqlite")
/// ```
public enum SQLiteBackup {
    /// Copies the database at `source` to a new file at `destination`, created with mode 0600 and
    /// moved into place only once complete. With `replace`, an existing destination (and its
    /// `-wal` and `-shm` files) is replaced; without, an existing one is an error. Returns the
    /// number of pages copied. Errors are `StoreError`s, with a message safe to print.
    @discardableResult
    public static func copy(from source: String, to destination: String, replace: Bool = false) throws -> Int {
        let manager = FileManager.default
        guard manager.fileExists(atPath: source) else { throw StoreError(.notFound, "\(source) does not exist") }
        let leftovers = [destination, destination + "-wal", destination + "-shm"].filter { manager.fileExists(atPath: $0) }
        if !leftovers.isEmpty && !replace {
            throw StoreError(.conflict, "\(leftovers[0]) already exists (use --force to replace it)")
        }
        let partial = destination + ".partial"
        try? manager.removeItem(atPath: partial)
        try? manager.removeItem(atPath: partial + "-journal")
        // Created 0600 before SQLite opens it; SQLite gives its journal the same mode.
        let descriptor = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw StoreError(.unavailable, "cannot create \(partial): \(String(cString: strerror(errno)))")
        }
        fchmod(descriptor, 0o600)
        close(descriptor)
        var done = false
        defer { if !done { try? manager.removeItem(atPath: partial) } }
        var pages = 0
        do {
            var readOnly = GRDB.Configuration()
            readOnly.readonly = true
            readOnly.busyMode = .timeout(10)
            readOnly.label = "herald.backup.source"
            let from = try DatabaseQueue(path: source, configuration: readOnly)
            defer { try? from.close() }
            var target = GRDB.Configuration()
            target.label = "herald.backup.destination"
            let to = try DatabaseQueue(path: partial, configuration: target)
            try from.backup(to: to) { progress in pages = progress.totalPageCount }
            try to.close()
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(.unavailable, "cannot back up \(source): \(SQLiteErrorMapping.storeError(error).message)")
        }
        for leftover in leftovers { try? manager.removeItem(atPath: leftover) }
        guard rename(partial, destination) == 0 else {
            throw StoreError(.unavailable, "cannot move the backup to \(destination): \(String(cString: strerror(errno)))")
        }
        done = true
        return pages
    }
}
