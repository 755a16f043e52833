import HeraldCore
import Hummingbird

/// Who is calling: an admin token, or an app-portal token scoped to one application.
public enum Principal: Sendable, Hashable {
    case admin(TokenID)
    case application(ApplicationID, TokenID)

    var tokenID: TokenID {
        switch self {
        case .admin(let id), .application(_, let id): id
        }
    }
}

/// The request context of the API: the authenticated principal.
public struct APIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: Principal?
    /// The caller's `Idempotency-Key`, scoped to the principal, method and path.
    var idempotencyKey: String?

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.principal = nil
        self.idempotencyKey = nil
    }
}

/// Herald's application (Hummingbird has an `Application` too).
typealias Application = HeraldCore.Application
