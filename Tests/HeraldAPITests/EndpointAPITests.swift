import Foundation
import HeraldCore
import Hummingbird
import Testing
import WebhookSignature

@Suite("API: endpoints")
struct EndpointAPITests {
    static let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    @Test func crudByIdAndUid() async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            let created = try await api.createEndpoint(app: "a", [
                "url": "https://example.com/hook", "uid": "main", "description": "Main", "eventTypes": ["user.created"],
                "channels": ["eu"], "metadata": ["k": "v"], "secret": Self.secret,
            ])
            let id = try #require(created["id"] as? String)
            #expect(id.hasPrefix("ep_"))
            #expect(created["eventTypes"] as? [String] == ["user.created"])
            #expect(created["channels"] as? [String] == ["eu"])
            #expect(created["disabled"] as? Bool == false)
            #expect(created["secret"] == nil)  // never in the endpoint body

            let byUid = try await api.call(.get, "/api/v1/app/a/endpoint/main")
            #expect(byUid.object["id"] as? String == id)
            let list = try await api.call(.get, "/api/v1/app/a/endpoint")
            #expect(list.data.count == 1)

            let put = try await api.call(.put, "/api/v1/app/a/endpoint/\(id)", json: ["url": "https://example.com/v2", "uid": "main"])
            #expect(put.status == .ok)
            #expect(put.object["url"] as? String == "https://example.com/v2")
            #expect(put.object["eventTypes"] is NSNull)  // PUT replaces every field

            let patch = try await api.call(.patch, "/api/v1/app/a/endpoint/main", json: ["disabled": true, "description": "off"])
            #expect(patch.object["disabled"] as? Bool == true)
            #expect(patch.object["url"] as? String == "https://example.com/v2")

            let deleted = try await api.call(.delete, "/api/v1/app/a/endpoint/main")
            #expect(deleted.status == .noContent)
            let gone = try await api.call(.get, "/api/v1/app/a/endpoint/\(id)")
            #expect(gone.status == .notFound)
        }
    }

    @Test func anotherApplicationsEndpointIsNotFound() async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            _ = try await api.createApp("B", uid: "b")
            let endpoint = try await api.createEndpoint(app: "a", ["url": "https://example.com/a", "uid": "shared"])
            let viaB = try await api.call(.get, "/api/v1/app/b/endpoint/\(endpoint["id"] as! String)")
            #expect(viaB.status == .notFound)
            let uidViaB = try await api.call(.get, "/api/v1/app/b/endpoint/shared")
            #expect(uidViaB.status == .notFound)
            let missingApp = try await api.call(.get, "/api/v1/app/nope/endpoint")
            #expect(missingApp.status == .notFound)
        }
    }

    @Test func invalidEndpointsGet422AndNothingIsStored() async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            let cases: [([String: Any], String)] = [
                ([:], "body.url"),
                (["url": "not a url"], "body.url"),
                (["url": "ftp://example.com"], "body.url"),
                (["url": "https://example.com", "channels": (0..<11).map { "c\($0)" }], "body.channels"),
                (["url": "https://example.com", "secret": "whsec_short"], "body.secret"),
                (["url": "https://example.com", "eventTypes": ["bad type"]], "body.eventTypes.0"),
                (["url": "https://example.com", "uid": "bad uid"], "body.uid"),
                (["url": "https://example.com", "disabled": "yes"], "body.disabled"),
            ]
            for (body, location) in cases {
                let answer = try await api.call(.post, "/api/v1/app/a/endpoint", json: body)
                #expect(answer.status == .unprocessableContent, "\(body)")
                #expect(answer.validationLocations.contains(location), "\(answer.text)")
            }
            let list = try await api.call(.get, "/api/v1/app/a/endpoint")
            #expect(list.data.isEmpty)
            _ = try await api.createEndpoint(app: "a", ["url": "https://example.com", "uid": "taken"])
            let dup = try await api.call(.post, "/api/v1/app/a/endpoint", json: ["url": "https://example.com", "uid": "taken"])
            #expect(dup.status == .conflict)
        }
    }

    @Test func secretGetAndRotateWithGracePeriod() async throws {
        try await withAPI { api in
            let app = try await api.createApp("A", uid: "a")
            let endpoint = try await api.createEndpoint(app: "a", ["url": "https://example.com", "secret": Self.secret])
            let id = endpoint["id"] as! String
            let secret = try await api.call(.get, "/api/v1/app/a/endpoint/\(id)/secret")
            #expect(secret.object["key"] as? String == Self.secret)

            let rotated = try await api.call(.post, "/api/v1/app/a/endpoint/\(id)/secret/rotate", json: [:])
            #expect(rotated.status == .ok)
            let newSecret = try await api.call(.get, "/api/v1/app/a/endpoint/\(id)/secret")
            let newKey = try #require(newSecret.object["key"] as? String)
            #expect(rotated.object["key"] as? String == newKey)
            #expect(newKey != Self.secret && newKey.hasPrefix("whsec_"))
            // The old key keeps signing during the grace period.
            let stored = try #require(try await api.store.endpoint(app: ApplicationID(rawValue: app["id"] as! String), ref: id))
            let active = stored.activeSecrets(at: Date())
            #expect(active.count == 2)
            #expect(active.contains { $0.key == (try? WebhookSecret(Self.secret))?.bytes })
            #expect(stored.secrets[1].expiresAt! > Date().addingTimeInterval(86_000))

            let chosen = "whsec_" + Data(repeating: 7, count: 32).base64EncodedString()
            let explicit = try await api.call(.post, "/api/v1/app/a/endpoint/\(id)/secret/rotate", json: ["key": chosen])
            #expect(explicit.status == .ok && explicit.object["key"] as? String == chosen)
            let afterExplicit = try await api.call(.get, "/api/v1/app/a/endpoint/\(id)/secret")
            #expect(afterExplicit.object["key"] as? String == chosen)

            for _ in 0..<12 { _ = try await api.call(.post, "/api/v1/app/a/endpoint/\(id)/secret/rotate", json: [:]) }
            let capped = try #require(try await api.store.endpoint(app: ApplicationID(rawValue: app["id"] as! String), ref: id))
            #expect(capped.secrets.count == 11)  // the current key and at most 10 old ones

            let bad = try await api.call(.post, "/api/v1/app/a/endpoint/\(id)/secret/rotate", json: ["key": "nope"])
            #expect(bad.status == .unprocessableContent)
        }
    }

    @Test func ed25519KeysAreAcceptedReturnedAndRotatedAsEd25519() async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            let signing = Ed25519SigningKey.generate()
            let id = try await api.createEndpoint(app: "a", ["url": "https://example.com", "secret": signing.encoded])["id"] as! String
            let secret = try await api.call(.get, "/api/v1/app/a/endpoint/\(id)/secret")
            #expect(secret.object["key"] as? String == signing.encoded)
            let rotated = try await api.call(.post, "/api/v1/app/a/endpoint/\(id)/secret/rotate", json: [:])
            let newKey = try #require(rotated.object["key"] as? String)
            #expect(newKey.hasPrefix("whsk_") && newKey != signing.encoded)
            let bad = try await api.call(.post, "/api/v1/app/a/endpoint", json: ["url": "https://example.com", "secret": "whsk_AAAA"])
            #expect(bad.status == .unprocessableContent)
        }
    }

    @Test func headersPutPatchGetHideSensitiveAndRefuseReserved() async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            let id = try await api.createEndpoint(app: "a", ["url": "https://example.com"])["id"] as! String
            let path = "/api/v1/app/a/endpoint/\(id)/headers"
            let put = try await api.call(.put, path, json: ["headers": ["X-Tenant": "t1", "Authorization": "Bearer s3cret"]])
            #expect(put.status == .noContent)
            let got = try await api.call(.get, path)
            #expect(got.object["headers"] as? [String: String] == ["X-Tenant": "t1"])
            #expect(got.object["sensitive"] as? [String] == ["Authorization"])
            #expect(!got.text.contains("s3cret"))

            let patch = try await api.call(.patch, path, json: ["headers": ["X-Region": "eu", "X-Tenant": NSNull()]])
            #expect(patch.status == .noContent)
            let afterPatch = try await api.call(.get, path)
            #expect(afterPatch.object["headers"] as? [String: String] == ["X-Region": "eu"])
            let sdkStyle = try await api.call(.patch, path, json: ["headers": ["X-Zone": "a"], "deleteHeaders": ["x-region"]])
            #expect(sdkStyle.status == .noContent)
            let afterDelete = try await api.call(.get, path)
            #expect(afterDelete.object["headers"] as? [String: String] == ["X-Zone": "a"])
            _ = try await api.call(.patch, path, json: ["headers": ["X-Region": "eu"], "deleteHeaders": ["X-Zone"]])

            for headers in [["webhook-signature": "x"], ["Content-Type": "text/plain"], ["X-Bad": "a\r\nInjected: 1"], ["bad name": "x"]] {
                let refused = try await api.call(.put, path, json: ["headers": headers])
                #expect(refused.status == .unprocessableContent, "\(headers)")
            }
            let unchanged = try await api.call(.get, path)
            #expect(unchanged.object["headers"] as? [String: String] == ["X-Region": "eu"])
        }
    }

    @Test func statsSendExampleAndRecover() async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            let first = try await api.createEndpoint(app: "a", ["url": "https://example.com/1"])["id"] as! String
            let second = try await api.createEndpoint(app: "a", ["url": "https://example.com/2"])["id"] as! String
            _ = try await api.publish(app: "a", ["eventType": "user.created", "payload": ["n": 1]])

            let example = try await api.call(.post, "/api/v1/app/a/endpoint/\(first)/send-example", json: ["eventType": "user.created"])
            #expect(example.status == .ok)
            let exampleID = try #require(example.object["id"] as? String)
            let destinations = try await api.call(.get, "/api/v1/app/a/msg/\(exampleID)/endpoint")
            #expect(destinations.data.map { $0["id"] as? String } == [first])  // only that endpoint

            let stats = try await api.call(.get, "/api/v1/app/a/endpoint/\(first)/stats")
            #expect(stats.object["pending"] as? Int == 2)
            #expect(stats.object["success"] as? Int == 0 && stats.object["fail"] as? Int == 0)
            let secondStats = try await api.call(.get, "/api/v1/app/a/endpoint/\(second)/stats")
            #expect(secondStats.object["pending"] as? Int == 1)

            let recover = try await api.call(.post, "/api/v1/app/a/endpoint/\(first)/recover", json: ["since": "2020-01-01T00:00:00Z"])
            #expect(recover.status == .accepted)
            #expect(recover.object["status"] as? String == "running")
            #expect(recover.object["task"] as? String == "endpoint.recover")
            let badRecover = try await api.call(.post, "/api/v1/app/a/endpoint/\(first)/recover", json: ["since": "yesterday"])
            #expect(badRecover.status == .unprocessableContent)
        }
    }
}
