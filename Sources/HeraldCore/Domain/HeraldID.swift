import Foundation

/// The kind of thing an id names; gives the id its prefix.
public protocol IDKind: Sendable {
    static var prefix: String { get }
}

public enum ApplicationKind: IDKind { public static let prefix = "app_" }
public enum EndpointKind: IDKind { public static let prefix = "ep_" }
public enum MessageKind: IDKind { public static let prefix = "msg_" }
public enum AttemptKind: IDKind { public static let prefix = "atmpt_" }
public enum EventTypeKind: IDKind { public static let prefix = "evtype_" }
public enum TokenKind: IDKind { public static let prefix = "tok_" }

public typealias ApplicationID = HeraldID<ApplicationKind>
public typealias EndpointID = HeraldID<EndpointKind>
public typealias MessageID = HeraldID<MessageKind>
public typealias AttemptID = HeraldID<AttemptKind>
public typealias TokenID = HeraldID<TokenKind>

enum IDAlphabet {
    static let timeLength = 9
    static let randomLength = 13
    static let characters = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
}

/// A typed id: a prefix (`app_`, `ep_`, `msg_`, `atmpt_`) and a 22-character base62 part whose first
/// 9 characters encode the creation time in milliseconds, so ids sort by creation time.
///
/// ```swift
/// let id = MessageID.generate()           // msg_0Ng8ZK3t0Y2bq1W9…
/// MessageID.lowerBound(for: someDate)     // the smallest id created at that time
/// ```
public struct HeraldID<Kind: IDKind>: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }

    /// Parses a string that has this kind's prefix and a well-formed body.
    public init?(parsing text: String) {
        guard text.hasPrefix(Kind.prefix) else { return nil }
        let body = text.dropFirst(Kind.prefix.count)
        guard body.count == Self.bodyLength, body.utf8.allSatisfy({ Self.alphabet.contains($0) }) else { return nil }
        self.rawValue = text
    }

    static var timeLength: Int { IDAlphabet.timeLength }
    static var randomLength: Int { IDAlphabet.randomLength }
    static var bodyLength: Int { IDAlphabet.timeLength + IDAlphabet.randomLength }
    static var alphabet: [UInt8] { IDAlphabet.characters }

    /// A new id for something created at `date`.
    public static func generate(at date: Date = Date()) -> Self {
        // Two 64-bit draws (one system call each) give the 13 base62 characters: 7 from the first,
        // 6 from the second (62^7 < 2^64); the modulo bias is below 1e-7.
        var generator = SystemRandomNumberGenerator()
        var value = generator.next()
        var random = [UInt8]()
        random.reserveCapacity(randomLength)
        for index in 0..<randomLength {
            if index == 7 { value = generator.next() }
            random.append(alphabet[Int(value % 62)])
            value /= 62
        }
        return .init(rawValue: Kind.prefix + timePart(date) + String(decoding: random, as: UTF8.self))
    }

    /// The smallest id that `generate(at: date)` can produce: for time-range filters.
    public static func lowerBound(for date: Date) -> Self {
        .init(rawValue: Kind.prefix + timePart(date) + String(repeating: "0", count: randomLength))
    }

    static func timePart(_ date: Date) -> String {
        var millis = UInt64(max(0, (date.timeIntervalSince1970 * 1000).rounded(.down)))
        var digits = [UInt8](repeating: alphabet[0], count: timeLength)
        for index in stride(from: timeLength - 1, through: 0, by: -1) {
            digits[index] = alphabet[Int(millis % 62)]
            millis /= 62
        }
        return String(decoding: digits, as: UTF8.self)
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws {
        self.rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
