import Foundation
import GRDB
import HeraldCore

extension SQLiteStore {
    public func createEventType(_ eventType: EventType) async throws {
        try await createEventType(eventType, limit: nil)
    }

    public func createEventType(_ eventType: EventType, limit: Int) async throws {
        try await createEventType(eventType, limit: Optional(limit))
    }

    private func createEventType(_ eventType: EventType, limit: Int?) async throws {
        try await write { db in
            if try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM event_types WHERE name = ?"), arguments: [eventType.name]) != nil {
                throw StoreError.conflict("event type '\(eventType.name)' already exists")
            }
            if let limit, try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM event_types")) ?? 0 >= limit {
                throw StoreError(.limitExceeded, "there are \(limit) event types already")
            }
            try db.cachedStatement(sql: """
                INSERT INTO event_types (description, archived, deprecated, schemas, feature_flag, created_at, updated_at, name)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: Self.eventTypeValues(eventType))
        }
    }

    public func eventType(name: String) async throws -> EventType? {
        try await read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM event_types WHERE name = ?"), arguments: [name]).map(SQLiteCoding.eventType)
        }
    }

    public func listEventTypes(_ page: PageRequest, includeArchived: Bool) async throws -> Page<EventType> {
        let paging = SQLPaging(page)
        return try await read { db in
            // Without content the schemas are not read; with it, the page stops at the byte budget.
            var query = SQLQuery(page.withContent ? "SELECT * FROM event_types" : "SELECT name, description, archived, deprecated, feature_flag, created_at, updated_at, NULL AS schemas FROM event_types")
            if !includeArchived { query.conditions.append("archived = 0") }
            paging.apply(to: &query, key: "name")
            let items = try Row.fetchAll(db, sql: query.sql, arguments: query.statementArguments).map(SQLiteCoding.eventType)
            let fit = page.contentFit(items.prefix(page.limit).map { $0.schemas?.count ?? 0 })
            return paging.window.page(items, key: { $0.name }, contentFit: fit)
        }
    }

    public func updateEventType(_ eventType: EventType) async throws {
        try await write { db in
            try db.cachedStatement(sql: """
                UPDATE event_types SET description = ?, archived = ?, deprecated = ?, schemas = ?, feature_flag = ?,
                    created_at = ?, updated_at = ?
                WHERE name = ?
                """).execute(arguments: Self.eventTypeValues(eventType))
            guard db.changesCount > 0 else { throw StoreError.notFound("event type") }
        }
    }

    public func deleteEventType(name: String) async throws {
        try await write { db in
            try db.cachedStatement(sql: "DELETE FROM event_types WHERE name = ?").execute(arguments: [name])
            guard db.changesCount > 0 else { throw StoreError.notFound("event type") }
        }
    }

    private static func eventTypeValues(_ eventType: EventType) -> StatementArguments {
        [eventType.description, eventType.archived, eventType.deprecated, eventType.schemas.map { Data($0) },
         eventType.featureFlag, eventType.createdAt.storedValue, eventType.updatedAt.storedValue, eventType.name]
    }
}
