#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 (4 bytes) or IPv6 (16 bytes) address.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Parses dotted IPv4 or IPv6 text (brackets allowed).
    public init?(_ text: String) {
        var trimmed = text
        if trimmed.hasPrefix("["), trimmed.hasSuffix("]") { trimmed = String(trimmed.dropFirst().dropLast()) }
        if trimmed.contains(":") {
            var storage = in6_addr()
            guard inet_pton(AF_INET6, trimmed, &storage) == 1 else { return nil }
            self.bytes = withUnsafeBytes(of: storage) { Array($0) }
        } else {
            var storage = in_addr()
            guard inet_pton(AF_INET, trimmed, &storage) == 1 else { return nil }
            self.bytes = withUnsafeBytes(of: storage) { Array($0) }
        }
    }

    public var isIPv4: Bool { bytes.count == 4 }

    public var description: String {
        if isIPv4 { return bytes.map(String.init).joined(separator: ".") }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var storage = in6_addr()
        withUnsafeMutableBytes(of: &storage) { $0.copyBytes(from: bytes) }
        inet_ntop(AF_INET6, &storage, &buffer, socklen_t(buffer.count))
        return String(cString: buffer)
    }

    /// The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any.
    public var embeddedIPv4: IPAddress? {
        guard !isIPv4 else { return nil }
        let b = bytes
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xFF && b[11] == 0xFF { return IPAddress(bytes: Array(b[12..<16])) }  // ::ffff:a.b.c.d
        if b[0..<12].allSatisfy({ $0 == 0 }) && !(b[12] == 0 && b[13] == 0 && b[14] == 0 && b[15] <= 1) {
            return IPAddress(bytes: Array(b[12..<16]))  // ::a.b.c.d (deprecated compatible form)
        }
        if b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xFF && b[3] == 0x9B { return IPAddress(bytes: Array(b[12..<16])) }  // 64:ff9b::/96 and 64:ff9b:1::/48
        if b[0] == 0x20 && b[1] == 0x02 { return IPAddress(bytes: Array(b[2..<6])) }  // 2002::/16 6to4
        return nil
    }
}

/// A network in CIDR notation.
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPAddress(String(parts[0])), let length = Int(parts[1]),
              length >= 0, length <= address.bytes.count * 8 else { return nil }
        self.address = address
        self.prefixLength = length
    }

    public func contains(_ other: IPAddress) -> Bool {
        guard other.bytes.count == address.bytes.count else { return false }
        var remaining = prefixLength
        for index in 0..<address.bytes.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask: UInt8 = bits == 8 ? 0xFF : ~(0xFF >> UInt8(bits))
            if address.bytes[index] & mask != other.bytes[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    public var description: String { "\(address)/\(prefixLength)" }
}
