import ArgumentParser
import Foundation

/// `herald-bench slow-receivers`: throughput when every receiver is slow. `--endpoints` endpoints
/// on `--ports` receiver ports each answer after a uniform random `--min-delay`…`--max-delay` ms;
/// `herald serve` runs with its default concurrency settings. Messages, each aimed at one endpoint
/// (round-robin, by event type filter), are published at `--rate` for `--duration` seconds (as fast
/// as the API takes them when it cannot keep up); the report's steady rate is that of the middle
/// 80 % of the arrivals. Goal: ≥ 1,500 deliveries/s.
struct SlowReceiversCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slow-receivers",
        abstract: "Many endpoints that answer in 100–300 ms, default settings: steady deliveries/s (goal ≥ 1,500/s).",
        discussion: """
        Example (a smoke run): herald-bench slow-receivers --endpoints 5 --ports 2 --duration 2 --rate 50
        """
    )

    @OptionGroup var options: ScenarioOptions
    @Option(help: "Endpoints (each on one of the receiver ports).") var endpoints = 100
    @Option(help: "Receiver ports (distinct host:port pairs).") var ports = 20
    @Option(help: "Applications the endpoints are spread over.") var applications = 10
    @Option(help: "Shortest answer delay, milliseconds.") var minDelay = 100
    @Option(help: "Longest answer delay, milliseconds.") var maxDelay = 300
    @Option(help: "Messages per second to publish (each to one endpoint).") var rate = 2000.0
    @Option(help: "Seconds of publishing.") var duration = 30.0
    @Option(help: "Publish connections.") var publishers = 32
    @Option(help: "Endpoints each message goes to (each on its own port): deliveries = messages × fan-out.") var fanOut = 1

    func validate() throws {
        guard endpoints >= 1, ports >= 1, applications >= 1 else { throw ValidationError("--endpoints, --ports and --applications must be at least 1") }
        guard ports <= 10_000 else { throw ValidationError("--ports must be at most 10000") }
        guard minDelay >= 0, maxDelay >= minDelay else { throw ValidationError("--min-delay must be ≥ 0 and ≤ --max-delay") }
        guard rate > 0, duration > 0 else { throw ValidationError("--rate and --duration must be positive") }
        guard publishers > 0 else { throw ValidationError("--publishers must be at least 1") }
        guard fanOut >= 1, endpoints % fanOut == 0, ports >= fanOut else {
            throw ValidationError("--fan-out must be at least 1, divide --endpoints and be at most --ports")
        }
    }

    func run() async throws {
        let count = max(1, Int((rate * duration).rounded()))
        let (minDelay, maxDelay, endpoints, fanOut) = (self.minDelay, self.maxDelay, self.endpoints, self.fanOut)
        let groups = endpoints / fanOut
        try await ScenarioContext.run(options, defaultDeadline: 900) { context in
            let arrivals = ArrivalCounter(keepTimes: true)
            // A fresh uniform random delay for each request.
            let receiver = ScenarioReceiver(delay: { _ in .milliseconds(Int64.random(in: Int64(minDelay)...Int64(maxDelay))) },
                                            onArrival: { port, index, now in arrivals.arrived(index.map { $0 * 65536 + port }, at: now) })
            let listening = try await receiver.listen(count: ports, deadline: context.deadline)

            let server = try await context.startServer()
            let api = context.api(server)
            var apps: [String] = []
            let applications = min(self.applications, endpoints)
            for index in 0..<applications { apps.append(try await api.createApplication(name: "slow \(index)")) }
            let appsList = apps
            // Endpoint i is in group i / fan-out (one application, one event type, fan-out ports).
            try await forEachConcurrently(endpoints, inFlight: 8) { index in
                let group = index / fanOut
                _ = try await api.createEndpoint(app: appsList[group % appsList.count], url: "http://127.0.0.1:\(listening[index % listening.count])/s/\(index)",
                                                 eventType: "slow.g\(group)")
            }
            context.line("scenario", "slow-receivers: \(endpoints) endpoints on \(ports) ports in \(applications) applications, answers after \(minDelay)–\(maxDelay) ms, \(fanOut) endpoint(s) per message, herald's default concurrency")
            context.line("database", options.database == "sqlite" ? "sqlite (fresh file)" : (context.createdSchema.map { "postgres (schema \($0))" } ?? "postgres"))

            let target = try BenchPublisher.Target(url: server.url, path: "")
            let begin = ContinuousClock.now
            var publisher = BenchPublisher(targets: [target], token: context.token, count: count, connections: publishers,
                                           interval: .nanoseconds(Int64(1e9 / rate)), begin: begin,
                                           body: { publishBody(eventType: "slow.g\($0 % groups)", index: $0) }, willSend: { _, _ in })
            publisher.path = { "/api/v1/app/\(appsList[($0 % groups) % appsList.count])/msg" }
            let configured = publisher
            let outcome = try await withDeadline(context, "publishing \(count) messages") { try await configured.publish() }
            let publishSeconds = seconds(.now - begin)
            let published = outcome.sent - outcome.errors
            let accepted = published * fanOut  // deliveries
            let backlogAtEnd = accepted - arrivals.unique
            let allArrived = await arrivals.wait(forUnique: accepted, until: context.deadline)
            let end = arrivals.lastArrival ?? .now

            let times = arrivals.times()
            var steady = Double.nan
            if times.count >= 10 {
                let low = times[times.count / 10], high = times[times.count * 9 / 10]
                steady = Double(times.count * 9 / 10 - times.count / 10) / max(seconds(high - low), 1e-9)
            }
            context.line("published", "\(published) of \(count) accepted, \(outcome.errors) refused, in \(String(format: "%.1f", publishSeconds)) s (\(String(format: "%.0f", Double(published) / max(publishSeconds, 1e-9))) msg/s)")
            context.line("waiting when publishing ended", "\(backlogAtEnd)")
            context.line("delivered", "\(arrivals.unique) of \(accepted) (\(arrivals.total) arrivals)")
            context.line("deliveries/s overall", String(format: "%.0f (first publish to last arrival, %.1f s)", Double(arrivals.unique) / max(seconds(end - begin), 1e-9), seconds(end - begin)))
            context.line("deliveries/s steady", steady.isNaN ? "n/a (fewer than 10 arrivals)" : String(format: "%.0f (middle 80 %% of arrivals)", steady))
            context.line("server RSS", megabytes(server.rss))
            context.goal("steady deliveries/s ≥ 1500 with the default settings", met: allArrived && steady >= 1500)
            await receiver.close()
            if !allArrived { throw context.missed("\(accepted - arrivals.unique) of \(accepted) deliveries had not arrived") }
        }
    }
}
