import AsyncHTTPClient
import Foundation
import HeraldCLI
import NIOCore
import NIOHTTP1

/// The few REST calls a scenario makes to set up (Svix-compatible API, bearer token), each bounded
/// in time. Bulk publishing goes through `BenchPublisher` instead.
struct ScenarioAPI: Sendable {
    let client: HTTPClient
    let base: String
    let token: String

    func call(_ method: HTTPMethod, _ path: String, _ body: [String: Any], expect: ClosedRange<UInt> = 200...299,
              timeout: Duration = .seconds(30)) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        request.headers.add(name: "authorization", value: "Bearer \(token)")
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        let response: HTTPClientResponse
        let data: ByteBuffer
        do {
            response = try await client.execute(request, timeout: .nanoseconds(Int64(timeout / .nanoseconds(1))))
            data = try await response.body.collect(upTo: 1 << 20)
        } catch {
            throw BenchError("\(method) \(path): \(HTTPFailure.describe(error))")
        }
        guard expect.contains(response.status.code) else {
            throw BenchError("\(method) \(path) answered \(response.status.code): \(String(buffer: data).prefix(200))")
        }
        return (try? JSONSerialization.jsonObject(with: Data(buffer: data)) as? [String: Any]) ?? [:]
    }

    /// Creates an application; returns its id.
    func createApplication(name: String) async throws -> String {
        let app = try await call(.POST, "/api/v1/app", ["name": name])
        guard let id = app["id"] as? String else { throw BenchError("the created application has no id") }
        return id
    }

    /// Creates an endpoint; `eventType` limits it to that one event type (so a message can be
    /// aimed at one endpoint of an application). Returns its id.
    func createEndpoint(app: String, url: String, eventType: String? = nil) async throws -> String {
        var body: [String: Any] = ["url": url]
        if let eventType { body["filterTypes"] = [eventType] }
        let endpoint = try await call(.POST, "/api/v1/app/\(app)/endpoint", body)
        guard let id = endpoint["id"] as? String else { throw BenchError("the created endpoint has no id") }
        return id
    }

    /// Publishes one message; throws unless it is answered 202.
    func publish(app: String, eventType: String, index: Int) async throws {
        _ = try await call(.POST, "/api/v1/app/\(app)/msg", ["eventType": eventType, "payload": ["i": index]], expect: 202...202)
    }

    static func makeClient() -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(30))
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 16)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }
}

/// The body of a publish request whose payload starts with `{"i":index` (what the receiver reads).
func publishBody(eventType: String, index: Int) -> [UInt8] {
    Array(#"{"eventType":"\#(eventType)","payload":{"i":\#(index),"bench":true}}"#.utf8)
}

/// Runs `work` for indices `0..<count`, at most `inFlight` at once: fill the slots, wait for one, refill.
func forEachConcurrently(_ count: Int, inFlight: Int, _ work: @escaping @Sendable (Int) async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        var next = 0
        func add() {
            let index = next
            next += 1
            group.addTask { try await work(index) }
        }
        for _ in 0..<min(inFlight, count) { add() }
        while try await group.next() != nil { if next < count { add() } }
    }
}
