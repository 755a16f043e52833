import GRDB
import HeraldCore

/// Translates GRDB and SQLite errors into `StoreError` at the store boundary. Messages name the
/// failure only: never SQL arguments, payloads or secrets.
enum SQLiteErrorMapping {
    static func storeError(_ error: any Error) -> StoreError {
        if let error = error as? StoreError { return error }
        if let error = error as? DatabaseError {
            switch error.resultCode {
            case .SQLITE_CONSTRAINT:
                return .conflict("the resource conflicts with an existing one")
            case .SQLITE_BUSY, .SQLITE_LOCKED:
                return StoreError(.unavailable, "the database is busy")
            case .SQLITE_CORRUPT, .SQLITE_NOTADB:
                return StoreError(.corrupt, "the database file is corrupt")
            case .SQLITE_FULL:
                return StoreError(.storageFull, "the disk is full or the database reached its size limit (SQLite: database or disk is full)")
            case .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_READONLY:
                return StoreError(.unavailable, "the database cannot be opened for writing")
            default:
                return StoreError(.unavailable, "database error (SQLite code \(error.extendedResultCode.rawValue))")
            }
        }
        if error is CancellationError { return StoreError(.unavailable, "the database operation was cancelled") }
        if error is DecodingError { return StoreError(.corrupt, "stored data could not be read back") }
        if error is EncodingError { return StoreError(.unavailable, "data could not be encoded for storage") }
        return StoreError(.unavailable, "database error")
    }
}
