import Foundation
import HeraldCore
import HTTPTypes
import Hummingbird
import NIOCore

/// Serializes work per key inside this process: a concurrent duplicate waits for the first.
actor KeyedLock {
    private var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]

    func lock(_ key: String) async {
        if waiters[key] == nil {
            waiters[key] = []
            return
        }
        await withCheckedContinuation { waiters[key]!.append($0) }
    }

    func unlock(_ key: String) {
        guard var queue = waiters[key] else { return }
        if queue.isEmpty {
            waiters[key] = nil
        } else {
            let next = queue.removeFirst()
            waiters[key] = queue
            next.resume()
        }
    }
}

/// `Idempotency-Key` on POST: the first successful (2xx) response is stored for 12 hours and
/// replayed byte for byte to a repeat; a concurrent repeat waits for the first to finish.
/// Keys are scoped to the token, method and path.
struct IdempotencyMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    static let lifetime: TimeInterval = 12 * 3600
    let store: any HeraldStore
    let locks: KeyedLock

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method == .post, let key = request.headers[HTTPField.Name("idempotency-key")!], !key.isEmpty else {
            return try await next(request, context)
        }
        guard key.utf8.count <= 256 else {
            throw ValidationFailure([.init(loc: ["header", "idempotency-key"], msg: "ensure this value has at most 256 characters", type: "value_error")])
        }
        let scoped = "\(context.principal?.tokenID.rawValue ?? "-") POST \(request.uri.path) \(key)"
        await locks.lock(scoped)
        do {
            let response = try await run(scoped, request: request, context: context, next: next)
            await locks.unlock(scoped)
            return response
        } catch {
            await locks.unlock(scoped)
            throw error
        }
    }

    private func run(_ scoped: String, request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let now = Date()
        if let record = try await store.idempotencyRecord(key: scoped, now: now) {
            return Self.replay(record)
        }
        var context = context
        context.idempotencyKey = scoped
        var response = try await next(request, context)
        guard (200..<300).contains(response.status.code) else { return response }
        // A handler that stored the record in its own transaction (message create) says so: no second write.
        if response.headers[Self.storedMarker] != nil {
            response.headers[Self.storedMarker] = nil
            return response
        }
        // Keep the body to store it, and answer with the same bytes.
        let writer = CollectingBodyWriter(buffer: ByteBuffer())
        try await response.body.write(writer)
        let collected = await writer.storage.buffer
        let bytes = Array(collected.readableBytesView)
        // First wins: a concurrent node's record is kept.
        try await store.saveIdempotencyRecord(IdempotencyRecord(
            key: scoped, statusCode: Int(response.status.code), body: bytes, createdAt: now, expiresAt: now.addingTimeInterval(Self.lifetime)))
        response.body = .init(byteBuffer: collected)
        return response
    }

    /// Set by a handler that stored the idempotency record itself; removed before the answer leaves.
    static let storedMarker = HTTPField.Name("x-herald-idempotency-stored")!

    static func replay(_ record: IdempotencyRecord) -> Response {
        var headers: HTTPFields = [:]
        if !record.body.isEmpty { headers[.contentType] = "application/json" }
        headers[HTTPField.Name("idempotent-replayed")!] = "true"
        return Response(status: .init(code: record.statusCode), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: record.body)))
    }
}

/// Collects a response body into memory.
/// `@unchecked Sendable` is not needed: the only state is an actor.
final class CollectingBodyWriter: ResponseBodyWriter, Sendable {
    actor Storage {
        var buffer: ByteBuffer
        init(_ buffer: ByteBuffer) { self.buffer = buffer }
        func append(_ other: ByteBuffer) { var other = other; buffer.writeBuffer(&other) }
    }
    let storage: Storage

    init(buffer: ByteBuffer) { self.storage = Storage(buffer) }

    func write(_ buffer: ByteBuffer) async throws { await storage.append(buffer) }
    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
