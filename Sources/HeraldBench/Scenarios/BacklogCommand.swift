import ArgumentParser
import Foundation
import NIOConcurrencyHelpers

/// `herald-bench backlog`: does a large backlog for one application hurt the others?
///
/// Applications A (one endpoint answering after `--delay` s, so the backlog stays) and B (one
/// healthy endpoint) are made through the API; B's publish rate is measured on the empty database
/// (`--publishers` connections for `--publish-seconds`). The server is stopped, `--backlog` pending
/// deliveries for A are written straight into its tables, and it is started again. Reported: the
/// RSS after start-up (goal < 200 MB), the publish→delivery time of `--probes` single messages to B
/// one after another (goal: max < 1 s), and B's publish rate again (goal ≥ 80 % of the empty one).
struct BacklogCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backlog",
        abstract: "A million pending deliveries for one application: RSS, another application's latency and publish rate.",
        discussion: """
        Seeding writes rows into the tables messages and deliveries of the current schema (SQLite \
        through GRDB, PostgreSQL with generate_series) while the server is stopped.
        Example (a smoke run): herald-bench backlog --backlog 1000 --publish-seconds 1 --probes 3 --settle 0.5
        """
    )

    @OptionGroup var options: ScenarioOptions
    @Option(help: "Pending deliveries to seed for application A.") var backlog = 1_000_000
    @Option(help: "Seconds A's endpoint waits before answering 200.") var delay = 10.0
    @Option(help: "Single messages to B whose publish→delivery time is measured, one after another.") var probes = 10
    @Option(help: "Seconds a probe may take to arrive before it counts as not delivered.") var probeTimeout = 30.0
    @Option(help: "Publish connections for the publish-rate measurements.") var publishers = 16
    @Option(help: "Seconds each publish-rate measurement lasts.") var publishSeconds = 10.0
    @Option(help: "Seconds after the restart before the RSS is read.") var settle = 5.0

    func validate() throws {
        guard backlog >= 1 else { throw ValidationError("--backlog must be at least 1") }
        guard delay >= 0, delay <= 3600 else { throw ValidationError("--delay must be between 0 and 3600 seconds") }
        guard probes >= 1 else { throw ValidationError("--probes must be at least 1") }
        guard probeTimeout > 0 else { throw ValidationError("--probe-timeout must be positive") }
        guard publishers >= 1 else { throw ValidationError("--publishers must be at least 1") }
        guard publishSeconds > 0 else { throw ValidationError("--publish-seconds must be positive") }
        guard settle >= 0 else { throw ValidationError("--settle must not be negative") }
    }

    func run() async throws {
        try await ScenarioContext.run(options, defaultDeadline: 1800) { context in
            let pair = try await SlowAndFastReceivers.listen(slowDelay: .seconds(self.delay), deadline: context.deadline)
            let (receiver, slow, fast, listening) = (pair.receiver, pair.slow, pair.fast, [pair.slowPort, pair.fastPort])
            context.line("scenario", "backlog: \(backlog) pending for A (endpoint answers after \(self.delay) s); B healthy")
            context.line("database", options.database == "sqlite" ? "sqlite (fresh file)" : (context.createdSchema.map { "postgres (schema \($0))" } ?? "postgres"))

            // 1. The applications, and B's publish rate on the empty database.
            let first = try await context.startServer()
            var api = context.api(first)
            let appA = try await api.createApplication(name: "backlog A")
            let endpointA = try await api.createEndpoint(app: appA, url: "http://127.0.0.1:\(listening[0])/a")
            let appB = try await api.createApplication(name: "backlog B")
            _ = try await api.createEndpoint(app: appB, url: "http://127.0.0.1:\(listening[1])/b")
            context.line("server RSS after start-up, empty", megabytes(first.rss))
            var nextIndex = 0
            let emptyRate = try await publishRate(context, server: first, app: appB, from: &nextIndex)
            context.line("B publish rate, empty database", String(format: "%.0f msg/s (%d publishers, %.0f s)", emptyRate, publishers, publishSeconds))
            // Let B's deliveries finish, so none are carried over into the backlog run.
            guard await fast.wait(forUnique: nextIndex, until: context.deadline) else { throw context.missed("B's deliveries on the empty database had not arrived") }
            guard await first.stop(grace: .seconds(30)) else { throw BenchError("herald serve did not stop within 30 s of SIGTERM") }

            // 2. The backlog, written straight into the tables.
            let seedBegin = ContinuousClock.now
            let seeder = BacklogSeeder(app: appA, endpoint: endpointA, count: backlog)
            let pending: Int
            if context.database.hasPrefix("sqlite:") {
                let path = String(context.database.dropFirst("sqlite:".count))
                pending = try await withDeadline(context, "seeding \(backlog) deliveries") { try seeder.seedSQLite(path: path) }
            } else {
                let url = context.database
                pending = try await seeder.seedPostgres(url: url, timeout: context.deadline - .now)
            }
            context.line("seeded", "\(pending) pending deliveries for A in \(String(format: "%.1f", seconds(.now - seedBegin))) s")
            guard pending >= backlog else { throw BenchError("seeding left \(pending) pending deliveries, not \(backlog)") }

            // 3. Start again with the backlog.
            let startBegin = ContinuousClock.now
            let server = try await context.startServer()
            api = context.api(server)
            context.line("start-up with the backlog", String(format: "%.1f s to the listening line", seconds(.now - startBegin)))
            try await Task.sleep(for: Duration.seconds(min(settle, max(0, context.remaining))))
            let rss = server.rss
            context.line("server RSS after start-up, backlog", megabytes(rss))
            let rssMet = rss.map { $0 < 200_000_000 } ?? false

            // 4. Single messages to B, one after another; one that does not arrive within
            // --probe-timeout counts as not delivered (and makes the run exit non-zero at the end).
            var probeLatencies: [Double] = []
            var lost = 0
            for _ in 0..<probes {
                let index = nextIndex
                nextIndex += 1
                fast.sent(index, at: .now)
                try await api.publish(app: appB, eventType: "backlog.b", index: index)
                if let latency = await fast.wait(for: index, until: context.deadline(within: probeTimeout)) {
                    probeLatencies.append(latency)
                } else {
                    lost += 1
                    if ContinuousClock.now >= context.deadline { throw context.missed("probe \(probeLatencies.count + lost) of \(probes) to B had not arrived") }
                }
            }
            let maxProbe = lost > 0 ? Double.infinity : (probeLatencies.max() ?? .nan)
            let sortedProbes = (probeLatencies + Array(repeating: Double.infinity, count: lost)).sorted()
            func ms(_ value: Double) -> String { value.isFinite ? String(format: "%.1f ms", value * 1000) : "not delivered" }
            context.line("B publish→delivery, single", "max \(ms(maxProbe))  median \(ms(percentile(sortedProbes, 0.5))) (\(probes) probes\(lost > 0 ? ", \(lost) not delivered within \(String(format: "%.0f", probeTimeout)) s" : ""))")
            if lost > 0, !probeLatencies.isEmpty {
                context.line("B probes delivered", "\(probeLatencies.count): max \(ms(probeLatencies.max()!))  min \(ms(probeLatencies.min()!))")
            }

            // 5. B's publish rate again.
            let backlogRate = try await publishRate(context, server: server, app: appB, from: &nextIndex)
            context.line("B publish rate, backlog", String(format: "%.0f msg/s", backlogRate))
            let ratio = backlogRate / max(emptyRate, 1e-9)
            context.line("publish rate backlog / empty", String(format: "%.2f", ratio))
            let bDone = await fast.wait(forUnique: nextIndex, until: context.deadline(within: 60))
            context.line("B delivered", "\(fast.unique) of \(nextIndex)\(bDone ? "" : " (not all in time)")")
            context.line("A arrived", "\(slow.total) of the \(backlog) (endpoint answers after \(self.delay) s)")
            context.line("server RSS at the end", megabytes(server.rss))
            context.line("server peak RSS", megabytes(server.memory("VmHWM")))
            context.goal("RSS after start-up with the backlog < 200 MB", met: rssMet)
            context.goal("B's single publish→delivery max < 1 s", met: maxProbe < 1)
            context.goal("B's publish rate with the backlog ≥ 80 % of the empty database's", met: ratio >= 0.8)
            await receiver.close()
            if lost > 0 { throw context.missed("\(lost) of \(probes) probes to B did not arrive within \(String(format: "%.0f", probeTimeout)) s each", overall: false) }
        }
    }

    /// B's accepted messages per second with `publishers` connections for `publishSeconds`.
    private func publishRate(_ context: ScenarioContext, server: HeraldServerProcess, app: String, from next: inout Int) async throws -> Double {
        let target = try BenchPublisher.Target(url: server.url, path: "/api/v1/app/\(app)/msg")
        let begin = ContinuousClock.now
        let offset = next
        var publisher = BenchPublisher(targets: [target], token: context.token, count: Int.max / 2, connections: publishers, interval: nil,
                                       begin: begin, body: { publishBody(eventType: "backlog.b", index: offset + $0) }, willSend: { _, _ in })
        publisher.stopAt = begin + Duration.seconds(publishSeconds)
        let configured = publisher
        let outcome = try await withDeadline(context, "measuring B's publish rate") { try await configured.publish() }
        let elapsed = seconds(.now - begin)
        guard outcome.errors == 0 else { throw BenchError("\(outcome.errors) of \(outcome.sent) publishes to B were refused") }
        next += outcome.sent
        return Double(outcome.sent) / max(elapsed, 1e-9)
    }
}
