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
        try await write { db in
            try db.cachedStatement(sql: "DELETE FROM idempotency_records WHERE expires_at <= ?").execute(arguments: [now.storedValue])
            let records = db.changesCount
            try db.cachedStatement(sql: "UPDATE messages SET payload = NULL WHERE payload IS NOT NULL AND payload_expires_at <= ?")
                .execute(arguments: [now.storedValue])
            return PurgeResult(idempotencyRecords: records, payloads: db.changesCount)
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
