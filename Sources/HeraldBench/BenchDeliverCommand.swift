import ArgumentParser
import AsyncHTTPClient
import Foundation
import HeraldDelivery
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import WebhookSignature

/// `herald-bench deliver`: end-to-end delivery throughput and latency against a running
/// `herald serve` (started with `--allow-network 127.0.0.0/8`), compared in the same run with the
/// raw rate of the same HTTP client posting the same bodies to the same receiver with no storage.
struct BenchDeliverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deliver",
        abstract: "Publish N messages to M endpoints on a local receiver; report deliveries/s, latency and the raw-client ratio.",
        discussion: """
        Starts a receiver on 127.0.0.1, creates an application with M endpoints on it, publishes N
        messages through the API (C in flight, or paced at --rate messages/s), and waits until every
        delivery arrived. Then posts the same N×M bodies straight to the receiver with the same client.
        Example:
          herald-bench deliver --url http://127.0.0.1:8071 --token "$TOKEN" -n 2000 -m 2 -c 32
        """
    )

    @Option(help: ArgumentHelp("A server's base URL; repeat it for several nodes on one database (publishes go round-robin).", valueName: "url")) var url: [String]
    @Option(help: ArgumentHelp("An admin API token.", valueName: "token")) var token: String
    @Option(name: [.customShort("n"), .customLong("count")], help: "Messages to publish.") var count: Int = 2000
    @Option(name: [.customShort("m"), .customLong("endpoints")], help: "Endpoints each message goes to.") var endpoints: Int = 1
    @Option(name: [.customShort("c"), .customLong("concurrency")], help: "Publish requests in flight at once.") var concurrency: Int = 32
    @Option(help: ArgumentHelp("Publish at this many messages per second instead of as fast as possible.", valueName: "per-second")) var rate: Double?
    @Option(help: ArgumentHelp("Approximate payload size.", valueName: "bytes")) var payloadBytes: Int = 256
    @Option(help: ArgumentHelp("A server's process id, to report its peak memory (repeatable).", valueName: "pid")) var serverPid: [Int] = []
    @Option(help: "Seconds to wait for every delivery.") var deadline: Double = 300
    @Option(help: ArgumentHelp("The publishing client: nio (plain keep-alive HTTP/1.1 connections, the lightest load generator) or client (AsyncHTTPClient, one task per publish).", valueName: "kind"))
    var publisher: PublisherKind = .nio

    enum PublisherKind: String, ExpressibleByArgument, CaseIterable {
        case nio, client
    }

    func validate() throws {
        guard count > 0, endpoints > 0, concurrency > 0 else { throw ValidationError("-n, -m and -c must be at least 1") }
        guard !url.isEmpty else { throw ValidationError("--url is required") }
        if let rate, rate <= 0 { throw ValidationError("--rate must be positive") }
    }

    func run() async throws {
        let bases = url.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        let receiver = BenchReceiver()
        let secret = WebhookSecret.generate()
        var logger = Logger(label: "herald.bench.receiver")
        logger.logLevel = .critical
        let router = Router()
        router.post("/e/:n") { request, _ -> HTTPResponse.Status in
            let body = try await request.body.collect(upTo: 2 << 20)
            receiver.arrived(BenchReceiver.index(in: body.readableBytesView))
            return .noContent
        }
        let portBox = NIOLockedValueBox<Int?>(nil)
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "bench-receiver"),
                              onServerRunning: { channel in portBox.withLockedValue { $0 = channel.localAddress?.port } }, logger: logger)

        // The settings Herald's delivery transport uses, so the raw rate is that client's.
        var clientConfiguration = HTTPClientTransport.clientConfiguration()
        clientConfiguration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(concurrency, 64))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)

        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await app.runService(gracefulShutdownSignals: []) }
                let started = ContinuousClock.now
                while portBox.withLockedValue({ $0 }) == nil {
                    guard ContinuousClock.now - started < .seconds(10) else { throw BenchError("the bench receiver did not start") }
                    try await Task.sleep(for: .milliseconds(10))
                }
                let port = portBox.withLockedValue { $0! }
                try await measure(client: client, bases: bases, receiverPort: port, receiver: receiver, secret: secret)
                group.cancelAll()
            }
        } catch {
            try? await client.shutdown()  // a client must be shut down before it is released, on every path
            throw error
        }
        try await client.shutdown()
    }

    func api(_ client: HTTPClient, _ method: HTTPMethod, _ url: String, _ body: [String: Any]) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "authorization", value: "Bearer \(token)")
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        let response = try await client.execute(request, timeout: .seconds(30))
        let data = try await response.body.collect(upTo: 1 << 20)
        guard (200..<300).contains(response.status.code) else { throw BenchError("\(method) \(url) answered \(response.status.code): \(String(buffer: data).prefix(200))") }
        return (try JSONSerialization.jsonObject(with: Data(buffer: data)) as? [String: Any]) ?? [:]
    }

    func measure(client: HTTPClient, bases: [String], receiverPort: Int, receiver: BenchReceiver, secret: WebhookSecret) async throws {
        let base = bases[0]
        let app = try await api(client, .POST, "\(base)/api/v1/app", ["name": "bench-deliver"])
        let appID = app["id"] as! String
        for index in 0..<endpoints {
            _ = try await api(client, .POST, "\(base)/api/v1/app/\(appID)/endpoint", ["url": "http://127.0.0.1:\(receiverPort)/e/\(index)", "secret": secret.encoded])
        }
        let filler = String(repeating: "x", count: max(0, payloadBytes - 50))
        // The index leads the payload so the receiver can match an arrival to its send time.
        @Sendable func payload(_ index: Int) -> [UInt8] { Array(#"{"i":\#(index),"type":"bench.event","data":"\#(filler)"}"#.utf8) }
        let publishURLs = bases.map { "\($0)/api/v1/app/\(appID)/msg" }
        receiver.expect(count * endpoints)

        // Phase 1: through Herald.
        let cpuBefore = Self.cpuSeconds(serverPid)
        let idleBefore = Self.machineIdle()
        let begin = ContinuousClock.now
        let errors = NIOLockedValueBox(0)
        let interval: Duration? = rate.map { .nanoseconds(Int64(1e9 / $0)) }
        @Sendable func publishBody(_ index: Int) -> [UInt8] {
            Array(#"{"eventType":"bench.event","eventId":"bench-\#(index)","payload":"#.utf8) + payload(index) + Array("}".utf8)
        }
        switch publisher {
        case .nio:
            let targets = try bases.map { base -> BenchPublisher.Target in
                guard let parsed = URL(string: base), parsed.scheme == "http", let host = parsed.host else {
                    throw BenchError("--url \(base): the NIO publisher needs an http:// URL with a host")
                }
                return BenchPublisher.Target(host: host, port: parsed.port ?? 80, path: parsed.path + "/api/v1/app/\(appID)/msg")
            }
            let failed = try await BenchPublisher(
                targets: targets, token: token, count: count, connections: concurrency, interval: interval, begin: begin,
                body: publishBody, willSend: { receiver.published($0, at: $1) }
            ).run()
            errors.withLockedValue { $0 = failed }
        case .client:
            try await forEachConcurrently(count, inFlight: rate == nil ? concurrency : count) { index in
                // Paced: latency counts from when the publish was due, so a late send counts its wait.
                let due = interval.map { begin + $0 * index }
                if let due, due > .now { try await Task.sleep(until: due) }
                var request = HTTPClientRequest(url: publishURLs[index % publishURLs.count])
                request.method = .POST
                request.headers.add(name: "authorization", value: "Bearer \(token)")
                request.headers.add(name: "content-type", value: "application/json")
                request.body = .bytes(ByteBuffer(bytes: publishBody(index)))
                receiver.published(index, at: due ?? .now)
                let response = try await client.execute(request, timeout: .seconds(60))
                _ = try await response.body.collect(upTo: 1 << 20)
                if response.status.code != 202 { errors.withLockedValue { $0 += 1 } }
            }
        }
        let publishDone = ContinuousClock.now
        let expected = (count - errors.withLockedValue { $0 }) * endpoints
        let allArrived = await receiver.waitForAll(expected, deadline: .seconds(deadline))
        let end = receiver.lastArrival ?? ContinuousClock.now
        let latencies = receiver.latencies().sorted()
        let cpuAfter = Self.cpuSeconds(serverPid)
        let idleAfter = Self.machineIdle()

        // Phase 2: the same client, the same bodies, straight to the receiver.
        let rawCount = count * endpoints
        receiver.reset()
        let rawBegin = ContinuousClock.now
        try await forEachConcurrently(rawCount, inFlight: 64) { index in
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(receiverPort)/e/\(index % endpoints)")
            request.method = .POST
            let id = "raw_\(index)"
            let body = payload(index % count)
            let signature = try StandardWebhook(keys: [.secret(secret)]).signature(payload: body, id: id, timestamp: Int64(Date().timeIntervalSince1970))
            request.headers.add(name: "content-type", value: "application/json")
            request.headers.add(name: "webhook-id", value: id)
            request.headers.add(name: "webhook-signature", value: signature)
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await client.execute(request, timeout: .seconds(60))
            _ = try await response.body.collect(upTo: 1 << 20)
        }
        let rawElapsed = ContinuousClock.now - rawBegin

        func seconds(_ duration: Duration) -> Double { Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18 }
        func percentile(_ p: Double) -> Double {
            guard !latencies.isEmpty else { return .nan }
            return latencies[min(latencies.count - 1, Int((Double(latencies.count) * p).rounded(.up)) - 1)] * 1000
        }
        let delivered = latencies.count
        let e2eRate = Double(delivered) / seconds(end - begin)
        let rawRate = Double(rawCount) / seconds(rawElapsed)
        print("mode:                   \(rate.map { "paced at \($0) msg/s" } ?? "saturated, \(concurrency) publishers"), \(bases.count) node(s), \(publisher.rawValue) publisher")
        print("messages × endpoints:   \(count) × \(endpoints) = \(count * endpoints) deliveries; publish errors \(errors.withLockedValue { $0 })")
        print("all delivered:          \(allArrived ? "yes" : "NO") (\(delivered) arrived)")
        print(String(format: "publish rate:           %.0f msg/s", Double(count) / seconds(publishDone - begin)))
        print(String(format: "end-to-end rate:        %.0f deliveries/s", e2eRate))
        print(String(format: "publish→delivery:       p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms", percentile(0.5), percentile(0.9), percentile(0.99), (latencies.last ?? .nan) * 1000))
        print(String(format: "raw client rate:        %.0f posts/s (same client, same bodies, 64 in flight, no storage)", rawRate))
        print(String(format: "ratio end-to-end / raw: %.2f", e2eRate / rawRate))
        // CPU time moves much less between runs than rates do on a shared machine: compare it.
        if let cpuBefore, let cpuAfter, delivered > 0 {
            let total = cpuAfter - cpuBefore
            print(String(format: "server CPU (phase 1):    %.2f s, %.0f µs per delivery", total, total / Double(delivered) * 1e6))
        }
        if let idleBefore, let idleAfter, idleAfter.total > idleBefore.total {
            // Idle cores mean the pipeline waits on something other than the CPU (latency, locks).
            print(String(format: "machine idle (phase 1):  %.0f %% of all cores", (idleAfter.idle - idleBefore.idle) / (idleAfter.total - idleBefore.total) * 100))
        }
        for pid in serverPid {
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { continue }
            let peak = status.split(separator: "\n").first { $0.hasPrefix("VmHWM") }.map { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().joined(separator: " ") } ?? "?"
            print("server peak memory:     \(peak) (pid \(pid))")
        }
    }
}

extension BenchDeliverCommand {
    /// The machine's idle and total CPU time so far, in ticks of all cores (Linux `/proc/stat`).
    static func machineIdle() -> (idle: Double, total: Double)? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
        let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard values.count >= 5 else { return nil }
        // user nice system idle iowait irq softirq steal…: idle and iowait are time nobody ran.
        return (values[3] + values[4], values.prefix(8).reduce(0, +))
    }

    /// User plus system CPU seconds of processes `pids` so far, summed (Linux `/proc`); nil when
    /// there are none or one cannot be read.
    static func cpuSeconds(_ pids: [Int]) -> Double? {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        guard !pids.isEmpty, ticks > 0 else { return nil }
        var total = 0.0
        for pid in pids {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = text.lastIndex(of: ")") else { return nil }
            // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
            let fields = text[text.index(after: close)...].split(separator: " ")
            guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
            total += (user + system) / ticks
        }
        return total
    }
}

/// Counts arrivals by webhook id and measures publish-to-arrival latency.
final class BenchReceiver: Sendable {
    struct State {
        var published: [Int: ContinuousClock.Instant] = [:]
        var latencies: [Double] = []
        var arrivals = 0
        var expected = 0
        var last: ContinuousClock.Instant?
    }
    let state = NIOLockedValueBox(State())

    func expect(_ count: Int) { state.withLockedValue { $0.expected = count } }
    func published(_ index: Int, at instant: ContinuousClock.Instant) { state.withLockedValue { $0.published[index] = instant } }

    /// The integer after a leading `{"i":`.
    static func index(in bytes: some Collection<UInt8>) -> Int {
        var value = 0
        for byte in bytes.dropFirst(5) {
            guard byte >= 48 && byte <= 57 else { break }
            value = value * 10 + Int(byte - 48)
        }
        return value
    }

    func arrived(_ id: Int) {
        let now = ContinuousClock.now
        state.withLockedValue { state in
            state.arrivals += 1
            state.last = now
            if let sent = state.published[id] {
                let elapsed = now - sent
                state.latencies.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            }
        }
    }

    var lastArrival: ContinuousClock.Instant? { state.withLockedValue { $0.last } }
    func latencies() -> [Double] { state.withLockedValue { $0.latencies } }
    func reset() { state.withLockedValue { $0 = State() } }

    /// Waits until `count` deliveries arrived.
    func waitForAll(_ count: Int, deadline: Duration) async -> Bool {
        let end = ContinuousClock.now + deadline
        while ContinuousClock.now < end {
            if state.withLockedValue({ $0.arrivals >= count }) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}
