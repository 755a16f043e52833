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
            guard let keyRange = skipString(), let key = Self.decodeKey(bytes[keyRange]) else { return nil }
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

    /// A quoted key's text: the bytes between the quotes when nothing is escaped, else JSON-decoded.
    static func decodeKey(_ quoted: ArraySlice<UInt8>) -> String? {
        let inner = quoted.dropFirst().dropLast()
        if !inner.contains(UInt8(ascii: "\\")) { return String(decoding: inner, as: UTF8.self) }
        return try? JSONDecoder().decode(String.self, from: Data(quoted))
    }

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

/// Writes JSON the way `APIJSON.encoder` does (sorted keys, unescaped slashes, the API's dates),
/// straight into bytes, for the responses the hot path sends on every request (a published
/// message). Tests compare its output with `JSONEncoder`'s byte for byte.
struct FastJSONWriter {
    private(set) var bytes: [UInt8] = []
    private var needsComma = false

    init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    mutating func beginObject() { bytes.append(UInt8(ascii: "{")); needsComma = false }
    mutating func endObject() { bytes.append(UInt8(ascii: "}")); needsComma = true }

    private mutating func key(_ name: StaticString) {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
        needsComma = true
    }

    mutating func member(_ name: StaticString, _ value: String?) {
        key(name)
        if let value { string(value) } else { null() }
    }

    mutating func member(_ name: StaticString, _ values: [String]?) {
        key(name)
        guard let values else { return null() }
        bytes.append(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            string(value)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    mutating func member(_ name: StaticString, _ value: Int) {
        key(name)
        bytes.append(contentsOf: Array(String(value).utf8))
    }

    mutating func member(_ name: StaticString, _ date: Date?) {
        key(name)
        guard let date else { return null() }
        bytes.append(UInt8(ascii: "\""))
        APIJSON.appendDate(date, to: &bytes)
        bytes.append(UInt8(ascii: "\""))
    }

    /// A member whose value is already JSON (such as a stored payload).
    mutating func rawMember(_ name: StaticString, _ json: [UInt8]) {
        key(name)
        bytes.append(contentsOf: json)
    }

    private mutating func null() { bytes.append(contentsOf: Array("null".utf8)) }

    private mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x08: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}

extension APIJSON {
    /// Appends `formatDate(date)` (`yyyy-MM-ddTHH:mm:ss.SSSZ`, UTC) without a date formatter.
    static func appendDate(_ date: Date, to bytes: inout [UInt8]) {
        let interval = date.timeIntervalSince1970
        guard interval.isFinite, interval > -62_135_596_800, interval < 253_402_300_800 else {  // years 1–9999
            bytes.append(contentsOf: Array(formatDate(date).utf8))
            return
        }
        var seconds = Int64(interval.rounded(.down))
        var millis = Int64(((interval - Double(seconds)) * 1000).rounded(.down))
        if millis >= 1000 { seconds += 1; millis -= 1000 }
        var days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400
        let secondOfDay = seconds - days * 86400
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let dayOfEra = days - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthPrime = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthPrime + 2) / 5 + 1
        let month = monthPrime < 10 ? monthPrime + 3 : monthPrime - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func digits(_ value: Int64, _ count: Int) {
            var divisor: Int64 = 1
            for _ in 1..<count { divisor *= 10 }
            var rest = value
            while divisor > 0 {
                bytes.append(UInt8(ascii: "0") + UInt8(rest / divisor))
                rest %= divisor
                divisor /= 10
            }
        }
        digits(year, 4); bytes.append(UInt8(ascii: "-")); digits(month, 2); bytes.append(UInt8(ascii: "-")); digits(day, 2)
        bytes.append(UInt8(ascii: "T"))
        digits(secondOfDay / 3600, 2); bytes.append(UInt8(ascii: ":")); digits(secondOfDay / 60 % 60, 2); bytes.append(UInt8(ascii: ":")); digits(secondOfDay % 60, 2)
        bytes.append(UInt8(ascii: ".")); digits(millis, 3); bytes.append(UInt8(ascii: "Z"))
    }
}
