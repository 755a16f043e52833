import Foundation
import HeraldCore
import Logging
import PostgresNIO

/// The schema, as append-only named migrations of raw SQL statements. Never edit a registered
/// migration: append a new one. Migrations never use app types.
///
/// Safe when several nodes start at once: the runner takes a transaction-scoped advisory lock, so
/// one node migrates while the others wait, then find nothing left to do. PostgreSQL's DDL is
/// transactional, so a migration that fails leaves nothing behind.
///
/// Dates are `DOUBLE PRECISION` seconds since 2001-01-01 (`Date.timeIntervalSinceReferenceDate`),
/// which round-trip a `Date` exactly (a `timestamptz` keeps microseconds only) and compare like one.
/// Keys that lists page by are `COLLATE "C"`, so they sort by bytes as the ids' time order needs,
/// whatever the database's locale.
enum PostgresMigrations {
    struct Migration {
        let name: String
        let statements: [String]
    }

    /// The seed of the advisory lock the runner holds ("herald" in ASCII). The lock's key is the
    /// schema's name hashed with this seed, so deployments in different schemas of one database
    /// migrate independently; nodes of one deployment share the schema, hence the lock.
    static let lockKey: Int64 = 0x68_65_72_61_6C_64

    static let all: [Migration] = [
        Migration(name: "v1-schema", statements: v1),
        Migration(name: "v2-fair-queue", statements: v2),
        Migration(name: "v3-sealed-at-rest", statements: v3),
        Migration(name: "v4-lighter-writes", statements: v4),
        Migration(name: "v5-token-names", statements: v5),
        Migration(name: "v6-message-retention", statements: v6),
    ]

    /// Message retention: the purge finds the oldest messages by creation time.
    static let v6: [String] = [
        "CREATE INDEX messages_created ON messages(created_at)",
    ]

    /// Admin tokens carry a name, so they can be listed and told apart.
    static let v5: [String] = [
        "ALTER TABLE api_tokens ADD COLUMN name TEXT NOT NULL DEFAULT ''",
    ]

    /// Less work per message: a delivery's or an attempt's application is reached through its
    /// message and endpoint (whose foreign keys cascade from the application), so their own foreign
    /// keys to `applications` only cost a check per row; lapsed leases are found through
    /// `deliveries_sending_by_endpoint` (in-flight rows only), so `deliveries_leased` goes.
    static let v4: [String] = [
        "ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_app_id_fkey",
        "ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_app_id_fkey",
        "DROP INDEX IF EXISTS deliveries_leased",
    ]

    /// The main key's check value (`herald_meta`), and idempotency records sealed under the key:
    /// a stored response may hold a secret or a token. Records written before stay readable as
    /// they are (`body_sealed` false) until they expire, within 12 hours.
    static let v3: [String] = [
        "CREATE TABLE herald_meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL)",
        "ALTER TABLE idempotency_records ADD COLUMN body_sealed BOOLEAN NOT NULL DEFAULT false",
    ]

    /// The fair queue: due deliveries are found per endpoint (a skip scan over endpoints, then the
    /// oldest of each), not in one global due-time order; in-flight deliveries are counted per
    /// endpoint. Endpoint rows carry a version for compare-and-set updates; deliveries count how
    /// often their worker stopped while holding them.
    static let v2: [String] = [
        "ALTER TABLE endpoints ADD COLUMN version BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE deliveries ADD COLUMN interrupted_count INTEGER NOT NULL DEFAULT 0",
        "DROP INDEX deliveries_due",
        "CREATE INDEX deliveries_due_by_endpoint ON deliveries(endpoint_id, next_attempt_at) INCLUDE (app_id) WHERE status = 1",
        "CREATE INDEX deliveries_sending_by_endpoint ON deliveries(endpoint_id, lease_expires_at) WHERE status = 3",
    ]

    /// Applies every migration not applied yet, in one transaction under the schema's advisory
    /// lock. Throws a `.corrupt` `StoreError` when the database was migrated by a newer Herald, and
    /// an `.unavailable` one naming the wait when the lock or a table stays held for `timeout`.
    ///
    /// Every statement's rows are read to the end: PostgresNIO reports an error that comes after
    /// a statement's row description (a lock wait cut short, say) only to whoever reads the rows,
    /// and an unread one would surface as the next statement's "transaction aborted" (25P02).
    static func migrate(client: PostgresClient, schema: String?, timeout: Duration, logger: Logger) async throws {
        // The server gives up well before the caller's deadline (which also covers connecting), so
        // its reason is the one seen.
        let serverTimeout = timeout * 3 / 4
        let milliseconds = max(500, Int(serverTimeout / .milliseconds(1)))
        do {
            try await client.withTransaction(logger: logger) { connection in
                try await connection.rows(PostgresQuery(unsafeSQL: "SET LOCAL statement_timeout = \(milliseconds)"), logger: logger)
                try await connection.rows("SELECT pg_advisory_xact_lock(hashtextextended(\(schema ?? ""), \(lockKey)))", logger: logger)
                if let schema {
                    // A plain identifier, checked by the configuration.
                    try await connection.rows(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \"\(schema)\""), logger: logger)
                }
                try await connection.rows("""
                    CREATE TABLE IF NOT EXISTS herald_migrations (
                        name TEXT PRIMARY KEY,
                        applied_at DOUBLE PRECISION NOT NULL
                    )
                    """, logger: logger)
                var applied: Set<String> = []
                for try await name in try await connection.query("SELECT name FROM herald_migrations", logger: logger).decode(String.self) {
                    applied.insert(name)
                }
                let known = Set(all.map(\.name))
                if let unknown = applied.subtracting(known).sorted().first {
                    throw StoreError(.corrupt, "the database was migrated by a newer Herald (migration '\(unknown)'); run that version or newer")
                }
                for migration in all where !applied.contains(migration.name) {
                    logger.info("applying migration", metadata: ["herald.migration": "\(migration.name)"])
                    for statement in migration.statements {
                        try await connection.rows(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    let now = Date().timeIntervalSinceReferenceDate
                    try await connection.rows("INSERT INTO herald_migrations (name, applied_at) VALUES (\(migration.name), \(now))", logger: logger)
                }
            }
        } catch {
            if PostgresErrorMapping.sqlState(error) == "57014" {
                throw StoreError(.unavailable, "the schema stayed locked for \(serverTimeout) (another node migrating it, or a session holding one of its tables); nothing was changed (SQLSTATE 57014)")
            }
            throw error
        }
    }

    private static let v1: [String] = [
        """
        CREATE TABLE applications (
            id TEXT COLLATE "C" PRIMARY KEY,
            uid TEXT CONSTRAINT applications_uid_unique UNIQUE,
            name TEXT NOT NULL,
            throttle_rate BIGINT,
            metadata TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )
        """,
        """
        CREATE TABLE endpoints (
            id TEXT COLLATE "C" PRIMARY KEY,
            app_id TEXT COLLATE "C" NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
            uid TEXT,
            url TEXT NOT NULL,
            description TEXT NOT NULL,
            disabled BOOLEAN NOT NULL,
            event_types TEXT[],
            channels TEXT[],
            throttle_rate BIGINT,
            metadata TEXT NOT NULL,
            headers TEXT NOT NULL,
            secrets BYTEA NOT NULL,
            secrets_sealed BOOLEAN NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            failing_since DOUBLE PRECISION,
            CONSTRAINT endpoints_uid_unique UNIQUE (app_id, uid)
        )
        """,
        "CREATE INDEX endpoints_app ON endpoints(app_id, id)",
        """
        CREATE TABLE event_types (
            name TEXT COLLATE "C" PRIMARY KEY,
            description TEXT NOT NULL,
            archived BOOLEAN NOT NULL,
            deprecated BOOLEAN NOT NULL,
            schemas BYTEA,
            feature_flag TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )
        """,
        """
        CREATE TABLE messages (
            id TEXT COLLATE "C" PRIMARY KEY,
            app_id TEXT COLLATE "C" NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
            event_id TEXT,
            event_type TEXT NOT NULL,
            payload BYTEA,
            channels TEXT[],
            created_at DOUBLE PRECISION NOT NULL,
            payload_expires_at DOUBLE PRECISION NOT NULL,
            CONSTRAINT messages_event_id_unique UNIQUE (app_id, event_id)
        )
        """,
        "CREATE INDEX messages_app ON messages(app_id, id)",
        "CREATE INDEX messages_payload_expires ON messages(payload_expires_at) WHERE payload IS NOT NULL",
        """
        CREATE TABLE deliveries (
            message_id TEXT COLLATE "C" NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            endpoint_id TEXT COLLATE "C" NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
            app_id TEXT COLLATE "C" NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
            status SMALLINT NOT NULL,
            attempt_count BIGINT NOT NULL,
            next_attempt_at DOUBLE PRECISION,
            last_attempt_at DOUBLE PRECISION,
            lease_expires_at DOUBLE PRECISION,
            trigger_type SMALLINT NOT NULL,
            event_type TEXT NOT NULL,
            channels TEXT[],
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (message_id, endpoint_id)
        )
        """,
        "CREATE INDEX deliveries_endpoint ON deliveries(endpoint_id, message_id)",
        "CREATE INDEX deliveries_app ON deliveries(app_id)",
        // The queue: claims walk these partial indexes (status 1 = pending, 3 = sending).
        "CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE status = 1",
        "CREATE INDEX deliveries_leased ON deliveries(lease_expires_at) WHERE status = 3",
        """
        CREATE TABLE attempts (
            id TEXT COLLATE "C" PRIMARY KEY,
            message_id TEXT COLLATE "C" NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            endpoint_id TEXT COLLATE "C" NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
            app_id TEXT COLLATE "C" NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
            url TEXT NOT NULL,
            response_status_code BIGINT NOT NULL,
            response TEXT NOT NULL,
            response_duration_ms BIGINT NOT NULL,
            status SMALLINT NOT NULL,
            trigger_type SMALLINT NOT NULL,
            event_type TEXT NOT NULL,
            channels TEXT[],
            created_at DOUBLE PRECISION NOT NULL
        )
        """,
        "CREATE INDEX attempts_app ON attempts(app_id, id)",
        "CREATE INDEX attempts_message ON attempts(message_id)",
        "CREATE INDEX attempts_endpoint ON attempts(endpoint_id)",
        """
        CREATE TABLE idempotency_records (
            key TEXT PRIMARY KEY,
            status_code BIGINT NOT NULL,
            body BYTEA NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL
        )
        """,
        "CREATE INDEX idempotency_records_expires ON idempotency_records(expires_at)",
        """
        CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY,
            hash BYTEA NOT NULL,
            app_id TEXT COLLATE "C" REFERENCES applications(id) ON DELETE CASCADE,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION
        )
        """,
        "CREATE INDEX api_tokens_hash ON api_tokens(hash)",
        "CREATE INDEX api_tokens_app ON api_tokens(app_id)",
    ]
}
