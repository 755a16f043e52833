import Foundation
import HeraldCore

// Response shapes of the Svix API v1. Required fields are always present; optional ones are
// written as null when unset, as the Svix server does.

struct ApplicationOut: Encodable {
    let id: String
    let uid: String?
    let name: String
    let throttleRate: Int?
    let metadata: [String: String]
    let createdAt: Date
    let updatedAt: Date

    init(_ app: Application) {
        id = app.id.rawValue; uid = app.uid; name = app.name; throttleRate = app.throttleRate
        metadata = app.metadata; createdAt = app.createdAt; updatedAt = app.updatedAt
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encode(uid, forKey: .uid); try c.encode(name, forKey: .name)
        try c.encode(throttleRate, forKey: .throttleRate); try c.encode(metadata, forKey: .metadata)
        try c.encode(createdAt, forKey: .createdAt); try c.encode(updatedAt, forKey: .updatedAt)
    }
    enum CodingKeys: String, CodingKey { case id, uid, name, throttleRate, metadata, createdAt, updatedAt }
}

struct EndpointOut: Encodable {
    let endpoint: Endpoint

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(endpoint.id.rawValue, forKey: .id)
        try c.encode(endpoint.uid, forKey: .uid)
        try c.encode(endpoint.url, forKey: .url)
        try c.encode(1, forKey: .version)
        try c.encode(endpoint.description, forKey: .description)
        try c.encode(endpoint.disabled, forKey: .disabled)
        try c.encode(endpoint.eventTypes, forKey: .filterTypes)
        try c.encode(endpoint.eventTypes, forKey: .eventTypes)
        try c.encode(endpoint.channels, forKey: .channels)
        try c.encode(endpoint.throttleRate, forKey: .throttleRate)
        try c.encode(endpoint.throttleRate, forKey: .rateLimit)
        try c.encode(endpoint.metadata, forKey: .metadata)
        try c.encode(endpoint.createdAt, forKey: .createdAt)
        try c.encode(endpoint.updatedAt, forKey: .updatedAt)
    }
    enum CodingKeys: String, CodingKey {
        case id, uid, url, version, description, disabled, filterTypes, eventTypes, channels, throttleRate, rateLimit, metadata, createdAt, updatedAt
    }
}

struct EventTypeOut: Encodable {
    let eventType: EventType
    let withContent: Bool

    /// The schemas object is written raw, as it was given.
    var rawMembers: [(String, [UInt8])] {
        [("schemas", withContent ? (eventType.schemas ?? Array("null".utf8)) : Array("null".utf8))]
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(eventType.name, forKey: .name)
        try c.encode(eventType.description, forKey: .description)
        try c.encode(eventType.archived, forKey: .archived)
        try c.encode(eventType.deprecated, forKey: .deprecated)
        try c.encode(eventType.featureFlag, forKey: .featureFlag)
        try c.encode(eventType.createdAt, forKey: .createdAt)
        try c.encode(eventType.updatedAt, forKey: .updatedAt)
    }
    enum CodingKeys: String, CodingKey { case name, description, archived, deprecated, featureFlag, createdAt, updatedAt }
}

/// A message as the API shows it, with its delivery's status when listed for one endpoint.
struct MessageOut {
    let message: Message
    var delivery: Delivery? = nil

    /// The payload as written: the exact bytes that were published (`{}` once expunged or when
    /// `with_content=false`).
    static func payload(_ message: Message, withContent: Bool) -> [UInt8] {
        withContent ? (message.payload ?? Array("{}".utf8)) : Array("{}".utf8)
    }

    /// The JSON the API answers with, written directly in `APIJSON`'s form (sorted keys, the API's
    /// dates, the payload raw at the end; the tests compare it with `JSONEncoder`'s output byte
    /// for byte): publishing answers with it on every request, and `JSONEncoder` was a
    /// measurable share of a publish.
    func json(withContent: Bool) -> [UInt8] {
        var writer = FastJSONWriter(capacity: 256 + (withContent ? message.payload?.count ?? 0 : 0))
        writer.beginObject()
        writer.member("channels", message.channels)
        writer.member("eventId", message.eventID)
        writer.member("eventType", message.eventType)
        writer.member("id", message.id.rawValue)
        if let delivery {
            writer.member("nextAttempt", delivery.status == .pending || delivery.status == .sending ? delivery.nextAttemptAt : nil)
            writer.member("status", delivery.status.rawValue)
            writer.member("statusText", delivery.status.text)
        }
        writer.member("timestamp", message.createdAt)
        writer.rawMember("payload", Self.payload(message, withContent: withContent))
        writer.endObject()
        return writer.bytes
    }
}

struct MessageEndpointOut: Encodable {
    let destination: MessageDestination

    func encode(to encoder: any Encoder) throws {
        try EndpointOut(endpoint: destination.endpoint).encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        let delivery = destination.delivery
        try c.encode(delivery.status.rawValue, forKey: .status)
        try c.encode(delivery.status.text, forKey: .statusText)
        try c.encode(delivery.status == .pending || delivery.status == .sending ? delivery.nextAttemptAt : nil, forKey: .nextAttempt)
    }
    enum CodingKeys: String, CodingKey { case status, statusText, nextAttempt }
}

struct MessageAttemptOut: Encodable {
    let attempt: Attempt

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(attempt.id.rawValue, forKey: .id)
        try c.encode(attempt.messageID.rawValue, forKey: .msgId)
        try c.encode(attempt.endpointID.rawValue, forKey: .endpointId)
        try c.encode(attempt.url, forKey: .url)
        try c.encode(attempt.response, forKey: .response)
        try c.encode(attempt.responseStatusCode, forKey: .responseStatusCode)
        try c.encode(attempt.responseDurationMs, forKey: .responseDurationMs)
        try c.encode(attempt.status.rawValue, forKey: .status)
        try c.encode(attempt.status.text, forKey: .statusText)
        try c.encode(attempt.triggerType.rawValue, forKey: .triggerType)
        try c.encode(attempt.createdAt, forKey: .timestamp)
    }
    enum CodingKeys: String, CodingKey { case id, msgId, endpointId, url, response, responseStatusCode, responseDurationMs, status, statusText, triggerType, timestamp }
}

/// `{data, iterator, prevIterator, done}`. Items with raw members are spliced in by `ListOut.encode`.
enum ListOut {
    static func encode<Item>(_ page: Page<Item>, item: (Item) throws -> [UInt8]) throws -> [UInt8] {
        var bytes = Array(#"{"data":["#.utf8)
        for (index, element) in page.items.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes.append(contentsOf: try item(element))
        }
        bytes.append(contentsOf: Array("],".utf8))
        let tail = try APIJSON.encode(ListTail(iterator: page.iterator, prevIterator: page.prevIterator, done: page.done))
        bytes.append(contentsOf: tail.dropFirst())  // drop its "{"
        return bytes
    }
}

struct ListTail: Encodable {
    let iterator: String?
    let prevIterator: String?
    let done: Bool
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(iterator, forKey: .iterator)
        try c.encode(prevIterator, forKey: .prevIterator)
        try c.encode(done, forKey: .done)
    }
    enum CodingKeys: String, CodingKey { case iterator, prevIterator, done }
}
