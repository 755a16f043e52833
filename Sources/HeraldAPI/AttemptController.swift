import Foundation
import HeraldCore
import Hummingbird

/// Attempt listings: by endpoint, by message, and an endpoint's attempted messages.
struct AttemptController {
    let store: any HeraldStore
    let limits: APILimits

    func register(on group: RouterGroup<APIRequestContext>) {
        group.get("app/:app_id/attempt/endpoint/:endpoint_id", use: listByEndpoint)
        group.get("app/:app_id/attempt/msg/:msg_id", use: listByMessage)
        group.get("app/:app_id/endpoint/:endpoint_id/msg", use: listAttemptedMessages)
    }

    static func attemptFilter(_ query: inout QueryReader) -> AttemptFilter {
        var filter = AttemptFilter(message: MessageController.messageFilter(&query))
        if let text = query.string("status") {
            if let raw = Int(text), let status = DeliveryStatus(rawValue: raw) { filter.status = status }
            else { query.fail("status", "value is not a valid enumeration member; permitted: 0, 1, 2, 3", type: "type_error.enum") }
        }
        if let text = query.string("status_code_class") {
            if let raw = Int(text), [0, 100, 200, 300, 400, 500].contains(raw) { filter.statusCodeClass = raw }
            else { query.fail("status_code_class", "value is not a valid enumeration member; permitted: 0, 100, 200, 300, 400, 500", type: "type_error.enum") }
        }
        return filter
    }

    func listPage(_ app: Application, filter: AttemptFilter, page: PageRequest) async throws -> Response {
        let result = try await store.listAttempts(app: app.id, filter: filter, limits.bounded(page))
        return APIResponse.json(.ok, try ListOut.encode(result) { try APIJSON.encode(MessageAttemptOut(attempt: $0)) })
    }

    @Sendable func listByEndpoint(_ request: Request, context: APIRequestContext) async throws -> Response {
        let app = try await resolveApplication(context.parameters.require("app_id"), store: store, context: context)
        guard let endpoint = try await store.endpoint(app: app.id, ref: context.parameters.require("endpoint_id")) else {
            throw APIError.notFound("Endpoint")
        }
        var query = QueryReader(request)
        let page = query.page(defaultOrder: .descending)
        var filter = Self.attemptFilter(&query)
        _ = query.bool("with_content", default: true)
        try query.finish()
        filter.endpointID = endpoint.id
        return try await listPage(app, filter: filter, page: page)
    }

    @Sendable func listByMessage(_ request: Request, context: APIRequestContext) async throws -> Response {
        let app = try await resolveApplication(context.parameters.require("app_id"), store: store, context: context)
        guard let message = try await store.message(app: app.id, ref: context.parameters.require("msg_id")) else {
            throw APIError.notFound("Message")
        }
        var query = QueryReader(request)
        let page = query.page(defaultOrder: .descending)
        var filter = Self.attemptFilter(&query)
        _ = query.bool("with_content", default: true)
        let endpointRef = query.string("endpoint_id")
        try query.finish()
        filter.messageID = message.id
        if let endpointRef {
            guard let endpoint = try await store.endpoint(app: app.id, ref: endpointRef) else { throw APIError.notFound("Endpoint") }
            filter.endpointID = endpoint.id
        }
        return try await listPage(app, filter: filter, page: page)
    }

    @Sendable func listAttemptedMessages(_ request: Request, context: APIRequestContext) async throws -> Response {
        let app = try await resolveApplication(context.parameters.require("app_id"), store: store, context: context)
        guard let endpoint = try await store.endpoint(app: app.id, ref: context.parameters.require("endpoint_id")) else {
            throw APIError.notFound("Endpoint")
        }
        var query = QueryReader(request)
        let page = query.page(defaultOrder: .descending)
        let filter = Self.attemptFilter(&query)
        let withContent = query.bool("with_content", default: true)
        try query.finish()
        let result = try await store.listDeliveredMessages(app: app.id, endpoint: endpoint.id, status: filter.status, filter: filter.message,
                                                           limits.bounded(page, withContent: withContent))
        return APIResponse.json(.ok, try ListOut.encode(result) {
            MessageOut(message: $0.message, delivery: $0.delivery).json(withContent: withContent)
        })
    }
}
