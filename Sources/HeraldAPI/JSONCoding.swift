import Foundation

/// JSON as the API speaks it: camelCase keys, ISO 8601 dates with milliseconds in UTC.
enum APIJSON {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(formatDate(date))
        }
        return encoder
    }()

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = parseDate(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "invalid datetime")
            }
            return date
        }
        return decoder
    }()

    static func formatDate(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// Parses RFC 3339 / ISO 8601 with or without fractional seconds and with any offset.
    static func parseDate(_ text: String) -> Date? {
        if let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) { return date }
        if let date = try? Date.ISO8601FormatStyle().parse(text) { return date }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }

    /// Encodes `value` as a JSON object and adds raw JSON members (such as a message payload,
    /// kept byte for byte as it was published) before the closing brace.
    static func encode<T: Encodable>(_ value: T, rawMembers: [(String, [UInt8])] = []) throws -> [UInt8] {
        var bytes = [UInt8](try encoder.encode(value))
        guard !rawMembers.isEmpty, bytes.last == UInt8(ascii: "}") else { return bytes }
        bytes.removeLast()
        var first = bytes.count == 1  // "{" only
        for (name, raw) in rawMembers {
            if !first { bytes.append(UInt8(ascii: ",")) }
            first = false
            bytes.append(contentsOf: Array("\"\(name)\":".utf8))
            bytes.append(contentsOf: raw)
        }
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }
}

/// Finds the raw bytes of top-level members of a JSON object without re-serializing them, so a
/// message payload is stored and delivered exactly as it was sent.
struct RawJSONScanner {
    let bytes: [UInt8]
    var index = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The raw value of each top-level member of the object, by name. Nil if not an object.
    static func topLevelMembers(_ bytes: [UInt8]) -> [String: ArraySlice<UInt8>]? {
        var scanner = RawJSONScanner(bytes)
        return scanner.members()
    }

    mutating func members() -> [String: ArraySlice<UInt8>]? {
        skipSpace()
        guard peek() == UInt8(ascii: "{") else { return nil }
        index += 1
        var result: [String: ArraySlice<UInt8>] = [:]
        skipSpace()
        if peek() == UInt8(ascii: "}") { return result }
        while true {
            skipSpace()
            guard let keyRange = skipString(),
                  let key = try? JSONDecoder().decode(String.self, from: Data(bytes[keyRange])) else { return nil }
            skipSpace()
            guard peek() == UInt8(ascii: ":") else { return nil }
            index += 1
            skipSpace()
            let start = index
            guard skipValue(depth: 0) else { return nil }
            result[key] = bytes[start..<index]
            skipSpace()
            if peek() == UInt8(ascii: ",") { index += 1; continue }
            if peek() == UInt8(ascii: "}") { return result }
            return nil
        }
    }

    func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    mutating func skipSpace() {
        while let c = peek(), c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { index += 1 }
    }

    /// Skips a string starting at the current quote; returns its range including quotes.
    mutating func skipString() -> Range<Int>? {
        guard peek() == UInt8(ascii: "\"") else { return nil }
        let start = index
        index += 1
        while let c = peek() {
            index += 1
            if c == UInt8(ascii: "\\") { index += 1; continue }
            if c == UInt8(ascii: "\"") { return start..<index }
        }
        return nil
    }

    mutating func skipValue(depth: Int) -> Bool {
        guard depth < 512, let c = peek() else { return false }
        switch c {
        case UInt8(ascii: "\""):
            return skipString() != nil
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let close = c == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
            index += 1
            skipSpace()
            if peek() == close { index += 1; return true }
            while true {
                skipSpace()
                if c == UInt8(ascii: "{") {
                    guard skipString() != nil else { return false }
                    skipSpace()
                    guard peek() == UInt8(ascii: ":") else { return false }
                    index += 1
                    skipSpace()
                }
                guard skipValue(depth: depth + 1) else { return false }
                skipSpace()
                if peek() == UInt8(ascii: ",") { index += 1; continue }
                if peek() == close { index += 1; return true }
                return false
            }
        default:
            // number, true, false, null: up to the next delimiter
            let start = index
            while let d = peek(), !(d == UInt8(ascii: ",") || d == UInt8(ascii: "}") || d == UInt8(ascii: "]") || d == 0x20 || d == 0x09 || d == 0x0A || d == 0x0D) {
                index += 1
            }
            return index > start
        }
    }
}
