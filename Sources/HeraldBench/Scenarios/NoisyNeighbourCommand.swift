import ArgumentParser
import Foundation
import NIOConcurrencyHelpers

/// `herald-bench noisy-neighbour`: does one application's slow endpoint starve another's?
///
/// Application A has one endpoint that answers after `--delay` seconds, with `--due` deliveries
/// due; application B has one healthy endpoint. B then gets `--rate` messages/s for `--duration`
/// seconds; the report gives B's publish→delivery latency (from when each publish was due) and
/// how many of A's deliveries arrived meanwhile. Goal: B's p99 under 250 ms.
struct NoisyNeighbourCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "noisy-neighbour",
        abstract: "A slow endpoint with a backlog beside a healthy one: the healthy one's latency (goal p99 < 250 ms).",
        discussion: """
        Example (a smoke run): herald-bench noisy-neighbour --due 20 --delay 1 --healthy 10
        """
    )

    @OptionGroup var options: ScenarioOptions
    @Option(help: "Deliveries due for application A's slow endpoint (published as fast as the API takes them).") var due = 10_000
    @Option(help: "Seconds A's endpoint waits before answering 200.") var delay = 10.0
    @Option(help: "Messages per second published to application B.") var rate = 10.0
    @Option(help: "Seconds of publishing to B.") var duration = 30.0
    @Option(help: "Messages to B (default: rate × duration).") var healthy: Int?
    @Option(help: "Publish connections for A's backlog.") var publishers = 32

    func validate() throws {
        guard due >= 0 else { throw ValidationError("--due must not be negative") }
        guard delay >= 0, delay <= 3600 else { throw ValidationError("--delay must be between 0 and 3600 seconds") }
        guard rate > 0 else { throw ValidationError("--rate must be positive") }
        guard duration > 0 else { throw ValidationError("--duration must be positive") }
        if let healthy, healthy < 1 { throw ValidationError("--healthy must be at least 1") }
        guard publishers > 0 else { throw ValidationError("--publishers must be at least 1") }
    }

    func run() async throws {
        let healthyCount = healthy ?? max(1, Int((rate * duration).rounded()))
        try await ScenarioContext.run(options, defaultDeadline: 300) { context in
            let pair = try await SlowAndFastReceivers.listen(slowDelay: .seconds(self.delay), deadline: context.deadline)
            let (receiver, slow, fast, listening) = (pair.receiver, pair.slow, pair.fast, [pair.slowPort, pair.fastPort])

            let server = try await context.startServer()
            let api = context.api(server)
            let appA = try await api.createApplication(name: "noisy A")
            _ = try await api.createEndpoint(app: appA, url: "http://127.0.0.1:\(listening[0])/a")
            let appB = try await api.createApplication(name: "noisy B")
            _ = try await api.createEndpoint(app: appB, url: "http://127.0.0.1:\(listening[1])/b")
            let target = try BenchPublisher.Target(url: server.url, path: "/api/v1/app/\(appA)/msg")
            let targetB = try BenchPublisher.Target(url: server.url, path: "/api/v1/app/\(appB)/msg")

            context.line("scenario", "noisy-neighbour: A \(due) due to one endpoint answering after \(self.delay) s; B \(healthyCount) messages at \(rate)/s to one healthy endpoint")
            context.line("database", options.database == "sqlite" ? "sqlite (fresh file)" : (context.createdSchema.map { "postgres (schema \($0))" } ?? "postgres"))

            // A's backlog, as fast as the API takes it.
            let seedBegin = ContinuousClock.now
            let seeded = try await withDeadline(context, "publishing A's \(due) messages") {
                try await BenchPublisher(targets: [target], token: context.token, count: due, connections: publishers, interval: nil,
                                         begin: .now, body: { publishBody(eventType: "noisy.a", index: $0) }, willSend: { _, _ in }).publish()
            }
            let seedSeconds = seconds(.now - seedBegin)
            context.line("A published", "\(seeded.sent - seeded.errors) of \(due) accepted in \(String(format: "%.1f", seedSeconds)) s (\(String(format: "%.0f", Double(seeded.sent - seeded.errors) / max(seedSeconds, 1e-9))) msg/s), \(seeded.errors) refused")

            // B, paced; latency counts from when each publish was due.
            let aBefore = slow.total
            let begin = ContinuousClock.now
            // How long the API took to answer each of B's publishes (from when it was actually sent).
            let answers = NIOLockedValueBox<(sentAt: [Int: ContinuousClock.Instant], took: [Double])>(([:], []))
            var publisher = BenchPublisher(targets: [targetB], token: context.token, count: healthyCount, connections: 4,
                                           interval: .nanoseconds(Int64(1e9 / rate)), begin: begin,
                                           body: { publishBody(eventType: "noisy.b", index: $0) },
                                           willSend: { index, due in
                                               fast.sent(index, at: due)
                                               answers.withLockedValue { $0.sentAt[index] = .now }
                                           })
            publisher.answered = { index, _ in
                let now = ContinuousClock.now
                answers.withLockedValue { state in
                    if let sent = state.sentAt[index] { state.took.append(seconds(now - sent)) }
                }
            }
            let configured = publisher
            let outcome = try await withDeadline(context, "publishing B's \(healthyCount) messages") { try await configured.publish() }
            let publishedIn = seconds(.now - begin)
            let acceptedB = healthyCount - outcome.errors
            let allArrived = await fast.wait(forUnique: acceptedB, until: context.deadline)
            let window = seconds(.now - begin)
            let aDuring = slow.total - aBefore
            let took = answers.withLockedValue { $0.took }.sorted()

            let latencies = fast.latencies().sorted()
            // Messages that never arrived count as slower than anything that did.
            let missing = acceptedB - latencies.count
            let withMissing = latencies + Array(repeating: Double.infinity, count: max(0, missing))
            func ms(_ value: Double) -> String { value.isFinite ? String(format: "%.1f ms", value * 1000) : "not delivered" }
            context.line("B published", "\(acceptedB) of \(healthyCount) accepted, \(outcome.errors) refused, in \(String(format: "%.1f", publishedIn)) s")
            context.line("B publish answered in", "p50 \(ms(percentile(took, 0.5)))  p99 \(ms(percentile(took, 0.99)))  max \(ms(took.last ?? .nan))")
            context.line("B delivered", "\(fast.unique) of \(acceptedB) (\(fast.total) arrivals)")
            context.line("B publish→delivery", "p50 \(ms(percentile(withMissing, 0.5)))  p90 \(ms(percentile(withMissing, 0.9)))  p99 \(ms(percentile(withMissing, 0.99)))  max \(ms(withMissing.last ?? .nan))")
            if missing > 0, !latencies.isEmpty {
                context.line("B publish→delivery, arrived only", "p50 \(ms(percentile(latencies, 0.5)))  p99 \(ms(percentile(latencies, 0.99)))  max \(ms(latencies.last!)) (\(latencies.count) deliveries)")
            }
            context.line("A arrived during B's run", "\(aDuring) in \(String(format: "%.1f", window)) s (B's publishing and the wait for its deliveries)")
            context.line("A arrived in all", "\(slow.total) (\(slow.unique) distinct) of \(seeded.sent - seeded.errors)")
            context.line("server RSS", megabytes(server.rss))
            let p99 = percentile(withMissing, 0.99)
            context.goal("B's publish→delivery p99 < 250 ms", met: allArrived && p99 < 0.25)
            await receiver.close()
            if !allArrived { throw context.missed("\(acceptedB - fast.unique) of B's \(acceptedB) deliveries had not arrived") }
        }
    }
}

/// Runs `work`, failing with the context's deadline error when the scenario's deadline passes first.
func withDeadline<T: Sendable>(_ context: ScenarioContext, _ what: String, _ work: @escaping @Sendable () async throws -> T) async throws -> T {
    let end = context.deadline
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await work() }
        group.addTask {
            try? await Task.sleep(until: end)
            return nil
        }
        guard let first = try await group.next(), let value = first else {
            group.cancelAll()
            throw context.missed(what)
        }
        group.cancelAll()
        return value
    }
}

extension BenchPublisher.Target {
    /// A target on a server's base URL (`http://host:port`).
    init(url: String, path: String) throws {
        guard let parsed = URL(string: url), parsed.scheme == "http", let host = parsed.host else {
            throw BenchError("the server's URL \(url) is not an http:// URL with a host")
        }
        self.init(host: host, port: parsed.port ?? 80, path: parsed.path + path)
    }
}
