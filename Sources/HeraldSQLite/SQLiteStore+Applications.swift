import GRDB
import HeraldCore

extension SQLiteStore {
    public func createApplication(_ application: Application) async throws {
        try await write { db in try Self.insert(application, in: db) }
    }

    static func insert(_ application: Application, in db: Database) throws {
        if let uid = application.uid,
           try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM applications WHERE uid = ?"), arguments: [uid]) != nil {
            throw StoreError.conflict("an application with uid '\(uid)' already exists")
        }
        if try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM applications WHERE id = ?"), arguments: [application.id.rawValue]) != nil {
            throw StoreError.conflict("application id exists")
        }
        try db.cachedStatement(sql: """
            INSERT INTO applications (id, uid, name, throttle_rate, metadata, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [application.id.rawValue, application.uid, application.name, application.throttleRate,
                             try SQLiteCoding.json(application.metadata), application.createdAt.storedValue,
                             application.updatedAt.storedValue])
    }

    public func application(ref: String) async throws -> Application? {
        try lookup { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM applications WHERE id = ?"), arguments: [ref]).map(SQLiteCoding.application)
                ?? Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM applications WHERE uid = ?"), arguments: [ref]).map(SQLiteCoding.application)
        }
    }

    public func listApplications(_ page: PageRequest) async throws -> Page<Application> {
        let paging = SQLPaging(page)
        return try await read { db in
            var query = SQLQuery("SELECT * FROM applications")
            paging.apply(to: &query, key: "id")
            let items = try Row.fetchAll(db, sql: query.sql, arguments: query.statementArguments).map(SQLiteCoding.application)
            return paging.page(items) { $0.id.rawValue }
        }
    }

    public func updateApplication(_ application: Application) async throws {
        try await write { db in
            guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM applications WHERE id = ?"), arguments: [application.id.rawValue]) != nil else {
                throw StoreError.notFound("application")
            }
            if let uid = application.uid,
               try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM applications WHERE uid = ? AND id <> ?"),
                                 arguments: [uid, application.id.rawValue]) != nil {
                throw StoreError.conflict("an application with uid '\(uid)' already exists")
            }
            try db.cachedStatement(sql: """
                UPDATE applications SET uid = ?, name = ?, throttle_rate = ?, metadata = ?, created_at = ?, updated_at = ?
                WHERE id = ?
                """).execute(arguments: [application.uid, application.name, application.throttleRate,
                                 try SQLiteCoding.json(application.metadata), application.createdAt.storedValue,
                                 application.updatedAt.storedValue, application.id.rawValue])
        }
    }

    public func deleteApplication(_ id: ApplicationID) async throws {
        try await write { db in
            // Foreign keys cascade to endpoints, messages, deliveries, attempts and app-scoped tokens.
            try db.cachedStatement(sql: "DELETE FROM applications WHERE id = ?").execute(arguments: [id.rawValue])
            guard db.changesCount > 0 else { throw StoreError.notFound("application") }
        }
    }
}
