import Foundation
import HeraldCore
import Testing
@testable import HeraldAPI

/// The hand-written JSON of a published message must be the very bytes `JSONEncoder` wrote before
/// (clients and the Idempotency-Key replays see them).
@Suite("API: hand-written message JSON")
struct FastJSONTests {
    static let app = ApplicationID.generate()

    static let messages: [Message] = {
        let dates = [Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: 1_614_265_330.999_9), Date(timeIntervalSince1970: 951_782_400.5),
                     Date(timeIntervalSince1970: 4_102_444_799.001), Date(timeIntervalSince1970: -86_400.25), Date()]
        var messages: [Message] = []
        for (index, date) in dates.enumerated() {
            messages.append(Message(appID: app, eventID: index % 2 == 0 ? "evt-\(index)" : nil, eventType: "user.created",
                                    payload: Array(#"{"a": [1, "é"]}"#.utf8), channels: index % 3 == 0 ? nil : ["c1", "project_1"], createdAt: date))
        }
        // Characters the API's patterns refuse, in case a stored value ever holds them.
        messages.append(Message(appID: app, eventID: "q\"b\\s/\n\r\t\u{8}\u{c}\u{1}\u{1f}é😀", eventType: "x", payload: nil, channels: [], createdAt: Date()))
        return messages
    }()

    @Test(arguments: messages)
    func sameBytesAsJSONEncoder(_ message: Message) throws {
        for withContent in [true, false] {
            let expected = try APIJSON.encode(MessageOut(message: message), rawMembers: [("payload", MessageOut.payload(message, withContent: withContent))])
            #expect(MessageOut(message: message).json(withContent: withContent) == expected, "\(String(decoding: expected, as: UTF8.self))")
            for status in DeliveryStatus.allCases {
                let delivery = Delivery(messageID: message.id, endpointID: .generate(), appID: Self.app, status: status,
                                        nextAttemptAt: Date(timeIntervalSince1970: 1_700_000_000.123), eventType: message.eventType,
                                        channels: message.channels, createdAt: message.createdAt)
                let out = MessageOut(message: message, delivery: delivery)
                let reference = try APIJSON.encode(out, rawMembers: [("payload", MessageOut.payload(message, withContent: withContent))])
                #expect(out.json(withContent: withContent) == reference, "\(String(decoding: reference, as: UTF8.self))")
            }
        }
    }

    @Test func datesMatchTheFormatterOverFourHundredYears() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let date = Date(timeIntervalSince1970: Double.random(in: -2_208_988_800...10_413_792_000, using: &rng))
            var bytes: [UInt8] = []
            APIJSON.appendDate(date, to: &bytes)
            #expect(String(decoding: bytes, as: UTF8.self) == APIJSON.formatDate(date))
        }
    }
}

/// The reference: how the message JSON was encoded before it was written by hand (`JSONEncoder`
/// with `APIJSON`'s settings, and `APIJSON.encode` appending the raw payload).
extension MessageOut: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(message.id.rawValue, forKey: .id)
        try c.encode(message.eventID, forKey: .eventId)
        try c.encode(message.eventType, forKey: .eventType)
        try c.encode(message.channels, forKey: .channels)
        try c.encode(message.createdAt, forKey: .timestamp)
        if let delivery {
            try c.encode(delivery.status.rawValue, forKey: .status)
            try c.encode(delivery.status.text, forKey: .statusText)
            try c.encode(delivery.status == .pending || delivery.status == .sending ? delivery.nextAttemptAt : nil, forKey: .nextAttempt)
        }
    }
    enum CodingKeys: String, CodingKey { case id, eventId, eventType, channels, timestamp, status, statusText, nextAttempt }
}
