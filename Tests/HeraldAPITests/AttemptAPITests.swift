import Foundation
import HeraldCore
import Hummingbird
import Testing

@Suite("API: attempts, resend, event types, app portal")
struct AttemptAPITests {
    /// Records an attempt through the store, as the dispatcher will.
    func recordAttempt(_ api: APIClient, app: String, message: String, endpoint: String, code: Int, at date: Date = Date()) async throws -> Attempt {
        let appID = ApplicationID(rawValue: app)
        let delivery = try #require(try await api.store.delivery(message: MessageID(rawValue: message), endpoint: EndpointID(rawValue: endpoint)))
        var updated = delivery
        let succeeded = (200..<300).contains(code)
        updated.status = succeeded ? .success : .fail
        updated.attemptCount += 1
        updated.nextAttemptAt = nil
        let attempt = Attempt(messageID: delivery.messageID, endpointID: delivery.endpointID, appID: appID, url: "https://example.com",
                              responseStatusCode: code, response: "{\"ok\":\(succeeded)}", responseDurationMs: 12,
                              status: succeeded ? .success : .fail, triggerType: .scheduled, eventType: delivery.eventType,
                              channels: delivery.channels, createdAt: date)
        try await api.store.recordAttempt(attempt, delivery: updated)
        return attempt
    }

    @Test func attemptListingsFiltersGetAndExpunge() async throws {
        try await withAPI { api in
            let app = try await api.createApp("A", uid: "a")["id"] as! String
            let ep1 = try await api.createEndpoint(app: "a", ["url": "https://example.com/1"])["id"] as! String
            let ep2 = try await api.createEndpoint(app: "a", ["url": "https://example.com/2"])["id"] as! String
            let msg = try await api.publish(app: "a", ["eventType": "user.created", "payload": [:], "channels": ["eu"]]).object["id"] as! String

            let empty = try await api.call(.get, "/api/v1/app/a/attempt/msg/\(msg)")
            #expect(empty.status == .ok && empty.data.isEmpty)

            let ok = try await recordAttempt(api, app: app, message: msg, endpoint: ep1, code: 200)
            _ = try await recordAttempt(api, app: app, message: msg, endpoint: ep2, code: 503)

            let byMessage = try await api.call(.get, "/api/v1/app/a/attempt/msg/\(msg)")
            #expect(byMessage.data.count == 2)
            let first = try #require(byMessage.data.first { $0["id"] as? String == ok.id.rawValue })
            #expect(first["msgId"] as? String == msg)
            #expect(first["endpointId"] as? String == ep1)
            #expect(first["responseStatusCode"] as? Int == 200)
            #expect(first["status"] as? Int == 0 && first["statusText"] as? String == "success")
            #expect(first["triggerType"] as? Int == 0)
            #expect(first["responseDurationMs"] as? Int == 12)

            let byEndpoint = try await api.call(.get, "/api/v1/app/a/attempt/endpoint/\(ep2)")
            #expect(byEndpoint.data.map { $0["responseStatusCode"] as? Int } == [503])
            let failed = try await api.call(.get, "/api/v1/app/a/attempt/msg/\(msg)?status=2")
            #expect(failed.data.map { $0["endpointId"] as? String } == [ep2])
            let fiveHundreds = try await api.call(.get, "/api/v1/app/a/attempt/msg/\(msg)?status_code_class=500")
            #expect(fiveHundreds.data.count == 1)
            let onlyEp1 = try await api.call(.get, "/api/v1/app/a/attempt/msg/\(msg)?endpoint_id=\(ep1)")
            #expect(onlyEp1.data.count == 1)
            let otherChannel = try await api.call(.get, "/api/v1/app/a/attempt/endpoint/\(ep1)?channel=us")
            #expect(otherChannel.data.isEmpty)
            let badStatus = try await api.call(.get, "/api/v1/app/a/attempt/msg/\(msg)?status=9")
            #expect(badStatus.status == .unprocessableContent)

            let got = try await api.call(.get, "/api/v1/app/a/msg/\(msg)/attempt/\(ok.id.rawValue)")
            #expect(got.object["response"] as? String == "{\"ok\":true}")
            let expunged = try await api.call(.delete, "/api/v1/app/a/msg/\(msg)/attempt/\(ok.id.rawValue)/content")
            #expect(expunged.status == .noContent)
            let afterExpunge = try await api.call(.get, "/api/v1/app/a/msg/\(msg)/attempt/\(ok.id.rawValue)")
            #expect(afterExpunge.object["response"] as? String == "")
            let missing = try await api.call(.get, "/api/v1/app/a/msg/\(msg)/attempt/atmpt_nope")
            #expect(missing.status == .notFound)

            let attempted = try await api.call(.get, "/api/v1/app/a/endpoint/\(ep1)/msg")
            #expect(attempted.data.count == 1)
            #expect(attempted.data.first?["status"] as? Int == 0)
            #expect(attempted.data.first?["nextAttempt"] is NSNull)
            let destinations = try await api.call(.get, "/api/v1/app/a/msg/\(msg)/endpoint")
            let statuses = Dictionary(uniqueKeysWithValues: destinations.data.map { ($0["id"] as! String, $0["statusText"] as! String) })
            #expect(statuses == [ep1: "success", ep2: "fail"])
        }
    }

    @Test func resendQueuesAManualAttemptEvenForAFilteredOutEndpoint() async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            let other = try await api.createEndpoint(app: "a", ["url": "https://example.com/x", "eventTypes": ["other.type"]])["id"] as! String
            let msg = try await api.publish(app: "a", ["eventType": "user.created", "payload": [:]]).object["id"] as! String
            let before = try await api.call(.get, "/api/v1/app/a/msg/\(msg)/endpoint")
            #expect(before.data.isEmpty)
            let resend = try await api.call(.post, "/api/v1/app/a/msg/\(msg)/endpoint/\(other)/resend")
            #expect(resend.status == .accepted)
            let delivery = try #require(try await api.store.delivery(message: MessageID(rawValue: msg), endpoint: EndpointID(rawValue: other)))
            #expect(delivery.trigger == .manual)
            #expect(delivery.status == .pending)
            let missing = try await api.call(.post, "/api/v1/app/a/msg/\(msg)/endpoint/ep_nope/resend")
            #expect(missing.status == .notFound)
        }
    }

    @Test func eventTypesCrudArchiveAndSchemas() async throws {
        try await withAPI { api in
            let schemas: [String: Any] = ["1": ["type": "object", "examples": [["id": 7]]]]
            let created = try await api.call(.post, "/api/v1/event-type", json: ["name": "user.created", "description": "A user", "schemas": schemas])
            #expect(created.status == .created)
            #expect((created.object["schemas"] as? [String: Any])?["1"] != nil)
            #expect(created.object["archived"] as? Bool == false)
            let dup = try await api.call(.post, "/api/v1/event-type", json: ["name": "user.created", "description": "again"])
            #expect(dup.status == .conflict)
            let invalid = try await api.call(.post, "/api/v1/event-type", json: ["name": "bad name", "description": 5])
            #expect(Set(invalid.validationLocations) == ["body.name", "body.description"])

            let put = try await api.call(.put, "/api/v1/event-type/invoice.paid", json: ["description": "Paid"])
            #expect(put.status == .created)
            let patched = try await api.call(.patch, "/api/v1/event-type/invoice.paid", json: ["deprecated": true])
            #expect(patched.object["deprecated"] as? Bool == true && patched.object["description"] as? String == "Paid")

            let archive = try await api.call(.delete, "/api/v1/event-type/invoice.paid")
            #expect(archive.status == .noContent)
            let visible = try await api.call(.get, "/api/v1/event-type")
            #expect(visible.data.map { $0["name"] as? String } == ["user.created"])
            let all = try await api.call(.get, "/api/v1/event-type?include_archived=true&with_content=true")
            #expect(all.data.count == 2)
            let archived = try await api.call(.get, "/api/v1/event-type/invoice.paid")
            #expect(archived.object["archived"] as? Bool == true)

            // send-example uses the schema's example.
            _ = try await api.createApp("A", uid: "a")
            let endpoint = try await api.createEndpoint(app: "a", ["url": "https://example.com"])["id"] as! String
            let example = try await api.call(.post, "/api/v1/app/a/endpoint/\(endpoint)/send-example", json: ["eventType": "user.created"])
            #expect((example.object["payload"] as? [String: Any])?["id"] as? Int == 7)

            let expunge = try await api.call(.delete, "/api/v1/event-type/invoice.paid?expunge=true")
            #expect(expunge.status == .noContent)
            let gone = try await api.call(.get, "/api/v1/event-type/invoice.paid")
            #expect(gone.status == .notFound)
        }
    }

    @Test func appPortalTokenReachesOnlyItsApplicationAndLogoutRevokesIt() async throws {
        try await withAPI { api in
            _ = try await api.createApp("Mine", uid: "mine")
            _ = try await api.createApp("Theirs", uid: "theirs")
            let access = try await api.call(.post, "/api/v1/auth/app-portal-access/mine", json: [:])
            #expect(access.status == .ok)
            let token = try #require(access.object["token"] as? String)
            #expect((access.object["url"] as? String)?.isEmpty == false)

            let own = try await api.call(.get, "/api/v1/app/mine", token: token)
            #expect(own.status == .ok)
            let ownEndpoints = try await api.call(.post, "/api/v1/app/mine/endpoint", json: ["url": "https://example.com"], token: token)
            #expect(ownEndpoints.status == .created)
            let other = try await api.call(.get, "/api/v1/app/theirs", token: token)
            #expect(other.status == .notFound)
            let otherMessages = try await api.call(.get, "/api/v1/app/theirs/msg", token: token)
            #expect(otherMessages.status == .notFound)
            let listApps = try await api.call(.get, "/api/v1/app", token: token)
            #expect(listApps.status == .forbidden)
            let createApp = try await api.call(.post, "/api/v1/app", json: ["name": "x"], token: token)
            #expect(createApp.status == .forbidden)
            let portalForOther = try await api.call(.post, "/api/v1/auth/app-portal-access/theirs", json: [:], token: token)
            #expect(portalForOther.status == .forbidden)

            let logout = try await api.call(.post, "/api/v1/auth/logout", token: token)
            #expect(logout.status == .noContent)
            let after = try await api.call(.get, "/api/v1/app/mine", token: token)
            #expect(after.status == .unauthorized)
            let admin = try await api.call(.get, "/api/v1/app/mine")
            #expect(admin.status == .ok)

            let created = try await api.call(.post, "/api/v1/auth/app-portal-access/newapp", json: ["application": ["name": "New"]])
            #expect(created.status == .ok)
            let newApp = try await api.call(.get, "/api/v1/app/newapp")
            #expect(newApp.status == .ok)
            let missing = try await api.call(.post, "/api/v1/auth/app-portal-access/none", json: [:])
            #expect(missing.status == .notFound)
        }
    }
}
