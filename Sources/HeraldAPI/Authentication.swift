import Crypto
import Foundation
import HeraldCore
import Hummingbird
import NIOConcurrencyHelpers

/// API tokens: random text handed out once; only its SHA-256 is stored.
public enum APITokenText {
    /// A new token: `sk_herald_` and 32 random bytes in base64url.
    public static func generate() -> String {
        let bytes = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
        let text = bytes.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        return "sk_herald_" + text
    }

    public static func hash(_ token: String) -> [UInt8] {
        Array(SHA256.hash(data: Data(token.utf8)))
    }
}

/// Authenticates `Authorization: Bearer <token>` against the stored token hashes.
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let store: any HeraldStore
    let cache: TokenCache

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else { throw APIError.unauthorized }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw APIError.unauthorized }
        var token = parts[1]  // trimmed by hand: Foundation's trimmingCharacters showed in profiles
        while let first = token.first, first == " " || first == "\t" { token = token.dropFirst() }
        while let last = token.last, last == " " || last == "\t" { token = token.dropLast() }
        guard !token.isEmpty else { throw APIError.unauthorized }
        let hash = APITokenText.hash(String(token))
        let stored: APIToken
        if let cached = cache.token(hash: hash) {
            stored = cached
        } else {
            guard let found = try await store.token(hash: hash) else { throw APIError.unauthorized }
            cache.remember(found)
            stored = found
        }
        if let expiresAt = stored.expiresAt, expiresAt <= Date() { throw APIError.unauthorized }
        var context = context
        switch stored.scope {
        case .admin: context.principal = .admin(stored.id)
        case .application(let app): context.principal = .application(app, stored.id)
        }
        return try await next(request, context)
    }
}

extension APIRequestContext {
    /// Throws 403 unless the caller is an admin.
    func requireAdmin() throws {
        guard case .admin = principal else { throw APIError.forbidden }
    }
}

/// Finds the application a path names (id or uid) that the caller may see; 404 otherwise.
func resolveApplication(_ ref: String, store: any HeraldStore, context: APIRequestContext) async throws -> Application {
    guard let app = try await store.application(ref: ref) else { throw APIError.notFound("Application") }
    if case .application(let allowed, _) = context.principal, allowed != app.id { throw APIError.notFound("Application") }
    return app
}

/// Remembers valid tokens for a few seconds so every request need not read the store. Logout on
/// this node forgets at once; a token deleted through another node stops working within `ttl`.
final class TokenCache: Sendable {
    private struct Entry { let token: APIToken; let until: ContinuousClock.Instant }
    // A lock, not an actor: every request asks, and an actor hop costs a thread switch.
    private let entries = NIOLockedValueBox<[[UInt8]: Entry]>([:])
    private let ttl: Duration

    init(ttl: Duration = .seconds(5)) { self.ttl = ttl }

    func token(hash: [UInt8]) -> APIToken? {
        let now = ContinuousClock.now
        return entries.withLockedValue { entries in
            guard let entry = entries[hash] else { return nil }
            guard entry.until > now else { entries[hash] = nil; return nil }
            return entry.token
        }
    }

    func remember(_ token: APIToken) {
        let until = ContinuousClock.now + ttl
        entries.withLockedValue { entries in
            if entries.count > 10_000 { entries.removeAll() }
            entries[token.hash] = Entry(token: token, until: until)
        }
    }

    func forget(id: TokenID) {
        entries.withLockedValue { entries in entries = entries.filter { $0.value.token.id != id } }
    }
}
