import Foundation
import HeraldCore
import Hummingbird

/// Admin tokens, shared by the API (`/api/v1/token`) and the CLI (`herald token …`).
///
/// ```swift
/// let (token, text) = try await AdminTokens.create(in: store, name: "ci", expiresAt: nil)
/// print(text)  // shown once: only its SHA-256 is stored
/// ```
public enum AdminTokens {
    /// Longest token name.
    public static let maxNameLength = 128

    /// Makes and stores a new admin token; returns it with its text (shown once).
    public static func create(in store: any HeraldStore, name: String, expiresAt: Date?, now: Date = Date()) async throws -> (APIToken, String) {
        let text = APITokenText.generate()
        let token = APIToken(hash: APITokenText.hash(text), scope: .admin, createdAt: now, expiresAt: expiresAt, name: name)
        try await store.createToken(token)
        return (token, text)
    }

    /// Every admin token, in id order (the store pages by 250).
    public static func all(in store: any HeraldStore) async throws -> [APIToken] {
        var result: [APIToken] = []
        var iterator: String?
        while true {
            let page = try await store.listAdminTokens(PageRequest(limit: 250, iterator: iterator))
            result += page.items
            if page.done || page.items.isEmpty { return result }
            iterator = page.iterator
        }
    }
}

/// An admin token as listed: never its text or hash.
public struct AdminTokenOut: Encodable, Sendable {
    public let id: String
    public let name: String
    public let scope = "admin"
    public let createdAt: Date
    public let expiresAt: Date?
    public let expired: Bool
    /// Only in the answer to a create: the token's text, shown once.
    public let token: String?

    public init(_ token: APIToken, text: String? = nil, now: Date = Date()) {
        id = token.id.rawValue
        name = token.name
        createdAt = token.createdAt
        expiresAt = token.expiresAt
        expired = token.expiresAt.map { $0 <= now } ?? false
        self.token = text
    }

    enum CodingKeys: String, CodingKey { case id, name, scope, createdAt, expiresAt, expired, token }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(name, forKey: .name)
        try container.encode(scope, forKey: .scope)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(expiresAt, forKey: .expiresAt)  // null when it never expires
        try container.encode(expired, forKey: .expired)
        try container.encodeIfPresent(token, forKey: .token)
    }
}

/// `/api/v1/token`: list, create and revoke admin tokens (Herald's own API; Svix has none). Admin only.
struct TokenController {
    let store: any HeraldStore
    let tokens: TokenCache

    func register(on group: RouterGroup<APIRequestContext>) {
        group.get("token", use: list)
        group.post("token", use: create)
        group.delete("token/:token_id", use: revoke)
    }

    @Sendable func list(_ request: Request, context: APIRequestContext) async throws -> Response {
        try context.requireAdmin()
        var query = QueryReader(request)
        let page = query.page(defaultOrder: .ascending)
        try query.finish()
        let now = Date()
        let result = try await store.listAdminTokens(page)
        return APIResponse.json(.ok, try ListOut.encode(result) { try APIJSON.encode(AdminTokenOut($0, now: now)) })
    }

    @Sendable func create(_ request: Request, context: APIRequestContext) async throws -> Response {
        try context.requireAdmin()
        var body = try await BodyReader.read(request)
        let name = body.string("name", required: true, minLength: 1, maxLength: AdminTokens.maxNameLength)
        let expiresAt = body.date("expiresAt")
        let now = Date()
        if let expiresAt, expiresAt <= now { body.fail("expiresAt", "must be in the future", type: "value_error") }
        try body.finish()
        let (token, text) = try await AdminTokens.create(in: store, name: name ?? "", expiresAt: expiresAt, now: now)
        context.logger.notice("admin token created", metadata: ["herald.token.id": "\(token.id)"])
        return try APIResponse.json(.created, AdminTokenOut(token, text: text, now: now))
    }

    @Sendable func revoke(_ request: Request, context: APIRequestContext) async throws -> Response {
        try context.requireAdmin()
        let id = TokenID(rawValue: try context.parameters.require("token_id"))
        guard try await store.revokeAdminToken(id: id) else { throw APIError.notFound("Token") }
        tokens.forget(id: id)
        context.logger.notice("admin token revoked", metadata: ["herald.token.id": "\(id)"])
        return APIResponse.empty()
    }
}
