import Foundation

/// An application: one of the sender's customers, owning endpoints and messages.
public struct Application: Sendable, Codable, Hashable {
    public var id: ApplicationID
    public var uid: String?
    public var name: String
    public var throttleRate: Int?
    public var metadata: [String: String]
    public var createdAt: Date
    public var updatedAt: Date

    public init(id: ApplicationID = .generate(), uid: String? = nil, name: String, throttleRate: Int? = nil,
                metadata: [String: String] = [:], createdAt: Date = Date(), updatedAt: Date? = nil) {
        self.id = id
        self.uid = uid
        self.name = name
        self.throttleRate = throttleRate
        self.metadata = metadata
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
    }
}

/// One signing secret of an endpoint. The current secret has no expiry; rotated-out secrets keep
/// signing until `expiresAt`.
public struct EndpointSecret: Sendable, Codable, Hashable {
    /// How a key signs.
    public enum Kind: String, Sendable, Codable, Hashable {
        /// HMAC-SHA256, `v1,` signatures; the key is the decoded `whsec_` text.
        case hmac
        /// ed25519, `v1a,` signatures; the key is the 32-byte seed of a `whsk_` key.
        case ed25519
    }

    /// The raw key bytes.
    public var key: [UInt8]
    public var expiresAt: Date?
    public var kind: Kind

    public init(key: [UInt8], expiresAt: Date? = nil, kind: Kind = .hmac) {
        self.key = key
        self.expiresAt = expiresAt
        self.kind = kind
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        key = try container.decode([UInt8].self, forKey: .key)
        expiresAt = try container.decodeIfPresent(Date.self, forKey: .expiresAt)
        kind = try container.decodeIfPresent(Kind.self, forKey: .kind) ?? .hmac
    }
}

/// A subscriber's URL that receives an application's messages.
public struct Endpoint: Sendable, Codable, Hashable {
    public var id: EndpointID
    public var appID: ApplicationID
    public var uid: String?
    public var url: String
    public var description: String
    public var disabled: Bool
    /// nil or empty: every event type.
    public var eventTypes: [String]?
    /// nil: every message; otherwise only messages with an overlapping channel.
    public var channels: [String]?
    public var throttleRate: Int?
    public var metadata: [String: String]
    public var headers: [String: String]
    /// The current secret first, then older secrets still in their grace period (at most 10).
    public var secrets: [EndpointSecret]
    public var createdAt: Date
    public var updatedAt: Date
    /// When the endpoint started failing continuously (nil while healthy).
    public var failingSince: Date?
    /// The stored row's version: every write adds one, and `updateEndpoint` writes only over the
    /// version it read (so two concurrent changes cannot undo each other).
    public var version: Int
    /// Why the stored endpoint could not be read in full (its secrets sealed with another main key,
    /// or a damaged column); nil when it could. Such an endpoint is still listed, updated and
    /// deleted; its deliveries fail with this reason until an update replaces what is unreadable
    /// (a rotated secret replaces unreadable secrets).
    public var unreadable: String?

    public init(id: EndpointID = .generate(), appID: ApplicationID, uid: String? = nil, url: String,
                description: String = "", disabled: Bool = false, eventTypes: [String]? = nil,
                channels: [String]? = nil, throttleRate: Int? = nil, metadata: [String: String] = [:],
                headers: [String: String] = [:], secrets: [EndpointSecret], createdAt: Date = Date(),
                updatedAt: Date? = nil, failingSince: Date? = nil, version: Int = 0, unreadable: String? = nil) {
        self.version = version
        self.unreadable = unreadable
        self.id = id
        self.appID = appID
        self.uid = uid
        self.url = url
        self.description = description
        self.disabled = disabled
        self.eventTypes = eventTypes
        self.channels = channels
        self.throttleRate = throttleRate
        self.metadata = metadata
        self.headers = headers
        self.secrets = secrets
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
        self.failingSince = failingSince
    }

    /// The secrets that sign at `now`: the current one and those still in their grace period.
    public func activeSecrets(at now: Date) -> [EndpointSecret] {
        secrets.filter { $0.expiresAt.map { $0 > now } ?? true }
    }
}

/// A kind of event an application publishes, such as `invoice.paid`.
public struct EventType: Sendable, Codable, Hashable {
    public var name: String
    public var description: String
    public var archived: Bool
    public var deprecated: Bool
    /// Raw JSON of the schemas object, as given.
    public var schemas: [UInt8]?
    public var featureFlag: String?
    public var createdAt: Date
    public var updatedAt: Date

    public init(name: String, description: String, archived: Bool = false, deprecated: Bool = false,
                schemas: [UInt8]? = nil, featureFlag: String? = nil, createdAt: Date = Date(), updatedAt: Date? = nil) {
        self.name = name
        self.description = description
        self.archived = archived
        self.deprecated = deprecated
        self.schemas = schemas
        self.featureFlag = featureFlag
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
    }
}

/// An event published to an application.
public struct Message: Sendable, Codable, Hashable {
    public var id: MessageID
    public var appID: ApplicationID
    public var eventID: String?
    public var eventType: String
    /// The exact JSON bytes that are delivered; nil once expunged.
    public var payload: [UInt8]?
    public var channels: [String]?
    public var createdAt: Date
    /// When the payload is expunged automatically.
    public var payloadExpiresAt: Date

    public init(id: MessageID = .generate(), appID: ApplicationID, eventID: String? = nil, eventType: String,
                payload: [UInt8]?, channels: [String]? = nil, createdAt: Date = Date(), payloadExpiresAt: Date? = nil) {
        self.id = id
        self.appID = appID
        self.eventID = eventID
        self.eventType = eventType
        self.payload = payload
        self.channels = channels
        self.createdAt = createdAt
        self.payloadExpiresAt = payloadExpiresAt ?? createdAt.addingTimeInterval(90 * 86400)
    }
}

/// Svix's message status: the state of a delivery, or the outcome of an attempt.
public enum DeliveryStatus: Int, Sendable, Codable, Hashable, CaseIterable {
    case success = 0
    case pending = 1
    case fail = 2
    case sending = 3

    public var text: String {
        switch self {
        case .success: "success"
        case .pending: "pending"
        case .fail: "fail"
        case .sending: "sending"
        }
    }
}

/// Why an attempt was made.
public enum TriggerType: Int, Sendable, Codable, Hashable {
    case scheduled = 0
    case manual = 1
}

/// The delivery of one message to one endpoint: the durable queue entry.
public struct Delivery: Sendable, Codable, Hashable {
    public var messageID: MessageID
    public var endpointID: EndpointID
    public var appID: ApplicationID
    public var status: DeliveryStatus
    public var attemptCount: Int
    /// When the next attempt is due (nil once succeeded or failed for good).
    public var nextAttemptAt: Date?
    public var lastAttemptAt: Date?
    /// A worker's claim; another worker may take the delivery once it has passed.
    public var leaseExpiresAt: Date?
    /// Manual resends are attempted once and not retried.
    public var trigger: TriggerType
    /// Copied from the message, for filtering.
    public var eventType: String
    public var channels: [String]?
    public var createdAt: Date
    /// How many times in a row a worker stopped (crashed, or was killed) while holding this delivery
    /// claimed; back to 0 once an attempt is recorded. At `DeliveryQueueLimits.maxInterruptions` the
    /// delivery is failed with that reason instead of claimed again (a poison delivery cannot keep a
    /// node in a crash loop).
    public var interruptedCount: Int

    public init(messageID: MessageID, endpointID: EndpointID, appID: ApplicationID, status: DeliveryStatus = .pending,
                attemptCount: Int = 0, nextAttemptAt: Date?, lastAttemptAt: Date? = nil, leaseExpiresAt: Date? = nil,
                trigger: TriggerType = .scheduled, eventType: String, channels: [String]?, createdAt: Date,
                interruptedCount: Int = 0) {
        self.interruptedCount = interruptedCount
        self.messageID = messageID
        self.endpointID = endpointID
        self.appID = appID
        self.status = status
        self.attemptCount = attemptCount
        self.nextAttemptAt = nextAttemptAt
        self.lastAttemptAt = lastAttemptAt
        self.leaseExpiresAt = leaseExpiresAt
        self.trigger = trigger
        self.eventType = eventType
        self.channels = channels
        self.createdAt = createdAt
    }
}

/// One HTTP attempt to deliver a message to an endpoint.
public struct Attempt: Sendable, Codable, Hashable {
    public var id: AttemptID
    public var messageID: MessageID
    public var endpointID: EndpointID
    public var appID: ApplicationID
    public var url: String
    /// 0 when no response was received (network error, timeout, refused destination).
    public var responseStatusCode: Int
    /// The response body (at most 20,000 bytes) or the error text; empty once expunged.
    public var response: String
    public var responseDurationMs: Int
    public var status: DeliveryStatus
    public var triggerType: TriggerType
    public var eventType: String
    public var channels: [String]?
    public var createdAt: Date

    public init(id: AttemptID = .generate(), messageID: MessageID, endpointID: EndpointID, appID: ApplicationID,
                url: String, responseStatusCode: Int, response: String, responseDurationMs: Int, status: DeliveryStatus,
                triggerType: TriggerType, eventType: String, channels: [String]?, createdAt: Date = Date()) {
        self.id = id
        self.messageID = messageID
        self.endpointID = endpointID
        self.appID = appID
        self.url = url
        self.responseStatusCode = responseStatusCode
        self.response = response
        self.responseDurationMs = responseDurationMs
        self.status = status
        self.triggerType = triggerType
        self.eventType = eventType
        self.channels = channels
        self.createdAt = createdAt
    }
}

/// A stored response to replay for a repeated `Idempotency-Key`.
public struct IdempotencyRecord: Sendable, Codable, Hashable {
    /// The key, scoped by the caller (principal, method and path).
    public var key: String
    public var statusCode: Int
    public var body: [UInt8]
    public var createdAt: Date
    public var expiresAt: Date

    public init(key: String, statusCode: Int, body: [UInt8], createdAt: Date, expiresAt: Date) {
        self.key = key
        self.statusCode = statusCode
        self.body = body
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

/// What an API token may reach.
public enum TokenScope: Sendable, Codable, Hashable {
    /// Everything.
    case admin
    /// One application only (app-portal access).
    case application(ApplicationID)
}

/// An API token. Only the SHA-256 hash of the token text is stored.
public struct APIToken: Sendable, Codable, Hashable {
    public var id: TokenID
    public var hash: [UInt8]
    public var scope: TokenScope
    public var createdAt: Date
    public var expiresAt: Date?
    /// What the token is for, as its creator named it (admin tokens); empty when unnamed.
    public var name: String

    public init(id: TokenID = .generate(), hash: [UInt8], scope: TokenScope, createdAt: Date = Date(), expiresAt: Date? = nil,
                name: String = "") {
        self.id = id
        self.hash = hash
        self.scope = scope
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.name = name
    }
}

/// Counts of an endpoint's deliveries by status.
public struct EndpointStats: Sendable, Codable, Hashable {
    public var success = 0
    public var pending = 0
    public var fail = 0
    public var sending = 0
    public var canceled = 0
    public init() {}
}
