import Foundation
import HeraldCore
import Logging
import PostgresNIO

extension PostgresStore {
    // MARK: Publishing

    /// Stores the message, one delivery per matching endpoint and the idempotency record
    /// atomically, then announces the new deliveries to every node's workers (`WorkAnnouncer`).
    /// The schema's unique constraints make a repeated eventId or a live Idempotency-Key a conflict
    /// even when two nodes publish it at the same moment.
    ///
    /// The common case is one statement (one round trip, one commit); a publish that must create
    /// its application takes a transaction.
    public func publish(_ request: PublishRequest) async throws -> PublishResult {
        let request = try secrets.sealingRecord(of: request)
        let result: PublishResult
        if let published = try await publishToExistingApplication(request) {
            result = published
        } else {
            result = try await publishCreatingApplication(request)
        }
        // Deliveries stored claimed go to this node's dispatcher: no other node needs waking for them.
        if result.deliveries.contains(where: { $0.status == .pending }) { await announcer.announce() }
        return result
    }

    /// `PublishStatement`: nil when the application does not exist (then nothing was written).
    private func publishToExistingApplication(_ request: PublishRequest) async throws -> PublishResult? {
        let message = request.message
        let answer = try await execute(PublishStatement(message: message, record: request.idempotency, recordSealed: request.idempotencyBodySealed, onlyEndpoint: request.onlyEndpoint,
                                                        claimUntil: request.claimUntil,
                                                        claimExcept: request.claimExcept.map(\.rawValue)))
        guard let (appFound, messageStored, endpointIDs) = answer.first, appFound > 0 else { return nil }
        guard messageStored > 0 else { throw StoreError.conflict("idempotency key already used") }
        let deliveries = endpointIDs.map { request.delivery(of: message, to: EndpointID(rawValue: $0)) }
        return PublishResult(message: message, deliveries: deliveries)
    }

    /// A transaction that creates the application (or finds the one another node just created
    /// with the same uid), then publishes as above.
    private func publishCreatingApplication(_ request: PublishRequest) async throws -> PublishResult {
        guard let toCreate = request.applicationToCreate else { throw StoreError.notFound("application") }
        let logger = self.logger
        let appID = try await transaction { connection in
            // Another node may create the same uid at the same moment: whichever row holds it wins.
            try await connection.rows(Self.insertQuery(toCreate, onConflictDoNothing: true), logger: logger)
            let holder: PostgresQuery = if let uid = toCreate.uid {
                "SELECT id FROM applications WHERE uid = \(uid)"
            } else {
                "SELECT id FROM applications WHERE id = \(toCreate.id.rawValue)"
            }
            guard let id = try await connection.rows(holder, logger: logger).first?.value("id", as: String.self) else {
                throw StoreError.conflict("the application could not be created")
            }
            return ApplicationID(rawValue: id)
        }
        var request = request
        request.message.appID = appID
        request.applicationToCreate = nil
        guard let result = try await publishToExistingApplication(request) else { throw StoreError.notFound("application") }
        return result
    }

    // MARK: Messages

    public func message(app: ApplicationID, ref: String) async throws -> Message? {
        try await rows("""
            SELECT * FROM messages WHERE app_id = \(app.rawValue) AND (id = \(ref) OR event_id = \(ref))
            ORDER BY (id = \(ref)) DESC LIMIT 1
            """).first.map { try PostgresCoding.message($0) }
    }

    public func listMessages(app: ApplicationID, filter: MessageFilter, _ page: PageRequest) async throws -> Page<Message> {
        let window = PageWindow(page)
        // The payloads are read only for the rows that fit the page's byte budget (`octet_length`
        // of a stored value reads its header, not the value).
        var query = PGQuery("SELECT \(Self.messageColumnsWithoutPayload(prefix: "", table: "messages")), octet_length(messages.payload) AS content_length FROM messages")
        query.require("messages.app_id = ?", app.rawValue)
        query.filter(filter, table: "messages")
        query.page(window, key: "messages.id")
        let fetched = try await rows(query.query)
        let fit = page.contentFit(try fetched.prefix(page.limit).map { try $0.value("content_length", as: Int?.self) ?? 0 })
        var items = try fetched.map { try PostgresCoding.message($0) }
        if page.withContent {
            let payloads = try await payloads(of: items.prefix(fit).map(\.id))
            for index in items.indices.prefix(fit) { items[index].payload = payloads[items[index].id] }
        }
        return window.page(items, key: { $0.id.rawValue }, contentFit: fit)
    }

    public func expungeMessagePayload(app: ApplicationID, id: MessageID) async throws {
        let updated = try await rows("UPDATE messages SET payload = NULL WHERE id = \(id.rawValue) AND app_id = \(app.rawValue) RETURNING 1")
        guard !updated.isEmpty else { throw StoreError.notFound("message") }
    }

    // MARK: Attempts

    public func listAttempts(app: ApplicationID, filter: AttemptFilter, _ page: PageRequest) async throws -> Page<Attempt> {
        let window = PageWindow(page)
        var query = PGQuery("SELECT * FROM attempts")
        query.require("attempts.app_id = ?", app.rawValue)
        if let endpoint = filter.endpointID { query.require("attempts.endpoint_id = ?", endpoint.rawValue) }
        if let message = filter.messageID { query.require("attempts.message_id = ?", message.rawValue) }
        if let status = filter.status { query.require("attempts.status = ?", status.rawValue) }
        if let codeClass = filter.statusCodeClass {
            query.require("(attempts.response_status_code / 100) * 100 = ?", codeClass)
        }
        query.filter(filter.message, table: "attempts")
        query.page(window, key: "attempts.id")
        let items = try await rows(query.query).map(PostgresCoding.attempt)
        // Responses are at most 20,000 bytes each, so a whole page of them is small enough to read.
        let fit = page.contentFit(items.prefix(page.limit).map(\.response.utf8.count))
        return window.page(items, key: { $0.id.rawValue }, contentFit: fit)
    }

    public func attempt(app: ApplicationID, message: MessageID, id: AttemptID) async throws -> Attempt? {
        try await rows("""
            SELECT * FROM attempts WHERE id = \(id.rawValue) AND app_id = \(app.rawValue) AND message_id = \(message.rawValue)
            """).first.map(PostgresCoding.attempt)
    }

    public func expungeAttemptResponse(app: ApplicationID, message: MessageID, id: AttemptID) async throws {
        let updated = try await rows("""
            UPDATE attempts SET response = '' WHERE id = \(id.rawValue) AND app_id = \(app.rawValue) AND message_id = \(message.rawValue)
            RETURNING 1
            """)
        guard !updated.isEmpty else { throw StoreError.notFound("attempt") }
    }

    // MARK: Listings of deliveries

    public func listDeliveredMessages(app: ApplicationID, endpoint: EndpointID, status: DeliveryStatus?, filter: MessageFilter,
                                      _ page: PageRequest) async throws -> Page<DeliveredMessage> {
        let window = PageWindow(page)
        var query = PGQuery("""
            SELECT d.*, \(Self.messageColumnsWithoutPayload(prefix: "m_", table: "m")), octet_length(m.payload) AS content_length
            FROM deliveries d JOIN messages m ON m.id = d.message_id
            """)
        query.require("d.app_id = ?", app.rawValue)
        query.require("d.endpoint_id = ?", endpoint.rawValue)
        if let status { query.require("d.status = ?", status.rawValue) }
        query.filter(filter, table: "m")
        query.page(window, key: "d.message_id")
        let fetched = try await rows(query.query)
        let fit = page.contentFit(try fetched.prefix(page.limit).map { try $0.value("content_length", as: Int?.self) ?? 0 })
        var items = try fetched.map { row in
            DeliveredMessage(delivery: try PostgresCoding.delivery(row), message: try PostgresCoding.message(row, prefix: "m_"))
        }
        if page.withContent {
            let payloads = try await payloads(of: items.prefix(fit).map(\.message.id))
            for index in items.indices.prefix(fit) { items[index].message.payload = payloads[items[index].message.id] }
        }
        return window.page(items, key: { $0.message.id.rawValue }, contentFit: fit)
    }

    public func listDestinations(app: ApplicationID, message: MessageID, _ page: PageRequest) async throws -> Page<MessageDestination> {
        let window = PageWindow(page)
        let codec = secrets
        var query = PGQuery("""
            SELECT d.*, e.id AS e_id, e.app_id AS e_app_id, e.uid AS e_uid, e.url AS e_url, e.description AS e_description,
                   e.disabled AS e_disabled, e.event_types AS e_event_types, e.channels AS e_channels,
                   e.throttle_rate AS e_throttle_rate, e.metadata AS e_metadata, e.headers AS e_headers,
                   e.secrets AS e_secrets, e.secrets_sealed AS e_secrets_sealed, e.created_at AS e_created_at,
                   e.updated_at AS e_updated_at, e.failing_since AS e_failing_since
            FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id
            """)
        query.require("d.app_id = ?", app.rawValue)
        query.require("d.message_id = ?", message.rawValue)
        query.page(window, key: "d.endpoint_id")
        let items = try await rows(query.query).map { row in
            MessageDestination(delivery: try PostgresCoding.delivery(row),
                               endpoint: try PostgresCoding.endpoint(row, prefix: "e_", secrets: codec))
        }
        return window.page(items) { $0.endpoint.id.rawValue }
    }

    public func endpointStats(app: ApplicationID, endpoint: EndpointID, since: Date?, until: Date?) async throws -> EndpointStats {
        var query = PGQuery("SELECT status, COUNT(*) AS n FROM deliveries")
        query.require("app_id = ?", app.rawValue)
        query.require("endpoint_id = ?", endpoint.rawValue)
        if let since { query.require("created_at >= ?", since.pgValue) }
        if let until { query.require("created_at <= ?", until.pgValue) }
        query.suffix = " GROUP BY status"
        var stats = EndpointStats()
        for row in try await rows(query.query) {
            let count = try row.value("n", as: Int.self)
            switch try PostgresCoding.status(row, "status") {
            case .success: stats.success += count
            case .pending: stats.pending += count
            case .fail: stats.fail += count
            case .sending: stats.sending += count
            }
        }
        return stats
    }

    /// The message columns other than the payload (which comes back NULL), each as `<prefix><name>`.
    static func messageColumnsWithoutPayload(prefix: String, table: String) -> String {
        (["id", "app_id", "event_id", "event_type", "channels", "created_at", "payload_expires_at"]
            .map { "\(table).\($0) AS \(prefix)\($0)" } + ["NULL::bytea AS \(prefix)payload"]).joined(separator: ", ")
    }

    /// The payloads of these messages, read in a second step so that a page never loads more
    /// payload bytes than its budget.
    func payloads(of ids: [MessageID]) async throws -> [MessageID: [UInt8]] {
        guard !ids.isEmpty else { return [:] }
        var result: [MessageID: [UInt8]] = [:]
        for row in try await rows("SELECT id, payload FROM messages WHERE id = ANY(\(ids.map(\.rawValue)))") {
            if let bytes = try row.bytes("payload") { result[MessageID(rawValue: try row.value("id"))] = bytes }
        }
        return result
    }
}
