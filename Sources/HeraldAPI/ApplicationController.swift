import Foundation
import HeraldCore
import Hummingbird

/// `/api/v1/app`: create (with `get_if_exists`), list, get, update (PUT creates), patch, delete.
struct ApplicationController {
    let store: any HeraldStore

    func register(on group: RouterGroup<APIRequestContext>) {
        group.get("app", use: list)
        group.post("app", use: create)
        group.get("app/:app_id", use: get)
        group.put("app/:app_id", use: update)
        group.patch("app/:app_id", use: patch)
        group.delete("app/:app_id", use: delete)
    }

    /// Reads ApplicationIn fields into `app` (PUT and POST replace every field).
    static func read(_ body: inout BodyReader, into app: inout Application, partial: Bool) {
        if !partial || body.has("name") {
            if let name = body.string("name", required: true, minLength: 1) { app.name = name }
        }
        if !partial || body.has("uid") { app.uid = body.string("uid", minLength: 1, maxLength: 256, pattern: .identifier) }
        if !partial || body.has("throttleRate") { app.throttleRate = body.int("throttleRate", min: partial ? 0 : 1, max: 65535) }
        if !partial || body.has("metadata") { app.metadata = body.stringMap("metadata") ?? [:] }
    }

    /// Reads the optional nested `application` object (ApplicationIn) of a message or portal request.
    static func readNested(_ body: inout BodyReader) -> Application? {
        guard var nested = body.nested("application") else { return nil }
        var app = Application(name: "")
        read(&nested, into: &app, partial: false)
        body.absorb(nested, under: "application")
        return app
    }

    @Sendable func list(_ request: Request, context: APIRequestContext) async throws -> Response {
        try context.requireAdmin()
        var query = QueryReader(request)
        let page = query.page(defaultOrder: .ascending)
        try query.finish()
        let result = try await store.listApplications(page)
        return APIResponse.json(.ok, try ListOut.encode(result) { try APIJSON.encode(ApplicationOut($0)) })
    }

    @Sendable func create(_ request: Request, context: APIRequestContext) async throws -> Response {
        try context.requireAdmin()
        var query = QueryReader(request)
        let getIfExists = query.bool("get_if_exists", default: false)
        try query.finish()
        var body = try await BodyReader.read(request)
        var app = Application(name: "")
        Self.read(&body, into: &app, partial: false)
        try body.finish()
        if let uid = app.uid, let existing = try await store.application(ref: uid) {
            if getIfExists { return try APIResponse.json(.ok, ApplicationOut(existing)) }
            throw APIError.conflict("An application with uid '\(uid)' already exists")
        }
        try await store.createApplication(app)
        return try APIResponse.json(.created, ApplicationOut(app))
    }

    @Sendable func get(_ request: Request, context: APIRequestContext) async throws -> Response {
        let app = try await resolveApplication(context.parameters.require("app_id"), store: store, context: context)
        return try APIResponse.json(.ok, ApplicationOut(app))
    }

    @Sendable func update(_ request: Request, context: APIRequestContext) async throws -> Response {
        let ref = try context.parameters.require("app_id")
        var body = try await BodyReader.read(request)
        if let existing = try await store.application(ref: ref) {
            _ = try await resolveApplication(ref, store: store, context: context)
            var app = existing
            Self.read(&body, into: &app, partial: false)
            try body.finish()
            app.updatedAt = Date()
            try await store.updateApplication(app)
            return try APIResponse.json(.ok, ApplicationOut(app))
        }
        try context.requireAdmin()
        var app = Application(name: "")
        Self.read(&body, into: &app, partial: false)
        try body.finish()
        if app.uid == nil, IDPattern.identifier.matches(ref), ApplicationID(parsing: ref) == nil { app.uid = ref }
        try await store.createApplication(app)
        return try APIResponse.json(.created, ApplicationOut(app))
    }

    @Sendable func patch(_ request: Request, context: APIRequestContext) async throws -> Response {
        var app = try await resolveApplication(context.parameters.require("app_id"), store: store, context: context)
        var body = try await BodyReader.read(request)
        Self.read(&body, into: &app, partial: true)
        try body.finish()
        app.updatedAt = Date()
        try await store.updateApplication(app)
        return try APIResponse.json(.ok, ApplicationOut(app))
    }

    @Sendable func delete(_ request: Request, context: APIRequestContext) async throws -> Response {
        let app = try await resolveApplication(context.parameters.require("app_id"), store: store, context: context)
        try context.requireAdmin()
        try await store.deleteApplication(app.id)
        return APIResponse.empty()
    }
}
