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

/// A batch of attempt records in one statement: each attempt row, then its delivery's new state
/// (interruptions back to 0), both only while the endpoint and the message still exist (they may
/// be deleted while the attempt is in flight; then there is nothing left to record it against).
/// Arrays carry the batch; NaN and '' stand for absent dates and channel lists. Prepared, so each
/// connection plans it once.
struct RecordAttemptsStatement: PostgresPreparedStatement {
    static let name = "herald_record_attempts_v1"
    static let sql = """
        WITH input AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[],
                                 $8::bigint[], $9::smallint[], $10::smallint[], $11::text[], $12::text[], $13::double precision[],
                                 $14::smallint[], $15::bigint[], $16::double precision[], $17::double precision[],
                                 $18::double precision[], $19::smallint[], $20::text[], $21::text[], $22::double precision[])
                AS i(id, message_id, endpoint_id, app_id, url, code, response, duration, status, trigger_type, event_type,
                     channels, created_at, d_status, d_attempts, d_next, d_last, d_lease, d_trigger, d_event_type,
                     d_channels, d_created)
        ), recorded AS (
            INSERT INTO attempts (id, message_id, endpoint_id, app_id, url, response_status_code, response,
                                  response_duration_ms, status, trigger_type, event_type, channels, created_at)
            SELECT i.id, i.message_id, i.endpoint_id, i.app_id, i.url, i.code, i.response, i.duration, i.status, i.trigger_type,
                   i.event_type,
                   CASE WHEN i.channels = '' THEN NULL ELSE ARRAY(SELECT json_array_elements_text(i.channels::json)) END,
                   i.created_at
            FROM input i
            -- One index lookup per row (a hash join would read every message).
            CROSS JOIN LATERAL (SELECT 1 FROM endpoints e WHERE e.id = i.endpoint_id LIMIT 1) e
            CROSS JOIN LATERAL (SELECT 1 FROM messages m WHERE m.id = i.message_id LIMIT 1) m
            RETURNING message_id, endpoint_id
        )
        INSERT INTO deliveries (message_id, endpoint_id, app_id, status, attempt_count, next_attempt_at, last_attempt_at,
                                lease_expires_at, trigger_type, event_type, channels, created_at)
        SELECT DISTINCT ON (i.message_id, i.endpoint_id)
               i.message_id, i.endpoint_id, i.app_id, i.d_status, i.d_attempts, NULLIF(i.d_next, 'NaN'), NULLIF(i.d_last, 'NaN'),
               NULLIF(i.d_lease, 'NaN'), i.d_trigger, i.d_event_type,
               CASE WHEN i.d_channels = '' THEN NULL ELSE ARRAY(SELECT json_array_elements_text(i.d_channels::json)) END,
               i.d_created
        FROM input i
        WHERE EXISTS (SELECT 1 FROM recorded r WHERE r.message_id = i.message_id AND r.endpoint_id = i.endpoint_id)
        ORDER BY i.message_id, i.endpoint_id, i.d_attempts DESC
        ON CONFLICT (message_id, endpoint_id) DO UPDATE SET
            app_id = excluded.app_id, status = excluded.status, attempt_count = excluded.attempt_count,
            next_attempt_at = excluded.next_attempt_at, last_attempt_at = excluded.last_attempt_at,
            lease_expires_at = excluded.lease_expires_at, trigger_type = excluded.trigger_type,
            event_type = excluded.event_type, channels = excluded.channels, created_at = excluded.created_at,
            interrupted_count = 0
        RETURNING 1
        """
    typealias Row = Int

    let records: [AttemptRecord]

    func makeBindings() throws -> PostgresBindings {
        func channels(_ list: [String]?) throws -> String {
            guard let list else { return "" }
            return String(decoding: try JSONEncoder().encode(list), as: UTF8.self)
        }
        let attempts = records.map(\.attempt)
        let deliveries = records.map(\.delivery)
        var binds = PostgresBindings(capacity: 22)
        binds.append(attempts.map(\.id.rawValue))
        binds.append(attempts.map(\.messageID.rawValue))
        binds.append(attempts.map(\.endpointID.rawValue))
        binds.append(attempts.map(\.appID.rawValue))
        binds.append(attempts.map(\.url))
        binds.append(attempts.map(\.responseStatusCode))
        binds.append(attempts.map(\.response))
        binds.append(attempts.map(\.responseDurationMs))
        binds.append(attempts.map { Int(clamping: $0.status.rawValue) })
        binds.append(attempts.map { Int(clamping: $0.triggerType.rawValue) })
        binds.append(attempts.map(\.eventType))
        binds.append(try attempts.map { try channels($0.channels) })
        binds.append(attempts.map(\.createdAt.pgValue))
        binds.append(deliveries.map { Int(clamping: $0.status.rawValue) })
        binds.append(deliveries.map(\.attemptCount))
        binds.append(deliveries.map { $0.nextAttemptAt?.pgValue ?? .nan })
        binds.append(deliveries.map { $0.lastAttemptAt?.pgValue ?? .nan })
        binds.append(deliveries.map { $0.leaseExpiresAt?.pgValue ?? .nan })
        binds.append(deliveries.map { Int(clamping: $0.trigger.rawValue) })
        binds.append(deliveries.map(\.eventType))
        binds.append(try deliveries.map { try channels($0.channels) })
        binds.append(deliveries.map(\.createdAt.pgValue))
        return binds
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Int.self) }
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
