import NIOConcurrencyHelpers
import NIOPosix
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns a host name into addresses. The network policy vets what it returns; production uses
/// `SystemHostResolver` behind a `CachingHostResolver`, tests inject a fake.
public protocol HostResolver: Sendable {
    /// The addresses of `host` (a name, never an IP literal: the policy handles those itself).
    /// Throws `DeliveryRefusal` when the name does not resolve.
    func resolve(_ host: String) async throws -> [IPAddress]
}

/// getaddrinfo on a thread pool of its own, so a hung nameserver blocks only DNS threads: never a
/// cooperative thread, nor NIO's shared blocking pool (which file I/O and other libraries use).
///
/// A pool it creates (`init(threads:)`) starts on the first lookup and stops in `shutdown()`;
/// `shared` runs on `NIOThreadPool.singleton` and is never shut down.
///
/// ```swift
/// let resolver = SystemHostResolver(threads: 16)
/// let addresses = try await resolver.resolve("hooks.example.com")
/// await resolver.shutdown()
/// ```
public final class SystemHostResolver: HostResolver {
    private enum Phase { case idle, running, stopped }
    private let pool: NIOThreadPool
    private let ownsPool: Bool
    private let phase: NIOLockedValueBox<Phase>

    /// A resolver with its own pool of `threads` threads (at least 1).
    public init(threads: Int = 16) {
        self.pool = NIOThreadPool(numberOfThreads: max(1, threads))
        self.ownsPool = true
        self.phase = NIOLockedValueBox(.idle)
    }

    /// A resolver on an existing, started pool that it neither starts nor stops.
    public init(threadPool: NIOThreadPool) {
        self.pool = threadPool
        self.ownsPool = false
        self.phase = NIOLockedValueBox(.running)
    }

    /// getaddrinfo on NIO's shared blocking pool: what `OutboundNetworkPolicy` uses when it is
    /// given no resolver (the delivery transport always brings its own).
    public static let shared = SystemHostResolver(threadPool: .singleton)

    public func resolve(_ host: String) async throws -> [IPAddress] {
        let usable = phase.withLockedValue { phase -> Bool in
            if phase == .idle {
                pool.start()
                phase = .running
            }
            return phase == .running
        }
        guard usable else { throw DeliveryRefusal("could not resolve host \(host): the resolver is shut down") }
        return try await pool.runIfActive { try Self.systemLookup(host) }
    }

    /// Stops a pool this resolver created, after the lookups it is running (getaddrinfo cannot be
    /// interrupted). Later lookups fail. Does nothing for a resolver on a pool it was given.
    public func shutdown() async {
        guard ownsPool else { return }  // a pool it was given (`shared`'s included) is not its own to stop
        let started = phase.withLockedValue { phase -> Bool in
            defer { phase = .stopped }
            return phase == .running
        }
        guard started else { return }
        try? await pool.shutdownGracefully()
    }

    /// A blocking getaddrinfo: every distinct IPv4 and IPv6 address of `host`, in its order.
    static func systemLookup(_ host: String) throws -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &result)
        guard status == 0, let first = result else {
            throw DeliveryRefusal("could not resolve host \(host)")
        }
        defer { freeaddrinfo(first) }
        var addresses: [IPAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            if info.pointee.ai_family == AF_INET, let sockaddr = info.pointee.ai_addr {
                let address = sockaddr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                if let ip = IPAddress(bytes: withUnsafeBytes(of: address) { Array($0) }) { addresses.append(ip) }
            } else if info.pointee.ai_family == AF_INET6, let sockaddr = info.pointee.ai_addr {
                let address = sockaddr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                if let ip = IPAddress(bytes: withUnsafeBytes(of: address) { Array($0) }) { addresses.append(ip) }
            }
            cursor = info.pointee.ai_next
        }
        var seen = Set<IPAddress>()
        return addresses.filter { seen.insert($0).inserted }
    }
}
