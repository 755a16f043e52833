import Foundation
import HeraldCore
import Logging
import PostgresNIO

// Applications, endpoints and event types: plain rows, uniqueness enforced by the schema's
// constraints (so two nodes creating the same uid at once get one row and one conflict).
extension PostgresStore {
    // MARK: Applications

    public func createApplication(_ application: Application) async throws {
        try await rows(Self.insertQuery(application))
    }

    static func insertQuery(_ application: Application, onConflictDoNothing: Bool = false) throws -> PostgresQuery {
        let metadata = try PostgresCoding.json(application.metadata)
        var query: PostgresQuery = """
            INSERT INTO applications (id, uid, name, throttle_rate, metadata, created_at, updated_at)
            VALUES (\(application.id.rawValue), \(application.uid), \(application.name), \(application.throttleRate),
                    \(metadata), \(application.createdAt.pgValue), \(application.updatedAt.pgValue))
            """
        if onConflictDoNothing { query.sql += " ON CONFLICT DO NOTHING" }
        return query
    }

    public func application(ref: String) async throws -> Application? {
        // An id match wins over a uid match.
        try await rows("""
            SELECT * FROM applications WHERE id = \(ref) OR uid = \(ref) ORDER BY (id = \(ref)) DESC LIMIT 1
            """).first.map(PostgresCoding.application)
    }

    public func listApplications(_ page: PageRequest) async throws -> Page<Application> {
        let window = PageWindow(page)
        var query = PGQuery("SELECT * FROM applications")
        query.page(window, key: "id")
        return window.page(try await rows(query.query).map(PostgresCoding.application)) { $0.id.rawValue }
    }

    public func updateApplication(_ application: Application) async throws {
        let metadata = try PostgresCoding.json(application.metadata)
        let updated = try await rows("""
            UPDATE applications SET uid = \(application.uid), name = \(application.name), throttle_rate = \(application.throttleRate),
                metadata = \(metadata), created_at = \(application.createdAt.pgValue), updated_at = \(application.updatedAt.pgValue)
            WHERE id = \(application.id.rawValue) RETURNING 1
            """)
        guard !updated.isEmpty else { throw StoreError.notFound("application") }
    }

    public func deleteApplication(_ id: ApplicationID) async throws {
        // Foreign keys cascade to endpoints, messages, deliveries, attempts and app-scoped tokens.
        let deleted = try await rows("DELETE FROM applications WHERE id = \(id.rawValue) RETURNING 1")
        guard !deleted.isEmpty else { throw StoreError.notFound("application") }
    }

    // MARK: Endpoints

    public func createEndpoint(_ endpoint: Endpoint) async throws {
        let inserted = try await rows(insertEndpointQuery(endpoint))
        guard !inserted.isEmpty else { throw StoreError.notFound("application") }
    }

    /// Inserts the endpoint, secrets and headers sealed, if its application exists.
    func insertEndpointQuery(_ endpoint: Endpoint) throws -> PostgresQuery {
        let sealed = try secrets.seal(endpoint.secrets)
        let metadata = try PostgresCoding.json(endpoint.metadata)
        let headers = try secrets.sealText(PostgresCoding.json(endpoint.headers))
        return try """
            INSERT INTO endpoints (id, app_id, uid, url, description, disabled, event_types, channels, throttle_rate,
                                   metadata, headers, secrets, secrets_sealed, created_at, updated_at, failing_since)
            SELECT \(endpoint.id.rawValue)::text, id, \(endpoint.uid)::text, \(endpoint.url)::text, \(endpoint.description)::text,
                   \(endpoint.disabled)::boolean, \(endpoint.eventTypes)::text[], \(endpoint.channels)::text[],
                   \(endpoint.throttleRate)::bigint, \(metadata)::text, \(headers)::text, \(Data(sealed.bytes))::bytea,
                   \(sealed.sealed)::boolean, \(endpoint.createdAt.pgValue)::double precision,
                   \(endpoint.updatedAt.pgValue)::double precision, \(endpoint.failingSince?.pgValue)::double precision
            FROM applications WHERE id = \(endpoint.appID.rawValue)
            RETURNING 1
            """
    }

    public func endpoint(app: ApplicationID, ref: String) async throws -> Endpoint? {
        let codec = secrets
        return try await rows("""
            SELECT * FROM endpoints WHERE app_id = \(app.rawValue) AND (id = \(ref) OR uid = \(ref))
            ORDER BY (id = \(ref)) DESC LIMIT 1
            """).first.map { try PostgresCoding.endpoint($0, secrets: codec) }
    }

    public func listEndpoints(app: ApplicationID, _ page: PageRequest) async throws -> Page<Endpoint> {
        let window = PageWindow(page)
        let codec = secrets
        var query = PGQuery("SELECT * FROM endpoints")
        query.require("app_id = ?", app.rawValue)
        query.page(window, key: "id")
        return window.page(try await rows(query.query).map { try PostgresCoding.endpoint($0, secrets: codec) }) { $0.id.rawValue }
    }

    public func updateEndpoint(_ endpoint: Endpoint) async throws {
        // An endpoint read back without its (unreadable) secrets keeps the stored ones.
        let keepSecrets = endpoint.unreadable != nil && endpoint.secrets.isEmpty
        let sealed = keepSecrets ? nil : try secrets.seal(endpoint.secrets)
        let metadata = try PostgresCoding.json(endpoint.metadata)
        let headers = try secrets.sealText(PostgresCoding.json(endpoint.headers))
        let updated = try await rows("""
            UPDATE endpoints SET uid = \(endpoint.uid), url = \(endpoint.url), description = \(endpoint.description),
                disabled = \(endpoint.disabled), event_types = \(endpoint.eventTypes), channels = \(endpoint.channels),
                throttle_rate = \(endpoint.throttleRate), metadata = \(metadata), headers = \(headers),
                secrets = CASE WHEN \(keepSecrets) THEN secrets ELSE \(sealed.map { Data($0.bytes) })::bytea END,
                secrets_sealed = CASE WHEN \(keepSecrets) THEN secrets_sealed ELSE \(sealed?.sealed ?? false) END,
                created_at = \(endpoint.createdAt.pgValue), updated_at = \(endpoint.updatedAt.pgValue),
                failing_since = \(endpoint.failingSince?.pgValue), version = version + 1
            WHERE id = \(endpoint.id.rawValue) AND app_id = \(endpoint.appID.rawValue) AND version = \(endpoint.version)
            RETURNING 1
            """)
        guard updated.isEmpty else { return }
        let exists = try await !rows("SELECT 1 FROM endpoints WHERE id = \(endpoint.id.rawValue) AND app_id = \(endpoint.appID.rawValue)").isEmpty
        throw exists ? StoreError.stale("the endpoint") : StoreError.notFound("endpoint")
    }

    public func recordEndpointHealth(app: ApplicationID, endpoint: EndpointID, _ change: EndpointHealthChange, at date: Date) async throws -> Bool {
        let changed: [PostgresRandomAccessRow]
        switch change {
        case .failing(let since):
            changed = try await rows("""
                UPDATE endpoints SET failing_since = \(since.pgValue), updated_at = \(date.pgValue), version = version + 1
                WHERE id = \(endpoint.rawValue) AND app_id = \(app.rawValue) AND failing_since IS NULL RETURNING 1
                """, relaxed: true)
        case .healthy:
            changed = try await rows("""
                UPDATE endpoints SET failing_since = NULL, updated_at = \(date.pgValue), version = version + 1
                WHERE id = \(endpoint.rawValue) AND app_id = \(app.rawValue) AND failing_since IS NOT NULL RETURNING 1
                """, relaxed: true)
        case .disabled:
            changed = try await rows("""
                UPDATE endpoints SET disabled = TRUE, updated_at = \(date.pgValue), version = version + 1
                WHERE id = \(endpoint.rawValue) AND app_id = \(app.rawValue) AND NOT disabled RETURNING 1
                """, relaxed: true)
        }
        return !changed.isEmpty
    }

    public func deleteEndpoint(app: ApplicationID, id: EndpointID) async throws {
        // Foreign keys cascade to the endpoint's deliveries and attempts.
        let deleted = try await rows("DELETE FROM endpoints WHERE id = \(id.rawValue) AND app_id = \(app.rawValue) RETURNING 1")
        guard !deleted.isEmpty else { throw StoreError.notFound("endpoint") }
    }

    // MARK: Event types

    public func createEventType(_ eventType: EventType) async throws {
        try await rows(Self.insertEventTypeQuery(eventType))
    }

    static func insertEventTypeQuery(_ eventType: EventType) throws -> PostgresQuery {
        try """
            INSERT INTO event_types (name, description, archived, deprecated, schemas, feature_flag, created_at, updated_at)
            VALUES (\(eventType.name), \(eventType.description), \(eventType.archived), \(eventType.deprecated),
                    \(eventType.schemas.map { Data($0) }), \(eventType.featureFlag), \(eventType.createdAt.pgValue),
                    \(eventType.updatedAt.pgValue))
            """
    }

    public func eventType(name: String) async throws -> EventType? {
        try await rows("SELECT * FROM event_types WHERE name = \(name)").first.map(PostgresCoding.eventType)
    }

    public func listEventTypes(_ page: PageRequest, includeArchived: Bool) async throws -> Page<EventType> {
        let window = PageWindow(page)
        // Without content the schemas are not read; with it, the page stops at the byte budget.
        var query = PGQuery(page.withContent ? "SELECT * FROM event_types" : "SELECT name, description, archived, deprecated, feature_flag, created_at, updated_at, NULL::bytea AS schemas FROM event_types")
        if !includeArchived { query.conditions.append("NOT archived") }
        query.page(window, key: "name")
        let items = try await rows(query.query).map(PostgresCoding.eventType)
        let fit = page.contentFit(items.prefix(page.limit).map { $0.schemas?.count ?? 0 })
        return window.page(items, key: { $0.name }, contentFit: fit)
    }

    public func updateEventType(_ eventType: EventType) async throws {
        let updated = try await rows("""
            UPDATE event_types SET description = \(eventType.description), archived = \(eventType.archived),
                deprecated = \(eventType.deprecated), schemas = \(eventType.schemas.map { Data($0) }),
                feature_flag = \(eventType.featureFlag), created_at = \(eventType.createdAt.pgValue),
                updated_at = \(eventType.updatedAt.pgValue)
            WHERE name = \(eventType.name) RETURNING 1
            """)
        guard !updated.isEmpty else { throw StoreError.notFound("event type") }
    }

    public func deleteEventType(name: String) async throws {
        let deleted = try await rows("DELETE FROM event_types WHERE name = \(name) RETURNING 1")
        guard !deleted.isEmpty else { throw StoreError.notFound("event type") }
    }

    // MARK: Idempotency

    public func idempotencyRecord(key: String, now: Date) async throws -> IdempotencyRecord? {
        let codec = secrets
        return try await rows("SELECT * FROM idempotency_records WHERE key = \(key) AND expires_at > \(now.pgValue)")
            .first.map { try PostgresCoding.idempotencyRecord($0, codec: codec) }
    }

    public func saveIdempotencyRecord(_ record: IdempotencyRecord) async throws {
        try await rows(try Self.saveQuery(record, sealed: secrets.sealBytes(record.body)))
    }

    /// First wins: an existing record is replaced only once it has expired. Returns a row only
    /// when the record was written.
    /// `sealed` is the record's body as stored (`EndpointSecretsCodec.sealBytes`).
    static func saveQuery(_ record: IdempotencyRecord, sealed: (bytes: [UInt8], sealed: Bool)) throws -> PostgresQuery {
        try """
        INSERT INTO idempotency_records (key, status_code, body, body_sealed, created_at, expires_at)
        VALUES (\(record.key), \(record.statusCode), \(Data(sealed.bytes)), \(sealed.sealed), \(record.createdAt.pgValue), \(record.expiresAt.pgValue))
        ON CONFLICT (key) DO UPDATE SET
            status_code = excluded.status_code, body = excluded.body, body_sealed = excluded.body_sealed,
            created_at = excluded.created_at, expires_at = excluded.expires_at
        WHERE idempotency_records.expires_at <= excluded.created_at
        RETURNING 1
        """
    }

    /// In batches of `purgeBatchSize` rows, each one statement; rows another node is purging
    /// (locked) are skipped, so nodes purging at once neither wait for each other nor do the work twice.
    public func purgeExpired(now: Date) async throws -> PurgeResult {
        let limit = Self.purgeBatchSize
        var result = PurgeResult()
        while true {
            let records = try await rows("""
                DELETE FROM idempotency_records WHERE key IN
                    (SELECT key FROM idempotency_records WHERE expires_at <= \(now.pgValue) LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                RETURNING 1
                """, relaxed: true).count
            let payloads = try await rows("""
                UPDATE messages SET payload = NULL WHERE id IN
                    (SELECT id FROM messages WHERE payload IS NOT NULL AND payload_expires_at <= \(now.pgValue)
                     LIMIT \(limit) FOR NO KEY UPDATE SKIP LOCKED)
                RETURNING 1
                """, relaxed: true).count
            result = result + PurgeResult(idempotencyRecords: records, payloads: payloads)
            if records < limit && payloads < limit { return result }
            await Task.yield()
        }
    }

    /// Rows one purge statement touches at most.
    static let purgeBatchSize = 500

    /// One statement: the oldest messages not locked by another node's purge (`SKIP LOCKED`) and
    /// without a delivery in flight, then their attempts, deliveries and themselves. On the
    /// relaxed pool: a purge lost in a database crash runs again.
    public func purgeMessages(createdBefore cutoff: Date, now: Date, limit: Int) async throws -> PurgeResult {
        let row = try await rows("""
            WITH doomed AS (
                SELECT id FROM messages m WHERE created_at < \(cutoff.pgValue)
                  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.status = 3
                                  AND d.lease_expires_at >= \(now.pgValue))
                ORDER BY created_at LIMIT \(max(0, limit)) FOR UPDATE SKIP LOCKED
            ), gone_attempts AS (
                DELETE FROM attempts WHERE message_id IN (SELECT id FROM doomed) RETURNING 1
            ), gone_deliveries AS (
                DELETE FROM deliveries WHERE message_id IN (SELECT id FROM doomed) RETURNING 1
            ), gone AS (
                DELETE FROM messages WHERE id IN (SELECT id FROM doomed) RETURNING 1
            )
            SELECT (SELECT count(*) FROM gone) AS messages, (SELECT count(*) FROM gone_deliveries) AS deliveries,
                   (SELECT count(*) FROM gone_attempts) AS attempts
            """, relaxed: true).first
        guard let row else { return PurgeResult() }
        do {
            return PurgeResult(messages: try row.value("messages", as: Int.self), deliveries: try row.value("deliveries", as: Int.self),
                               attempts: try row.value("attempts", as: Int.self))
        } catch { throw PostgresErrorMapping.storeError(error) }
    }

    // MARK: Tokens

    public func createToken(_ token: APIToken) async throws {
        var appID: String?
        if case .application(let id) = token.scope { appID = id.rawValue }
        let inserted = try await rows("""
            INSERT INTO api_tokens (id, hash, app_id, created_at, expires_at, name)
            SELECT \(token.id.rawValue)::text, \(Data(token.hash))::bytea, \(appID)::text, \(token.createdAt.pgValue)::double precision,
                   \(token.expiresAt?.pgValue)::double precision, \(token.name)::text
            WHERE \(appID)::text IS NULL OR EXISTS (SELECT 1 FROM applications WHERE id = \(appID)::text)
            ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, app_id = excluded.app_id,
                created_at = excluded.created_at, expires_at = excluded.expires_at, name = excluded.name
            RETURNING 1
            """)
        guard !inserted.isEmpty else { throw StoreError.notFound("application") }
    }

    public func token(hash: [UInt8]) async throws -> APIToken? {
        try await rows("SELECT * FROM api_tokens WHERE hash = \(Data(hash)) LIMIT 1").first.map(PostgresCoding.token)
    }

    public func deleteToken(id: TokenID) async throws {
        try await rows("DELETE FROM api_tokens WHERE id = \(id.rawValue)")
    }

    public func adminTokenCount() async throws -> Int {
        try await rows("SELECT COUNT(*) AS n FROM api_tokens WHERE app_id IS NULL").first?.value("n", as: Int.self) ?? 0
    }

    public func listAdminTokens(_ page: PageRequest) async throws -> Page<APIToken> {
        let window = PageWindow(page)
        var query = PGQuery("SELECT * FROM api_tokens")
        query.conditions.append("app_id IS NULL")
        query.page(window, key: "id COLLATE \"C\"")
        return window.page(try await rows(query.query).map(PostgresCoding.token)) { $0.id.rawValue }
    }

    public func revokeAdminToken(id: TokenID) async throws -> Bool {
        try await !rows("DELETE FROM api_tokens WHERE id = \(id.rawValue) AND app_id IS NULL RETURNING 1").isEmpty
    }

    // MARK: Quotas

    public func createEndpoint(_ endpoint: Endpoint, limit: Int) async throws {
        let logger = self.logger
        let app = endpoint.appID.rawValue
        let insert = try insertEndpointQuery(endpoint)
        // Creates in one application queue on its row (NO KEY UPDATE does not block publishes'
        // foreign-key checks); each counts in a snapshot taken after the previous one committed.
        let locked = try await transaction { connection in
            guard try await !connection.rows("SELECT 1 FROM applications WHERE id = \(app) FOR NO KEY UPDATE", logger: logger).isEmpty else {
                return false
            }
            let count = try await connection.rows("SELECT COUNT(*) AS n FROM endpoints WHERE app_id = \(app)", logger: logger)
                .first?.value("n", as: Int.self) ?? 0
            guard count < limit else { throw StoreError(.limitExceeded, "the application has \(limit) endpoints already") }
            try await connection.rows(insert, logger: logger)
            return true
        }
        guard locked else { throw StoreError.notFound("application") }
    }

    public func createEventType(_ eventType: EventType, limit: Int) async throws {
        let logger = self.logger
        try await transaction { connection in
            // Event types are global: creates queue on one advisory lock ("herald-evtypes").
            try await connection.rows("SELECT pg_advisory_xact_lock(\(Self.eventTypeLockKey))", logger: logger)
            let exists = try await !connection.rows("SELECT 1 FROM event_types WHERE name = \(eventType.name)", logger: logger).isEmpty
            let count = try await connection.rows("SELECT COUNT(*) AS n FROM event_types", logger: logger).first?.value("n", as: Int.self) ?? 0
            if !exists, count >= limit { throw StoreError(.limitExceeded, "there are \(limit) event types already") }
            try await connection.rows(try Self.insertEventTypeQuery(eventType), logger: logger)
        }
    }

    static let eventTypeLockKey: Int64 = 0x68_65_72_65_76_74
}
