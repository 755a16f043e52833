import Foundation
import HeraldAPI
import HeraldCore
import HTTPTypes
import Hummingbird
import Testing

@Suite("API: quotas and bounded lists")
struct LimitsAPITests {
    /// The 422 item of a quota refusal: its loc and message.
    static func refusal(_ answer: APIAnswer) -> (loc: String, msg: String)? {
        guard answer.status == .unprocessableContent, let item = (answer.object["detail"] as? [[String: Any]])?.first else { return nil }
        return ((item["loc"] as? [String] ?? []).joined(separator: "."), item["msg"] as? String ?? "")
    }

    @Test func endpointsPerApplicationAreLimitedWith422NamingTheSetting() async throws {
        try await withAPI(configure: { $0.apiLimits.maxEndpointsPerApplication = 3 }) { api in
            _ = try await api.createApp("A", uid: "a")
            _ = try await api.createApp("B", uid: "b")
            for index in 0..<3 { _ = try await api.createEndpoint(app: "a", ["url": "https://example.com/\(index)"]) }
            let fourth = try await api.call(.post, "/api/v1/app/a/endpoint", json: ["url": "https://example.com/4"])
            let refusal = try #require(Self.refusal(fourth), "\(fourth.status) \(fourth.text)")
            #expect(refusal.loc == "body.url")
            #expect(refusal.msg == "an application may have at most 3 endpoints (--max-endpoints-per-app)")
            // PUT to a new uid creates: refused the same way.
            let upsert = try await api.call(.put, "/api/v1/app/a/endpoint/new-one", json: ["url": "https://example.com/5"])
            #expect(Self.refusal(upsert)?.msg.contains("--max-endpoints-per-app") == true, "\(upsert.text)")
            #expect(try await api.call(.get, "/api/v1/app/a/endpoint").data.count == 3)
            // Another application has its own quota; deleting one frees a place.
            _ = try await api.createEndpoint(app: "b", ["url": "https://example.com/b"])
            let first = try await api.call(.get, "/api/v1/app/a/endpoint").data[0]["id"] as! String
            #expect(try await api.call(.delete, "/api/v1/app/a/endpoint/\(first)").status == .noContent)
            _ = try await api.createEndpoint(app: "a", ["url": "https://example.com/again"])
        }
    }

    @Test func endpointHeadersAreLimitedInCountAndSize() async throws {
        try await withAPI(configure: { $0.apiLimits.maxEndpointHeaders = 2; $0.apiLimits.maxEndpointHeaderBytes = 64 }) { api in
            _ = try await api.createApp("A", uid: "a")
            let tooMany = try await api.call(.post, "/api/v1/app/a/endpoint",
                                             json: ["url": "https://example.com", "headers": ["x-a": "1", "x-b": "2", "x-c": "3"]])
            #expect(Self.refusal(tooMany)?.loc == "body.headers")
            #expect(Self.refusal(tooMany)?.msg == "an endpoint may have at most 2 headers (--max-endpoint-headers)")
            let endpoint = try await api.createEndpoint(app: "a", ["url": "https://example.com", "headers": ["x-a": "1"]])["id"] as! String
            let patched = try await api.call(.patch, "/api/v1/app/a/endpoint/\(endpoint)/headers", json: ["headers": ["x-b": "2", "x-c": "3"]])
            #expect(Self.refusal(patched)?.msg.contains("--max-endpoint-headers") == true, "\(patched.text)")
            let big = try await api.call(.put, "/api/v1/app/a/endpoint/\(endpoint)/headers",
                                         json: ["headers": ["x-big": String(repeating: "v", count: 80)]])
            #expect(Self.refusal(big)?.msg.contains("--max-endpoint-headers-bytes") == true, "\(big.text)")
            // Nothing refused was stored; within the limits it works.
            let headers = try await api.call(.get, "/api/v1/app/a/endpoint/\(endpoint)/headers").object["headers"] as? [String: String]
            #expect(headers == ["x-a": "1"])
            #expect(try await api.call(.patch, "/api/v1/app/a/endpoint/\(endpoint)/headers", json: ["headers": ["x-b": "2"]]).status == .noContent)
        }
    }

    @Test func eventTypesAreLimited() async throws {
        try await withAPI(configure: { $0.apiLimits.maxEventTypes = 2 }) { api in
            for name in ["a.one", "a.two"] {
                #expect(try await api.call(.post, "/api/v1/event-type", json: ["name": name, "description": "d"]).status == .created)
            }
            let third = try await api.call(.post, "/api/v1/event-type", json: ["name": "a.three", "description": "d"])
            #expect(Self.refusal(third)?.loc == "body.name")
            #expect(Self.refusal(third)?.msg == "there may be at most 2 event types (--max-event-types)")
            let upsert = try await api.call(.put, "/api/v1/event-type/a.four", json: ["description": "d"])
            #expect(Self.refusal(upsert) != nil, "\(upsert.text)")
            #expect(try await api.call(.post, "/api/v1/event-type", json: ["name": "a.one", "description": "d"]).status == .conflict)
        }
    }

    @Test func aMessagePageStopsAtTheByteBudgetAndTheIteratorGoesOn() async throws {
        try await withAPI(configure: { $0.apiLimits.maxListContentBytes = 2_500_000 }) { api in
            _ = try await api.createApp("A", uid: "a")
            let endpoint = try await api.createEndpoint(app: "a", ["url": "https://example.com"])["id"] as! String
            var ids: [String] = []
            for index in 0..<5 {
                let padding = String(repeating: "x", count: 1_000_000)
                let answer = try await api.call(.post, "/api/v1/app/a/msg", rawBody: #"{"eventType":"big","payload":{"n":\#(index),"pad":"\#(padding)"}}"#)
                #expect(answer.status == .accepted)
                ids.append(answer.object["id"] as! String)
            }
            for path in ["/api/v1/app/a/msg", "/api/v1/app/a/endpoint/\(endpoint)/msg"] {
                var seen: [String] = []
                var iterator: String?
                var pages: [Int] = []
                for _ in 0..<10 {
                    let page = try await api.call(.get, path + "?limit=250" + (iterator.map { "&iterator=\($0)" } ?? ""))
                    #expect(page.status == .ok)
                    #expect(page.raw.count < 2_600_000, "a page holds at most the budget of payload (\(page.raw.count) bytes)")
                    pages.append(page.data.count)
                    seen += page.data.map { $0["id"] as! String }
                    if page.object["done"] as? Bool == true { break }
                    #expect(page.object["iterator"] as? String != nil)
                    iterator = page.object["iterator"] as? String
                }
                #expect(pages == [2, 2, 1], "\(path): \(pages)")
                #expect(seen == ids.reversed(), "\(path): every message exactly once, newest first")
            }
            // Without content the whole listing fits one page.
            let bare = try await api.call(.get, "/api/v1/app/a/msg?limit=250&with_content=false")
            #expect(bare.data.count == 5 && bare.object["done"] as? Bool == true)
            #expect(bare.raw.count < 10_000)
        }
    }
}

@Suite("API: admin tokens")
struct TokenAPITests {
    @Test func adminTokensAreCreatedListedWithoutTheirValueAndRevokedAtOnce() async throws {
        try await withAPI { api in
            let expiry = "2099-01-01T00:00:00Z"
            let created = try await api.call(.post, "/api/v1/token", json: ["name": "ci", "expiresAt": expiry])
            #expect(created.status == .created, "\(created.text)")
            let id = try #require(created.object["id"] as? String)
            let token = try #require(created.object["token"] as? String)
            #expect(id.hasPrefix("tok_") && token.hasPrefix("sk_herald_"))
            #expect(created.object["name"] as? String == "ci")
            #expect(created.object["expiresAt"] as? String == "2099-01-01T00:00:00.000Z")

            // The new token works; the list names it without its value or hash.
            let listed = try await api.call(.get, "/api/v1/token", token: token)
            #expect(listed.status == .ok)
            let entry = try #require(listed.data.first { $0["id"] as? String == id })
            #expect(entry["name"] as? String == "ci" && entry["scope"] as? String == "admin" && entry["expired"] as? Bool == false)
            #expect(entry["token"] == nil && entry["hash"] == nil)
            #expect(!listed.text.contains(token))
            #expect(listed.data.contains { $0["name"] as? String == "--token" && ($0["expiresAt"] is NSNull) })

            // Revoked: refused at once (the token cache forgets it).
            #expect(try await api.call(.delete, "/api/v1/token/\(id)").status == .noContent)
            #expect(try await api.call(.get, "/api/v1/app", token: token).status == .unauthorized)
            #expect(try await api.call(.delete, "/api/v1/token/\(id)").status == .notFound)
            #expect(try await api.call(.get, "/api/v1/app").status == .ok, "the other admin token still works")
        }
    }

    @Test func expiredTokensAreRefusedAndBadInputIs422() async throws {
        try await withAPI { api in
            let text = "expired_token_0123456789"
            try await api.store.createToken(APIToken(hash: APITokenText.hash(text), scope: .admin, createdAt: Date(timeIntervalSinceNow: -100),
                                                     expiresAt: Date(timeIntervalSinceNow: -1), name: "old"))
            #expect(try await api.call(.get, "/api/v1/app", token: text).status == .unauthorized)
            let listed = try await api.call(.get, "/api/v1/token")
            #expect(listed.data.contains { $0["name"] as? String == "old" && $0["expired"] as? Bool == true })
            #expect(try await api.call(.post, "/api/v1/token", json: [:]).validationLocations == ["body.name"])
            #expect(try await api.call(.post, "/api/v1/token", json: ["name": "x", "expiresAt": "2001-01-01T00:00:00Z"]).validationLocations == ["body.expiresAt"])
            #expect(try await api.call(.post, "/api/v1/token", json: ["name": String(repeating: "n", count: 129)]).status == .unprocessableContent)
        }
    }

    @Test func appPortalTokensCannotManageTokens() async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            let access = try await api.call(.post, "/api/v1/auth/app-portal-access/a", json: [:])
            let portal = try #require(access.object["token"] as? String)
            #expect(try await api.call(.get, "/api/v1/token", token: portal).status == .forbidden)
            #expect(try await api.call(.post, "/api/v1/token", json: ["name": "x"], token: portal).status == .forbidden)
            let admin = try #require(try await api.call(.get, "/api/v1/token").data.first?["id"] as? String)
            #expect(try await api.call(.delete, "/api/v1/token/\(admin)", token: portal).status == .forbidden)
        }
    }
}
