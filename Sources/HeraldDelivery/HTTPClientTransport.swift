import AsyncHTTPClient
import Foundation
import HeraldCore
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// Sends webhooks with AsyncHTTPClient: the host is resolved and vetted by the network policy
/// first, and the connection goes to that vetted address (AsyncHTTPClient's DNS override, which
/// keeps the Host header and TLS server name), so a second lookup cannot change the destination.
/// Redirects are never followed; at most 20,000 bytes of the response are read; the timeout is a
/// total deadline for the whole exchange, DNS lookup included.
///
/// Every URL is checked again with `EndpointURL.problem` before anything else (endpoints stored by
/// older versions may hold URLs that the API now refuses), so no stored value reaches a trapping
/// conversion in the HTTP client: such an attempt fails with the reason.
///
/// **Plain http** goes through one shared `HTTPClient`: the request is sent to the vetted address
/// itself (`http://ADDRESS:PORT/…` with the endpoint's `Host` header), so no per-destination
/// client is needed and thousands of hosts cost one connection pool each inside that client, not a
/// client each (creating and shutting down clients at a high rate grows the process's memory).
/// After `Configuration.maxSharedDestinations` distinct destinations the shared client is replaced
/// by a fresh one and retired once idle, so its pools stay bounded too.
///
/// **Bounded resources.** For https there is one `HTTPClient` per destination (scheme, host, port and vetted
/// address: exactly one connection pool each, keeping the TLS server name), at most `Configuration.maxClients` of them, the
/// least recently used evicted first. An evicted client takes no new requests and is shut down as
/// soon as its requests in flight finish (at once when it has none). Each client opens at most
/// `connectionsPerHost` connections, so the transport holds at most
/// `maxClients × connectionsPerHost` connections, plus those of the requests still in flight on
/// evicted clients (bounded by the caller's concurrency, and gone when they finish).
///
/// **DNS.** Names are resolved inside the attempt's deadline through a `CachingHostResolver`
/// (positive and negative TTL, bounded entries, one lookup per host at a time) in front of the
/// policy's resolver, or in front of a `SystemHostResolver` on a thread pool of
/// `Configuration.dnsThreads` threads that the transport owns. A lookup still running at the
/// deadline fails the attempt ("DNS lookup for HOST timed out …") and finishes in the background.
///
/// ```swift
/// let transport = HTTPClientTransport(policy: OutboundNetworkPolicy(), configuration: .init(maxClients: 256))
/// let response = await transport.send(OutboundRequest(url: "https://hooks.example.com/in", headers: [], body: [], timeout: 30))
/// await transport.shutdown()
/// ```
public final class HTTPClientTransport: WebhookTransport {
    /// Bounds on clients, connections and DNS.
    public struct Configuration: Sendable {
        /// The most HTTP clients (destinations) kept at once; at least 1.
        public var maxClients: Int
        /// The most connections one client opens to its destination; at least 1.
        public var connectionsPerHost: Int
        /// How long an idle connection is kept open.
        public var idleTimeout: Duration
        /// Threads of the transport's own getaddrinfo pool (when the policy brings no resolver).
        public var dnsThreads: Int
        /// The DNS cache in front of the resolver.
        public var dnsCache: CachingHostResolver.Configuration
        /// Whether plain-http requests share one client (sent to the vetted address with the
        /// endpoint's Host header) instead of a client per destination.
        public var sharesPlainHTTPClient: Bool
        /// Distinct destinations the shared client serves before it is replaced by a fresh one.
        public var maxSharedDestinations: Int

        public init(maxClients: Int = 128, connectionsPerHost: Int = 64, idleTimeout: Duration = .seconds(60),
                    dnsThreads: Int = 16, dnsCache: CachingHostResolver.Configuration = .init(),
                    sharesPlainHTTPClient: Bool = true, maxSharedDestinations: Int = 10_000) {
            self.sharesPlainHTTPClient = sharesPlainHTTPClient
            self.maxSharedDestinations = max(1, maxSharedDestinations)
            self.maxClients = maxClients
            self.connectionsPerHost = connectionsPerHost
            self.idleTimeout = idleTimeout
            self.dnsThreads = dnsThreads
            self.dnsCache = dnsCache
        }
    }

    /// The longest deadline an attempt gets, whatever it asks for.
    static let maxTimeout: TimeInterval = 86_400
    /// The longest `Retry-After` value passed on (valid ones are at most 29 characters); a longer one is dropped.
    static let maxRetryAfterLength = 64

    private struct Pooled {
        let id: UInt64
        let client: HTTPClient
        var inFlight: Int
        var lastUsed: UInt64
    }

    private struct Clients {
        var byKey: [String: Pooled] = [:]  // "scheme://host:port|address" → a client pinned to that address
        var draining: [UInt64: Pooled] = [:]  // evicted, shut down when their last request finishes
        var shared: Pooled?  // plain http, to vetted addresses
        var sharedDestinations: Set<String> = []
        var retiring: [UInt64: EventLoopFuture<Void>] = [:]  // shutting down
        var nextID: UInt64 = 0
        var tick: UInt64 = 0
        var isShutDown = false
    }

    /// A client lent to one request.
    private struct Lease {
        let key: String
        let id: UInt64
        let client: HTTPClient
    }

    private let policy: OutboundNetworkPolicy
    private let ownedResolver: SystemHostResolver?
    private let configuration: Configuration
    // A lock, not an actor: every attempt looks its client up, and an actor hop costs a thread switch.
    private let clients = NIOLockedValueBox(Clients())

    /// A transport that vets destinations with `policy` (and resolves names with its resolver, if
    /// it has one, else with a getaddrinfo pool of its own).
    public init(policy: OutboundNetworkPolicy, configuration: Configuration = .init()) {
        var configuration = configuration
        configuration.maxClients = max(1, configuration.maxClients)
        configuration.connectionsPerHost = max(1, configuration.connectionsPerHost)
        self.configuration = configuration
        let resolver: CachingHostResolver
        if let given = policy.resolver {
            ownedResolver = nil
            resolver = given as? CachingHostResolver ?? CachingHostResolver(base: given, configuration: configuration.dnsCache)
        } else {
            let system = SystemHostResolver(threads: configuration.dnsThreads)
            ownedResolver = system
            resolver = CachingHostResolver(base: system, configuration: configuration.dnsCache)
        }
        var policy = policy
        policy.resolver = resolver
        self.policy = policy
    }

    /// The client settings deliveries use (the delivery benchmark's raw client uses them too):
    /// no redirects, no decompression, no tracing spans, up to 64 connections per host.
    public static func clientConfiguration() -> HTTPClient.Configuration {
        clientConfiguration(Configuration())
    }

    /// The client settings deliveries use with `configuration`'s connection bounds.
    public static func clientConfiguration(_ configuration: Configuration) -> HTTPClient.Configuration {
        var client = HTTPClient.Configuration()
        client.redirectConfiguration = .disallow
        client.decompression = .disabled
        client.tracing.tracer = nil  // Herald does not trace; a span per attempt costs CPU
        // Up to the dispatcher's whole concurrency by default: several endpoints often share a host
        // (and the per-endpoint cap still bounds each one); fewer connections queue attempts.
        client.connectionPool = .init(idleTimeout: TimeAmount(max(.zero, configuration.idleTimeout)),  // NIO clamps it
                                      concurrentHTTP1ConnectionsPerHostSoftLimit: max(1, configuration.connectionsPerHost))
        return client
    }

    // MARK: Clients

    /// Clients that exist and are not yet shut down: cached, draining and shutting down.
    var liveClientCount: Int {
        clients.withLockedValue { $0.byKey.count + $0.draining.count + $0.retiring.count + ($0.shared == nil ? 0 : 1) }
    }
    /// Clients that take new requests.
    var cachedClientCount: Int { clients.withLockedValue { $0.byKey.count } }

    /// The destinations of the clients that take new requests ("scheme://host:port|address").
    var cachedDestinations: Set<String> { clients.withLockedValue { Set($0.byKey.keys) } }

    private func lease(key: String, host: String, address: IPAddress) -> Lease? {
        let (lease, retired) = clients.withLockedValue { clients -> (Lease?, (UInt64, EventLoopFuture<Void>)?) in
            guard !clients.isShutDown else { return (nil, nil) }
            clients.tick += 1
            if var existing = clients.byKey[key] {
                existing.inFlight += 1
                existing.lastUsed = clients.tick
                clients.byKey[key] = existing
                return (Lease(key: key, id: existing.id, client: existing.client), nil)
            }
            var client = Self.clientConfiguration(configuration)
            client.dnsOverride = [host: address.description]
            clients.nextID += 1
            let created = Pooled(id: clients.nextID, client: HTTPClient(eventLoopGroupProvider: .singleton, configuration: client),
                                 inFlight: 1, lastUsed: clients.tick)
            clients.byKey[key] = created
            var retired: (UInt64, EventLoopFuture<Void>)?
            if clients.byKey.count > configuration.maxClients,
               let oldest = clients.byKey.min(by: { $0.value.lastUsed < $1.value.lastUsed }) {
                // O(maxClients), only when a client is created (which costs far more).
                clients.byKey.removeValue(forKey: oldest.key)
                if oldest.value.inFlight == 0 {
                    retired = Self.retire(oldest.value, in: &clients)
                } else {
                    clients.draining[oldest.value.id] = oldest.value
                }
            }
            return (Lease(key: key, id: created.id, client: created.client), retired)
        }
        if let retired { forget(retired) }
        return lease
    }

    private func release(_ lease: Lease) {
        let retired = clients.withLockedValue { clients -> (UInt64, EventLoopFuture<Void>)? in
            if clients.shared?.id == lease.id {
                clients.shared!.inFlight -= 1
                return nil
            }
            if clients.byKey[lease.key]?.id == lease.id {
                clients.byKey[lease.key]!.inFlight -= 1
                return nil
            }
            guard var draining = clients.draining[lease.id] else { return nil }
            draining.inFlight -= 1
            if draining.inFlight > 0 {
                clients.draining[lease.id] = draining
                return nil
            }
            clients.draining.removeValue(forKey: lease.id)
            return Self.retire(draining, in: &clients)
        }
        if let retired { forget(retired) }
    }

    /// The shared plain-http client, for a request to `destination` ("address:port"); a fresh one
    /// when the current one has served `maxSharedDestinations` destinations (the old one is retired
    /// once idle).
    private func sharedLease(destination: String) -> Lease? {
        let (lease, retired) = clients.withLockedValue { clients -> (Lease?, (UInt64, EventLoopFuture<Void>)?) in
            guard !clients.isShutDown else { return (nil, nil) }
            var retired: (UInt64, EventLoopFuture<Void>)?
            if !clients.sharedDestinations.contains(destination) {
                if clients.sharedDestinations.count >= configuration.maxSharedDestinations, let old = clients.shared {
                    clients.shared = nil
                    clients.sharedDestinations = []
                    if old.inFlight == 0 { retired = Self.retire(old, in: &clients) } else { clients.draining[old.id] = old }
                }
                clients.sharedDestinations.insert(destination)
            }
            if clients.shared == nil {
                clients.nextID += 1
                clients.shared = Pooled(id: clients.nextID, client: HTTPClient(eventLoopGroupProvider: .singleton,
                                                                              configuration: Self.clientConfiguration(configuration)),
                                        inFlight: 0, lastUsed: 0)
            }
            clients.shared!.inFlight += 1
            return (Lease(key: "http-shared", id: clients.shared!.id, client: clients.shared!.client), retired)
        }
        if let retired { forget(retired) }
        return lease
    }

    /// `url` (plain http) sent to `address` instead of its host, and the Host header it needs:
    /// the URL's own authority (host and any port, as written). Nil when the URL has no authority.
    static func pinned(_ url: String, to address: IPAddress, port: Int) -> (url: String, host: String)? {
        guard let schemeEnd = url.range(of: "://") else { return nil }
        let afterScheme = url[schemeEnd.upperBound...]
        let authorityEnd = afterScheme.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? afterScheme.endIndex
        let authority = afterScheme[..<authorityEnd]
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        var rest = String(afterScheme[authorityEnd...])
        if let fragment = rest.firstIndex(of: "#") { rest = String(rest[..<fragment]) }  // never sent
        if rest.isEmpty || rest.first == "?" { rest = "/" + rest }
        let literal = address.description.contains(":") ? "[\(address.description)]" : address.description
        return ("http://\(literal):\(port)\(rest)", String(authority))
    }

    /// Starts shutting an evicted client down, under the lock that took it out of the cache (so
    /// `shutdown()` sees it either there or here); `shutdown()` waits for it.
    private static func retire(_ pooled: Pooled, in clients: inout Clients) -> (UInt64, EventLoopFuture<Void>) {
        let future = pooled.client.shutdown()  // does not block: it completes on a dispatch queue
        clients.retiring[pooled.id] = future
        return (pooled.id, future)
    }

    /// Drops a retired client's entry once its shutdown completes.
    private func forget(_ retired: (id: UInt64, future: EventLoopFuture<Void>)) {
        retired.future.whenComplete { [clients] _ in
            clients.withLockedValue { _ = $0.retiring.removeValue(forKey: retired.id) }
        }
    }

    /// Shuts every client and the transport's DNS pool down. Must be called before the transport
    /// is released; later attempts fail.
    public func shutdown() async {
        let (all, retiring) = clients.withLockedValue { clients -> ([HTTPClient], [EventLoopFuture<Void>]) in
            clients.isShutDown = true
            let all = clients.byKey.values.map(\.client) + clients.draining.values.map(\.client) + (clients.shared.map { [$0.client] } ?? [])
            let retiring = Array(clients.retiring.values)
            clients.shared = nil
            clients.byKey = [:]
            clients.draining = [:]
            clients.retiring = [:]  // awaited below
            return (all, retiring)
        }
        for client in all { try? await client.shutdown() }
        for future in retiring { try? await future.get() }
        await ownedResolver?.shutdown()
    }

    // MARK: Sending

    public func send(_ request: OutboundRequest) async -> TransportResponse {
        let clock = ContinuousClock()
        let started = clock.now
        func failure(_ reason: String) -> TransportResponse {
            TransportResponse(outcome: .failed(reason), duration: clock.now - started)
        }
        if let problem = EndpointURL.problem(request.url) { return failure("invalid endpoint URL: \(problem)") }
        guard let url = URL(string: request.url), let host = url.host, let scheme = url.scheme?.lowercased(),
              let port = EndpointURL.effectivePort(of: url) else {
            return failure("invalid endpoint URL")
        }
        guard let timeout = Self.timeAmount(seconds: request.timeout) else {
            return failure("invalid request timeout: \(request.timeout) s")
        }
        if let problem = Self.headerProblem(request.headers) { return failure(problem) }
        let deadline = NIODeadline.now() + timeout

        var outgoing = HTTPClientRequest(url: request.url)
        outgoing.method = .POST
        for header in request.headers { outgoing.headers.add(name: header.name, value: header.value) }
        outgoing.body = .bytes(ByteBuffer(bytes: request.body))
        let prepared = outgoing
        let policy = self.policy

        // The whole attempt (lookup, head and body) runs in a task that a timer cancels at the
        // deadline. The timer is an event-loop timer, freed as soon as it is cancelled (a cancelled
        // `Task.sleep` keeps its allocation until the original deadline: one per attempt adds up).
        let work = Task { () throws -> TransportResponse in
            let address: IPAddress
            do {
                address = try await policy.vet(host: host)
            } catch is CancellationError {
                if NIODeadline.now() >= deadline {
                    return failure("DNS lookup for \(host) timed out after \(min(request.timeout, Self.maxTimeout)) s")
                }
                return failure("cancelled during the DNS lookup for \(host)")
            } catch {
                return failure("\(error)")
            }
            var sending = prepared
            let lease: Lease?
            if scheme == "http", self.configuration.sharesPlainHTTPClient, let pinned = Self.pinned(request.url, to: address, port: port) {
                sending.url = pinned.url
                sending.headers.replaceOrAdd(name: "host", value: pinned.host)
                lease = self.sharedLease(destination: "\(address)|\(port)")
            } else {
                lease = self.lease(key: "\(scheme)://\(host):\(port)|\(address)", host: host, address: address)
            }
            guard let lease else { return failure("the delivery transport is shut down") }
            defer { self.release(lease) }
            let response = try await lease.client.execute(sending, deadline: deadline)
            var collected: [UInt8] = []
            for try await chunk in response.body {
                let room = TransportResponse.maxResponseBytes - collected.count
                collected.append(contentsOf: chunk.readableBytesView.prefix(room))
                if collected.count >= TransportResponse.maxResponseBytes { break }
            }
            return TransportResponse(
                outcome: .status(Int(clamping: response.status.code)),
                body: String(decoding: collected, as: UTF8.self),
                retryAfter: response.headers.first(name: "retry-after").flatMap { $0.utf8.count <= Self.maxRetryAfterLength ? $0 : nil },
                duration: clock.now - started
            )
        }
        let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(deadline: deadline) { work.cancel() }
        defer { timer.cancel() }
        do {
            return try await withTaskCancellationHandler { try await work.value } onCancel: { work.cancel() }
        } catch {
            return TransportResponse(outcome: Self.classify(error), duration: clock.now - started)
        }
    }

    // MARK: Checked conversions

    /// A deadline of `seconds` as a `TimeAmount`, at most a day: nil unless it is positive (NaN is not).
    static func timeAmount(seconds: TimeInterval) -> TimeAmount? {
        guard seconds > 0 else { return nil }
        return .milliseconds(Int64((min(seconds, maxTimeout) * 1000).rounded(.up)))  // ≤ 86,400,000: fits
    }

    /// Why the endpoint's headers cannot be sent, naming the header but never its value (it may be
    /// a credential; the HTTP client's own error would quote it).
    static func headerProblem(_ headers: [(name: String, value: String)]) -> String? {
        for header in headers {
            let isToken = !header.name.isEmpty && header.name.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || "!#$%&'*+-.^_`|~".utf8.contains(c)
            }
            guard isToken else { return "invalid header name \(header.name.prefix(64).debugDescription)" }
            // The HTTP client's own rule: no ASCII control character but HTAB.
            if header.value.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) {
                return "the value of header \(header.name) contains a control character"
            }
        }
        return nil
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
