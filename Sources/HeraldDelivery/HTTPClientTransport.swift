import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// Sends webhooks with AsyncHTTPClient: the host is resolved and vetted by the network policy
/// first, and the connection goes to that vetted address (AsyncHTTPClient's DNS override, which
/// keeps the Host header and TLS server name), so a second lookup cannot change the destination.
/// Redirects are never followed; at most 20,000 bytes of the response are read; the timeout is a
/// total deadline for the whole exchange.
public final class HTTPClientTransport: WebhookTransport {
    private struct Clients {
        var byKey: [String: HTTPClient] = [:]  // "host|address" → a client pinned to that address
        var order: [String] = []
        var retiring: [HTTPClient] = []
    }
    private let policy: OutboundNetworkPolicy
    // A lock, not an actor: every attempt looks its client up, and an actor hop costs a thread switch.
    private let clients = NIOLockedValueBox(Clients())
    private let maxClients: Int

    public init(policy: OutboundNetworkPolicy, maxClients: Int = 128) {
        self.policy = policy
        self.maxClients = maxClients
    }

    /// The client settings deliveries use (the delivery benchmark's raw client uses them too):
    /// no redirects, no decompression, no tracing spans, up to 64 connections per host.
    public static func clientConfiguration() -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.decompression = .disabled
        configuration.tracing.tracer = nil  // Herald does not trace; a span per attempt costs CPU
        // Up to the dispatcher's whole concurrency: several endpoints often share a host (and the
        // per-endpoint cap still bounds each one); fewer connections queue attempts behind each other.
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        return configuration
    }

    private func client(host: String, address: IPAddress) -> HTTPClient {
        let key = "\(host)|\(address)"
        return clients.withLockedValue { clients in
            if let existing = clients.byKey[key] { return existing }
            var configuration = Self.clientConfiguration()
            configuration.dnsOverride = [host: address.description]
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            clients.byKey[key] = client
            clients.order.append(key)
            if clients.order.count > maxClients {
                let evicted = clients.order.removeFirst()
                if let old = clients.byKey.removeValue(forKey: evicted) {
                    clients.retiring.append(old)  // shut down in `shutdown()`; in-flight requests may still use it
                }
            }
            return client
        }
    }

    /// Shuts every client down. Must be called before the transport is released.
    public func shutdown() async {
        let all = clients.withLockedValue { clients in
            let all = Array(clients.byKey.values) + clients.retiring
            clients = Clients()
            return all
        }
        for client in all { try? await client.shutdown() }
    }

    public func send(_ request: OutboundRequest) async -> TransportResponse {
        let clock = ContinuousClock()
        let started = clock.now
        guard let url = URL(string: request.url), let host = url.host, let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            return TransportResponse(outcome: .failed("invalid endpoint URL"), duration: clock.now - started)
        }
        let address: IPAddress
        do {
            address = try await policy.vet(host: host)
        } catch {
            return TransportResponse(outcome: .failed("\(error)"), duration: clock.now - started)
        }
        let client = self.client(host: host, address: address)

        var outgoing = HTTPClientRequest(url: request.url)
        outgoing.method = .POST
        for header in request.headers { outgoing.headers.add(name: header.name, value: header.value) }
        outgoing.body = .bytes(ByteBuffer(bytes: request.body))
        let prepared = outgoing
        let timeout = request.timeout

        // The whole attempt (head and body) runs in a task that a timer cancels at the deadline. The
        // timer is an event-loop timer, freed as soon as it is cancelled (a cancelled `Task.sleep`
        // keeps its allocation until the original deadline: one per attempt adds up).
        let work = Task { () throws -> TransportResponse in
            let response = try await client.execute(prepared, timeout: .milliseconds(Int64(timeout * 1000)))
            var collected: [UInt8] = []
            for try await chunk in response.body {
                let room = TransportResponse.maxResponseBytes - collected.count
                collected.append(contentsOf: chunk.readableBytesView.prefix(room))
                if collected.count >= TransportResponse.maxResponseBytes { break }
            }
            return TransportResponse(
                outcome: .status(Int(response.status.code)),
                body: String(decoding: collected, as: UTF8.self),
                retryAfter: response.headers.first(name: "retry-after"),
                duration: clock.now - started
            )
        }
        let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .milliseconds(Int64(timeout * 1000))) { work.cancel() }
        defer { timer.cancel() }
        do {
            return try await withTaskCancellationHandler { try await work.value } onCancel: { work.cancel() }
        } catch {
            return TransportResponse(outcome: Self.classify(error), duration: clock.now - started)
        }
    }

    static func classify(_ error: any Error) -> TransportResponse.Outcome {
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout, .writeTimeout: return .timeout
            case .remoteConnectionClosed: return .failed("the receiver closed the connection before a complete response")
            case .cancelled: return .timeout
            default: return .failed("HTTP error: \(error)")
            }
        }
        if error is CancellationError { return .timeout }
        let text = "\(error)"
        if text.contains("connectionRefused") || text.contains("Connection refused") { return .failed("connection refused") }
        return .failed("network error: \(text.prefix(300))")
    }
}
