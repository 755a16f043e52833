import Logging
import PostgresNIO

/// Sends `NOTIFY herald_deliveries` after writes that made deliveries due, coalesced: while one
/// notification is on its way, further announcements fold into one more. Notifying inside every
/// publish transaction would serialize their commits (PostgreSQL holds a global lock while a
/// notifying transaction commits); one short statement after the commit does not, and every
/// listening worker still wakes within a round trip. A lost notification (connection down) costs
/// at most the workers' poll interval.
actor WorkAnnouncer {
    /// Sent as the payload, so a node can tell its own announcements (its API already woke its
    /// dispatcher in-process) from other nodes'.
    nonisolated let nodeID: String
    private let client: PostgresClient
    private let logger: Logger
    private var sending = false
    private var again = false

    init(client: PostgresClient, logger: Logger) {
        self.nodeID = String(UInt64.random(in: 1...UInt64.max), radix: 36)
        self.client = client
        self.logger = logger
    }

    /// Announces new due work; returns at once.
    func announce() {
        if sending {
            again = true
            return
        }
        sending = true
        Task { await self.drain() }
    }

    private func drain() async {
        repeat {
            again = false
            do {
                // Read to the end: an error after the row description reaches only the rows' reader.
                for try await _ in try await client.query("SELECT pg_notify('herald_deliveries', \(nodeID))", logger: logger) {}
            } catch {
                logger.debug("could not announce new deliveries", metadata: ["herald.error": "\(PostgresErrorMapping.reason(error))"])
            }
        } while again
        sending = false
    }
}
