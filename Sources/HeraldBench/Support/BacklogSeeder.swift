import Foundation
import GRDB
import HeraldCore
import NIOConcurrencyHelpers
import PostgresNIO

/// Writes pending deliveries straight into the store's tables while the server is stopped: a
/// backlog of a million is seeded in seconds, where publishing it would take many minutes.
///
/// Depends on the schema of the existing migrations (`SQLiteMigrations` v1, `PostgresMigrations`
/// v1: tables `messages` and `deliveries`). Every column is named and only those columns are
/// written; a column added by a later migration must have a default (or be nullable) for this to
/// keep working. Encodings used: dates are seconds since 2001-01-01; delivery status 1 = pending,
/// trigger type 0 = scheduled; payloads are the JSON bytes.
///
/// Message ids are `msg_` + the 9-character time part of now + the row number as 13 decimal
/// digits: valid, time-sortable ids (decimal digits are base62 digits) that cannot collide with
/// the API's, whose last 13 characters are random.
struct BacklogSeeder {
    let app: String
    let endpoint: String
    let count: Int
    let eventType = "bench.backlog"

    /// The ids' common prefix: `msg_` and the time part of now.
    static func idPrefix(at date: Date) -> String {
        String(MessageID.lowerBound(for: date).rawValue.dropLast(13))
    }

    /// Seeds a SQLite file in one transaction; returns the pending deliveries of the app afterwards.
    func seedSQLite(path: String) throws -> Int {
        let now = Date()
        let prefix = Self.idPrefix(at: now)
        let created = now.timeIntervalSinceReferenceDate
        let expires = now.addingTimeInterval(30 * 86400).timeIntervalSinceReferenceDate
        var configuration = Configuration()
        configuration.busyMode = .timeout(30)
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        let pending = try queue.write { db -> Int in
            try db.execute(sql: """
                INSERT INTO messages (id, app_id, event_id, event_type, payload, channels, created_at, payload_expires_at)
                WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
                SELECT ? || printf('%013d', i), ?, NULL, ?, CAST('{"i":' || i || ',"backlog":true}' AS BLOB), NULL, ?, ? FROM n
                """, arguments: [count, prefix, app, eventType, created, expires])
            try db.execute(sql: """
                INSERT INTO deliveries (message_id, endpoint_id, app_id, status, attempt_count, next_attempt_at, last_attempt_at,
                                        lease_expires_at, trigger_type, event_type, channels, created_at)
                SELECT id, ?, app_id, 1, 0, ?, NULL, NULL, 0, event_type, NULL, created_at FROM messages
                WHERE app_id = ? AND id >= ? AND id < ?
                """, arguments: [endpoint, created, app, prefix, prefix + "z"])
            return try Int.fetchOne(db, sql: "SELECT count(*) FROM deliveries WHERE app_id = ? AND status = 1", arguments: [app]) ?? 0
        }
        try queue.close()
        return pending
    }

    /// Seeds a PostgreSQL schema (the URL's) with `generate_series`; returns the app's pending deliveries.
    func seedPostgres(url: String, timeout: Duration) async throws -> Int {
        let now = Date()
        let prefix = Self.idPrefix(at: now)
        let created = now.timeIntervalSinceReferenceDate
        let expires = now.addingTimeInterval(30 * 86400).timeIntervalSinceReferenceDate
        let result = ManagedAtomicBox(0)
        let (app, endpoint, count, eventType) = (self.app, self.endpoint, self.count, self.eventType)
        try await PostgresAdmin.execute(url: url, timeout: timeout) { connection in
            try await connection.query("BEGIN", logger: PostgresAdmin.logger)
            try await connection.query("""
                INSERT INTO messages (id, app_id, event_id, event_type, payload, channels, created_at, payload_expires_at)
                SELECT \(prefix) || lpad(i::text, 13, '0'), \(app), NULL, \(eventType),
                       convert_to('{"i":' || i || ',"backlog":true}', 'UTF8'), NULL, \(created), \(expires)
                FROM generate_series(0, \(count - 1)) AS i
                """, logger: PostgresAdmin.logger)
            try await connection.query("""
                INSERT INTO deliveries (message_id, endpoint_id, app_id, status, attempt_count, next_attempt_at, last_attempt_at,
                                        lease_expires_at, trigger_type, event_type, channels, created_at)
                SELECT id, \(endpoint), app_id, 1, 0, \(created), NULL, NULL, 0, event_type, NULL, created_at FROM messages
                WHERE app_id = \(app) AND id >= \(prefix) AND id < \(prefix + "z")
                """, logger: PostgresAdmin.logger)
            try await connection.query("COMMIT", logger: PostgresAdmin.logger)
            try await connection.query("ANALYZE deliveries", logger: PostgresAdmin.logger)
            try await connection.query("ANALYZE messages", logger: PostgresAdmin.logger)
            let rows = try await connection.query("SELECT count(*)::bigint FROM deliveries WHERE app_id = \(app) AND status = 1", logger: PostgresAdmin.logger)
            for try await value in rows.decode(Int64.self) { result.set(Int(value)) }
        }
        return result.get()
    }
}

/// A locked integer box (the seeder's count leaves a `@Sendable` closure).
final class ManagedAtomicBox: Sendable {
    private let value: NIOLockedValueBox<Int>
    init(_ initial: Int) { value = NIOLockedValueBox(initial) }
    func set(_ new: Int) { value.withLockedValue { $0 = new } }
    func get() -> Int { value.withLockedValue { $0 } }
}
