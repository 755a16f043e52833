import ArgumentParser
import Foundation

/// `herald-bench many-hosts`: does Herald's memory stay flat across many distinct destinations?
/// `--hosts` listening ports on 127.0.0.1 (one NIO server in this process), one endpoint on each
/// (spread over `--applications` applications); `--messages` messages spread round-robin over the
/// endpoints (each to one, by event type filter). The report gives the herald process's RSS after
/// the first `--first` deliveries arrived and after all of them. Goal: RSS at the end within 20 %
/// of RSS at the first mark.
struct ManyHostsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "many-hosts",
        abstract: "Thousands of distinct host:port destinations: herald's RSS after 10k and 100k deliveries (goal: within 20 %).",
        discussion: """
        Example (a smoke run): herald-bench many-hosts --hosts 20 --messages 200 --first 20
        """
    )

    @OptionGroup var options: ScenarioOptions
    @Option(help: "Distinct host:port pairs (listening ports), one endpoint each.") var hosts = 5_000
    @Option(help: "Applications the endpoints are spread over.") var applications = 50
    @Option(help: "Messages to publish (each to one endpoint, round-robin).") var messages = 100_000
    @Option(help: "Deliveries after which the first RSS is read.") var first = 10_000
    @Option(help: "Publish connections.") var publishers = 32

    func validate() throws {
        guard hosts >= 1, hosts <= 20_000 else { throw ValidationError("--hosts must be between 1 and 20000") }
        guard applications >= 1 else { throw ValidationError("--applications must be at least 1") }
        guard messages >= 1 else { throw ValidationError("--messages must be at least 1") }
        guard first >= 1, first <= messages else { throw ValidationError("--first must be between 1 and --messages") }
        guard publishers > 0 else { throw ValidationError("--publishers must be at least 1") }
    }

    func run() async throws {
        // This process holds a listening socket per host plus herald's connections to them; herald
        // (which inherits the limit) holds one connection per host.
        let wanted = hosts * 2 + publishers + 512
        let limit = FileDescriptorLimit.raise(to: wanted)
        let (hosts, messages, first) = (self.hosts, self.messages, self.first)
        try await ScenarioContext.run(options, defaultDeadline: 1200) { context in
            context.line("scenario", "many-hosts: \(hosts) ports on 127.0.0.1, one endpoint each in \(applications) applications; \(messages) messages round-robin")
            context.line("database", options.database == "sqlite" ? "sqlite (fresh file)" : (context.createdSchema.map { "postgres (schema \($0))" } ?? "postgres"))
            context.line("open files limit", "\(limit) (wanted \(wanted)), \(FileDescriptorLimit.current)")
            guard limit >= wanted else {
                throw BenchError("the open files limit \(limit) is below the \(wanted) this run needs: raise it (ulimit -n) or pass fewer --hosts")
            }
            let arrivals = ArrivalCounter()
            let receiver = ScenarioReceiver(delay: { _ in .zero }, onArrival: { _, index, now in arrivals.arrived(index, at: now) })
            let listening = try await receiver.listen(count: hosts, deadline: context.deadline)

            let server = try await context.startServer()
            let api = context.api(server)
            var apps: [String] = []
            let applications = min(self.applications, hosts)
            for index in 0..<applications { apps.append(try await api.createApplication(name: "hosts \(index)")) }
            let appsList = apps
            let setupBegin = ContinuousClock.now
            try await withDeadline(context, "creating \(hosts) endpoints") {
                try await forEachConcurrently(hosts, inFlight: 16) { index in
                    _ = try await api.createEndpoint(app: appsList[index % appsList.count], url: "http://127.0.0.1:\(listening[index])/h",
                                                     eventType: "hosts.e\(index)")
                }
            }
            context.line("endpoints created", "\(hosts) in \(String(format: "%.1f", seconds(.now - setupBegin))) s")
            context.line("server RSS before publishing", megabytes(server.rss))

            let target = try BenchPublisher.Target(url: server.url, path: "")
            let begin = ContinuousClock.now
            var publisher = BenchPublisher(targets: [target], token: context.token, count: messages, connections: publishers,
                                           interval: nil, begin: begin,
                                           body: { publishBody(eventType: "hosts.e\($0 % hosts)", index: $0) }, willSend: { _, _ in })
            publisher.path = { "/api/v1/app/\(appsList[($0 % hosts) % appsList.count])/msg" }
            // Publish in the background; read the first RSS as soon as `first` deliveries arrived.
            enum Event: Sendable { case published(BenchPublisher.Outcome), firstMark(Int?) }
            var outcome: BenchPublisher.Outcome?
            var rssFirst: Int?
            try await withThrowingTaskGroup(of: Event.self) { group in
                let configured = publisher
                group.addTask { .published(try await withDeadline(context, "publishing \(messages) messages") { try await configured.publish() }) }
                group.addTask {
                    guard await arrivals.wait(forUnique: first, until: context.deadline) else { return .firstMark(nil) }
                    let rss = server.rss
                    context.line("server RSS at \(first) deliveries", "\(megabytes(rss)) (\(String(format: "%.1f", seconds(.now - begin))) s)")
                    return .firstMark(rss)
                }
                for try await event in group {
                    switch event {
                    case .published(let result): outcome = result
                    case .firstMark(let rss): rssFirst = rss
                    }
                }
            }
            guard let outcome else { throw BenchError("the publisher ended without an outcome") }
            if rssFirst == nil { throw context.missed("\(first) deliveries had not arrived (\(arrivals.unique) had)") }
            let accepted = outcome.sent - outcome.errors
            context.line("published", "\(accepted) of \(messages) accepted, \(outcome.errors) refused, in \(String(format: "%.1f", seconds(.now - begin))) s")
            let allArrived = await arrivals.wait(forUnique: accepted, until: context.deadline)
            let rssAll = server.rss
            let end = arrivals.lastArrival ?? .now
            context.line("delivered", "\(arrivals.unique) of \(accepted) (\(arrivals.total) arrivals) in \(String(format: "%.1f", seconds(end - begin))) s")
            context.line("server RSS at all deliveries", megabytes(rssAll))
            context.line("server peak RSS", megabytes(server.memory("VmHWM")))
            var met = false
            if let rssFirst, let rssAll {
                let ratio = Double(rssAll) / Double(rssFirst)
                context.line("RSS all / RSS first", String(format: "%.2f", ratio))
                met = abs(ratio - 1) <= 0.2
            }
            context.goal("RSS at all \(accepted) deliveries within 20 % of RSS at \(first)", met: allArrived && met)
            await receiver.close()
            if !allArrived { throw context.missed("\(accepted - arrivals.unique) of \(accepted) deliveries had not arrived") }
        }
    }
}
