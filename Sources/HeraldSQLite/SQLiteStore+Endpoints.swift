import Foundation
import GRDB
import HeraldCore

extension SQLiteStore {
    public func createEndpoint(_ endpoint: Endpoint) async throws {
        try await createEndpoint(endpoint, limit: nil)
    }

    public func createEndpoint(_ endpoint: Endpoint, limit: Int) async throws {
        try await createEndpoint(endpoint, limit: Optional(limit))
    }

    /// One writer at a time: the count and the insert share the write transaction.
    private func createEndpoint(_ endpoint: Endpoint, limit: Int?) async throws {
        let sealed = try secrets.seal(endpoint.secrets)
        let headers = try secrets.sealText(SQLiteCoding.json(endpoint.headers))
        try await write { db in
            guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM applications WHERE id = ?"), arguments: [endpoint.appID.rawValue]) != nil else {
                throw StoreError.notFound("application")
            }
            if let limit, try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM endpoints WHERE app_id = ?"),
                                           arguments: [endpoint.appID.rawValue]) ?? 0 >= limit {
                throw StoreError(.limitExceeded, "the application has \(limit) endpoints already")
            }
            if let uid = endpoint.uid,
               try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM endpoints WHERE app_id = ? AND uid = ?"),
                                 arguments: [endpoint.appID.rawValue, uid]) != nil {
                throw StoreError.conflict("an endpoint with uid '\(uid)' already exists")
            }
            try db.cachedStatement(sql: """
                INSERT INTO endpoints (uid, url, description, disabled, event_types, channels, throttle_rate,
                                       metadata, headers, secrets, secrets_sealed, created_at, updated_at, failing_since,
                                       id, app_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: try Self.endpointValues(endpoint, sealed: sealed, headers: headers) + [endpoint.id.rawValue, endpoint.appID.rawValue])
        }
    }

    public func endpoint(app: ApplicationID, ref: String) async throws -> Endpoint? {
        let codec = secrets
        return try lookup { db in
            let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM endpoints WHERE id = ? AND app_id = ?"), arguments: [ref, app.rawValue])
                ?? Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM endpoints WHERE app_id = ? AND uid = ?"), arguments: [app.rawValue, ref])
            return try row.map { try SQLiteCoding.endpoint($0, secrets: codec) }
        }
    }

    public func listEndpoints(app: ApplicationID, _ page: PageRequest) async throws -> Page<Endpoint> {
        let paging = SQLPaging(page)
        let codec = secrets
        return try await read { db in
            var query = SQLQuery("SELECT * FROM endpoints")
            query.require("app_id = ?", app.rawValue)
            paging.apply(to: &query, key: "id")
            let items = try Row.fetchAll(db, sql: query.sql, arguments: query.statementArguments)
                .map { try SQLiteCoding.endpoint($0, secrets: codec) }
            return paging.page(items) { $0.id.rawValue }
        }
    }

    public func updateEndpoint(_ endpoint: Endpoint) async throws {
        // An endpoint read back without its (unreadable) secrets keeps the stored ones.
        let keepSecrets = endpoint.unreadable != nil && endpoint.secrets.isEmpty
        let sealed = keepSecrets ? nil : try secrets.seal(endpoint.secrets)
        let headers = try secrets.sealText(SQLiteCoding.json(endpoint.headers))
        try await write { db in
            guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM endpoints WHERE id = ? AND app_id = ?"),
                                    arguments: [endpoint.id.rawValue, endpoint.appID.rawValue]) != nil else {
                throw StoreError.notFound("endpoint")
            }
            if let uid = endpoint.uid,
               try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM endpoints WHERE app_id = ? AND uid = ? AND id <> ?"),
                                 arguments: [endpoint.appID.rawValue, uid, endpoint.id.rawValue]) != nil {
                throw StoreError.conflict("an endpoint with uid '\(uid)' already exists")
            }
            let key: StatementArguments = [endpoint.id.rawValue, endpoint.appID.rawValue, endpoint.version]
            if let sealed {
                try db.cachedStatement(sql: """
                    UPDATE endpoints SET uid = ?, url = ?, description = ?, disabled = ?, event_types = ?, channels = ?,
                        throttle_rate = ?, metadata = ?, headers = ?, secrets = ?, secrets_sealed = ?, created_at = ?,
                        updated_at = ?, failing_since = ?, version = version + 1
                    WHERE id = ? AND app_id = ? AND version = ?
                    """).execute(arguments: try Self.endpointValues(endpoint, sealed: sealed, headers: headers) + key)
            } else {
                try db.cachedStatement(sql: """
                    UPDATE endpoints SET uid = ?, url = ?, description = ?, disabled = ?, event_types = ?, channels = ?,
                        throttle_rate = ?, metadata = ?, headers = ?, created_at = ?, updated_at = ?, failing_since = ?,
                        version = version + 1
                    WHERE id = ? AND app_id = ? AND version = ?
                    """).execute(arguments: try Self.endpointValues(endpoint, sealed: nil, headers: headers) + key)
            }
            guard db.changesCount > 0 else { throw StoreError.stale("the endpoint") }
        }
    }

    public func recordEndpointHealth(app: ApplicationID, endpoint: EndpointID, _ change: EndpointHealthChange, at date: Date) async throws -> Bool {
        try await relaxedWrite { db in
            let sql: String
            var arguments: StatementArguments
            switch change {
            case .failing(let since):
                sql = "UPDATE endpoints SET failing_since = ?, updated_at = ?, version = version + 1 WHERE id = ? AND app_id = ? AND failing_since IS NULL"
                arguments = [since.storedValue]
            case .healthy:
                sql = "UPDATE endpoints SET failing_since = NULL, updated_at = ?, version = version + 1 WHERE id = ? AND app_id = ? AND failing_since IS NOT NULL"
                arguments = []
            case .disabled:
                sql = "UPDATE endpoints SET disabled = 1, updated_at = ?, version = version + 1 WHERE id = ? AND app_id = ? AND disabled = 0"
                arguments = []
            }
            arguments += [date.storedValue, endpoint.rawValue, app.rawValue]
            try db.cachedStatement(sql: sql).execute(arguments: arguments)
            return db.changesCount > 0
        }
    }

    public func deleteEndpoint(app: ApplicationID, id: EndpointID) async throws {
        try await write { db in
            // Foreign keys cascade to the endpoint's deliveries and attempts.
            try db.cachedStatement(sql: "DELETE FROM endpoints WHERE id = ? AND app_id = ?").execute(arguments: [id.rawValue, app.rawValue])
            guard db.changesCount > 0 else { throw StoreError.notFound("endpoint") }
        }
    }

    /// The values of every column but id and app_id, in the order of the UPDATE statement (without
    /// the secrets when `sealed` is nil).
    /// `headers` is the headers' stored form (`EndpointSecretsCodec.sealText`).
    private static func endpointValues(_ endpoint: Endpoint, sealed: (bytes: [UInt8], sealed: Bool)?, headers: String) throws -> StatementArguments {
        var values: StatementArguments = [
            endpoint.uid, endpoint.url, endpoint.description, endpoint.disabled,
            try SQLiteCoding.optionalJSON(endpoint.eventTypes), try SQLiteCoding.optionalJSON(endpoint.channels),
            endpoint.throttleRate, try SQLiteCoding.json(endpoint.metadata), headers]
        if let sealed { values += [Data(sealed.bytes), sealed.sealed] }
        values += [endpoint.createdAt.storedValue, endpoint.updatedAt.storedValue, endpoint.failingSince?.storedValue]
        return values
    }
}
