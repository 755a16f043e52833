import Foundation
import HeraldCore
import Logging
import PostgresNIO

// The durable queue shared by every node's dispatcher.
extension PostgresStore {
    /// A skip scan (a recursive CTE, one index seek per endpoint) over the partial index
    /// `deliveries_due_by_endpoint`: each endpoint with pending work once, with its earliest due
    /// time and how many of its deliveries are claimed under an unexpired lease on any node.
    public func dueEndpoints(now: Date, after: EndpointID?, limit: Int) async throws -> DueEndpointScan {
        let steps = max(1, limit)
        let walked = try await rows("""
            WITH RECURSIVE walk(endpoint_id, app_id, due, n) AS (
                (SELECT endpoint_id, app_id, next_attempt_at, 1 FROM deliveries
                 WHERE status = 1 AND endpoint_id > \(after?.rawValue ?? "")::text COLLATE "C"
                 ORDER BY endpoint_id, next_attempt_at LIMIT 1)
                UNION ALL
                SELECT x.endpoint_id, x.app_id, x.next_attempt_at, w.n + 1 FROM walk w CROSS JOIN LATERAL (
                    SELECT endpoint_id, app_id, next_attempt_at FROM deliveries
                    WHERE status = 1 AND endpoint_id > w.endpoint_id
                    ORDER BY endpoint_id, next_attempt_at LIMIT 1) x
                WHERE w.n < \(steps)::bigint
            )
            SELECT w.endpoint_id, w.app_id, w.due,
                   CASE WHEN w.due <= \(now.pgValue)::double precision THEN
                       (SELECT COUNT(*) FROM deliveries s WHERE s.status = 3 AND s.endpoint_id = w.endpoint_id
                        AND s.lease_expires_at >= \(now.pgValue)::double precision)
                   ELSE 0 END AS in_flight
            FROM walk w ORDER BY w.n
            """, relaxed: true)
        var due: [DueEndpoint] = []
        var last: String?
        for row in walked {
            let endpoint = try row.value("endpoint_id", as: String.self)
            last = endpoint
            // A pending row without a due time (never written so) is skipped, not fatal to the walk.
            guard let earliest = try? row.optionalDate("due"), earliest <= now else { continue }
            due.append(DueEndpoint(endpointID: EndpointID(rawValue: endpoint), appID: ApplicationID(rawValue: try row.value("app_id")),
                                   earliestDue: earliest, inFlight: try row.value("in_flight", as: Int.self)))
        }
        return DueEndpointScan(due: due, next: walked.count >= steps ? last.map(EndpointID.init(rawValue:)) : nil)
    }

    /// Claims each endpoint's oldest due deliveries up to its quota with `FOR UPDATE SKIP LOCKED`:
    /// concurrent claims from any number of nodes lock disjoint rows without waiting for each
    /// other, and the claimed rows become `sending` under the lease in the same statement.
    public func claimDueDeliveries(now: Date, quotas: [EndpointID: Int], leaseUntil: Date) async throws -> [Delivery] {
        let wanted = quotas.filter { $0.value > 0 }.sorted { $0.key < $1.key }
        guard !wanted.isEmpty else { return [] }
        let claimed = try await rows("""
            WITH quota AS (
                SELECT * FROM unnest(\(wanted.map(\.key.rawValue))::text[], \(wanted.map(\.value))::bigint[]) AS q(endpoint_id, n)
            ), due AS (
                SELECT d.message_id, d.endpoint_id FROM quota q CROSS JOIN LATERAL (
                    SELECT message_id, endpoint_id FROM deliveries
                    WHERE status = 1 AND endpoint_id = q.endpoint_id COLLATE "C" AND next_attempt_at <= \(now.pgValue)::double precision
                    ORDER BY next_attempt_at, message_id LIMIT q.n
                    FOR UPDATE SKIP LOCKED) d
            )
            UPDATE deliveries d SET status = 3, lease_expires_at = \(leaseUntil.pgValue)::double precision
            FROM due WHERE d.message_id = due.message_id AND d.endpoint_id = due.endpoint_id
            RETURNING d.*
            """, relaxed: true)
        return try claimed.map(PostgresCoding.delivery).sorted {
            ($0.nextAttemptAt ?? .distantPast, $0.messageID, $0.endpointID) < ($1.nextAttemptAt ?? .distantPast, $1.messageID, $1.endpointID)
        }
    }

    /// Takes over deliveries whose node stopped (their lease lapsed), counting an interruption.
    public func claimLapsedDeliveries(now: Date, limit: Int, leaseUntil: Date) async throws -> [Delivery] {
        guard limit > 0 else { return [] }
        let claimed = try await rows("""
            WITH lapsed AS (
                SELECT message_id, endpoint_id FROM deliveries
                WHERE status = 3 AND lease_expires_at < \(now.pgValue)::double precision
                ORDER BY lease_expires_at LIMIT \(limit)::bigint
                FOR UPDATE SKIP LOCKED
            )
            UPDATE deliveries d SET lease_expires_at = \(leaseUntil.pgValue)::double precision, interrupted_count = d.interrupted_count + 1
            FROM lapsed WHERE d.message_id = lapsed.message_id AND d.endpoint_id = lapsed.endpoint_id
            RETURNING d.*
            """, relaxed: true)
        return try claimed.map(PostgresCoding.delivery)
    }

    public func deliveryTargets(for claimed: [Delivery]) async throws -> DeliveryTargets {
        guard !claimed.isEmpty else { return DeliveryTargets() }
        let codec = secrets
        let endpointIDs = Array(Set(claimed.map(\.endpointID.rawValue)))
        let messageIDs = Array(Set(claimed.map(\.messageID.rawValue)))
        async let endpointRows = rows("SELECT * FROM endpoints WHERE id = ANY(\(endpointIDs)::text[])")
        async let messageRows = rows("SELECT * FROM messages WHERE id = ANY(\(messageIDs)::text[])")
        var targets = DeliveryTargets()
        for row in try await endpointRows {
            let endpoint = try PostgresCoding.endpoint(row, secrets: codec)
            targets.endpoints[endpoint.id] = endpoint
        }
        for row in try await messageRows {
            let message = try PostgresCoding.message(row)
            targets.messages[message.id] = message
        }
        return targets
    }

    /// Stores the attempt and the delivery's new state, in the next batch of attempt records (see
    /// `recordAttempts`), on the pool that does not wait for the WAL flush.
    public func recordAttempt(_ attempt: Attempt, delivery: Delivery) async throws {
        try await attemptBatcher.submit(AttemptRecord(attempt: attempt, delivery: delivery))
    }

    /// One statement for a batch of attempt records (`RecordAttemptsStatement`).
    static func recordAttempts(_ records: [AttemptRecord], pool: PostgresClient, timeout: Duration, logger: Logger) async throws {
        guard !records.isEmpty else { return }
        let statement = RecordAttemptsStatement(records: records)
        try await withDeadline(timeout) {
            for try await _ in try await pool.execute(statement, logger: logger) {}
        }
    }

    public func releaseClaims(_ claimed: [Delivery]) async throws {
        let leased = claimed.filter { $0.leaseExpiresAt != nil }
        guard !leased.isEmpty else { return }
        let released = try await rows("""
            UPDATE deliveries d SET status = 1, lease_expires_at = NULL
            FROM unnest(\(leased.map(\.messageID.rawValue))::text[], \(leased.map(\.endpointID.rawValue))::text[],
                        \(leased.map { $0.leaseExpiresAt!.pgValue })::double precision[]) AS r(message_id, endpoint_id, lease)
            WHERE d.message_id = r.message_id AND d.endpoint_id = r.endpoint_id AND d.status = 3 AND d.lease_expires_at = r.lease
            RETURNING 1
            """, relaxed: true)
        if !released.isEmpty { await announcer.announce() }
    }

    public func deliveryCounts() async throws -> [DeliveryStatus: Int] {
        var counts: [DeliveryStatus: Int] = [:]
        for row in try await rows("SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status") {
            counts[try PostgresCoding.status(row, "status")] = try row.value("n", as: Int.self)
        }
        return counts
    }

    /// Only for a database no running node shares; Herald never calls it on PostgreSQL, where a
    /// crashed node's claims are taken over when their lease lapses.
    public func releaseAllClaims() async throws -> Int {
        let released = try await rows("UPDATE deliveries SET status = 1, lease_expires_at = NULL, interrupted_count = interrupted_count + 1 WHERE status = 3 RETURNING 1").count
        if released > 0 { await announcer.announce() }
        return released
    }

    public func resend(app: ApplicationID, message: MessageID, endpoint: EndpointID, now: Date) async throws {
        let queued = try await rows("""
            INSERT INTO deliveries (message_id, endpoint_id, app_id, status, attempt_count, next_attempt_at, trigger_type,
                                    event_type, channels, created_at)
            SELECT m.id, e.id, m.app_id, 1, 0, \(now.pgValue)::double precision, 1, m.event_type, m.channels, m.created_at
            FROM messages m JOIN endpoints e ON e.app_id = m.app_id
            WHERE m.id = \(message.rawValue) AND m.app_id = \(app.rawValue) AND e.id = \(endpoint.rawValue)
            ON CONFLICT (message_id, endpoint_id) DO UPDATE SET
                status = 1, next_attempt_at = excluded.next_attempt_at, lease_expires_at = NULL, trigger_type = 1,
                interrupted_count = 0
            RETURNING 1
            """)
        guard !queued.isEmpty else {
            let messageExists = try await !rows("SELECT 1 FROM messages WHERE id = \(message.rawValue) AND app_id = \(app.rawValue)").isEmpty
            throw StoreError.notFound(messageExists ? "endpoint" : "message")
        }
        await announcer.announce()
    }

    public func recover(app: ApplicationID, endpoint: EndpointID, since: Date, until: Date?, now: Date) async throws -> Int {
        var query = PGQuery("UPDATE deliveries SET status = 1, lease_expires_at = NULL, trigger_type = 0, attempt_count = 0, interrupted_count = 0")
        query.head += ", next_attempt_at = \(query.bind(now.pgValue))"
        query.require("app_id = ?", app.rawValue)
        query.require("endpoint_id = ?", endpoint.rawValue)
        query.conditions.append("status = 2")
        query.require("created_at >= ?", since.pgValue)
        if let until { query.require("created_at <= ?", until.pgValue) }
        query.suffix = " RETURNING 1"
        let recovered = try await rows(query.query).count
        if recovered > 0 { await announcer.announce() }
        return recovered
    }

    public func delivery(message: MessageID, endpoint: EndpointID) async throws -> Delivery? {
        try await rows("SELECT * FROM deliveries WHERE message_id = \(message.rawValue) AND endpoint_id = \(endpoint.rawValue)")
            .first.map(PostgresCoding.delivery)
    }
}
