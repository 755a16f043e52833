/// Decides which addresses deliveries may reach. Loopback, private, link-local, CGNAT,
/// unspecified, multicast, reserved and documentation ranges — and IPv6 forms that carry such an
/// IPv4 address (mapped, compatible, NAT64, 6to4) — are refused unless a CIDR in `allowed`
/// contains them. The host is resolved once; the caller connects to the vetted address only.
///
/// Names are resolved by `resolver` (IP literals never are); with none, by
/// `SystemHostResolver.shared`. `HTTPClientTransport` puts its own cache in front of whichever it
/// gets, and bounds every lookup by the attempt's deadline.
///
/// ```swift
/// let policy = OutboundNetworkPolicy(allowed: [CIDR("127.0.0.0/8")!])
/// let target = try await policy.vet(host: "hooks.example.com")   // an allowed IPAddress
/// ```
public struct OutboundNetworkPolicy: Sendable {
    /// Networks reachable although they are in a blocked range.
    public var allowed: [CIDR]
    /// Resolves host names; nil means `SystemHostResolver.shared`.
    public var resolver: (any HostResolver)?

    public init(allowed: [CIDR] = [], resolver: (any HostResolver)? = nil) {
        self.allowed = allowed
        self.resolver = resolver
    }

    /// Named blocked ranges.
    static let blocked: [(CIDR, String)] = [
        ("0.0.0.0/8", "unspecified"), ("10.0.0.0/8", "private"), ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"), ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"), ("192.0.2.0/24", "documentation"), ("192.88.99.0/24", "reserved"),
        ("192.168.0.0/16", "private"), ("198.18.0.0/15", "benchmarking"), ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"), ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"), ("::1/128", "loopback"), ("100::/64", "discard"), ("2001::/32", "Teredo"),
        ("2001:db8::/32", "documentation"), ("fc00::/7", "private"), ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"), ("ff00::/8", "multicast"),
    ].map { (CIDR($0.0)!, $0.1) }

    /// Why `address` is refused, or nil when it may be reached.
    public func refusal(for address: IPAddress) -> String? {
        if allowed.contains(where: { $0.contains(address) }) { return nil }
        if let embedded = address.embeddedIPv4 {
            if allowed.contains(where: { $0.contains(embedded) }) { return nil }
            if let reason = Self.blocked.first(where: { $0.0.contains(embedded) })?.1 { return "\(reason) (carried in \(address))" }
        }
        return Self.blocked.first { $0.0.contains(address) }?.1
    }

    /// Resolves `host` (unless it is an IP literal) and returns the first address that may be reached.
    /// Throws `DeliveryRefusal` naming the address and why when none may.
    public func vet(host: String) async throws -> IPAddress {
        let addresses: [IPAddress]
        if let literal = IPAddress(host) {
            addresses = [literal]
        } else {
            addresses = try await (resolver ?? SystemHostResolver.shared).resolve(host)
        }
        guard !addresses.isEmpty else { throw DeliveryRefusal("could not resolve host \(host)") }
        var reasons: [String] = []
        for address in addresses {
            if let reason = refusal(for: address) {
                reasons.append("\(address) (\(reason))")
            } else {
                return address
            }
        }
        throw DeliveryRefusal("destination refused by the network policy: \(host) resolves to \(reasons.joined(separator: ", ")); allow it with --allow-network")
    }
}

/// A destination the network policy refused, or could not resolve. Safe to show and store.
public struct DeliveryRefusal: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
