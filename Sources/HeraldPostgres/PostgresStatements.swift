import Foundation
import HeraldCore
import PostgresNIO

// The statements on the hot path — publishing, claiming, recording attempts — as prepared
// statements: each connection parses and plans them once instead of on every call. Every parameter
// is cast in the SQL, so its type never depends on whether the first call bound a NULL.

/// A publish to an existing application, in one statement: nothing is written unless the
/// application exists; the idempotency record is written first and the message only when the record
/// was (first wins); a taken eventId fails the whole statement. `EndpointFilter`'s rules, in SQL.
/// Answers whether the application was found, whether the message was stored, and the endpoints
/// queued.
struct PublishStatement: PostgresPreparedStatement {
    static let name = "herald_publish_v4"
    static let sql = """
        WITH app AS (
            SELECT id FROM applications WHERE id = $1::text
        ), record AS (
            INSERT INTO idempotency_records (key, status_code, body, body_sealed, created_at, expires_at)
            SELECT $2::text, $3::bigint, $4::bytea, $17::boolean, $5::double precision, $6::double precision
            FROM app WHERE $2::text IS NOT NULL
            ON CONFLICT (key) DO UPDATE SET
                status_code = excluded.status_code, body = excluded.body, body_sealed = excluded.body_sealed,
                created_at = excluded.created_at, expires_at = excluded.expires_at
            WHERE idempotency_records.expires_at <= excluded.created_at
            RETURNING 1
        ), stored AS (
            INSERT INTO messages (id, app_id, event_id, event_type, payload, channels, created_at, payload_expires_at)
            SELECT $7::text, app.id, $8::text, $9::text, $10::bytea, $11::text[], $12::double precision, $13::double precision
            FROM app WHERE $2::text IS NULL OR EXISTS (SELECT 1 FROM record)
            RETURNING id, app_id
        ), queued AS (
            INSERT INTO deliveries (message_id, endpoint_id, app_id, status, attempt_count, next_attempt_at, lease_expires_at,
                                    trigger_type, event_type, channels, created_at)
            SELECT stored.id, e.id, stored.app_id,
                   CASE WHEN $15::double precision IS NULL OR e.id = ANY($16::text[]) THEN 1 ELSE 3 END, 0,
                   $12::double precision, CASE WHEN e.id = ANY($16::text[]) THEN NULL ELSE $15::double precision END,
                   0, $9::text, $11::text[], $12::double precision
            FROM stored JOIN endpoints e ON e.app_id = stored.app_id
            WHERE CASE WHEN $14::text IS NOT NULL THEN e.id = $14::text
                  ELSE NOT e.disabled
                       AND (e.event_types IS NULL OR cardinality(e.event_types) = 0 OR $9::text = ANY(e.event_types))
                       AND (e.channels IS NULL OR cardinality(e.channels) = 0 OR e.channels && $11::text[])
                  END
            RETURNING endpoint_id
        )
        SELECT (SELECT COUNT(*) FROM app), (SELECT COUNT(*) FROM stored), ARRAY(SELECT endpoint_id FROM queued ORDER BY endpoint_id)
        """
    typealias Row = (Int, Int, [String])

    let message: Message
    let record: IdempotencyRecord?
    /// Whether the record's body is sealed under the main key.
    let recordSealed: Bool
    let onlyEndpoint: EndpointID?
    let claimUntil: Date?
    let claimExcept: [String]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 17)
        bindings.append(message.appID.rawValue)
        bindings.append(record?.key)
        bindings.append(record?.statusCode)
        try bindings.append(record.map { Data($0.body) })
        bindings.append(record?.createdAt.pgValue)
        bindings.append(record?.expiresAt.pgValue)
        bindings.append(message.id.rawValue)
        bindings.append(message.eventID)
        bindings.append(message.eventType)
        try bindings.append(message.payload.map { Data($0) })
        bindings.append(message.channels)
        bindings.append(message.createdAt.pgValue)
        bindings.append(message.payloadExpiresAt.pgValue)
        bindings.append(onlyEndpoint?.rawValue)
        bindings.append(claimUntil?.pgValue)
        bindings.append(claimExcept)
        bindings.append(recordSealed)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

extension PostgresStore {
    /// Runs a prepared statement on a pooled connection (see `rows`) and returns its decoded rows.
    @discardableResult
    func execute<Statement: PostgresPreparedStatement>(_ statement: Statement, relaxed: Bool = false) async throws -> [Statement.Row]
    where Statement.Row: Sendable {
        let pool = relaxed ? relaxedClient : client
        let logger = self.logger
        do {
            return try await withDeadline(configuration.operationTimeout) {
                var result: [Statement.Row] = []
                for try await row in try await pool.execute(statement, logger: logger) {
                    result.append(row)
                }
                return result
            }
        } catch {
            throw PostgresErrorMapping.storeError(error)
        }
    }
}
