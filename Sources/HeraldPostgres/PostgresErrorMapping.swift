import HeraldCore
import PostgresNIO

/// Translates PostgresNIO errors into `StoreError` at the store boundary. Messages name the failure
/// only (a SQLSTATE, a constraint): never SQL, bound values, payloads or secrets.
enum PostgresErrorMapping {
    /// The error that made a transaction fail (its body's, else BEGIN's, COMMIT's or ROLLBACK's);
    /// any other error as it is.
    static func cause(_ error: any Error) -> any Error {
        guard let error = error as? PostgresTransactionError else { return error }
        return error.closureError ?? error.beginError ?? error.commitError ?? error.rollbackError ?? StoreError(.unavailable, "transaction failed")
    }

    /// The SQLSTATE of a server error, looking inside a failed transaction.
    static func sqlState(_ error: any Error) -> String? {
        guard let error = cause(error) as? PSQLError, error.code == .server else { return nil }
        return error.serverInfo?[.sqlState]
    }

    static func storeError(_ error: any Error) -> StoreError {
        let error = cause(error)
        if let error = error as? StoreError { return error }
        if let error = error as? PSQLError, let state = sqlState(error) {
            let constraint = error.serverInfo?[.constraintName] ?? ""
            switch state {
            case "23505":  // unique_violation
                switch constraint {
                case "messages_event_id_unique": return .conflict("a message with this eventId already exists")
                case "applications_uid_unique": return .conflict("an application with this uid already exists")
                case "endpoints_uid_unique": return .conflict("an endpoint with this uid already exists")
                case "event_types_pkey": return .conflict("the event type already exists")
                default: return .conflict("the resource conflicts with an existing one")
                }
            case "23503":  // foreign_key_violation: what it refers to was deleted meanwhile
                return .notFound(constraint.hasSuffix("app_id_fkey") ? "application" : "resource")
            case "40001", "40P01":
                return StoreError(.unavailable, "the database aborted a conflicting transaction (SQLSTATE \(state)); retry")
            case "53100":  // disk_full
                return StoreError(.storageFull, "the PostgreSQL server's disk is full (SQLSTATE 53100)")
            case "53300", "57P01", "57P02", "57P03":
                return StoreError(.unavailable, "the database is unavailable (SQLSTATE \(state))")
            default:
                return StoreError(.unavailable, "database error (SQLSTATE \(state))")
            }
        }
        if error is PostgresDecodingError { return StoreError(.corrupt, "stored data could not be read back") }
        if error is CancellationError { return StoreError(.unavailable, "the database operation was cancelled") }
        return StoreError(.unavailable, "the database is unreachable (\(reason(error)))")
    }

    /// A short reason, safe to show: PSQLError's code, or the error type.
    static func reason(_ error: any Error) -> String {
        let error = cause(error)
        if let error = error as? StoreError { return error.message }
        if let error = error as? PSQLError {
            if let state = sqlState(error) {
                // The server's message text may quote values; the SQLSTATE says enough.
                switch state {
                case "28P01", "28000": return "authentication failed (SQLSTATE \(state))"
                case "3D000": return "the database does not exist (SQLSTATE \(state))"
                case "3F000": return "the schema does not exist (SQLSTATE \(state))"
                case "42501": return "permission denied (SQLSTATE \(state))"
                case "57P03": return "the server is starting up or shutting down (SQLSTATE \(state))"
                default: return "server error SQLSTATE \(state)"
                }
            }
            if let underlying = error.underlying { return "\(error.code): \(underlying)" }
            return "\(error.code)"
        }
        return "\(type(of: error))"
    }
}
