import Foundation

/// Filters for listing messages.
public struct MessageFilter: Sendable, Hashable {
    public var eventTypes: [String]?
    public var channel: String?
    /// Only messages created before / after these times.
    public var before: Date?
    public var after: Date?

    public init(eventTypes: [String]? = nil, channel: String? = nil, before: Date? = nil, after: Date? = nil) {
        self.eventTypes = eventTypes
        self.channel = channel
        self.before = before
        self.after = after
    }

    public func matches(eventType: String, channels: [String]?, createdAt: Date) -> Bool {
        if let eventTypes, !eventTypes.isEmpty, !eventTypes.contains(eventType) { return false }
        if let channel, !(channels ?? []).contains(channel) { return false }
        if let before, createdAt >= before { return false }
        if let after, createdAt <= after { return false }
        return true
    }
}

/// Filters for listing attempts.
public struct AttemptFilter: Sendable, Hashable {
    public var endpointID: EndpointID?
    public var messageID: MessageID?
    public var status: DeliveryStatus?
    /// 0 (no response), 100, 200, 300, 400 or 500.
    public var statusCodeClass: Int?
    public var message = MessageFilter()

    public init(endpointID: EndpointID? = nil, messageID: MessageID? = nil, status: DeliveryStatus? = nil,
                statusCodeClass: Int? = nil, message: MessageFilter = MessageFilter()) {
        self.endpointID = endpointID
        self.messageID = messageID
        self.status = status
        self.statusCodeClass = statusCodeClass
        self.message = message
    }

    public func matches(_ attempt: Attempt) -> Bool {
        if let endpointID, attempt.endpointID != endpointID { return false }
        if let messageID, attempt.messageID != messageID { return false }
        if let status, attempt.status != status { return false }
        if let statusCodeClass, (attempt.responseStatusCode / 100) * 100 != statusCodeClass { return false }
        return message.matches(eventType: attempt.eventType, channels: attempt.channels, createdAt: attempt.createdAt)
    }
}

/// What `publish` stores in one transaction.
public struct PublishRequest: Sendable {
    public var message: Message
    /// Created with the message when no application has its id or uid (Svix's `application` field).
    public var applicationToCreate: Application?
    /// Stored in the same transaction, so a retry after a crash replays the original answer.
    public var idempotency: IdempotencyRecord?
    /// When set, the message goes to this endpoint only, whatever the filters (send-example).
    public var onlyEndpoint: EndpointID?
    /// When set, the deliveries are stored already claimed (`sending`) with a lease until this
    /// time, for the caller to hand straight to its own dispatcher (`DeliveryHandOver`): nobody
    /// else claims them unless the lease lapses.
    public var claimUntil: Date?
    /// Endpoints whose deliveries are stored pending even with `claimUntil` (the dispatcher has no
    /// room for them: they are at their cap), so they are claimed when their turn comes.
    public var claimExcept: Set<EndpointID>
    /// Set by the store (`EndpointSecretsCodec.sealingRecord`): the idempotency record's body is
    /// sealed under the main key.
    public var idempotencyBodySealed = false

    public init(message: Message, applicationToCreate: Application? = nil, idempotency: IdempotencyRecord? = nil,
                onlyEndpoint: EndpointID? = nil, claimUntil: Date? = nil, claimExcept: Set<EndpointID> = []) {
        self.claimExcept = claimExcept
        self.message = message
        self.applicationToCreate = applicationToCreate
        self.idempotency = idempotency
        self.onlyEndpoint = onlyEndpoint
        self.claimUntil = claimUntil
    }

    /// The delivery this publish stores for `endpoint`: due at once, pending or claimed.
    public func delivery(of message: Message, to endpoint: EndpointID) -> Delivery {
        let lease = claimExcept.contains(endpoint) ? nil : claimUntil
        return Delivery(messageID: message.id, endpointID: endpoint, appID: message.appID,
                 status: lease == nil ? .pending : .sending, nextAttemptAt: message.createdAt,
                 leaseExpiresAt: lease, eventType: message.eventType, channels: message.channels,
                 createdAt: message.createdAt)
    }
}

/// Takes freshly published deliveries straight from the API to a dispatcher in the same process,
/// so they need neither a claim nor a wake-up: the publish stores them claimed
/// (`PublishRequest.claimUntil`) when the dispatcher has room, and hands them over after commit.
public protocol DeliveryHandOver: Sendable {
    /// The lease for a publish to store its deliveries claimed under, or nil (no room, or
    /// stopping) to store them pending for any dispatcher to claim.
    func leaseForNewDeliveries() -> Date?
    /// Takes deliveries stored claimed under a lease from `leaseForNewDeliveries`. False when it
    /// can no longer take them (stopping): the caller must release the claims.
    func take(_ deliveries: [Delivery], of message: Message) -> Bool
    /// Applications or endpoints were changed through this node's API: forget any copies, so the
    /// next delivery reads them again.
    func endpointsChanged()
    /// Endpoints the dispatcher has no room for right now (at their cap): a publish stores their
    /// deliveries pending instead of claimed (`PublishRequest.claimExcept`).
    func busyEndpoints() -> Set<EndpointID>
}

extension DeliveryHandOver {
    public func endpointsChanged() {}
    public func busyEndpoints() -> Set<EndpointID> { [] }
}

/// What `publish` did.
public struct PublishResult: Sendable {
    public var message: Message
    /// The endpoints that will receive it.
    public var deliveries: [Delivery]

    public init(message: Message, deliveries: [Delivery]) {
        self.message = message
        self.deliveries = deliveries
    }
}

/// A delivery and its message, for an endpoint's listing.
public struct DeliveredMessage: Sendable {
    public var delivery: Delivery
    public var message: Message
    public init(delivery: Delivery, message: Message) {
        self.delivery = delivery
        self.message = message
    }
}

/// A delivery and its endpoint, for a message's listing.
public struct MessageDestination: Sendable {
    public var delivery: Delivery
    public var endpoint: Endpoint
    public init(delivery: Delivery, endpoint: Endpoint) {
        self.delivery = delivery
        self.endpoint = endpoint
    }
}

/// What `purgeExpired` removed.
public struct PurgeResult: Sendable, Hashable {
    public var idempotencyRecords: Int
    public var payloads: Int
    /// Whole messages deleted by `purgeMessages`, with their deliveries and attempts.
    public var messages: Int
    public var deliveries: Int
    public var attempts: Int
    public init(idempotencyRecords: Int = 0, payloads: Int = 0, messages: Int = 0, deliveries: Int = 0, attempts: Int = 0) {
        self.idempotencyRecords = idempotencyRecords
        self.payloads = payloads
        self.messages = messages
        self.deliveries = deliveries
        self.attempts = attempts
    }

    public static func + (lhs: PurgeResult, rhs: PurgeResult) -> PurgeResult {
        PurgeResult(idempotencyRecords: lhs.idempotencyRecords + rhs.idempotencyRecords, payloads: lhs.payloads + rhs.payloads,
                    messages: lhs.messages + rhs.messages, deliveries: lhs.deliveries + rhs.deliveries, attempts: lhs.attempts + rhs.attempts)
    }
}

/// The endpoints and messages that a batch of claimed deliveries needs.
public struct DeliveryTargets: Sendable {
    /// Endpoints whose secrets could not be read have `unreadable` set.
    public var endpoints: [EndpointID: Endpoint]
    public var messages: [MessageID: Message]
    public init(endpoints: [EndpointID: Endpoint] = [:], messages: [MessageID: Message] = [:]) {
        self.endpoints = endpoints
        self.messages = messages
    }
}

/// Herald's storage. Every backend (in-memory, SQLite, PostgreSQL) passes the same conformance
/// suite (`HeraldTesting.StoreConformance`). Methods that take an application id never see another
/// application's data. Errors are `StoreError`.
///
/// "Ref" parameters accept the id or the user's uid (for messages: the id or the eventId).
public protocol HeraldStore: DeliveryQueue {
    // MARK: Applications
    /// Throws `.conflict` when the uid is taken.
    func createApplication(_ application: Application) async throws
    func application(ref: String) async throws -> Application?
    func listApplications(_ page: PageRequest) async throws -> Page<Application>
    /// Replaces the stored application with the same id. Throws `.notFound`, or `.conflict` for a taken uid.
    func updateApplication(_ application: Application) async throws
    /// Deletes the application with its endpoints, messages, deliveries and attempts. Throws `.notFound`.
    func deleteApplication(_ id: ApplicationID) async throws

    // MARK: Endpoints
    /// Throws `.conflict` when the uid is taken within the application.
    func createEndpoint(_ endpoint: Endpoint) async throws
    func endpoint(app: ApplicationID, ref: String) async throws -> Endpoint?
    func listEndpoints(app: ApplicationID, _ page: PageRequest) async throws -> Page<Endpoint>
    /// Replaces the stored endpoint with the same id, if the stored row is still at
    /// `endpoint.version` (the version it was read at); the stored version goes up by one. Throws
    /// `.notFound`, `.conflict` for a taken uid, or `.stale` when the row changed since it was read
    /// (read it again and reapply the change: `modifyEndpoint` does). When `unreadable` is set
    /// and `secrets` is empty, the stored (unreadable) secrets are kept as they are.
    func updateEndpoint(_ endpoint: Endpoint) async throws
    /// Throws `.notFound`.
    func deleteEndpoint(app: ApplicationID, id: EndpointID) async throws

    // MARK: Event types
    /// Throws `.conflict` when the name is taken.
    func createEventType(_ eventType: EventType) async throws
    func eventType(name: String) async throws -> EventType?
    func listEventTypes(_ page: PageRequest, includeArchived: Bool) async throws -> Page<EventType>
    /// Throws `.notFound`.
    func updateEventType(_ eventType: EventType) async throws
    /// Removes it for good. Throws `.notFound`.
    func deleteEventType(name: String) async throws

    // MARK: Messages
    /// In one transaction: creates `applicationToCreate` if no application has its id or uid,
    /// stores the message, one pending delivery per endpoint that `EndpointFilter` matches, and the
    /// idempotency record. Throws `.notFound` when the application does not exist and none is to be
    /// created, `.conflict` when the eventId is taken within the application.
    func publish(_ request: PublishRequest) async throws -> PublishResult
    func message(app: ApplicationID, ref: String) async throws -> Message?
    /// Pages by message id.
    func listMessages(app: ApplicationID, filter: MessageFilter, _ page: PageRequest) async throws -> Page<Message>
    /// Drops the payload, keeping the message. Throws `.notFound`.
    func expungeMessagePayload(app: ApplicationID, id: MessageID) async throws

    // MARK: Deliveries and attempts
    /// Pages by attempt id.
    func listAttempts(app: ApplicationID, filter: AttemptFilter, _ page: PageRequest) async throws -> Page<Attempt>
    func attempt(app: ApplicationID, message: MessageID, id: AttemptID) async throws -> Attempt?
    /// Empties the stored response. Throws `.notFound`.
    func expungeAttemptResponse(app: ApplicationID, message: MessageID, id: AttemptID) async throws
    /// The messages sent to an endpoint, with their delivery. Pages by message id.
    func listDeliveredMessages(app: ApplicationID, endpoint: EndpointID, status: DeliveryStatus?, filter: MessageFilter, _ page: PageRequest) async throws -> Page<DeliveredMessage>
    /// The endpoints a message was sent to, with their delivery. Pages by endpoint id.
    func listDestinations(app: ApplicationID, message: MessageID, _ page: PageRequest) async throws -> Page<MessageDestination>
    /// Counts the endpoint's deliveries by status, for messages created in the range.
    func endpointStats(app: ApplicationID, endpoint: EndpointID, since: Date?, until: Date?) async throws -> EndpointStats
    /// Queues one manual attempt of the message to the endpoint, due at `now`, whatever the filters.
    /// Throws `.notFound` when the message or endpoint does not exist.
    func resend(app: ApplicationID, message: MessageID, endpoint: EndpointID, now: Date) async throws
    /// Re-queues the endpoint's failed deliveries of messages created in the range. Returns how many.
    func recover(app: ApplicationID, endpoint: EndpointID, since: Date, until: Date?, now: Date) async throws -> Int
    /// The delivery of a message to an endpoint, if any.
    func delivery(message: MessageID, endpoint: EndpointID) async throws -> Delivery?

    // MARK: The delivery queue: see `DeliveryQueue`, which this protocol refines.

    // MARK: Idempotency
    /// The unexpired record for a scoped key.
    func idempotencyRecord(key: String, now: Date) async throws -> IdempotencyRecord?
    /// Stores a record, replacing an expired one. An unexpired record with the key is kept (first wins).
    func saveIdempotencyRecord(_ record: IdempotencyRecord) async throws

    // MARK: Retention
    /// Deletes idempotency records that expired at or before `now`, and drops the payloads of
    /// messages whose retention period ended at or before `now`. Returns how many of each.
    func purgeExpired(now: Date) async throws -> PurgeResult
    /// Deletes at most `limit` messages created before `cutoff`, oldest first, with their
    /// deliveries and attempts, in one short transaction. A message with a delivery in flight under
    /// a lease still live at `now` is skipped (a later call deletes it). Fewer than `limit`
    /// messages deleted means none is left to delete now. Several nodes may call it at once: none
    /// waits for another, and no message is deleted twice.
    func purgeMessages(createdBefore cutoff: Date, now: Date, limit: Int) async throws -> PurgeResult

    // MARK: API tokens
    func createToken(_ token: APIToken) async throws
    func token(hash: [UInt8]) async throws -> APIToken?
    func deleteToken(id: TokenID) async throws
    /// How many admin tokens exist (to decide whether to create one on first start).
    func adminTokenCount() async throws -> Int
    /// The admin tokens (expired ones included), paged by id. App-portal tokens are not listed.
    func listAdminTokens(_ page: PageRequest) async throws -> Page<APIToken>
    /// Deletes the admin token with this id; false when there is none (or it is not an admin token).
    func revokeAdminToken(id: TokenID) async throws -> Bool

    // MARK: Quotas
    /// `createEndpoint`, unless the application already has `limit` endpoints: then throws
    /// `.limitExceeded`. The count is taken in the insert's transaction, so concurrent creates do
    /// not overshoot it.
    func createEndpoint(_ endpoint: Endpoint, limit: Int) async throws
    /// `createEventType`, unless `limit` event types (archived ones included) exist: then throws
    /// `.limitExceeded`.
    func createEventType(_ eventType: EventType, limit: Int) async throws
}

extension HeraldStore {
    /// Reads the endpoint, applies `change` and writes it back over the version it read; when
    /// another write came in between (the API on another request or node, or the dispatcher's
    /// health write), reads it again and reapplies `change`, so no change undoes another. Returns
    /// the stored endpoint, or nil when there is none.
    public func modifyEndpoint(app: ApplicationID, ref: String, attempts: Int = 8,
                               _ change: (inout Endpoint) throws -> Void) async throws -> Endpoint? {
        for _ in 0..<max(1, attempts) {
            guard var endpoint = try await self.endpoint(app: app, ref: ref) else { return nil }
            try change(&endpoint)
            do {
                try await updateEndpoint(endpoint)
                endpoint.version += 1
                return endpoint
            } catch let error as StoreError where error.code == .stale {
                continue
            }
        }
        throw StoreError(.unavailable, "the endpoint kept changing while this update was applied; try again")
    }
}
