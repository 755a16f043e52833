import Foundation
import HeraldCore
import HTTPTypes
import Hummingbird
import Testing

@Suite("API: messages")
struct MessageAPITests {
    @Test func publishStoresTheExactPayloadAndAnswers202() async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            let raw = #"{"eventType":"user.created","eventId":"evt-1","payload":{"z": 1, "a": [true, null, "é"]}}"#
            let answer = try await api.call(.post, "/api/v1/app/a/msg", rawBody: raw)
            #expect(answer.status == .accepted)
            #expect(answer.text.contains(#""payload":{"z": 1, "a": [true, null, "é"]}"#))  // byte for byte, key order kept
            let id = try #require(answer.object["id"] as? String)
            #expect(id.hasPrefix("msg_"))
            let byEventID = try await api.call(.get, "/api/v1/app/a/msg/evt-1")
            #expect(byEventID.object["id"] as? String == id)
            let withoutContent = try await api.call(.get, "/api/v1/app/a/msg/\(id)?with_content=false")
            #expect(withoutContent.object["payload"] as? [String: Any] != nil)
            #expect((withoutContent.object["payload"] as? [String: Any])?.isEmpty == true)
        }
    }

    @Test func filteringRulesDecideTheDestinations() async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            let all = try await api.createEndpoint(app: "a", ["url": "https://example.com/all"])["id"] as! String
            let typed = try await api.createEndpoint(app: "a", ["url": "https://example.com/typed", "eventTypes": ["invoice.paid"]])["id"] as! String
            let channel = try await api.createEndpoint(app: "a", ["url": "https://example.com/eu", "channels": ["eu"]])["id"] as! String
            _ = try await api.createEndpoint(app: "a", ["url": "https://example.com/off", "disabled": true])

            func destinations(_ body: [String: Any]) async throws -> Set<String> {
                let message = try await api.publish(app: "a", body)
                let list = try await api.call(.get, "/api/v1/app/a/msg/\(message.object["id"] as! String)/endpoint")
                return Set(list.data.map { $0["id"] as! String })
            }
            #expect(try await destinations(["eventType": "user.created", "payload": [:]]) == [all])
            #expect(try await destinations(["eventType": "invoice.paid", "payload": [:]]) == [all, typed])
            #expect(try await destinations(["eventType": "user.created", "payload": [:], "channels": ["eu", "us"]]) == [all, channel])
            #expect(try await destinations(["eventType": "invoice.paid", "payload": [:], "channels": ["us"]]) == [all, typed])
        }
    }

    @Test func repeatedEventIdIs409AndStoresNothing() async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            let first = try await api.publish(app: "a", ["eventType": "e", "eventId": "once", "payload": ["n": 1]])
            #expect(first.status == .accepted)
            let second = try await api.publish(app: "a", ["eventType": "e", "eventId": "once", "payload": ["n": 2]])
            #expect(second.status == .conflict)
            #expect(second.object["code"] as? String == "conflict")
            let list = try await api.call(.get, "/api/v1/app/a/msg")
            #expect(list.data.count == 1)
        }
    }

    @Test func invalidMessagesGet422And413AndNothingIsStored() async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            let cases: [([String: Any], String)] = [
                (["payload": [:]], "body.eventType"),
                (["eventType": "bad type", "payload": [:]], "body.eventType"),
                (["eventType": "e"], "body.payload"),
                (["eventType": "e", "payload": [1, 2]], "body.payload"),
                (["eventType": "e", "payload": [:], "channels": (0..<11).map { "c\($0)" }], "body.channels"),
                (["eventType": "e", "payload": [:], "eventId": "has space"], "body.eventId"),
                (["eventType": "e", "payload": [:], "payloadRetentionPeriod": 1000], "body.payloadRetentionPeriod"),
            ]
            for (body, location) in cases {
                let answer = try await api.publish(app: "a", body)
                #expect(answer.status == .unprocessableContent, "\(body)")
                #expect(answer.validationLocations.contains(location), "\(answer.text)")
            }
            let big = String(repeating: "x", count: (1 << 20) + 10)
            let tooLarge = try await api.publish(app: "a", ["eventType": "e", "payload": ["blob": big]])
            #expect(tooLarge.status == .contentTooLarge)
            #expect(tooLarge.object["code"] as? String == "payload_too_large")
            let list = try await api.call(.get, "/api/v1/app/a/msg")
            #expect(list.data.isEmpty)
        }
    }

    @Test func applicationFieldCreatesAMissingApplication() async throws {
        try await withAPI { api in
            let missing = try await api.publish(app: "fresh", ["eventType": "e", "payload": [:]])
            #expect(missing.status == .notFound)
            let created = try await api.publish(app: "fresh", ["eventType": "e", "payload": [:], "application": ["name": "Fresh", "uid": "fresh"]])
            #expect(created.status == .accepted)
            let app = try await api.call(.get, "/api/v1/app/fresh")
            #expect(app.object["name"] as? String == "Fresh")
            let again = try await api.publish(app: "fresh", ["eventType": "e", "payload": [:], "application": ["name": "Ignored", "uid": "fresh"]])
            #expect(again.status == .accepted)
            let apps = try await api.call(.get, "/api/v1/app")
            #expect(apps.data.count == 1)
        }
    }

    @Test func idempotencyKeyReplaysTheFirstAnswerAndConcurrentDuplicatesMakeOneMessage() async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            let first = try await api.publish(app: "a", ["eventType": "e", "payload": ["n": 1]], headers: ["idempotency-key": "key-1"])
            let replay = try await api.publish(app: "a", ["eventType": "e", "payload": ["n": 999]], headers: ["idempotency-key": "key-1"])
            #expect(first.status == .accepted && replay.status == .accepted)
            #expect(replay.raw == first.raw)
            #expect(first.headers[HTTPField.Name("x-herald-idempotency-stored")!] == nil)  // internal marker never leaves
            #expect(replay.headers[HTTPField.Name("idempotent-replayed")!] == "true")

            let answers = try await withThrowingTaskGroup(of: APIAnswer.self) { group in
                for _ in 0..<10 {
                    group.addTask { try await api.publish(app: "a", ["eventType": "e", "payload": ["n": 2]], headers: ["idempotency-key": "key-2"]) }
                }
                return try await group.reduce(into: [APIAnswer]()) { $0.append($1) }
            }
            #expect(Set(answers.map { $0.object["id"] as? String }).count == 1)
            let list = try await api.call(.get, "/api/v1/app/a/msg")
            #expect(list.data.count == 2)

            // A failed request is not remembered: the same key may succeed later.
            let failed = try await api.publish(app: "a", ["eventType": "bad type", "payload": [:]], headers: ["idempotency-key": "key-3"])
            #expect(failed.status == .unprocessableContent)
            let fixed = try await api.publish(app: "a", ["eventType": "good", "payload": [:]], headers: ["idempotency-key": "key-3"])
            #expect(fixed.status == .accepted)
        }
    }

    @Test func listFiltersAndPaging() async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            var ids: [String] = []
            for index in 0..<6 {
                let body: [String: Any] = ["eventType": index % 2 == 0 ? "even" : "odd", "payload": ["i": index], "channels": index < 3 ? ["low"] : ["high"]]
                ids.append(try await api.publish(app: "a", body).object["id"] as! String)
            }
            let newestFirst = try await api.call(.get, "/api/v1/app/a/msg")
            #expect(newestFirst.data.map { $0["id"] as! String } == ids.reversed())
            let even = try await api.call(.get, "/api/v1/app/a/msg?event_types=even")
            #expect(even.data.count == 3)
            let both = try await api.call(.get, "/api/v1/app/a/msg?event_types=even&event_types=odd")
            #expect(both.data.count == 6)
            let low = try await api.call(.get, "/api/v1/app/a/msg?channel=low")
            #expect(Set(low.data.map { $0["id"] as! String }) == Set(ids[0..<3]))
            let future = try await api.call(.get, "/api/v1/app/a/msg?after=2100-01-01T00:00:00Z")
            #expect(future.data.isEmpty)
            let past = try await api.call(.get, "/api/v1/app/a/msg?before=2100-01-01T00:00:00Z&limit=4")
            #expect(past.data.count == 4 && past.object["done"] as? Bool == false)
            let next = try await api.call(.get, "/api/v1/app/a/msg?limit=4&iterator=\(past.object["iterator"] as! String)")
            #expect(next.data.map { $0["id"] as! String } == [ids[1], ids[0]])
            let badDate = try await api.call(.get, "/api/v1/app/a/msg?before=yesterday")
            #expect(badDate.status == .unprocessableContent)
        }
    }

    @Test func expungeContentKeepsTheMessage() async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            let id = try await api.publish(app: "a", ["eventType": "e", "payload": ["secret": "value"]]).object["id"] as! String
            let expunged = try await api.call(.delete, "/api/v1/app/a/msg/\(id)/content")
            #expect(expunged.status == .noContent)
            let message = try await api.call(.get, "/api/v1/app/a/msg/\(id)")
            #expect(message.status == .ok)
            #expect(!message.text.contains("value"))
            let missing = try await api.call(.delete, "/api/v1/app/a/msg/msg_nope/content")
            #expect(missing.status == .notFound)
        }
    }
}
