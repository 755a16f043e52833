import Foundation
import GRDB
import HeraldCore

extension SQLiteStore {
    /// The body of `publish`, run inside the batch's transaction (in its own savepoint).
    static func publish(_ request: PublishRequest, in db: Database) throws -> PublishResult {
        var message = request.message
        if try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM applications WHERE id = ?"), arguments: [message.appID.rawValue]) == nil {
            guard let toCreate = request.applicationToCreate else { throw StoreError.notFound("application") }
            let existing = try toCreate.uid.flatMap {
                try String.fetchOne(db.cachedStatement(sql: "SELECT id FROM applications WHERE uid = ?"), arguments: [$0])
            } ?? String.fetchOne(db.cachedStatement(sql: "SELECT id FROM applications WHERE id = ?"), arguments: [toCreate.id.rawValue])
            if let existing {
                message.appID = ApplicationID(rawValue: existing)
            } else {
                try insert(toCreate, in: db)
                message.appID = toCreate.id
            }
        }
        if let eventID = message.eventID,
           try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM messages WHERE app_id = ? AND event_id = ?"),
                             arguments: [message.appID.rawValue, eventID]) != nil {
            throw StoreError.conflict("a message with eventId '\(eventID)' already exists")
        }
        if let record = request.idempotency,
           try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM idempotency_records WHERE key = ? AND expires_at > ?"),
                             arguments: [record.key, record.createdAt.storedValue]) != nil {
            throw StoreError.conflict("idempotency key already used")
        }
        let channels = try SQLiteCoding.optionalJSON(message.channels)
        try db.cachedStatement(sql: """
            INSERT INTO messages (id, app_id, event_id, event_type, payload, channels, created_at, payload_expires_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [message.id.rawValue, message.appID.rawValue, message.eventID, message.eventType,
                             message.payload.map { Data($0) }, channels, message.createdAt.storedValue,
                             message.payloadExpiresAt.storedValue])

        // Only the columns that EndpointFilter reads: secrets are neither needed nor opened here.
        let candidates = try Row.fetchAll(db.cachedStatement(sql: """
            SELECT id, disabled, event_types, channels FROM endpoints WHERE app_id = ? ORDER BY id
            """), arguments: [message.appID.rawValue])
        var deliveries: [Delivery] = []
        for row in candidates {
            let endpoint = Endpoint(
                id: EndpointID(rawValue: row["id"]), appID: message.appID, url: "", disabled: row["disabled"],
                // A damaged filter column does not fail the publish: the endpoint gets the message,
                // and the dispatcher fails its delivery with the reason (see `SQLiteCoding.endpoint`).
                eventTypes: (try? SQLiteCoding.decodeOptional([String].self, json: row["event_types"])) ?? nil,
                channels: (try? SQLiteCoding.decodeOptional([String].self, json: row["channels"])) ?? nil, secrets: [])
            let matches = request.onlyEndpoint.map { $0 == endpoint.id }
                ?? EndpointFilter.matches(endpoint, eventType: message.eventType, channels: message.channels)
            guard matches else { continue }
            let delivery = request.delivery(of: message, to: endpoint.id)
            try upsert(delivery, in: db)
            deliveries.append(delivery)
        }
        if let record = request.idempotency {
            try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO idempotency_records (key, status_code, body, body_sealed, created_at, expires_at)
                VALUES (?, ?, ?, ?, ?, ?)
                """).execute(arguments: [record.key, record.statusCode, Data(record.body), request.idempotencyBodySealed,
                                 record.createdAt.storedValue, record.expiresAt.storedValue])
        }
        return PublishResult(message: message, deliveries: deliveries)
    }

    public func message(app: ApplicationID, ref: String) async throws -> Message? {
        try await read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM messages WHERE id = ? AND app_id = ?"), arguments: [ref, app.rawValue])
                .map { try SQLiteCoding.message($0) }
                ?? Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM messages WHERE app_id = ? AND event_id = ?"), arguments: [app.rawValue, ref])
                .map { try SQLiteCoding.message($0) }
        }
    }

    public func listMessages(app: ApplicationID, filter: MessageFilter, _ page: PageRequest) async throws -> Page<Message> {
        let paging = SQLPaging(page)
        return try await read { db in
            // The payloads are read only for the rows that fit the page's byte budget (see `withPayloads`).
            var query = SQLQuery("SELECT \(Self.messageColumnsWithoutPayload(prefix: "")), length(payload) AS content_length FROM messages")
            query.require("messages.app_id = ?", app.rawValue)
            query.filter(filter, table: "messages")
            paging.apply(to: &query, key: "messages.id")
            let rows = try Row.fetchAll(db, sql: query.sql, arguments: query.statementArguments)
            let fit = page.contentFit(rows.prefix(page.limit).map { ($0["content_length"] as Int?) ?? 0 })
            var items = try rows.map { try SQLiteCoding.message($0) }
            if page.withContent {
                let payloads = try Self.payloads(of: items.prefix(fit).map(\.id), in: db)
                for index in items.indices.prefix(fit) { items[index].payload = payloads[items[index].id] }
            }
            return paging.window.page(items, key: { $0.id.rawValue }, contentFit: fit)
        }
    }

    public func expungeMessagePayload(app: ApplicationID, id: MessageID) async throws {
        try await write { db in
            try db.cachedStatement(sql: "UPDATE messages SET payload = NULL WHERE id = ? AND app_id = ?").execute(arguments: [id.rawValue, app.rawValue])
            guard db.changesCount > 0 else { throw StoreError.notFound("message") }
        }
    }

    /// The message columns other than the payload, each as `<prefix><name>`.
    static func messageColumnsWithoutPayload(prefix: String, table: String = "") -> String {
        (["id", "app_id", "event_id", "event_type", "channels", "created_at", "payload_expires_at"]
            .map { table.isEmpty ? $0 : "\(table).\($0) AS \(prefix)\($0)" } + ["NULL AS \(prefix)payload"]).joined(separator: ", ")
    }

    /// The payloads of these messages, read in a second step so that a page never loads more
    /// payload bytes than its budget.
    static func payloads(of ids: [MessageID], in db: Database) throws -> [MessageID: [UInt8]] {
        guard !ids.isEmpty else { return [:] }
        let placeholders = Array(repeating: "?", count: ids.count).joined(separator: ", ")
        var result: [MessageID: [UInt8]] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT id, payload FROM messages WHERE id IN (\(placeholders))",
                                    arguments: StatementArguments(ids.map(\.rawValue))) {
            if let bytes = SQLiteCoding.bytes(row, "payload") { result[MessageID(rawValue: row["id"])] = bytes }
        }
        return result
    }
}
