import Foundation
import GRDB
import HeraldCore

extension SQLiteStore {
    /// Inserts the delivery, or replaces the stored state of the same message and endpoint.
    static func upsert(_ delivery: Delivery, in db: Database) throws {
        try db.cachedStatement(sql: """
            INSERT INTO deliveries (message_id, endpoint_id, app_id, status, attempt_count, next_attempt_at, last_attempt_at,
                                    lease_expires_at, trigger_type, event_type, channels, created_at, interrupted_count)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (message_id, endpoint_id) DO UPDATE SET
                app_id = excluded.app_id, status = excluded.status, attempt_count = excluded.attempt_count,
                next_attempt_at = excluded.next_attempt_at, last_attempt_at = excluded.last_attempt_at,
                lease_expires_at = excluded.lease_expires_at, trigger_type = excluded.trigger_type,
                event_type = excluded.event_type, channels = excluded.channels, created_at = excluded.created_at,
                interrupted_count = excluded.interrupted_count
            """).execute(arguments: [delivery.messageID.rawValue, delivery.endpointID.rawValue, delivery.appID.rawValue,
                             delivery.status.rawValue, delivery.attemptCount, delivery.nextAttemptAt?.storedValue,
                             delivery.lastAttemptAt?.storedValue, delivery.leaseExpiresAt?.storedValue,
                             delivery.trigger.rawValue, delivery.eventType, try SQLiteCoding.optionalJSON(delivery.channels),
                             delivery.createdAt.storedValue, delivery.interruptedCount])
    }

    // MARK: Attempts

    public func listAttempts(app: ApplicationID, filter: AttemptFilter, _ page: PageRequest) async throws -> Page<Attempt> {
        let paging = SQLPaging(page)
        return try await read { db in
            var query = SQLQuery("SELECT * FROM attempts")
            query.require("attempts.app_id = ?", app.rawValue)
            if let endpoint = filter.endpointID { query.require("attempts.endpoint_id = ?", endpoint.rawValue) }
            if let message = filter.messageID { query.require("attempts.message_id = ?", message.rawValue) }
            if let status = filter.status { query.require("attempts.status = ?", status.rawValue) }
            if let codeClass = filter.statusCodeClass {
                query.require("(attempts.response_status_code / 100) * 100 = ?", codeClass)
            }
            query.filter(filter.message, table: "attempts")
            paging.apply(to: &query, key: "attempts.id")
            let items = try Row.fetchAll(db, sql: query.sql, arguments: query.statementArguments).map(SQLiteCoding.attempt)
            // Responses are at most 20,000 bytes each, so a whole page of them is small enough to read.
            let fit = page.contentFit(items.prefix(page.limit).map(\.response.utf8.count))
            return paging.window.page(items, key: { $0.id.rawValue }, contentFit: fit)
        }
    }

    public func attempt(app: ApplicationID, message: MessageID, id: AttemptID) async throws -> Attempt? {
        try await read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM attempts WHERE id = ? AND app_id = ? AND message_id = ?"),
                             arguments: [id.rawValue, app.rawValue, message.rawValue]).map(SQLiteCoding.attempt)
        }
    }

    public func expungeAttemptResponse(app: ApplicationID, message: MessageID, id: AttemptID) async throws {
        try await write { db in
            try db.cachedStatement(sql: "UPDATE attempts SET response = '' WHERE id = ? AND app_id = ? AND message_id = ?").execute(arguments: [id.rawValue, app.rawValue, message.rawValue])
            guard db.changesCount > 0 else { throw StoreError.notFound("attempt") }
        }
    }

    // MARK: Deliveries

    public func listDeliveredMessages(app: ApplicationID, endpoint: EndpointID, status: DeliveryStatus?, filter: MessageFilter,
                                      _ page: PageRequest) async throws -> Page<DeliveredMessage> {
        let paging = SQLPaging(page)
        return try await read { db in
            var query = SQLQuery("""
                SELECT d.*, \(Self.messageColumnsWithoutPayload(prefix: "m_", table: "m")), length(m.payload) AS content_length
                FROM deliveries d JOIN messages m ON m.id = d.message_id
                """)
            query.require("d.app_id = ?", app.rawValue)
            query.require("d.endpoint_id = ?", endpoint.rawValue)
            if let status { query.require("d.status = ?", status.rawValue) }
            query.filter(filter, table: "m")
            paging.apply(to: &query, key: "d.message_id")
            let rows = try Row.fetchAll(db, sql: query.sql, arguments: query.statementArguments)
            let fit = page.contentFit(rows.prefix(page.limit).map { ($0["content_length"] as Int?) ?? 0 })
            var items = try rows.map { row in
                DeliveredMessage(delivery: try SQLiteCoding.delivery(row), message: try SQLiteCoding.message(row, prefix: "m_"))
            }
            if page.withContent {
                let payloads = try Self.payloads(of: items.prefix(fit).map(\.message.id), in: db)
                for index in items.indices.prefix(fit) { items[index].message.payload = payloads[items[index].message.id] }
            }
            return paging.window.page(items, key: { $0.message.id.rawValue }, contentFit: fit)
        }
    }

    public func listDestinations(app: ApplicationID, message: MessageID, _ page: PageRequest) async throws -> Page<MessageDestination> {
        let paging = SQLPaging(page)
        let codec = secrets
        return try await read { db in
            var query = SQLQuery("""
                SELECT d.*, e.id AS e_id, e.app_id AS e_app_id, e.uid AS e_uid, e.url AS e_url, e.description AS e_description,
                       e.disabled AS e_disabled, e.event_types AS e_event_types, e.channels AS e_channels,
                       e.throttle_rate AS e_throttle_rate, e.metadata AS e_metadata, e.headers AS e_headers,
                       e.secrets AS e_secrets, e.secrets_sealed AS e_secrets_sealed, e.created_at AS e_created_at,
                       e.updated_at AS e_updated_at, e.failing_since AS e_failing_since
                FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id
                """)
            query.require("d.app_id = ?", app.rawValue)
            query.require("d.message_id = ?", message.rawValue)
            paging.apply(to: &query, key: "d.endpoint_id")
            let items = try Row.fetchAll(db, sql: query.sql, arguments: query.statementArguments).map { row in
                MessageDestination(delivery: try SQLiteCoding.delivery(row),
                                   endpoint: try SQLiteCoding.endpoint(row, prefix: "e_", secrets: codec))
            }
            return paging.page(items) { $0.endpoint.id.rawValue }
        }
    }

    public func endpointStats(app: ApplicationID, endpoint: EndpointID, since: Date?, until: Date?) async throws -> EndpointStats {
        try await read { db in
            var query = SQLQuery("SELECT status, COUNT(*) AS n FROM deliveries")
            query.require("app_id = ?", app.rawValue)
            query.require("endpoint_id = ?", endpoint.rawValue)
            if let since { query.require("created_at >= ?", since.storedValue) }
            if let until { query.require("created_at <= ?", until.storedValue) }
            query.suffix = " GROUP BY status"
            var stats = EndpointStats()
            for row in try Row.fetchAll(db, sql: query.sql, arguments: query.statementArguments) {
                let count: Int = row["n"]
                switch try SQLiteCoding.status(row, "status") {
                case .success: stats.success += count
                case .pending: stats.pending += count
                case .fail: stats.fail += count
                case .sending: stats.sending += count
                }
            }
            return stats
        }
    }

    public func resend(app: ApplicationID, message: MessageID, endpoint: EndpointID, now: Date) async throws {
        try await write { db in
            guard let stored = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM messages WHERE id = ? AND app_id = ?"),
                                                arguments: [message.rawValue, app.rawValue]).map({ try SQLiteCoding.message($0) }) else {
                throw StoreError.notFound("message")
            }
            guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM endpoints WHERE id = ? AND app_id = ?"),
                                    arguments: [endpoint.rawValue, app.rawValue]) != nil else {
                throw StoreError.notFound("endpoint")
            }
            var delivery = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM deliveries WHERE message_id = ? AND endpoint_id = ?"),
                                            arguments: [message.rawValue, endpoint.rawValue]).map(SQLiteCoding.delivery)
                ?? Delivery(messageID: message, endpointID: endpoint, appID: app, nextAttemptAt: now,
                            eventType: stored.eventType, channels: stored.channels, createdAt: stored.createdAt)
            delivery.status = .pending
            delivery.nextAttemptAt = now
            delivery.leaseExpiresAt = nil
            delivery.trigger = .manual
            delivery.interruptedCount = 0
            try Self.upsert(delivery, in: db)
        }
    }

    public func recover(app: ApplicationID, endpoint: EndpointID, since: Date, until: Date?, now: Date) async throws -> Int {
        try await write { db in
            var sql = """
                UPDATE deliveries SET status = ?, next_attempt_at = ?, lease_expires_at = NULL, trigger_type = ?, attempt_count = 0,
                    interrupted_count = 0
                WHERE app_id = ? AND endpoint_id = ? AND status = ? AND created_at >= ?
                """
            var arguments: StatementArguments = [DeliveryStatus.pending.rawValue, now.storedValue, TriggerType.scheduled.rawValue,
                                                 app.rawValue, endpoint.rawValue, DeliveryStatus.fail.rawValue, since.storedValue]
            if let until {
                sql += " AND created_at <= ?"
                arguments += [until.storedValue]
            }
            try db.execute(sql: sql, arguments: arguments)
            return db.changesCount
        }
    }

    public func delivery(message: MessageID, endpoint: EndpointID) async throws -> Delivery? {
        try await read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM deliveries WHERE message_id = ? AND endpoint_id = ?"),
                             arguments: [message.rawValue, endpoint.rawValue]).map(SQLiteCoding.delivery)
        }
    }

    // MARK: The delivery queue

    public func dueEndpoints(now: Date, after: EndpointID?, limit: Int) async throws -> DueEndpointScan {
        try await read { db in
            // A skip scan over the partial index `deliveries_due_by_endpoint`: one seek per endpoint
            // with pending work gives its earliest due delivery, however many it has queued.
            let step = try db.cachedStatement(sql: """
                SELECT endpoint_id, next_attempt_at, app_id FROM deliveries
                WHERE status = 1 AND endpoint_id > ? ORDER BY endpoint_id, next_attempt_at LIMIT 1
                """)
            let sending = try db.cachedStatement(sql: """
                SELECT COUNT(*) FROM deliveries WHERE status = 3 AND endpoint_id = ? AND lease_expires_at >= ?
                """)
            var cursor = after?.rawValue ?? ""
            var due: [DueEndpoint] = []
            for _ in 0..<max(1, limit) {
                guard let row = try Row.fetchOne(step, arguments: [cursor]) else {
                    return DueEndpointScan(due: due, next: nil)
                }
                cursor = row["endpoint_id"]
                guard let next = row["next_attempt_at"] as Double?, next <= now.storedValue else { continue }
                let inFlight = try Int.fetchOne(sending, arguments: [cursor, now.storedValue]) ?? 0
                due.append(DueEndpoint(endpointID: EndpointID(rawValue: cursor), appID: ApplicationID(rawValue: row["app_id"]),
                                       earliestDue: Date(storedValue: next), inFlight: inFlight))
            }
            // Stopped at the limit: whether anything follows is known at the next step.
            return DueEndpointScan(due: due, next: EndpointID(rawValue: cursor))
        }
    }

    public func claimDueDeliveries(now: Date, quotas: [EndpointID: Int], leaseUntil: Date) async throws -> [Delivery] {
        let wanted = quotas.filter { $0.value > 0 }.sorted { $0.key < $1.key }
        guard !wanted.isEmpty else { return [] }
        // One write transaction: SQLite has a single writer, so no other claim runs in between.
        return try await relaxedWrite { db in
            let oldest = try db.cachedStatement(sql: """
                SELECT * FROM deliveries WHERE status = 1 AND endpoint_id = ? AND next_attempt_at <= ?
                ORDER BY next_attempt_at, message_id LIMIT ?
                """)
            var claimed: [Delivery] = []
            for (endpoint, quota) in wanted {
                for delivery in try Row.fetchAll(oldest, arguments: [endpoint.rawValue, now.storedValue, quota]).map(SQLiteCoding.delivery) {
                    var taken = delivery
                    taken.status = .sending
                    taken.leaseExpiresAt = leaseUntil
                    try Self.lease(taken, in: db)
                    claimed.append(taken)
                }
            }
            return claimed
        }
    }

    public func claimLapsedDeliveries(now: Date, limit: Int, leaseUntil: Date) async throws -> [Delivery] {
        guard limit > 0 else { return [] }
        return try await relaxedWrite { db in
            try Row.fetchAll(db.cachedStatement(sql: """
                SELECT * FROM deliveries WHERE status = 3 AND lease_expires_at < ?
                ORDER BY lease_expires_at LIMIT ?
                """), arguments: [now.storedValue, limit]).map(SQLiteCoding.delivery).map { delivery in
                var taken = delivery
                taken.leaseExpiresAt = leaseUntil
                taken.interruptedCount += 1
                try Self.lease(taken, in: db)
                return taken
            }
        }
    }

    /// Writes a claim: `sending` under the delivery's lease, with its interruption count.
    private static func lease(_ delivery: Delivery, in db: Database) throws {
        try db.cachedStatement(sql: """
            UPDATE deliveries SET status = ?, lease_expires_at = ?, interrupted_count = ? WHERE message_id = ? AND endpoint_id = ?
            """).execute(arguments: [DeliveryStatus.sending.rawValue, delivery.leaseExpiresAt?.storedValue, delivery.interruptedCount,
                             delivery.messageID.rawValue, delivery.endpointID.rawValue])
    }

    public func releaseClaims(_ claimed: [Delivery]) async throws {
        guard !claimed.isEmpty else { return }
        try await write { db in
            for delivery in claimed {
                guard let lease = delivery.leaseExpiresAt else { continue }
                try db.cachedStatement(sql: """
                    UPDATE deliveries SET status = ?, lease_expires_at = NULL
                    WHERE message_id = ? AND endpoint_id = ? AND status = ? AND lease_expires_at = ?
                    """).execute(arguments: [DeliveryStatus.pending.rawValue, delivery.messageID.rawValue, delivery.endpointID.rawValue,
                                     DeliveryStatus.sending.rawValue, lease.storedValue])
            }
        }
    }

    public func deliveryTargets(for claimed: [Delivery]) async throws -> DeliveryTargets {
        guard !claimed.isEmpty else { return DeliveryTargets() }
        let codec = secrets
        let endpointIDs = Array(Set(claimed.map(\.endpointID.rawValue)))
        let messageIDs = Array(Set(claimed.map(\.messageID.rawValue)))
        return try lookup { db in
            var targets = DeliveryTargets()
            for chunk in stride(from: 0, to: endpointIDs.count, by: 500).map({ Array(endpointIDs[$0..<min($0 + 500, endpointIDs.count)]) }) {
                let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                for row in try Row.fetchAll(db, sql: "SELECT * FROM endpoints WHERE id IN (\(marks))", arguments: StatementArguments(chunk)) {
                    let endpoint = try SQLiteCoding.endpoint(row, secrets: codec)
                    targets.endpoints[endpoint.id] = endpoint
                }
            }
            for chunk in stride(from: 0, to: messageIDs.count, by: 500).map({ Array(messageIDs[$0..<min($0 + 500, messageIDs.count)]) }) {
                let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                for row in try Row.fetchAll(db, sql: "SELECT * FROM messages WHERE id IN (\(marks))", arguments: StatementArguments(chunk)) {
                    let message = try SQLiteCoding.message(row)
                    targets.messages[message.id] = message
                }
            }
            return targets
        }
    }

    public func deliveryCounts() async throws -> [DeliveryStatus: Int] {
        try await read { db in
            var counts: [DeliveryStatus: Int] = [:]
            for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status")) {
                if let status = DeliveryStatus(rawValue: row["status"]) { counts[status] = row["n"] }
            }
            return counts
        }
    }

    public func releaseAllClaims() async throws -> Int {
        try await write { db in
            try db.cachedStatement(sql: """
                UPDATE deliveries SET status = ?, lease_expires_at = NULL, interrupted_count = interrupted_count + 1 WHERE status = ?
                """).execute(arguments: [DeliveryStatus.pending.rawValue, DeliveryStatus.sending.rawValue])
            return db.changesCount
        }
    }

    /// Stores an attempt and the delivery's new state (inside the caller's transaction).
    static func recordAttempt(_ attempt: Attempt, delivery: Delivery, in db: Database) throws {
        do {
            try db.cachedStatement(sql: """
                INSERT INTO attempts (id, message_id, endpoint_id, app_id, url, response_status_code, response,
                                      response_duration_ms, status, trigger_type, event_type, channels, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: [attempt.id.rawValue, attempt.messageID.rawValue, attempt.endpointID.rawValue,
                                 attempt.appID.rawValue, attempt.url, attempt.responseStatusCode, attempt.response,
                                 attempt.responseDurationMs, attempt.status.rawValue, attempt.triggerType.rawValue,
                                 attempt.eventType, try SQLiteCoding.optionalJSON(attempt.channels),
                                 attempt.createdAt.storedValue])
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_FOREIGNKEY {
            // The endpoint or message was deleted while the attempt was in flight: there is nothing
            // left to record it against. (SQLite checks the references anyway; a failed statement
            // is undone alone, and the transaction goes on.)
            return
        }
        // The delivery row is there (claimed or handed over): an update by key costs less than an
        // upsert's failed insert. The upsert covers a row that is not.
        try db.cachedStatement(sql: """
            UPDATE deliveries SET status = ?, attempt_count = ?, next_attempt_at = ?, last_attempt_at = ?,
                                  lease_expires_at = ?, trigger_type = ?, interrupted_count = 0
            WHERE message_id = ? AND endpoint_id = ?
            """).execute(arguments: [delivery.status.rawValue, delivery.attemptCount, delivery.nextAttemptAt?.storedValue,
                             delivery.lastAttemptAt?.storedValue, delivery.leaseExpiresAt?.storedValue,
                             delivery.trigger.rawValue, delivery.messageID.rawValue, delivery.endpointID.rawValue])
        if db.changesCount == 0 {
            var recorded = delivery
            recorded.interruptedCount = 0
            try Self.upsert(recorded, in: db)
        }
    }
}
