// Shared helpers for encoding bytes. FoundationEssentials keeps receivers light where it exists.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

enum ByteEncoding {
    /// Decodes standard base64, with or without `=` padding. Returns nil for anything else.
    static func base64Decode(_ text: some StringProtocol) -> [UInt8]? {
        var string = String(text)
        guard !string.isEmpty, string.utf8.count < 1 << 20 else { return nil }
        let remainder = string.utf8.count % 4
        if remainder == 1 { return nil }
        if remainder > 0 { string += String(repeating: "=", count: 4 - remainder) }
        guard let data = Data(base64Encoded: string) else { return nil }
        return [UInt8](data)
    }

    static func base64Encode(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString()
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func hexEncode(_ bytes: some Sequence<UInt8>) -> String {
        var out = [UInt8]()
        for byte in bytes {
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes hex (either case). Returns nil on odd length or a non-hex character.
    static func hexDecode(_ text: some StringProtocol) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard !utf8.isEmpty, utf8.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// Compares two byte sequences in time that depends only on their lengths, never on where they differ.
///
/// Lengths are not secret (every scheme has a fixed MAC size), so a length mismatch returns early.
@inline(never)
public func constantTimeEquals(_ lhs: some Collection<UInt8>, _ rhs: some Collection<UInt8>) -> Bool {
    guard lhs.count == rhs.count else { return false }
    var difference: UInt8 = 0
    for (a, b) in zip(lhs, rhs) { difference |= a ^ b }
    return difference == 0
}
