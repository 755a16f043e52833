public import Hummingbird
public import WebhookSignature
import NIOCore
import Foundation

/// Verifies the webhooks a route receives before its handler runs.
///
/// Reads the raw body (up to `maxBodySize`, 413 beyond it), verifies it with the scheme you
/// choose, and answers a failure with 401 and `{"error": "<code>", "message": "<why>"}`. With a
/// deduplicator, a webhook id that was already processed gets `200 {"duplicate": true}` and the
/// handler does not run again; a copy that arrives while another copy of the same id is still being
/// handled gets `409 {"error": "in_progress"}` with `Retry-After: 5`, so the sender tries again
/// rather than recording a success that the first copy may yet fail. The id counts as processed
/// only once the handler answered 2xx; if it throws or answers non-2xx the id is forgotten so the
/// sender's retry is processed. The handler reads the exact verified bytes from `request.body`,
/// and `context.webhook` tells what was verified.
///
/// ```swift
/// let router = Router(context: BasicWebhookRequestContext.self)
/// router.group("webhooks")
///     .add(middleware: WebhookVerificationMiddleware(
///         verifier: try StandardWebhook(keys: ["whsec_…"]),
///         deduplicator: InMemoryWebhookDeduplicator()))
///     .post { request, context in
///         let body = try await request.body.collect(upTo: .max)
///         …
///         return HTTPResponse.Status.noContent
///     }
/// ```
public struct WebhookVerificationMiddleware<Context: WebhookRequestContext>: RouterMiddleware {
    public struct Configuration: Sendable {
        /// Largest body accepted, in bytes. Larger requests get 413.
        public var maxBodySize: Int
        public init(maxBodySize: Int = 1 << 20) { self.maxBodySize = maxBodySize }
    }

    let verifier: any WebhookVerifier
    let deduplicator: (any WebhookDeduplicator)?
    let configuration: Configuration
    let now: @Sendable () -> Date

    public init(
        verifier: any WebhookVerifier,
        deduplicator: (any WebhookDeduplicator)? = nil,
        configuration: Configuration = .init(),
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.verifier = verifier
        self.deduplicator = deduplicator
        self.configuration = configuration
        self.now = now
    }

    public func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let receivedAt = now()
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: configuration.maxBodySize)
        } catch is NIOTooManyBytesError {
            return Self.json(.contentTooLarge, ["error": "payload_too_large", "message": "body is larger than \(configuration.maxBodySize) bytes"])
        }

        let headers = WebhookHeaders(request.headers.map { ($0.name.canonicalName, $0.value) })
        let verified: VerifiedWebhook
        do {
            verified = try verifier.verify(payload: Array(body.readableBytesView), headers: headers, now: receivedAt)
        } catch {
            context.logger.info("webhook rejected", metadata: ["herald.webhook.reason": "\(error.code)"])
            return Self.json(.unauthorized, ["error": error.code.description, "message": error.message])
        }

        var context = context
        context.webhook = verified
        guard let deduplicator, let id = verified.id else {
            return try await next(request, context)
        }
        switch await deduplicator.claim(id, now: receivedAt) {
        case .processed:
            context.logger.info("duplicate webhook ignored", metadata: ["herald.webhook.id": "\(id)"])
            return Self.json(.ok, ["duplicate": true])
        case .inProgress:
            context.logger.info("webhook still being processed; asked to retry", metadata: ["herald.webhook.id": "\(id)"])
            var response = Self.json(.conflict, ["error": "in_progress", "message": "another copy of this webhook is being processed; retry later"])
            response.headers[.retryAfter] = "5"
            return response
        case .new:
            break
        }
        do {
            let response = try await next(request, context)
            if (200..<300).contains(response.status.code) {
                await deduplicator.complete(id, now: now())
            } else {
                await deduplicator.forget(id)
            }
            return response
        } catch {
            await deduplicator.forget(id)
            throw error
        }
    }

    static func json(_ status: HTTPResponse.Status, _ object: [String: any Sendable]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(
            status: status,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}
