import Foundation
import HeraldCore
import HTTPTypes
import Testing

/// Endpoint URLs the delivery path cannot use are refused at the API with a 422 on `url`.
@Suite("API: endpoint URL validation")
struct EndpointURLAPITests {
    static let badURLs = [
        "http://127.0.0.1:65536/",
        "http://127.0.0.1:0/",
        "http://example.com:99999999999999999999/",
        "ftp://example.com/",
        "http:///hook",
        "https://example.com/a hook",
    ]

    /// The `detail` items of a 422 answer.
    static func details(_ answer: APIAnswer) -> [[String: Any]] { answer.object["detail"] as? [[String: Any]] ?? [] }

    @Test(arguments: badURLs)
    func createWithABadURLIs422OnURLAndStoresNothing(url: String) async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            let answer = try await api.call(.post, "/api/v1/app/a/endpoint", json: ["url": url])
            #expect(answer.status == .unprocessableContent, "\(answer.text)")
            let item = try #require(Self.details(answer).first)
            #expect(item["loc"] as? [String] == ["body", "url"])
            #expect(item["type"] as? String == "value_error.url")
            #expect(item["msg"] as? String == EndpointURL.problem(url))
            let list = try await api.call(.get, "/api/v1/app/a/endpoint")
            #expect(list.data.isEmpty)
        }
    }

    @Test(arguments: badURLs)
    func updateAndPatchWithABadURLAre422AndKeepTheStoredURL(url: String) async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            _ = try await api.createEndpoint(app: "a", ["url": "https://example.com/hook", "uid": "main"])
            for method in [HTTPRequest.Method.put, .patch] {
                let answer = try await api.call(method, "/api/v1/app/a/endpoint/main", json: ["url": url])
                #expect(answer.status == .unprocessableContent, "\(method) \(answer.text)")
                #expect(answer.validationLocations == ["body.url"], "\(method) \(answer.text)")
            }
            let stored = try await api.call(.get, "/api/v1/app/a/endpoint/main")
            #expect(stored.object["url"] as? String == "https://example.com/hook")
        }
    }

    @Test(arguments: ["http://127.0.0.1:65535/", "https://example.com:1/x", "https://[::1]:8443/", "https://example.com/in?x=1#f"])
    func edgeValidURLsAreAccepted(url: String) async throws {
        try await withAPI { api in
            _ = try await api.createApp("A", uid: "a")
            let created = try await api.createEndpoint(app: "a", ["url": url])
            #expect(created["url"] as? String == url)
        }
    }
}
