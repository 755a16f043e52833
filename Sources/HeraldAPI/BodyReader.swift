import Foundation
import Hummingbird
import NIOCore

/// Reads a JSON request body field by field, collecting every problem as a Svix validation item
/// (`loc: ["body", field]`), so a client learns about all bad fields at once.
struct BodyReader {
    let raw: [UInt8]
    let object: [String: Any]
    private(set) var errors: [ValidationItem] = []

    /// Reads and parses the body: 413 above `limit`, 400 for malformed JSON, 422 unless an object.
    static func read(_ request: Request, limit: Int = 1 << 20 + 64 * 1024) async throws -> BodyReader {
        var request = request
        let buffer = try await request.collectBody(upTo: limit)
        let raw = Array(buffer.readableBytesView)
        return try BodyReader(raw: raw)
    }

    init(raw: [UInt8]) throws {
        self.raw = raw
        if raw.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            self.object = [:]
            return
        }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(raw), options: [.fragmentsAllowed])
        } catch {
            throw APIError.badRequest("Request body is not valid JSON")
        }
        guard let object = parsed as? [String: Any] else {
            throw ValidationFailure(loc: ["body"], "Expected a JSON object", type: "type_error.dict")
        }
        self.object = object
    }

    init(object: [String: Any]) {
        self.raw = []
        self.object = object
    }

    func has(_ key: String) -> Bool { object[key] != nil }
    func isNull(_ key: String) -> Bool { object[key] is NSNull }

    mutating func fail(_ key: String, _ message: String, type: String = "value_error") {
        errors.append(.init(loc: ["body", key], msg: message, type: type))
    }

    mutating func fail(_ loc: [String], _ message: String, type: String = "value_error") {
        errors.append(.init(loc: ["body"] + loc, msg: message, type: type))
    }

    /// Throws the collected 422 if any field was bad.
    func finish() throws {
        if !errors.isEmpty { throw ValidationFailure(errors) }
    }

    /// A string field. nil when absent or null (a required one records an error).
    mutating func string(_ key: String, required: Bool = false, minLength: Int = 0, maxLength: Int? = nil, pattern: IDPattern? = nil) -> String? {
        guard let value = object[key], !(value is NSNull) else {
            if required { fail(key, "field required", type: "value_error.missing") }
            return nil
        }
        guard let text = value as? String else {
            fail(key, "str type expected", type: "type_error.str")
            return nil
        }
        if text.count < minLength { fail(key, "ensure this value has at least \(minLength) characters", type: "value_error.any_str.min_length"); return nil }
        if let maxLength, text.count > maxLength { fail(key, "ensure this value has at most \(maxLength) characters", type: "value_error.any_str.max_length"); return nil }
        if let pattern, !pattern.matches(text) { fail(key, "string does not match regex \"\(pattern.description)\"", type: "value_error.str.regex"); return nil }
        return text
    }

    mutating func int(_ key: String, min: Int? = nil, max: Int? = nil) -> Int? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let number = value as? NSNumber, !(value is Bool), let int = Int(exactly: number.doubleValue) else {
            fail(key, "value is not a valid integer", type: "type_error.integer")
            return nil
        }
        if let min, int < min { fail(key, "ensure this value is greater than or equal to \(min)", type: "value_error.number.not_ge"); return nil }
        if let max, int > max { fail(key, "ensure this value is less than or equal to \(max)", type: "value_error.number.not_le"); return nil }
        return int
    }

    mutating func bool(_ key: String) -> Bool? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let bool = value as? Bool else {
            fail(key, "value could not be parsed to a boolean", type: "type_error.bool")
            return nil
        }
        return bool
    }

    mutating func stringArray(_ key: String, maxItems: Int? = nil, pattern: IDPattern? = nil, itemMaxLength: Int? = 256) -> [String]? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let array = value as? [Any] else {
            fail(key, "value is not a valid list", type: "type_error.list")
            return nil
        }
        if let maxItems, array.count > maxItems {
            fail(key, "ensure this value has at most \(maxItems) items", type: "value_error.list.max_items")
            return nil
        }
        var result: [String] = []
        for (index, item) in array.enumerated() {
            guard let text = item as? String else {
                fail([key, String(index)], "str type expected", type: "type_error.str")
                return nil
            }
            if let pattern, !pattern.matches(text) || text.isEmpty || (itemMaxLength.map { text.count > $0 } ?? false) {
                fail([key, String(index)], "string does not match regex \"\(pattern.description)\"", type: "value_error.str.regex")
                return nil
            }
            result.append(text)
        }
        return result
    }

    mutating func stringMap(_ key: String) -> [String: String]? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let dictionary = value as? [String: Any] else {
            fail(key, "value is not a valid dict", type: "type_error.dict")
            return nil
        }
        var result: [String: String] = [:]
        for (name, item) in dictionary {
            guard let text = item as? String else {
                fail([key, name], "str type expected", type: "type_error.str")
                return nil
            }
            result[name] = text
        }
        return result
    }

    mutating func date(_ key: String, required: Bool = false) -> Date? {
        guard let text = string(key, required: required) else { return nil }
        guard let date = APIJSON.parseDate(text) else {
            fail(key, "invalid datetime format", type: "value_error.datetime")
            return nil
        }
        return date
    }

    /// A nested object field, re-read with its own reader (errors are prefixed with `key`).
    mutating func nested(_ key: String) -> BodyReader? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let dictionary = value as? [String: Any] else {
            fail(key, "value is not a valid dict", type: "type_error.dict")
            return nil
        }
        return BodyReader(object: dictionary)
    }

    /// Merges a nested reader's errors under `key`.
    mutating func absorb(_ other: BodyReader, under key: String) {
        for item in other.errors {
            errors.append(.init(loc: ["body", key] + item.loc.dropFirst(), msg: item.msg, type: item.type))
        }
    }
}

/// The character-class patterns of the Svix API, checked without regex.
enum IDPattern: CustomStringConvertible {
    /// `^[a-zA-Z0-9\-_.]+$`: uids, event type names, eventIds.
    case identifier
    /// `^[a-zA-Z0-9\-_.:]+$`: channels.
    case channel

    func matches(_ text: String) -> Bool {
        guard !text.isEmpty else { return false }
        return text.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == UInt8(ascii: "-") || c == UInt8(ascii: "_") || c == UInt8(ascii: ".")
                || (self == .channel && c == UInt8(ascii: ":"))
        }
    }

    var description: String {
        switch self {
        case .identifier: "^[a-zA-Z0-9\\-_.]+$"
        case .channel: "^[a-zA-Z0-9\\-_.:]+$"
        }
    }
}

/// Query parameters, validated into Svix's 422 shape (`loc: ["query", name]`).
struct QueryReader {
    let request: Request
    private(set) var errors: [ValidationItem] = []

    init(_ request: Request) { self.request = request }

    mutating func fail(_ key: String, _ message: String, type: String = "value_error") {
        errors.append(.init(loc: ["query", key], msg: message, type: type))
    }

    func finish() throws {
        if !errors.isEmpty { throw ValidationFailure(errors) }
    }

    func string(_ key: String) -> String? {
        request.uri.queryParameters[key[...]].map(String.init)
    }

    /// Every value of a repeated parameter (`event_types=a&event_types=b`, or `event_types[]=…`).
    func strings(_ key: String) -> [String]? {
        let values = request.uri.queryParameters.getAll(key) + request.uri.queryParameters.getAll(key + "[]")
        let flattened = values.flatMap { $0.split(separator: ",").map(String.init) }
        return flattened.isEmpty ? nil : flattened
    }

    mutating func bool(_ key: String, default defaultValue: Bool) -> Bool {
        guard let text = string(key) else { return defaultValue }
        switch text.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default:
            fail(key, "value could not be parsed to a boolean", type: "type_error.bool")
            return defaultValue
        }
    }

    mutating func int(_ key: String, min: Int, max: Int) -> Int? {
        guard let text = string(key) else { return nil }
        guard let value = Int(text) else { fail(key, "value is not a valid integer", type: "type_error.integer"); return nil }
        guard value >= min && value <= max else {
            fail(key, "ensure this value is between \(min) and \(max)", type: "value_error.number")
            return nil
        }
        return value
    }

    mutating func date(_ key: String) -> Date? {
        guard let text = string(key) else { return nil }
        guard let date = APIJSON.parseDate(text) else { fail(key, "invalid datetime format", type: "value_error.datetime"); return nil }
        return date
    }

    /// `limit`, `iterator` and `order` for a listing.
    mutating func page(defaultOrder: ListOrder) -> PageRequest {
        let limit = int("limit", min: 1, max: 250) ?? 50
        var order = defaultOrder
        if let text = string("order") {
            if let parsed = ListOrder(rawValue: text) { order = parsed } else { fail("order", "value is not a valid enumeration member; permitted: 'ascending', 'descending'", type: "type_error.enum") }
        }
        let iterator = string("iterator").flatMap { $0.isEmpty ? nil : $0 }
        return PageRequest(limit: limit, iterator: iterator, order: order)
    }
}

import HeraldCore
