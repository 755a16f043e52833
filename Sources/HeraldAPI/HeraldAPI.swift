import Foundation
import HeraldCore
import Hummingbird
import Logging

/// Builds the Svix-compatible REST API on a store.
///
/// ```swift
/// let router = HeraldAPI(store: store).buildRouter()
/// let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 8071)))
/// ```
public struct HeraldAPI: Sendable {
    public struct Configuration: Sendable {
        /// Largest message payload accepted, in bytes (413 above).
        public var maxPayloadBytes: Int
        /// The base URL shown in app-portal links; the request's host when nil.
        public var publicURL: String?
        /// Called after a publish, resend or recover commits: wakes the dispatcher.
        public var onNewWork: @Sendable () -> Void
        /// This process's dispatcher, when it has one: a publish stores its deliveries claimed for
        /// it and hands them over after commit, so they need no claim and no wake-up.
        public var deliveryHandOver: (any DeliveryHandOver)?
        /// Quotas and list bounds.
        public var limits = APILimits()

        public init(maxPayloadBytes: Int = 1 << 20, publicURL: String? = nil, onNewWork: @escaping @Sendable () -> Void = {},
                    deliveryHandOver: (any DeliveryHandOver)? = nil) {
            self.maxPayloadBytes = maxPayloadBytes
            self.publicURL = publicURL
            self.onNewWork = onNewWork
            self.deliveryHandOver = deliveryHandOver
        }
    }

    let store: any HeraldStore
    let configuration: Configuration
    let locks = KeyedLock()
    let tokens = TokenCache()
    let applications = ApplicationCache()

    public init(store: any HeraldStore, configuration: Configuration = .init()) {
        self.store = store
        self.configuration = configuration
    }

    /// Adds the API's routes to `router`.
    public func addRoutes(to router: Router<APIRequestContext>) {
        router.add(middleware: APIErrorMiddleware())
        let v1 = router.group("api/v1")
        v1.get("health") { _, _ in APIResponse.empty() }
        v1.get("health/ping") { _, _ in APIResponse.empty() }
        let authenticated = v1.group()
            .add(middleware: AuthenticationMiddleware(store: store, cache: tokens))
            .add(middleware: IdempotencyMiddleware(store: store, locks: locks))
        // Changes to applications and endpoints reach the dispatcher's endpoint copies at once.
        let endpointChanges = authenticated.group().add(middleware: EndpointChangeMiddleware(handOver: configuration.deliveryHandOver,
                                                                                                applications: applications))
        ApplicationController(store: store).register(on: endpointChanges)
        EndpointController(store: store, onNewWork: configuration.onNewWork, limits: configuration.limits).register(on: endpointChanges)
        EventTypeController(store: store, limits: configuration.limits).register(on: authenticated)
        MessageController(store: store, maxPayloadBytes: configuration.maxPayloadBytes, onNewWork: configuration.onNewWork,
                          handOver: configuration.deliveryHandOver, limits: configuration.limits, applications: applications).register(on: authenticated)
        AttemptController(store: store, limits: configuration.limits).register(on: authenticated)
        TokenController(store: store, tokens: tokens).register(on: authenticated)
        AuthController(store: store, publicURL: configuration.publicURL, tokens: tokens).register(on: authenticated)
    }

    /// A router with the API's routes.
    public func buildRouter() -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        addRoutes(to: router)
        return router
    }
}
