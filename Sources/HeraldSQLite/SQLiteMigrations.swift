import GRDB

/// The schema, as append-only named migrations of raw SQL. Never edit a registered migration:
/// append a new one. Migrations never use app types.
///
/// Dates are stored as REAL seconds since 2001-01-01 (`Date.timeIntervalSinceReferenceDate`), which
/// round-trips a `Date` exactly and compares like one. Ids are time-sortable TEXT.
enum SQLiteMigrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-schema") { db in
            try db.execute(sql: v1)
        }
        migrator.registerMigration("v2-expiry-indexes") { db in
            try db.execute(sql: v2)
        }
        migrator.registerMigration("v3-fair-queue") { db in
            try db.execute(sql: v3)
        }
        migrator.registerMigration("v4-sealed-at-rest") { db in
            try db.execute(sql: v4)
        }
        migrator.registerMigration("v5-token-names") { db in
            try db.execute(sql: v5)
        }
        migrator.registerMigration("v6-message-retention") { db in
            try db.execute(sql: v6)
        }
        return migrator
    }

    private static let v1 = """
        CREATE TABLE applications (
            id TEXT PRIMARY KEY NOT NULL,
            uid TEXT UNIQUE,
            name TEXT NOT NULL,
            throttle_rate INTEGER,
            metadata TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );

        CREATE TABLE endpoints (
            id TEXT PRIMARY KEY NOT NULL,
            app_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
            uid TEXT,
            url TEXT NOT NULL,
            description TEXT NOT NULL,
            disabled INTEGER NOT NULL,
            event_types TEXT,
            channels TEXT,
            throttle_rate INTEGER,
            metadata TEXT NOT NULL,
            headers TEXT NOT NULL,
            secrets BLOB NOT NULL,
            secrets_sealed INTEGER NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            failing_since REAL,
            UNIQUE (app_id, uid)
        );

        CREATE TABLE event_types (
            name TEXT PRIMARY KEY NOT NULL,
            description TEXT NOT NULL,
            archived INTEGER NOT NULL,
            deprecated INTEGER NOT NULL,
            schemas BLOB,
            feature_flag TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );

        CREATE TABLE messages (
            id TEXT PRIMARY KEY NOT NULL,
            app_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
            event_id TEXT,
            event_type TEXT NOT NULL,
            payload BLOB,
            channels TEXT,
            created_at REAL NOT NULL,
            payload_expires_at REAL NOT NULL,
            UNIQUE (app_id, event_id)
        );
        CREATE INDEX messages_app_id ON messages(app_id, id);

        CREATE TABLE deliveries (
            message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
            app_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
            status INTEGER NOT NULL,
            attempt_count INTEGER NOT NULL,
            next_attempt_at REAL,
            last_attempt_at REAL,
            lease_expires_at REAL,
            trigger_type INTEGER NOT NULL,
            event_type TEXT NOT NULL,
            channels TEXT,
            created_at REAL NOT NULL,
            PRIMARY KEY (message_id, endpoint_id)
        );
        CREATE INDEX deliveries_endpoint ON deliveries(endpoint_id, message_id);
        CREATE INDEX deliveries_app ON deliveries(app_id);
        CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE status = 1;
        CREATE INDEX deliveries_leased ON deliveries(lease_expires_at) WHERE status = 3;

        CREATE TABLE attempts (
            id TEXT PRIMARY KEY NOT NULL,
            message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
            app_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
            url TEXT NOT NULL,
            response_status_code INTEGER NOT NULL,
            response TEXT NOT NULL,
            response_duration_ms INTEGER NOT NULL,
            status INTEGER NOT NULL,
            trigger_type INTEGER NOT NULL,
            event_type TEXT NOT NULL,
            channels TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX attempts_app ON attempts(app_id, id);
        CREATE INDEX attempts_message ON attempts(message_id);
        CREATE INDEX attempts_endpoint ON attempts(endpoint_id);

        CREATE TABLE idempotency_records (
            key TEXT PRIMARY KEY NOT NULL,
            status_code INTEGER NOT NULL,
            body BLOB NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL
        );

        CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY NOT NULL,
            hash BLOB NOT NULL,
            app_id TEXT REFERENCES applications(id) ON DELETE CASCADE,
            created_at REAL NOT NULL,
            expires_at REAL
        );
        CREATE INDEX api_tokens_hash ON api_tokens(hash);
        CREATE INDEX api_tokens_app ON api_tokens(app_id);
        """
}

extension SQLiteMigrations {
    /// Indexes for the periodic purge of expired idempotency records and payloads.
    fileprivate static let v2 = """
        CREATE INDEX idempotency_records_expires ON idempotency_records(expires_at);
        CREATE INDEX messages_payload_expires ON messages(payload_expires_at) WHERE payload IS NOT NULL;
        """
}

extension SQLiteMigrations {
    /// The fair queue: due deliveries are found per endpoint (a skip scan over endpoints, then the
    /// oldest of each), not in one global due-time order; in-flight deliveries are counted per
    /// endpoint. Endpoint rows carry a version for compare-and-set updates; deliveries count how
    /// often their worker stopped while holding them.
    fileprivate static let v3 = """
        ALTER TABLE endpoints ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE deliveries ADD COLUMN interrupted_count INTEGER NOT NULL DEFAULT 0;
        DROP INDEX deliveries_due;
        CREATE INDEX deliveries_due_by_endpoint ON deliveries(endpoint_id, next_attempt_at, app_id) WHERE status = 1;
        CREATE INDEX deliveries_sending_by_endpoint ON deliveries(endpoint_id, lease_expires_at) WHERE status = 3;
        """
}

extension SQLiteMigrations {
    /// The main key's check value (`herald_meta`), and idempotency records sealed under the key:
    /// a stored response may hold a secret or a token. Records written before stay readable as
    /// they are (`body_sealed` 0) until they expire, within 12 hours.
    fileprivate static let v4 = """
        CREATE TABLE herald_meta (
            name TEXT PRIMARY KEY NOT NULL,
            value BLOB NOT NULL
        );
        ALTER TABLE idempotency_records ADD COLUMN body_sealed INTEGER NOT NULL DEFAULT 0;
        """
}

extension SQLiteMigrations {
    /// Admin tokens carry a name, so they can be listed and told apart.
    fileprivate static let v5 = """
        ALTER TABLE api_tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
        """
}

extension SQLiteMigrations {
    /// Message retention: the purge finds the oldest messages by creation time.
    fileprivate static let v6 = """
        CREATE INDEX messages_created ON messages(created_at);
        """
}
