import ArgumentParser
import AsyncHTTPClient
import Foundation
import HeraldCLI
import NIOCore
import NIOHTTP1

/// `herald-bench publish --url URL --token T [-n 5000] [-c 16] [--endpoints 1] [--payload-bytes 256]`
///
/// Creates an application and its endpoints, then publishes N messages with C concurrent workers
/// and prints the accepted rate, latency percentiles and the error count.
struct BenchPublishCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Publish messages as fast as possible and report throughput and latency.",
        discussion: """
        Creates a new application with --endpoints endpoints (pointing at http://127.0.0.1:9/), then \
        POSTs -n messages to /api/v1/app/{app}/msg with -c requests in flight at a time. A request \
        counts as accepted when the answer is 202.
        Example:
          herald-bench publish --url http://127.0.0.1:8071 --token "$TOKEN" -n 5000 -c 16
        """
    )

    @Option(help: ArgumentHelp("The server's base URL, such as http://127.0.0.1:8071.", valueName: "url"))
    var url: String

    @Option(help: ArgumentHelp("An admin API token.", valueName: "token"))
    var token: String

    @Option(name: [.customShort("n"), .customLong("count")], help: ArgumentHelp("How many messages to publish.", valueName: "n"))
    var count: Int = 5000

    @Option(name: [.customShort("c"), .customLong("concurrency")], help: ArgumentHelp("How many requests in flight at once.", valueName: "c"))
    var concurrency: Int = 16

    @Option(help: ArgumentHelp("How many endpoints the application gets (each message fans out to all).", valueName: "n"))
    var endpoints: Int = 1

    @Option(help: ArgumentHelp("The approximate size of each message's JSON payload.", valueName: "bytes"))
    var payloadBytes: Int = 256

    @Option(help: ArgumentHelp("Seconds before one request is given up.", valueName: "seconds"))
    var timeout: Double = 30

    func validate() throws {
        guard count > 0 else { throw ValidationError("-n must be at least 1") }
        guard concurrency > 0 else { throw ValidationError("-c must be at least 1") }
        guard endpoints >= 0 else { throw ValidationError("--endpoints must not be negative") }
        guard payloadBytes >= 0, payloadBytes <= 1_000_000 else { throw ValidationError("--payload-bytes must be between 0 and 1000000") }
        guard timeout > 0 else { throw ValidationError("--timeout must be more than 0 seconds") }
    }

    func run() async throws {
        guard let target = URL(string: url), let scheme = target.scheme?.lowercased(), ["http", "https"].contains(scheme), target.host != nil else {
            throw BenchError("'\(url)' is not an http(s) URL")
        }
        let base = url.hasSuffix("/") ? String(url.dropLast()) : url

        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(10), read: .milliseconds(Int64(timeout * 1000)))
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: concurrency)
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            try await benchmark(client: client, base: base)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    private func benchmark(client: HTTPClient, base: String) async throws {
        let api = BenchAPI(client: client, base: base, token: token, timeout: timeout)

        let appName = "herald-bench \(ISO8601DateFormatter().string(from: Date()))"
        let app = try await api.create(path: "/api/v1/app", body: ["name": appName], expect: 201, what: "the application")
        guard let appID = app["id"] as? String else { throw BenchError("the server's application has no id") }
        for _ in 0..<endpoints {
            _ = try await api.create(path: "/api/v1/app/\(appID)/endpoint", body: ["url": "http://127.0.0.1:9/"], expect: 201, what: "an endpoint")
        }

        // {"data":"xxx…"} sized to --payload-bytes (at least the 11 bytes of the wrapper).
        let padding = String(repeating: "x", count: max(0, payloadBytes - 11))
        let body = ByteBuffer(bytes: Array(#"{"eventType":"bench.event","payload":{"data":"\#(padding)"}}"#.utf8))
        let path = "/api/v1/app/\(appID)/msg"

        let started = ContinuousClock.now
        var latencies: [Duration] = []
        latencies.reserveCapacity(count)
        var accepted = 0
        var errors = 0
        var firstErrors: [String] = []
        await withTaskGroup(of: BenchSample.self) { group in
            var launched = 0
            func launch() {
                launched += 1
                group.addTask { await api.publish(path: path, body: body) }
            }
            while launched < min(concurrency, count) { launch() }
            while let sample = await group.next() {
                latencies.append(sample.latency)
                if let error = sample.error {
                    errors += 1
                    if firstErrors.count < 3, !firstErrors.contains(error) { firstErrors.append(error) }
                } else {
                    accepted += 1
                }
                if launched < count { launch() }
            }
        }
        let elapsed = ContinuousClock.now - started

        latencies.sort()
        let seconds = Self.seconds(elapsed)
        print("published \(count) messages (\(payloadBytes)-byte payloads, \(endpoints) endpoint\(endpoints == 1 ? "" : "s") each) with \(concurrency) workers in \(String(format: "%.2f", seconds)) s")
        print(String(format: "accepted: %.1f messages/s (%d of %d)", Double(accepted) / max(seconds, 1e-9), accepted, count))
        print(String(format: "latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f",
                     Self.millis(Self.percentile(latencies, 0.50)), Self.millis(Self.percentile(latencies, 0.90)),
                     Self.millis(Self.percentile(latencies, 0.99)), Self.millis(latencies.last ?? .zero)))
        print("errors: \(errors)")
        for error in firstErrors { print("  e.g. \(error)") }
        if accepted == 0 { throw ExitCode(1) }
    }

    /// Nearest-rank percentile of sorted samples.
    static func percentile(_ sorted: [Duration], _ p: Double) -> Duration {
        guard !sorted.isEmpty else { return .zero }
        let rank = Int((p * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func millis(_ duration: Duration) -> Double { seconds(duration) * 1000 }
}

/// The outcome of one publish request.
struct BenchSample: Sendable {
    let latency: Duration
    let error: String?
}

/// The few API calls the benchmark makes.
struct BenchAPI: Sendable {
    let client: HTTPClient
    let base: String
    let token: String
    let timeout: Double

    private func request(_ path: String, body: ByteBuffer) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: base + path)
        request.method = .POST
        request.headers.add(name: "authorization", value: "Bearer \(token)")
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "user-agent", value: "herald-bench")
        request.body = .bytes(body)
        return request
    }

    func create(path: String, body: [String: String], expect: UInt, what: String) async throws -> [String: Any] {
        let data = try JSONSerialization.data(withJSONObject: body)
        let response: HTTPClientResponse
        let text: String
        do {
            response = try await client.execute(request(path, body: ByteBuffer(bytes: data)), timeout: .milliseconds(Int64(timeout * 1000)))
            text = String(buffer: try await response.body.collect(upTo: 1 << 20))
        } catch {
            throw BenchError("could not create \(what) at \(base): \(HTTPFailure.describe(error))")
        }
        guard response.status.code == expect else {
            throw BenchError("creating \(what) answered \(response.status.code): \(text.prefix(200))")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
            throw BenchError("creating \(what) answered a body that is not a JSON object")
        }
        return object
    }

    func publish(path: String, body: ByteBuffer) async -> BenchSample {
        let started = ContinuousClock.now
        do {
            let response = try await client.execute(request(path, body: body), timeout: .milliseconds(Int64(timeout * 1000)))
            let text = try await response.body.collect(upTo: 1 << 20)
            let latency = ContinuousClock.now - started
            if response.status.code == 202 { return BenchSample(latency: latency, error: nil) }
            let snippet = String(buffer: text).split(whereSeparator: \.isNewline).first.map { String($0.prefix(160)) } ?? ""
            return BenchSample(latency: latency, error: "\(response.status.code) \(snippet)")
        } catch {
            return BenchSample(latency: ContinuousClock.now - started, error: HTTPFailure.describe(error))
        }
    }
}
