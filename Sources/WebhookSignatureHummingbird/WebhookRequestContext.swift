public import Hummingbird
public import WebhookSignature

/// A request context that can carry the webhook that `WebhookVerificationMiddleware` verified.
///
/// Add it to your own context with one stored property:
/// ```swift
/// struct AppContext: WebhookRequestContext {
///     var coreContext: CoreRequestContextStorage
///     var webhook: VerifiedWebhook?
///     init(source: Source) { coreContext = .init(source: source) }
/// }
/// ```
public protocol WebhookRequestContext: RequestContext {
    /// Set by the middleware before your handler runs.
    var webhook: VerifiedWebhook? { get set }
}

/// The simplest `WebhookRequestContext`.
public struct BasicWebhookRequestContext: WebhookRequestContext {
    public var coreContext: CoreRequestContextStorage
    public var webhook: VerifiedWebhook?

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.webhook = nil
    }
}
