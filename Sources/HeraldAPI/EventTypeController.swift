import Foundation
import HeraldCore
import Hummingbird

/// `/api/v1/event-type`: CRUD with schemas; DELETE archives unless `expunge=true`.
struct EventTypeController {
    let store: any HeraldStore
    let limits: APILimits

    func register(on group: RouterGroup<APIRequestContext>) {
        group.get("event-type", use: list)
        group.post("event-type", use: create)
        group.get("event-type/:name", use: get)
        group.put("event-type/:name", use: update)
        group.patch("event-type/:name", use: patch)
        group.delete("event-type/:name", use: delete)
    }

    static func read(_ body: inout BodyReader, into eventType: inout EventType, partial: Bool) {
        if !partial || body.has("description") {
            if let description = body.string("description", required: true) { eventType.description = description }
        }
        if !partial || body.has("archived") { eventType.archived = body.bool("archived") ?? false }
        if !partial || body.has("deprecated") { eventType.deprecated = body.bool("deprecated") ?? false }
        if !partial || body.has("featureFlag") { eventType.featureFlag = body.string("featureFlag", minLength: 1, maxLength: 256, pattern: .identifier) }
        if !partial || body.has("schemas") {
            if body.has("schemas") && !body.isNull("schemas") {
                if let schemas = body.object["schemas"], schemas is [String: Any],
                   let data = try? JSONSerialization.data(withJSONObject: schemas, options: [.sortedKeys, .withoutEscapingSlashes]) {
                    eventType.schemas = [UInt8](data)
                } else {
                    body.fail("schemas", "value is not a valid dict", type: "type_error.dict")
                }
            } else {
                eventType.schemas = nil
            }
        }
    }

    static func response(_ eventType: EventType, status: HTTPResponse.Status = .ok, withContent: Bool = true) throws -> Response {
        let out = EventTypeOut(eventType: eventType, withContent: withContent)
        return try APIResponse.json(status, out, rawMembers: out.rawMembers)
    }

    func find(_ name: String) async throws -> EventType {
        guard let eventType = try await store.eventType(name: name) else { throw APIError.notFound("Event type") }
        return eventType
    }

    @Sendable func list(_ request: Request, context: APIRequestContext) async throws -> Response {
        var query = QueryReader(request)
        let page = query.page(defaultOrder: .ascending)
        let includeArchived = query.bool("include_archived", default: false)
        let withContent = query.bool("with_content", default: false)
        try query.finish()
        let result = try await store.listEventTypes(limits.bounded(page, withContent: withContent), includeArchived: includeArchived)
        return APIResponse.json(.ok, try ListOut.encode(result) {
            let out = EventTypeOut(eventType: $0, withContent: withContent)
            return try APIJSON.encode(out, rawMembers: out.rawMembers)
        })
    }

    @Sendable func create(_ request: Request, context: APIRequestContext) async throws -> Response {
        try context.requireAdmin()
        var body = try await BodyReader.read(request)
        let name = body.string("name", required: true, minLength: 1, maxLength: 256, pattern: .identifier)
        var eventType = EventType(name: name ?? "", description: "")
        Self.read(&body, into: &eventType, partial: false)
        try body.finish()
        try await create(eventType)
        return try Self.response(eventType, status: .created)
    }

    /// Creates within the event-type quota.
    func create(_ eventType: EventType) async throws {
        do {
            try await store.createEventType(eventType, limit: limits.maxEventTypes)
        } catch let error as StoreError where error.code == .limitExceeded {
            throw APILimits.eventTypesFull(limits.maxEventTypes)
        }
    }

    @Sendable func get(_ request: Request, context: APIRequestContext) async throws -> Response {
        try Self.response(try await find(context.parameters.require("name")))
    }

    @Sendable func update(_ request: Request, context: APIRequestContext) async throws -> Response {
        try context.requireAdmin()
        let name = try context.parameters.require("name")
        var body = try await BodyReader.read(request)
        if var eventType = try await store.eventType(name: name) {
            Self.read(&body, into: &eventType, partial: false)
            try body.finish()
            eventType.updatedAt = Date()
            try await store.updateEventType(eventType)
            return try Self.response(eventType)
        }
        guard IDPattern.identifier.matches(name), name.count <= 256 else {
            throw ValidationFailure(loc: ["path", "event_type_name"], "string does not match regex \"\(IDPattern.identifier)\"", type: "value_error.str.regex")
        }
        var eventType = EventType(name: name, description: "")
        Self.read(&body, into: &eventType, partial: false)
        try body.finish()
        try await create(eventType)
        return try Self.response(eventType, status: .created)
    }

    @Sendable func patch(_ request: Request, context: APIRequestContext) async throws -> Response {
        try context.requireAdmin()
        var eventType = try await find(context.parameters.require("name"))
        var body = try await BodyReader.read(request)
        Self.read(&body, into: &eventType, partial: true)
        try body.finish()
        eventType.updatedAt = Date()
        try await store.updateEventType(eventType)
        return try Self.response(eventType)
    }

    @Sendable func delete(_ request: Request, context: APIRequestContext) async throws -> Response {
        try context.requireAdmin()
        var query = QueryReader(request)
        let expunge = query.bool("expunge", default: false)
        try query.finish()
        var eventType = try await find(context.parameters.require("name"))
        if expunge {
            try await store.deleteEventType(name: eventType.name)
        } else {
            eventType.archived = true
            eventType.updatedAt = Date()
            try await store.updateEventType(eventType)
        }
        return APIResponse.empty()
    }
}
