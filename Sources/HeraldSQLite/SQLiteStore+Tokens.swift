import Foundation
import GRDB
import HeraldCore

extension SQLiteStore {
    // MARK: Idempotency

    public func idempotencyRecord(key: String, now: Date) async throws -> IdempotencyRecord? {
        let codec = secrets
        return try await read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM idempotency_records WHERE key = ? AND expires_at > ?"),
                             arguments: [key, now.storedValue]).map { try SQLiteCoding.idempotencyRecord($0, codec: codec) }
        }
    }

    public func purgeExpired(now: Date) async throws -> PurgeResult {
        // In batches, each its own short write transaction, so publishes wait for one batch at most.
        var result = PurgeResult()
        let limit = Self.purgeBatchSize
        while true {
            let batch = try await relaxedWrite { db in
                try db.cachedStatement(sql: """
                    DELETE FROM idempotency_records WHERE rowid IN
                        (SELECT rowid FROM idempotency_records WHERE expires_at <= ? LIMIT ?)
                    """).execute(arguments: [now.storedValue, limit])
                let records = db.changesCount
                try db.cachedStatement(sql: """
                    UPDATE messages SET payload = NULL WHERE rowid IN
                        (SELECT rowid FROM messages WHERE payload IS NOT NULL AND payload_expires_at <= ? LIMIT ?)
                    """).execute(arguments: [now.storedValue, limit])
                return PurgeResult(idempotencyRecords: records, payloads: db.changesCount)
            }
            result = result + batch
            if batch.idempotencyRecords < limit && batch.payloads < limit { return result }
            await Task.yield()
        }
    }

    /// Rows one purge transaction touches at most.
    static let purgeBatchSize = 500

    /// Committed without waiting for fsync (`relaxedWrite`): a purge lost in a power cut runs again.
    public func purgeMessages(createdBefore cutoff: Date, now: Date, limit: Int) async throws -> PurgeResult {
        try await relaxedWrite { db in
            // Oldest first (`messages_created`); a message with a delivery in flight under a live
            // lease waits for the next round (the primary key of deliveries starts with the message).
            let ids = try String.fetchAll(db.cachedStatement(sql: """
                SELECT id FROM messages m WHERE created_at < ?
                  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.status = 3 AND d.lease_expires_at >= ?)
                ORDER BY created_at LIMIT ?
                """), arguments: [cutoff.storedValue, now.storedValue, max(0, limit)])
            guard !ids.isEmpty else { return PurgeResult() }
            let marks = Array(repeating: "?", count: ids.count).joined(separator: ",")
            let arguments = StatementArguments(ids)
            try db.execute(sql: "DELETE FROM attempts WHERE message_id IN (\(marks))", arguments: arguments)
            let attempts = db.changesCount
            try db.execute(sql: "DELETE FROM deliveries WHERE message_id IN (\(marks))", arguments: arguments)
            let deliveries = db.changesCount
            try db.execute(sql: "DELETE FROM messages WHERE id IN (\(marks))", arguments: arguments)
            return PurgeResult(messages: db.changesCount, deliveries: deliveries, attempts: attempts)
        }
    }

    public func saveIdempotencyRecord(_ record: IdempotencyRecord) async throws {
        let body = try secrets.sealBytes(record.body)
        try await write { db in
            // First wins: an existing record is replaced only once it has expired.
            try db.cachedStatement(sql: """
                INSERT INTO idempotency_records (key, status_code, body, body_sealed, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (key) DO UPDATE SET
                    status_code = excluded.status_code, body = excluded.body, body_sealed = excluded.body_sealed,
                    created_at = excluded.created_at, expires_at = excluded.expires_at
                WHERE idempotency_records.expires_at <= excluded.created_at
                """).execute(arguments: [record.key, record.statusCode, Data(body.bytes), body.sealed, record.createdAt.storedValue,
                                 record.expiresAt.storedValue])
        }
    }

    // MARK: Tokens

    public func createToken(_ token: APIToken) async throws {
        try await write { db in
            var appID: String?
            if case .application(let id) = token.scope {
                guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM applications WHERE id = ?"), arguments: [id.rawValue]) != nil else {
                    throw StoreError.notFound("application")
                }
                appID = id.rawValue
            }
            try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO api_tokens (id, hash, app_id, created_at, expires_at, name) VALUES (?, ?, ?, ?, ?, ?)
                """).execute(arguments: [token.id.rawValue, Data(token.hash), appID, token.createdAt.storedValue,
                                 token.expiresAt?.storedValue, token.name])
        }
    }

    public func token(hash: [UInt8]) async throws -> APIToken? {
        try await read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM api_tokens WHERE hash = ? LIMIT 1"), arguments: [Data(hash)]).map(SQLiteCoding.token)
        }
    }

    public func deleteToken(id: TokenID) async throws {
        try await write { db in
            try db.cachedStatement(sql: "DELETE FROM api_tokens WHERE id = ?").execute(arguments: [id.rawValue])
        }
    }

    public func adminTokenCount() async throws -> Int {
        try await read { db in
            try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM api_tokens WHERE app_id IS NULL")) ?? 0
        }
    }

    public func listAdminTokens(_ page: PageRequest) async throws -> Page<APIToken> {
        let paging = SQLPaging(page)
        return try await read { db in
            var query = SQLQuery("SELECT * FROM api_tokens")
            query.conditions.append("app_id IS NULL")
            paging.apply(to: &query, key: "id")
            return paging.page(try Row.fetchAll(db, sql: query.sql, arguments: query.statementArguments).map(SQLiteCoding.token)) { $0.id.rawValue }
        }
    }

    public func revokeAdminToken(id: TokenID) async throws -> Bool {
        try await write { db in
            try db.cachedStatement(sql: "DELETE FROM api_tokens WHERE id = ? AND app_id IS NULL").execute(arguments: [id.rawValue])
            return db.changesCount > 0
        }
    }
}
