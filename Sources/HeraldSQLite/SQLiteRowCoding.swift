import Foundation
import GRDB
import HeraldCore

extension Date {
    /// The stored form of a date: seconds since 2001-01-01, exact.
    var storedValue: Double { timeIntervalSinceReferenceDate }
    init(storedValue: Double) { self.init(timeIntervalSinceReferenceDate: storedValue) }
}

/// Conversions between domain values and column values. Dates are never bound as GRDB `Date`s
/// (text with millisecond precision) but as `Date.storedValue`.
enum SQLiteCoding {
    // Shared (both are safe to use from several threads): making one per column costs more than
    // the column's usual content, an empty object or list.
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()
    private static let decoder = JSONDecoder()

    static func json<T: Encodable>(_ value: T) throws -> String {
        if let map = value as? [String: String], map.isEmpty { return "{}" }
        if let list = value as? [String], list.isEmpty { return "[]" }
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func optionalJSON<T: Encodable>(_ value: T?) throws -> String? {
        try value.map { try json($0) }
    }

    static func decode<T: Decodable>(_ type: T.Type, json text: String) throws -> T {
        if text == "{}", let empty = [String: String]() as? T { return empty }
        if text == "[]", let empty = [String]() as? T { return empty }
        return try decoder.decode(type, from: Data(text.utf8))
    }

    static func decodeOptional<T: Decodable>(_ type: T.Type, json text: String?) throws -> T? {
        try text.map { try decode(type, json: $0) }
    }

    static func date(_ row: Row, _ column: String) -> Date { Date(storedValue: row[column]) }

    static func optionalDate(_ row: Row, _ column: String) -> Date? {
        (row[column] as Double?).map(Date.init(storedValue:))
    }

    static func bytes(_ row: Row, _ column: String) -> [UInt8]? {
        (row[column] as Data?).map { [UInt8]($0) }
    }

    static func status(_ row: Row, _ column: String) throws -> DeliveryStatus {
        guard let status = DeliveryStatus(rawValue: row[column]) else { throw corrupt }
        return status
    }

    static func trigger(_ row: Row, _ column: String) throws -> TriggerType {
        guard let trigger = TriggerType(rawValue: row[column]) else { throw corrupt }
        return trigger
    }

    static let corrupt = StoreError(.corrupt, "stored data could not be read back")

    // MARK: Entities

    static func application(_ row: Row) throws -> Application {
        Application(
            id: ApplicationID(rawValue: row["id"]), uid: row["uid"], name: row["name"],
            throttleRate: row["throttle_rate"],
            metadata: try decode([String: String].self, json: row["metadata"]),
            createdAt: date(row, "created_at"), updatedAt: date(row, "updated_at"))
    }

    static func eventType(_ row: Row) -> EventType {
        EventType(
            name: row["name"], description: row["description"], archived: row["archived"], deprecated: row["deprecated"],
            schemas: bytes(row, "schemas"), featureFlag: row["feature_flag"],
            createdAt: date(row, "created_at"), updatedAt: date(row, "updated_at"))
    }

    static func message(_ row: Row, prefix: String = "") throws -> Message {
        Message(
            id: MessageID(rawValue: row[prefix + "id"]), appID: ApplicationID(rawValue: row[prefix + "app_id"]),
            eventID: row[prefix + "event_id"], eventType: row[prefix + "event_type"], payload: bytes(row, prefix + "payload"),
            channels: try decodeOptional([String].self, json: row[prefix + "channels"]),
            createdAt: date(row, prefix + "created_at"), payloadExpiresAt: date(row, prefix + "payload_expires_at"))
    }

    static func delivery(_ row: Row) throws -> Delivery {
        Delivery(
            messageID: MessageID(rawValue: row["message_id"]), endpointID: EndpointID(rawValue: row["endpoint_id"]),
            appID: ApplicationID(rawValue: row["app_id"]), status: try status(row, "status"),
            attemptCount: row["attempt_count"], nextAttemptAt: optionalDate(row, "next_attempt_at"),
            lastAttemptAt: optionalDate(row, "last_attempt_at"), leaseExpiresAt: optionalDate(row, "lease_expires_at"),
            trigger: try trigger(row, "trigger_type"), eventType: row["event_type"],
            channels: try decodeOptional([String].self, json: row["channels"]), createdAt: date(row, "created_at"),
            interruptedCount: row["interrupted_count"] ?? 0)
    }

    static func attempt(_ row: Row) throws -> Attempt {
        Attempt(
            id: AttemptID(rawValue: row["id"]), messageID: MessageID(rawValue: row["message_id"]),
            endpointID: EndpointID(rawValue: row["endpoint_id"]), appID: ApplicationID(rawValue: row["app_id"]),
            url: row["url"], responseStatusCode: row["response_status_code"], response: row["response"],
            responseDurationMs: row["response_duration_ms"], status: try status(row, "status"),
            triggerType: try trigger(row, "trigger_type"), eventType: row["event_type"],
            channels: try decodeOptional([String].self, json: row["channels"]), createdAt: date(row, "created_at"))
    }

    static func idempotencyRecord(_ row: Row, codec: EndpointSecretsCodec) throws -> IdempotencyRecord {
        try IdempotencyRecord(
            key: row["key"], statusCode: row["status_code"],
            body: codec.openBytes(bytes(row, "body") ?? [], sealed: row["body_sealed"] ?? false),
            createdAt: date(row, "created_at"), expiresAt: date(row, "expires_at"))
    }

    static func token(_ row: Row) -> APIToken {
        let appID: String? = row["app_id"]
        return APIToken(
            id: TokenID(rawValue: row["id"]), hash: bytes(row, "hash") ?? [],
            scope: appID.map { .application(ApplicationID(rawValue: $0)) } ?? .admin,
            createdAt: date(row, "created_at"), expiresAt: optionalDate(row, "expires_at"), name: row["name"] ?? "")
    }

    /// The endpoint in `row`, whose secrets `codec` opens. Never fails on a damaged column or on
    /// secrets sealed with another key: the endpoint comes back with `unreadable` saying why (so it
    /// can still be listed, replaced and deleted, and its deliveries fail with that reason).
    static func endpoint(_ row: Row, prefix: String = "", secrets codec: EndpointSecretsCodec) throws -> Endpoint {
        var problems: [String] = []
        func column<T>(_ name: String, _ fallback: T, _ read: () throws -> T) -> T {
            do { return try read() } catch {
                problems.append(name == "secrets" ? "\(error)" : "its \(name) could not be read back")
                return fallback
            }
        }
        let eventTypes = column("event types", nil) { try decodeOptional([String].self, json: row[prefix + "event_types"]) }
        let channels = column("channels", nil) { try decodeOptional([String].self, json: row[prefix + "channels"]) }
        let metadata = column("metadata", [:]) { try decode([String: String].self, json: row[prefix + "metadata"]) }
        let headers = column("headers", [:]) { try decode([String: String].self, json: try codec.openText(row[prefix + "headers"])) }
        let secrets = column("secrets", []) { try codec.open(bytes(row, prefix + "secrets") ?? [], sealed: row[prefix + "secrets_sealed"]) }
        return Endpoint(
            id: EndpointID(rawValue: row[prefix + "id"]), appID: ApplicationID(rawValue: row[prefix + "app_id"]),
            uid: row[prefix + "uid"], url: row[prefix + "url"], description: row[prefix + "description"],
            disabled: row[prefix + "disabled"], eventTypes: eventTypes, channels: channels,
            throttleRate: row[prefix + "throttle_rate"], metadata: metadata, headers: headers, secrets: secrets,
            createdAt: date(row, prefix + "created_at"), updatedAt: date(row, prefix + "updated_at"),
            failingSince: optionalDate(row, prefix + "failing_since"), version: row[prefix + "version"] ?? 0,
            unreadable: problems.isEmpty ? nil : "the stored endpoint could not be read: " + problems.joined(separator: "; "))
    }
}
