import Foundation
import HeraldCore
import Hummingbird

/// `/api/v1/auth`: app-portal access (a token scoped to one application) and logout.
struct AuthController {
    let store: any HeraldStore
    let publicURL: String?
    let tokens: TokenCache

    func register(on group: RouterGroup<APIRequestContext>) {
        group.post("auth/app-portal-access/:app_id", use: appPortalAccess)
        group.post("auth/logout", use: logout)
    }

    @Sendable func appPortalAccess(_ request: Request, context: APIRequestContext) async throws -> Response {
        try context.requireAdmin()
        let ref = try context.parameters.require("app_id")
        var body = try await BodyReader.read(request)
        let toCreate = ApplicationController.readNested(&body)
        _ = body.stringArray("featureFlags", pattern: .identifier)
        try body.finish()
        var app = try await store.application(ref: ref)
        if app == nil, var toCreate {
            if toCreate.uid == nil, ApplicationID(parsing: ref) == nil { toCreate.uid = ref }
            try await store.createApplication(toCreate)
            app = toCreate
        }
        guard let app else { throw APIError.notFound("Application") }
        let token = APITokenText.generate()
        let now = Date()
        try await store.createToken(APIToken(hash: APITokenText.hash(token), scope: .application(app.id), createdAt: now,
                                             expiresAt: now.addingTimeInterval(7 * 86400)))
        let base = publicURL ?? "http://\(request.head.authority ?? "127.0.0.1")"
        struct AccessOut: Encodable { let token: String; let url: String }
        return try APIResponse.json(.ok, AccessOut(token: token, url: "\(base)/app-portal/\(app.id)#token=\(token)"))
    }

    @Sendable func logout(_ request: Request, context: APIRequestContext) async throws -> Response {
        if let principal = context.principal {
            try await store.deleteToken(id: principal.tokenID)
            tokens.forget(id: principal.tokenID)
        }
        return APIResponse.empty()
    }
}
