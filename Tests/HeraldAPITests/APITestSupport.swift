import Foundation
import HeraldApp
import HeraldCore
import HeraldPostgres
import HeraldTesting
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Logging
import NIOCore
import Testing

let adminToken = "test_admin_token_0123456789"

/// A JSON answer from the API.
struct APIAnswer {
    let status: HTTPResponse.Status
    let headers: HTTPFields
    let raw: [UInt8]

    var json: Any? { raw.isEmpty ? nil : try? JSONSerialization.jsonObject(with: Data(raw), options: [.fragmentsAllowed]) }
    var object: [String: Any] { json as? [String: Any] ?? [:] }
    var data: [[String: Any]] { object["data"] as? [[String: Any]] ?? [] }
    var text: String { String(decoding: raw, as: UTF8.self) }

    /// The `loc` of each 422 item, joined with dots.
    var validationLocations: [String] {
        (object["detail"] as? [[String: Any]] ?? []).map { ($0["loc"] as? [String] ?? []).joined(separator: ".") }
    }
}

/// Drives the real application (real store) through Hummingbird's router test client.
struct APIClient {
    let client: any TestClientProtocol
    let server: HeraldServer

    var store: any HeraldStore { server.store }

    @discardableResult
    func call(_ method: HTTPRequest.Method, _ path: String, json: Any? = nil, rawBody: String? = nil,
              token: String? = adminToken, headers: [String: String] = [:]) async throws -> APIAnswer {
        var fields = HTTPFields()
        if let token { fields[.authorization] = "Bearer \(token)" }
        for (name, value) in headers { fields[HTTPField.Name(name)!] = value }
        var body: ByteBuffer?
        if let rawBody {
            body = ByteBuffer(string: rawBody)
        } else if let json {
            body = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json, options: [.fragmentsAllowed]))
        }
        if body != nil { fields[.contentType] = "application/json" }
        return try await client.execute(uri: path, method: method, headers: fields, body: body) { response in
            APIAnswer(status: response.status, headers: response.headers, raw: Array(response.body.readableBytesView))
        }
    }

    func createApp(_ name: String = "Acme", uid: String? = nil) async throws -> [String: Any] {
        var body: [String: Any] = ["name": name]
        if let uid { body["uid"] = uid }
        let answer = try await call(.post, "/api/v1/app", json: body)
        #expect(answer.status == .created, "\(answer.text)")
        return answer.object
    }

    func createEndpoint(app: String, _ body: [String: Any]) async throws -> [String: Any] {
        let answer = try await call(.post, "/api/v1/app/\(app)/endpoint", json: body)
        #expect(answer.status == .created, "\(answer.text)")
        return answer.object
    }

    func publish(app: String, _ body: [String: Any], headers: [String: String] = [:]) async throws -> APIAnswer {
        try await call(.post, "/api/v1/app/\(app)/msg", json: body, headers: headers)
    }
}

/// Runs `body` against a fresh Herald on an in-memory SQLite database, then again on a fresh
/// PostgreSQL schema when a test server is configured (`TestPostgres`): every API test checks both
/// stores.
func withAPI(configure: (inout HeraldConfiguration) -> Void = { _ in }, _ body: @escaping @Sendable (APIClient) async throws -> Void) async throws {
    try await withAPI(database: .sqliteMemory, configure: configure, body)
    if let url = TestPostgres.freshSchemaURL() {
        try await withAPI(database: .postgres(url), configure: configure, body)
    }
}

func withAPI(database: DatabaseLocation, configure: (inout HeraldConfiguration) -> Void = { _ in },
             _ body: @escaping @Sendable (APIClient) async throws -> Void) async throws {
    var configuration = HeraldConfiguration()
    configuration.database = database
    configuration.token = adminToken
    configuration.port = 0
    configuration.role = .api  // no dispatcher: these tests record attempts themselves
    configuration.mainKey = (0..<32).map { _ in UInt8.random(in: 0...255) }
    configure(&configuration)
    var logger = Logger(label: "herald.test")
    logger.logLevel = .warning
    let server = try await HeraldServer.build(configuration: configuration, logger: logger)
    do {
        try await server.application.test(.router) { client in
            try await body(APIClient(client: client, server: server))
        }
    } catch {
        await tearDown(server)
        throw error
    }
    await tearDown(server)
}

private func tearDown(_ server: HeraldServer) async {
    if let postgres = server.store as? PostgresStore { try? await postgres.dropSchema() }
    await server.close()
}
