import Foundation
import HeraldCore
import Logging
import PostgresNIO

extension Date {
    /// The stored form of a date: seconds since 2001-01-01, exact (see `PostgresMigrations`).
    var pgValue: Double { timeIntervalSinceReferenceDate }
}

extension PostgresConnection {
    /// Runs one statement inside the caller's transaction and returns its rows.
    @discardableResult
    func rows(_ query: PostgresQuery, logger: Logger) async throws -> [PostgresRandomAccessRow] {
        var result: [PostgresRandomAccessRow] = []
        for try await row in try await self.query(query, logger: logger) {
            result.append(row.makeRandomAccess())
        }
        return result
    }
}

extension PostgresRandomAccessRow {
    func value<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws -> T {
        try self[column].decode(T.self)
    }

    func date(_ column: String) throws -> Date { Date(timeIntervalSinceReferenceDate: try value(column, as: Double.self)) }

    func optionalDate(_ column: String) throws -> Date? {
        try value(column, as: Double?.self).map(Date.init(timeIntervalSinceReferenceDate:))
    }

    func bytes(_ column: String) throws -> [UInt8]? { try value(column, as: Data?.self).map { [UInt8]($0) } }
}

/// Conversions between domain values and column values.
enum PostgresCoding {
    static func json<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, json text: String) throws -> T {
        do { return try JSONDecoder().decode(type, from: Data(text.utf8)) } catch { throw corrupt }
    }

    static let corrupt = StoreError(.corrupt, "stored data could not be read back")

    static func status(_ row: PostgresRandomAccessRow, _ column: String) throws -> DeliveryStatus {
        guard let status = DeliveryStatus(rawValue: try row.value(column, as: Int.self)) else { throw corrupt }
        return status
    }

    static func trigger(_ row: PostgresRandomAccessRow, _ column: String) throws -> TriggerType {
        guard let trigger = TriggerType(rawValue: try row.value(column, as: Int.self)) else { throw corrupt }
        return trigger
    }

    // MARK: Entities

    static func application(_ row: PostgresRandomAccessRow) throws -> Application {
        Application(
            id: ApplicationID(rawValue: try row.value("id")), uid: try row.value("uid"), name: try row.value("name"),
            throttleRate: try row.value("throttle_rate"),
            metadata: try decode([String: String].self, json: try row.value("metadata")),
            createdAt: try row.date("created_at"), updatedAt: try row.date("updated_at"))
    }

    static func eventType(_ row: PostgresRandomAccessRow) throws -> EventType {
        EventType(
            name: try row.value("name"), description: try row.value("description"), archived: try row.value("archived"),
            deprecated: try row.value("deprecated"), schemas: try row.bytes("schemas"), featureFlag: try row.value("feature_flag"),
            createdAt: try row.date("created_at"), updatedAt: try row.date("updated_at"))
    }

    static func message(_ row: PostgresRandomAccessRow, prefix: String = "") throws -> Message {
        Message(
            id: MessageID(rawValue: try row.value(prefix + "id")), appID: ApplicationID(rawValue: try row.value(prefix + "app_id")),
            eventID: try row.value(prefix + "event_id"), eventType: try row.value(prefix + "event_type"),
            payload: try row.bytes(prefix + "payload"), channels: try row.value(prefix + "channels"),
            createdAt: try row.date(prefix + "created_at"), payloadExpiresAt: try row.date(prefix + "payload_expires_at"))
    }

    static func delivery(_ row: PostgresRandomAccessRow) throws -> Delivery {
        Delivery(
            messageID: MessageID(rawValue: try row.value("message_id")), endpointID: EndpointID(rawValue: try row.value("endpoint_id")),
            appID: ApplicationID(rawValue: try row.value("app_id")), status: try status(row, "status"),
            attemptCount: try row.value("attempt_count"), nextAttemptAt: try row.optionalDate("next_attempt_at"),
            lastAttemptAt: try row.optionalDate("last_attempt_at"), leaseExpiresAt: try row.optionalDate("lease_expires_at"),
            trigger: try trigger(row, "trigger_type"), eventType: try row.value("event_type"),
            channels: try row.value("channels"), createdAt: try row.date("created_at"),
            interruptedCount: row.contains("interrupted_count") ? try row.value("interrupted_count", as: Int.self) : 0)
    }

    static func attempt(_ row: PostgresRandomAccessRow) throws -> Attempt {
        Attempt(
            id: AttemptID(rawValue: try row.value("id")), messageID: MessageID(rawValue: try row.value("message_id")),
            endpointID: EndpointID(rawValue: try row.value("endpoint_id")), appID: ApplicationID(rawValue: try row.value("app_id")),
            url: try row.value("url"), responseStatusCode: try row.value("response_status_code"), response: try row.value("response"),
            responseDurationMs: try row.value("response_duration_ms"), status: try status(row, "status"),
            triggerType: try trigger(row, "trigger_type"), eventType: try row.value("event_type"),
            channels: try row.value("channels"), createdAt: try row.date("created_at"))
    }

    static func idempotencyRecord(_ row: PostgresRandomAccessRow, codec: EndpointSecretsCodec) throws -> IdempotencyRecord {
        IdempotencyRecord(
            key: try row.value("key"), statusCode: try row.value("status_code"),
            body: try codec.openBytes(try row.bytes("body") ?? [], sealed: try row.value("body_sealed")),
            createdAt: try row.date("created_at"), expiresAt: try row.date("expires_at"))
    }

    static func token(_ row: PostgresRandomAccessRow) throws -> APIToken {
        let appID: String? = try row.value("app_id")
        return APIToken(
            id: TokenID(rawValue: try row.value("id")), hash: try row.bytes("hash") ?? [],
            scope: appID.map { .application(ApplicationID(rawValue: $0)) } ?? .admin,
            createdAt: try row.date("created_at"), expiresAt: try row.optionalDate("expires_at"), name: try row.value("name"))
    }

    /// The endpoint in `row`, whose secrets `codec` opens.
    /// The endpoint in `row`, whose secrets `codec` opens. Never fails on a damaged column or on
    /// secrets sealed with another key: the endpoint comes back with `unreadable` saying why (so it
    /// can still be listed, replaced and deleted, and its deliveries fail with that reason).
    static func endpoint(_ row: PostgresRandomAccessRow, prefix: String = "", secrets codec: EndpointSecretsCodec) throws -> Endpoint {
        var problems: [String] = []
        func column<T>(_ name: String, _ fallback: T, _ read: () throws -> T) -> T {
            do { return try read() } catch {
                problems.append(name == "secrets" ? "\(error)" : "its \(name) could not be read back")
                return fallback
            }
        }
        let metadata = column("metadata", [:]) { try decode([String: String].self, json: try row.value(prefix + "metadata")) }
        let headers = column("headers", [:]) { try decode([String: String].self, json: try codec.openText(try row.value(prefix + "headers"))) }
        let secrets = column("secrets", []) {
            try codec.open(try row.bytes(prefix + "secrets") ?? [], sealed: try row.value(prefix + "secrets_sealed"))
        }
        return Endpoint(
            id: EndpointID(rawValue: try row.value(prefix + "id")), appID: ApplicationID(rawValue: try row.value(prefix + "app_id")),
            uid: try row.value(prefix + "uid"), url: try row.value(prefix + "url"), description: try row.value(prefix + "description"),
            disabled: try row.value(prefix + "disabled"), eventTypes: try row.value(prefix + "event_types"),
            channels: try row.value(prefix + "channels"), throttleRate: try row.value(prefix + "throttle_rate"),
            metadata: metadata, headers: headers, secrets: secrets,
            createdAt: try row.date(prefix + "created_at"), updatedAt: try row.date(prefix + "updated_at"),
            failingSince: try row.optionalDate(prefix + "failing_since"),
            version: row.contains(prefix + "version") ? try row.value(prefix + "version", as: Int.self) : 0,
            unreadable: problems.isEmpty ? nil : "the stored endpoint could not be read: " + problems.joined(separator: "; "))
    }
}

/// A SELECT assembled from fixed SQL fragments and bound values.
struct PGQuery {
    var head: String
    var conditions: [String] = []
    var binds = PostgresBindings()
    var suffix = ""

    init(_ head: String) { self.head = head }

    var query: PostgresQuery {
        PostgresQuery(unsafeSQL: head + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")) + suffix,
                      binds: binds)
    }

    /// Binds `value` and returns its placeholder.
    mutating func bind<V: PostgresDynamicTypeEncodable>(_ value: V) -> String {
        binds.append(value)
        return "$\(binds.count)"
    }

    /// Adds `condition`, whose single `?` becomes the placeholder of `value`.
    mutating func require<V: PostgresDynamicTypeEncodable>(_ condition: String, _ value: V) {
        let placeholder = bind(value)
        conditions.append(condition.replacingOccurrences(of: "?", with: placeholder))
    }

    /// Adds `MessageFilter`'s conditions on the columns of `table` (event_type, channels, created_at).
    mutating func filter(_ filter: MessageFilter, table: String) {
        if let types = filter.eventTypes, !types.isEmpty {
            require("\(table).event_type = ANY(?)", types)
        }
        if let channel = filter.channel {
            require("? = ANY(\(table).channels)", channel)
        }
        if let before = filter.before {
            require("\(table).created_at < ?", before.pgValue)
        }
        if let after = filter.after {
            require("\(table).created_at > ?", after.pgValue)
        }
    }

    /// Adds the key bound, ORDER BY and LIMIT of `paging` (one more row than the page, to know
    /// whether there is more).
    mutating func page(_ paging: PageWindow, key: String) {
        if let after = paging.after {
            require("\(key) \(paging.ascending ? ">" : "<") ?", after)
        }
        suffix += " ORDER BY \(key) \(paging.ascending ? "ASC" : "DESC") LIMIT \(bind(paging.limit + 1))"
    }
}
