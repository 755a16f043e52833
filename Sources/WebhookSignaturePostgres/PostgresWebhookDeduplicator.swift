import Foundation
import Logging
import PostgresNIO
import Synchronization
import WebhookSignature

/// A `WebhookDeduplicator` kept in a PostgreSQL table, for a receiver that runs as several
/// processes or machines: a webhook id claimed by one of them is in progress (or processed) for
/// all of them, so a copy that reaches another process while the first is still being handled gets
/// a retryable answer, not a second run.
///
/// Each id is one row: claimed (until `claimTimeout`, so a process that died while handling it does
/// not hold it for ever) or processed (until `ttl`). Expired rows are reused by their next claim
/// and deleted in small batches as claims go by, so the table stays bounded by the traffic of
/// one `ttl`.
///
/// ```swift
/// let client = PostgresClient(configuration: config)      // run it: `await client.run()` in a task
/// let dedup = PostgresWebhookDeduplicator(client: client)
/// try await dedup.prepare()                                // creates the table if needed
/// let middleware = WebhookVerificationMiddleware<BasicWebhookRequestContext>(verifier: verifier, deduplicator: dedup)
/// ```
///
/// A database error never lets a copy through twice: a claim that cannot be made is reported as
/// in progress (the sender retries), and `complete`/`forget` that fail leave the claim to expire.
public final class PostgresWebhookDeduplicator: WebhookDeduplicator {
    public let client: PostgresClient
    /// The table, quoted (`webhook_deduplication` unless given).
    public let table: String
    public let ttl: TimeInterval
    public let claimTimeout: TimeInterval
    private let logger: Logger
    private let claimsSincePurge = Mutex(0)
    private static let purgeEvery = 256
    private static let purgeBatch = 1000

    private enum State: Int16 { case claimed = 1, processed = 2 }

    /// `table` must be a plain SQL name (letters, digits and `_`, optionally `schema.table`).
    public init(client: PostgresClient, table: String = "webhook_deduplication", ttl: TimeInterval = 48 * 3600,
                claimTimeout: TimeInterval = 300, logger: Logger = Logger(label: "webhook.deduplication")) {
        precondition(ttl > 0 && claimTimeout > 0, "ttl and claimTimeout must be positive")
        let parts = table.split(separator: ".", omittingEmptySubsequences: false)
        precondition((1...2).contains(parts.count) && parts.allSatisfy { part in
            !part.isEmpty && part.count <= 63 && part.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
        }, "table must be a plain SQL name such as webhook_deduplication or receiver.webhook_ids")
        self.client = client
        self.table = parts.map { "\"\($0)\"" }.joined(separator: ".")
        self.ttl = ttl
        self.claimTimeout = claimTimeout
        self.logger = logger
    }

    /// Creates the table and its index if they do not exist.
    public func prepare() async throws {
        try await run("""
            CREATE TABLE IF NOT EXISTS \(table) (
                id TEXT PRIMARY KEY,
                state SMALLINT NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL
            )
            """)
        let index = "\"" + table.replacingOccurrences(of: "\"", with: "").replacingOccurrences(of: ".", with: "_") + "_expires\""
        try await run("CREATE INDEX IF NOT EXISTS \(index) ON \(table) (expires_at)")
    }

    public func claim(_ id: String, now: Date) async -> WebhookClaim {
        await purgeNowAndThen(now: now)
        do {
            let until = now.addingTimeInterval(claimTimeout).timeIntervalSince1970
            let stamp = now.timeIntervalSince1970
            // Takes the id when it has no row or only an expired one; otherwise reads its state. A
            // row that a concurrent claim inserted is not in this statement's snapshot (the insert
            // waited for it, the select cannot see it): no row at all means exactly that, so the
            // statement runs again and sees it.
            for _ in 0..<3 {
                let rows = try await query("""
                    WITH taken AS (
                        INSERT INTO \(table) (id, state, expires_at) VALUES ($1, \(State.claimed.rawValue), $2)
                        ON CONFLICT (id) DO UPDATE SET state = excluded.state, expires_at = excluded.expires_at
                        WHERE \(table).expires_at <= $3
                        RETURNING 0::smallint AS state
                    )
                    SELECT state FROM taken
                    UNION ALL
                    SELECT state FROM \(table) WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM taken)
                    """, [id, until, stamp])
                guard let state = try rows.first?.decode(Int16.self) else { continue }
                switch State(rawValue: state) {
                case nil: return .new
                case .claimed: return .inProgress
                case .processed: return .processed
                }
            }
            return .inProgress
        } catch {
            logger.warning("webhook deduplication unavailable; asking the sender to retry", metadata: ["webhook.error": "\(String(reflecting: type(of: error)))"])
            return .inProgress
        }
    }

    public func complete(_ id: String, now: Date) async {
        do {
            try await run("UPDATE \(table) SET state = \(State.processed.rawValue), expires_at = $2 WHERE id = $1",
                          [id, now.addingTimeInterval(ttl).timeIntervalSince1970])
        } catch {
            logger.warning("could not mark a webhook processed; its claim expires instead", metadata: ["webhook.id": "\(id)"])
        }
    }

    public func markSeen(_ id: String, now: Date) async -> Bool {
        do {
            let rows = try await query("""
                INSERT INTO \(table) (id, state, expires_at) VALUES ($1, \(State.processed.rawValue), $2)
                ON CONFLICT (id) DO UPDATE SET state = excluded.state, expires_at = excluded.expires_at
                WHERE \(table).expires_at <= $3
                RETURNING 1
                """, [id, now.addingTimeInterval(ttl).timeIntervalSince1970, now.timeIntervalSince1970])
            return !rows.isEmpty
        } catch {
            logger.warning("webhook deduplication unavailable", metadata: ["webhook.id": "\(id)"])
            return false
        }
    }

    public func forget(_ id: String) async {
        do {
            try await run("DELETE FROM \(table) WHERE id = $1", [id])
        } catch {
            logger.warning("could not forget a webhook id; its claim expires instead", metadata: ["webhook.id": "\(id)"])
        }
    }

    /// Deletes up to `limit` rows that expired at or before `now`; returns how many. Claims call
    /// it now and then by themselves.
    @discardableResult
    public func purgeExpired(now: Date, limit: Int = 1000) async throws -> Int {
        try await query("""
            DELETE FROM \(table) WHERE id IN (
                SELECT id FROM \(table) WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
            ) RETURNING 1
            """, [now.timeIntervalSince1970, limit]).count
    }

    /// How many ids the table holds (claimed or processed, expired or not).
    public func count() async throws -> Int {
        try await query("SELECT COUNT(*)::bigint FROM \(table)").first?.decode(Int.self) ?? 0
    }

    private func purgeNowAndThen(now: Date) async {
        let due = claimsSincePurge.withLock { count in
            count += 1
            guard count >= Self.purgeEvery else { return false }
            count = 0
            return true
        }
        if due { _ = try? await purgeExpired(now: now, limit: Self.purgeBatch) }
    }

    // MARK: Queries

    private func query(_ sql: String, _ values: [any PostgresEncodable & Sendable] = []) async throws -> [PostgresRow] {
        var bindings = PostgresBindings(capacity: values.count)
        for value in values { try bindings.append(value) }
        var rows: [PostgresRow] = []
        for try await row in try await client.query(PostgresQuery(unsafeSQL: sql, binds: bindings), logger: logger) {
            rows.append(row)
        }
        return rows
    }

    private func run(_ sql: String, _ values: [any PostgresEncodable & Sendable] = []) async throws {
        _ = try await query(sql, values)
    }
}
