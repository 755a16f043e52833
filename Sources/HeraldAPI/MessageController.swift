import Foundation
import HeraldCore
import Hummingbird
import Metrics

/// `/api/v1/app/{app}/msg`: publish, list, get by id or eventId, expunge content; plus the
/// message's destinations, attempts and resend.
struct MessageController {
    let store: any HeraldStore
    let maxPayloadBytes: Int
    let onNewWork: @Sendable () -> Void
    let handOver: (any DeliveryHandOver)?
    let limits: APILimits
    let applications: ApplicationCache
    /// Made once (after `MetricsSystem.bootstrap`), not looked up by name on every publish.
    let published = Counter(label: "herald_messages_published_total")

    func register(on group: RouterGroup<APIRequestContext>) {
        group.post("app/:app_id/msg", use: create)
        group.get("app/:app_id/msg", use: list)
        group.get("app/:app_id/msg/:msg_id", use: get)
        group.delete("app/:app_id/msg/:msg_id/content", use: expungeContent)
        group.get("app/:app_id/msg/:msg_id/endpoint", use: listDestinations)
        group.post("app/:app_id/msg/:msg_id/endpoint/:endpoint_id/resend", use: resend)
        group.get("app/:app_id/msg/:msg_id/attempt/:attempt_id", use: getAttempt)
        group.delete("app/:app_id/msg/:msg_id/attempt/:attempt_id/content", use: expungeAttemptContent)
    }

    static func response(_ message: Message, status: HTTPResponse.Status = .ok, withContent: Bool) -> Response {
        APIResponse.json(status, MessageOut(message: message).json(withContent: withContent))
    }

    func findMessage(_ context: APIRequestContext) async throws -> (Application, Message) {
        let app = try await resolveApplication(context.parameters.require("app_id"), store: store, context: context)
        guard let message = try await store.message(app: app.id, ref: context.parameters.require("msg_id")) else {
            throw APIError.notFound("Message")
        }
        return (app, message)
    }

    @Sendable func create(_ request: Request, context: APIRequestContext) async throws -> Response {
        let appRef = try context.parameters.require("app_id")
        var query = QueryReader(request)
        let withContent = query.bool("with_content", default: true)
        try query.finish()
        var body = try await BodyReader.read(request, limit: maxPayloadBytes + 64 * 1024)

        let eventType = body.string("eventType", required: true, minLength: 1, maxLength: 256, pattern: .identifier)
        let eventID = body.string("eventId", minLength: 1, maxLength: 256, pattern: .identifier)
        let channels = body.stringArray("channels", maxItems: 10, pattern: .channel, itemMaxLength: 128)
        let retentionDays = body.int("payloadRetentionPeriod", min: 5, max: 90) ?? 90
        var payload: [UInt8]?
        if !body.has("payload") || body.isNull("payload") {
            body.fail("payload", "field required", type: "value_error.missing")
        } else if !(body.object["payload"] is [String: Any]) {
            body.fail("payload", "value is not a valid dict", type: "type_error.dict")
        } else if let raw = RawJSONScanner.topLevelMembers(body.raw)?["payload"] {
            payload = Array(raw)
        } else {
            body.fail("payload", "value is not a valid dict", type: "type_error.dict")
        }
        if let payload, payload.count > maxPayloadBytes {
            throw APIError.payloadTooLarge("Payload is \(payload.count) bytes; the limit is \(maxPayloadBytes) bytes")
        }
        var applicationToCreate = ApplicationController.readNested(&body)
        try body.finish()

        var appID: ApplicationID
        if let app = try await applications.application(ref: appRef, store: store) {
            if case .application(let allowed, _) = context.principal, allowed != app.id { throw APIError.notFound("Application") }
            appID = app.id
        } else {
            guard var toCreate = applicationToCreate else { throw APIError.notFound("Application") }
            try context.requireAdmin()
            if toCreate.uid == nil, ApplicationID(parsing: appRef) == nil { toCreate.uid = appRef }
            applicationToCreate = toCreate
            appID = toCreate.id
        }

        let now = Date()
        let message = Message(appID: appID, eventID: eventID, eventType: eventType ?? "", payload: payload, channels: (channels?.isEmpty ?? true) ? nil : channels,
                              createdAt: now, payloadExpiresAt: now.addingTimeInterval(TimeInterval(retentionDays) * 86400))
        // The answer is known before the write, so the idempotency record commits with the message.
        var record: IdempotencyRecord?
        let bytes = MessageOut(message: message).json(withContent: withContent)
        if let key = context.idempotencyKey {
            record = IdempotencyRecord(key: key, statusCode: 202, body: bytes, createdAt: now, expiresAt: now.addingTimeInterval(IdempotencyMiddleware.lifetime))
        }
        let result: PublishResult
        let lease = handOver?.leaseForNewDeliveries()
        do {
            result = try await store.publish(PublishRequest(message: message, applicationToCreate: applicationToCreate, idempotency: record,
                                                            claimUntil: lease, claimExcept: lease == nil ? [] : handOver?.busyEndpoints() ?? []))
        } catch let error as StoreError where error.code == .conflict {
            // Another node stored the same idempotency key first: replay its answer.
            if let key = context.idempotencyKey, let existing = try await store.idempotencyRecord(key: key, now: now) {
                return IdempotencyMiddleware.replay(existing)
            }
            if let eventID { throw APIError.conflict("A message with eventId '\(eventID)' already exists") }
            throw error
        }
        published.increment()
        if !result.deliveries.isEmpty {
            let claimed = result.deliveries.filter { $0.status == .sending }
            if claimed.count < result.deliveries.count {
                onNewWork()  // stored pending (no room, or their endpoint is busy): for a claim
            }
            if !claimed.isEmpty, handOver?.take(claimed, of: result.message) != true {
                // The dispatcher stopped meanwhile: let any worker claim them now, not after the lease.
                try? await store.releaseClaims(claimed)
                onNewWork()
            }
        }
        context.logger.debug("message published", metadata: [
            "herald.message.id": "\(result.message.id)", "herald.app.id": "\(result.message.appID)",
            "herald.deliveries": "\(result.deliveries.count)",
        ])
        guard result.message.appID == message.appID else {
            return Self.response(result.message, status: .accepted, withContent: withContent)
        }
        var response = APIResponse.json(.accepted, bytes)
        if record != nil { response.headers[IdempotencyMiddleware.storedMarker] = "1" }
        return response
    }

    static func messageFilter(_ query: inout QueryReader) -> MessageFilter {
        MessageFilter(
            eventTypes: query.strings("event_types"),
            channel: query.string("channel"),
            before: query.date("before"),
            after: query.date("after")
        )
    }

    @Sendable func list(_ request: Request, context: APIRequestContext) async throws -> Response {
        let app = try await resolveApplication(context.parameters.require("app_id"), store: store, context: context)
        var query = QueryReader(request)
        let page = query.page(defaultOrder: .descending)
        let filter = Self.messageFilter(&query)
        let withContent = query.bool("with_content", default: true)
        try query.finish()
        // Bounded in bytes; without content the store reads no payloads at all.
        let result = try await store.listMessages(app: app.id, filter: filter, limits.bounded(page, withContent: withContent))
        return APIResponse.json(.ok, try ListOut.encode(result) {
            MessageOut(message: $0).json(withContent: withContent)
        })
    }

    @Sendable func get(_ request: Request, context: APIRequestContext) async throws -> Response {
        var query = QueryReader(request)
        let withContent = query.bool("with_content", default: true)
        try query.finish()
        let (_, message) = try await findMessage(context)
        return Self.response(message, withContent: withContent)
    }

    @Sendable func expungeContent(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (app, message) = try await findMessage(context)
        try await store.expungeMessagePayload(app: app.id, id: message.id)
        return APIResponse.empty()
    }

    @Sendable func listDestinations(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (app, message) = try await findMessage(context)
        var query = QueryReader(request)
        let page = query.page(defaultOrder: .ascending)
        try query.finish()
        let result = try await store.listDestinations(app: app.id, message: message.id, page)
        return APIResponse.json(.ok, try ListOut.encode(result) { try APIJSON.encode(MessageEndpointOut(destination: $0)) })
    }

    @Sendable func resend(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (app, message) = try await findMessage(context)
        guard let endpoint = try await store.endpoint(app: app.id, ref: context.parameters.require("endpoint_id")) else {
            throw APIError.notFound("Endpoint")
        }
        try await store.resend(app: app.id, message: message.id, endpoint: endpoint.id, now: Date())
        onNewWork()
        return try APIResponse.json(.accepted, [String: String]())  // Svix's EmptyResponse: {}
    }

    func findAttempt(_ context: APIRequestContext) async throws -> (Application, Message, Attempt) {
        let (app, message) = try await findMessage(context)
        let attemptID = AttemptID(rawValue: try context.parameters.require("attempt_id"))
        guard let attempt = try await store.attempt(app: app.id, message: message.id, id: attemptID) else {
            throw APIError.notFound("Message attempt")
        }
        return (app, message, attempt)
    }

    @Sendable func getAttempt(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (_, _, attempt) = try await findAttempt(context)
        return try APIResponse.json(.ok, MessageAttemptOut(attempt: attempt))
    }

    @Sendable func expungeAttemptContent(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (app, message, attempt) = try await findAttempt(context)
        try await store.expungeAttemptResponse(app: app.id, message: message.id, id: attempt.id)
        return APIResponse.empty()
    }
}
