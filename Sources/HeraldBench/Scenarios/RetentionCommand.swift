import ArgumentParser
import Foundation
import HeraldCLI
import NIOConcurrencyHelpers
import PostgresNIO

/// `herald-bench retention`: does the database stop growing when messages expire as fast as they
/// are published?
///
/// Starts `herald serve` with a short `--message-retention` and `--retention-interval`, publishes at
/// a steady `--rate` to one application whose endpoint (a receiver in this process) answers 200,
/// so every message leaves a delivery and an attempt, and samples the database size every
/// `--sample` seconds: the SQLite file and its WAL, or PostgreSQL's `pg_database_size` and the
/// total size of the schema's tables (with indexes and TOAST). Prints the series, then the goal:
/// after the warm-up (twice the retention; on PostgreSQL at least 120 s, for autovacuum to make
/// the deleted rows' space reusable), the size grows by less than 10 %.
struct RetentionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retention",
        abstract: "Publish and expire at a steady rate: the database size over time levels off.",
        discussion: """
        Example (a smoke run): herald-bench retention --rate 50 --seconds 20 --retention 5s --sample 2
        """
    )

    @OptionGroup var options: ScenarioOptions
    @Option(help: "Messages published per second.") var rate = 300.0
    @Option(name: .customLong("seconds"), help: "Seconds of publishing.") var runSeconds = 180.0
    @Option(help: "herald serve --message-retention.") var retention = "30s"
    @Option(help: "herald serve --retention-interval.") var interval = "2s"
    @Option(help: "Seconds between two size samples.") var sample = 5.0
    @Option(help: "Bytes of padding in each payload.") var padding = 1000
    @Option(help: "Publish connections.") var publishers = 8
    @Option(help: "Seconds before the size should level off (default: twice the retention; on PostgreSQL at least 120, two autovacuum rounds).")
    var warmUp: Double?

    func validate() throws {
        guard rate > 0, rate <= 100_000 else { throw ValidationError("--rate must be between 0 and 100000") }
        guard runSeconds > 0 else { throw ValidationError("--seconds must be positive") }
        guard sample > 0 else { throw ValidationError("--sample must be positive") }
        guard padding >= 0, padding <= 500_000 else { throw ValidationError("--padding must be between 0 and 500000") }
        guard publishers >= 1 else { throw ValidationError("--publishers must be at least 1") }
        if let warmUp, !(warmUp >= 0) { throw ValidationError("--warm-up must not be negative") }
        guard Self.parse(retention) != nil else { throw ValidationError("--retention must be days, or a number with s, m, h or d") }
    }

    /// `--retention` in seconds (a plain number counts days, as for herald serve).
    static func parse(_ text: String) -> Double? { DurationSyntax.seconds(text, bareUnit: 86400) }

    struct Sample {
        let at: Double
        let published: Int
        let delivered: Int
        let size: Int
        let detail: String
    }

    func run() async throws {
        var scenario = options
        scenario.serveArguments += ["--message-retention", retention, "--retention-interval", interval]
        let retentionSeconds = Self.parse(retention) ?? 30
        try await ScenarioContext.run(scenario, defaultDeadline: runSeconds + 300) { context in
            let arrivals = ArrivalCounter()
            let receiver = ScenarioReceiver(delay: { _ in .zero }, onArrival: { _, index, now in arrivals.arrived(index, at: now) })
            let port = try await receiver.listen(count: 1, deadline: context.deadline)[0]
            context.line("scenario", "retention: \(Int(rate)) msg/s for \(Int(runSeconds)) s, --message-retention \(retention), --retention-interval \(interval)")
            context.line("database", context.database.hasPrefix("sqlite:") ? "sqlite (fresh file)" : (context.createdSchema.map { "postgres (schema \($0))" } ?? "postgres"))
            let server = try await context.startServer()
            let api = context.api(server)
            let app = try await api.createApplication(name: "retention")
            _ = try await api.createEndpoint(app: app, url: "http://127.0.0.1:\(port)/retention")

            let target = try BenchPublisher.Target(url: server.url, path: "/api/v1/app/\(app)/msg")
            let pad = String(repeating: "x", count: padding)
            let begin = ContinuousClock.now
            var publisher = BenchPublisher(
                targets: [target], token: context.token, count: Int(rate * runSeconds), connections: publishers,
                interval: .seconds(1 / rate), begin: begin,
                body: { Array(#"{"eventType":"retention.tick","payload":{"i":\#($0),"pad":"\#(pad)"}}"#.utf8) },
                willSend: { _, _ in })
            let published = ManagedCounter()
            publisher.answered = { _, status in if status == 202 { published.add() } }
            publisher.stopAt = begin + Duration.seconds(runSeconds)
            let configured = publisher
            let publishing = Task { try await configured.publish() }

            var samples: [Sample] = []
            context.line("series", "t (s), published, delivered, size (MB), detail")
            while true {
                let elapsed = ContinuousClock.now - begin
                let (size, detail) = try await databaseSize(context)
                let point = Sample(at: seconds(elapsed), published: published.value, delivered: arrivals.unique, size: size, detail: detail)
                samples.append(point)
                context.line(String(format: "t=%5.0f", point.at),
                             String(format: "%7d  %7d  %8.2f  ", point.published, point.delivered, Double(size) / 1e6) + detail)
                if elapsed >= .seconds(runSeconds) || ContinuousClock.now >= context.deadline { break }
                try await Task.sleep(for: .seconds(sample))
            }
            let outcome = try await publishing.value
            context.line("published", "\(outcome.sent - outcome.errors) accepted of \(outcome.sent) (\(String(format: "%.0f", Double(outcome.sent - outcome.errors) / runSeconds)) msg/s)")
            let warmUpSeconds = warmUp ?? (context.database.hasPrefix("sqlite:") ? 2 * retentionSeconds : max(2 * retentionSeconds, 120))
            let warm = samples.filter { $0.at >= warmUpSeconds }
            let steady = warm.first.map(\.size) ?? 0
            let last = samples.last?.size ?? 0
            let peak = warm.map(\.size).max() ?? 0
            context.line("size after warm-up (\(Int(warmUpSeconds)) s)", megabytes(steady))
            context.line("size at the end", megabytes(last))
            context.line("peak after warm-up", megabytes(peak))
            if let start = warm.first, let end = samples.last {
                context.line("published after the warm-up", "\(end.published - start.published) messages (\(String(format: "%.1f", Double(end.published - start.published) / max(1, rate * retentionSeconds))) × what retention keeps)")
            }
            context.goal("after the warm-up the size grows by less than 10 %", met: !warm.isEmpty && Double(peak) < 1.10 * Double(max(steady, 1)))
            await receiver.close()
        }
    }

    /// The database's size in bytes, and a breakdown to print.
    private func databaseSize(_ context: ScenarioContext) async throws -> (Int, String) {
        if context.database.hasPrefix("sqlite:") {
            let path = String(context.database.dropFirst("sqlite:".count))
            func size(_ file: String) -> Int { ((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? NSNumber)?.intValue ?? 0 }
            let main = size(path), wal = size(path + "-wal"), shm = size(path + "-shm")
            return (main + wal + shm, String(format: "file %.2f MB, wal %.2f MB", Double(main) / 1e6, Double(wal) / 1e6))
        }
        let result = SizePair()
        try await PostgresAdmin.execute(url: context.database, timeout: .seconds(30)) { connection in
            let rows = try await connection.query("""
                SELECT pg_database_size(current_database())::bigint AS db,
                       COALESCE((SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                 WHERE n.nspname = current_schema() AND c.relkind = 'r'), 0)::bigint AS tables
                """, logger: PostgresAdmin.logger)
            for try await (db, tables) in rows.decode((Int, Int).self) { result.set(db, tables) }
        }
        let (db, tables) = result.get()
        return (tables, String(format: "schema tables %.2f MB, whole database %.2f MB", Double(tables) / 1e6, Double(db) / 1e6))
    }

}

/// A counter shared with the publisher's event loops.
final class ManagedCounter: Sendable {
    private let box = NIOLockedValueBox(0)
    func add() { box.withLockedValue { $0 += 1 } }
    var value: Int { box.withLockedValue { $0 } }
}

/// Two sizes read inside a PostgreSQL callback.
final class SizePair: Sendable {
    private let box = NIOLockedValueBox((0, 0))
    func set(_ a: Int, _ b: Int) { box.withLockedValue { $0 = (a, b) } }
    func get() -> (Int, Int) { box.withLockedValue { $0 } }
}

