import Foundation
import Hummingbird
import Testing

@Suite("API: health, auth, applications")
struct ApplicationAPITests {
    @Test func healthNeedsNoToken() async throws {
        try await withAPI { api in
            let r1 = try await api.call(.get, "/api/v1/health", token: nil)
            #expect(r1.status == .noContent)
            let r2 = try await api.call(.get, "/api/v1/health/ping", token: nil)
            #expect(r2.status == .noContent)
        }
    }

    @Test func missingOrWrongTokenGets401JSON() async throws {
        try await withAPI { api in
            for token in [nil, "wrong-token-value"] as [String?] {
                let answer = try await api.call(.get, "/api/v1/app", token: token)
                #expect(answer.status == .unauthorized)
                #expect(answer.object["code"] as? String == "authentication_failed")
                #expect((answer.object["detail"] as? String)?.isEmpty == false)
            }
            let basic = try await api.call(.get, "/api/v1/app", token: nil, headers: ["authorization": "Basic abc"])
            #expect(basic.status == .unauthorized)
            // Blanks around the token are not part of it; a blank token is no token.
            let padded = try await api.call(.get, "/api/v1/app", token: nil, headers: ["authorization": "Bearer \t \(adminToken) \t"])
            #expect(padded.status == .ok)
            let blank = try await api.call(.get, "/api/v1/app", token: nil, headers: ["authorization": "Bearer  \t "])
            #expect(blank.status == .unauthorized)
        }
    }

    @Test func unknownRouteIsJSON404() async throws {
        try await withAPI { api in
            let answer = try await api.call(.get, "/api/v1/nothing-here")
            #expect(answer.status == .notFound)
            #expect(answer.object["code"] as? String != nil)
        }
    }

    @Test func createGetByIdAndUidUpdatePatchDelete() async throws {
        try await withAPI { api in
            let created = try await api.createApp("Acme", uid: "acme")
            let id = try #require(created["id"] as? String)
            #expect(id.hasPrefix("app_"))
            #expect(created["metadata"] as? [String: String] == [:])
            #expect(created["createdAt"] is String && created["updatedAt"] is String)
            let r3 = try await api.call(.get, "/api/v1/app/\(id)")
            #expect(r3.object["uid"] as? String == "acme")
            let r4 = try await api.call(.get, "/api/v1/app/acme")
            #expect(r4.object["id"] as? String == id)

            let put = try await api.call(.put, "/api/v1/app/acme", json: ["name": "Acme 2", "uid": "acme", "metadata": ["tier": "gold"]])
            #expect(put.status == .ok)
            #expect(put.object["name"] as? String == "Acme 2")
            #expect(put.object["metadata"] as? [String: String] == ["tier": "gold"])

            let patched = try await api.call(.patch, "/api/v1/app/\(id)", json: ["throttleRate": 10])
            #expect(patched.status == .ok)
            #expect(patched.object["name"] as? String == "Acme 2")
            #expect(patched.object["throttleRate"] as? Int == 10)

            let r5 = try await api.call(.delete, "/api/v1/app/acme")
            #expect(r5.status == .noContent)
            let gone = try await api.call(.get, "/api/v1/app/\(id)")
            #expect(gone.status == .notFound)
            #expect(gone.object["code"] as? String == "not_found")
        }
    }

    @Test func putCreatesAMissingApplicationWithThePathAsUid() async throws {
        try await withAPI { api in
            let answer = try await api.call(.put, "/api/v1/app/new-customer", json: ["name": "New"])
            #expect(answer.status == .created)
            #expect(answer.object["uid"] as? String == "new-customer")
            let r6 = try await api.call(.get, "/api/v1/app/new-customer")
            #expect(r6.status == .ok)
        }
    }

    @Test func duplicateUidIs409UnlessGetIfExists() async throws {
        try await withAPI { api in
            let first = try await api.createApp("One", uid: "dup")
            let again = try await api.call(.post, "/api/v1/app", json: ["name": "Two", "uid": "dup"])
            #expect(again.status == .conflict)
            #expect(again.object["code"] as? String == "conflict")
            let existing = try await api.call(.post, "/api/v1/app?get_if_exists=true", json: ["name": "Two", "uid": "dup"])
            #expect(existing.status == .ok)
            #expect(existing.object["id"] as? String == first["id"] as? String)
            #expect(existing.object["name"] as? String == "One")
        }
    }

    @Test func invalidFieldsGet422NamingEachField() async throws {
        try await withAPI { api in
            let answer = try await api.call(.post, "/api/v1/app", json: ["uid": "not valid!", "throttleRate": 0, "metadata": ["k": 1]])
            #expect(answer.status == .unprocessableContent)
            #expect(Set(answer.validationLocations) == ["body.name", "body.uid", "body.throttleRate", "body.metadata.k"])
            let items = answer.object["detail"] as? [[String: Any]] ?? []
            #expect(items.allSatisfy { $0["msg"] is String && $0["type"] is String })
            let r7 = try await api.call(.get, "/api/v1/app")
            #expect(r7.data.isEmpty)
        }
    }

    @Test func malformedJSONIs400AndNonObjectIs422() async throws {
        try await withAPI { api in
            let malformed = try await api.call(.post, "/api/v1/app", rawBody: "{\"name\": ")
            #expect(malformed.status == .badRequest)
            #expect(malformed.object["code"] as? String == "bad_request")
            let array = try await api.call(.post, "/api/v1/app", rawBody: "[1,2]")
            #expect(array.status == .unprocessableContent)
        }
    }

    @Test func listPagesWithIteratorsBothWays() async throws {
        try await withAPI { api in
            var ids: [String] = []
            for index in 0..<5 { ids.append(try await api.createApp("App \(index)")["id"] as! String) }
            let first = try await api.call(.get, "/api/v1/app?limit=2")
            #expect(first.data.map { $0["id"] as! String } == Array(ids[0..<2]))
            #expect(first.object["done"] as? Bool == false)
            let iterator = try #require(first.object["iterator"] as? String)
            let second = try await api.call(.get, "/api/v1/app?limit=2&iterator=\(iterator)")
            #expect(second.data.map { $0["id"] as! String } == Array(ids[2..<4]))
            let prev = try #require(second.object["prevIterator"] as? String)
            let back = try await api.call(.get, "/api/v1/app?limit=2&iterator=\(prev)")
            #expect(back.data.map { $0["id"] as! String } == Array(ids[0..<2]))
            let last = try await api.call(.get, "/api/v1/app?limit=2&iterator=\(second.object["iterator"] as! String)")
            #expect(last.data.map { $0["id"] as! String } == [ids[4]])
            #expect(last.object["done"] as? Bool == true)
            let descending = try await api.call(.get, "/api/v1/app?order=descending&limit=250")
            #expect(descending.data.map { $0["id"] as! String } == ids.reversed())
            let r8 = try await api.call(.get, "/api/v1/app?limit=251")
            #expect(r8.status == .unprocessableContent)
            let r9 = try await api.call(.get, "/api/v1/app?order=sideways")
            #expect(r9.status == .unprocessableContent)
        }
    }
}
