import Foundation

/// A `HeraldStore` in memory: for tests and trying things out. Nothing survives a restart.
///
/// ```swift
/// let store = InMemoryStore()
/// try await store.createApplication(Application(name: "Acme"))
/// ```
public actor InMemoryStore: HeraldStore {
    private var applications: [ApplicationID: Application] = [:]
    private var endpoints: [EndpointID: Endpoint] = [:]
    private var eventTypes: [String: EventType] = [:]
    private var messages: [MessageID: Message] = [:]
    private var deliveries: [String: Delivery] = [:]  // "\(messageID)/\(endpointID)"
    private var attempts: [AttemptID: Attempt] = [:]
    private var idempotency: [String: IdempotencyRecord] = [:]
    private var tokens: [TokenID: APIToken] = [:]

    public init() {}

    private static func deliveryKey(_ message: MessageID, _ endpoint: EndpointID) -> String { "\(message)/\(endpoint)" }

    // MARK: Applications

    public func createApplication(_ application: Application) throws {
        if let uid = application.uid, applications.values.contains(where: { $0.uid == uid }) {
            throw StoreError.conflict("an application with uid '\(uid)' already exists")
        }
        guard applications[application.id] == nil else { throw StoreError.conflict("application id exists") }
        applications[application.id] = application
    }

    public func application(ref: String) -> Application? {
        applications[ApplicationID(rawValue: ref)] ?? applications.values.first { $0.uid == ref }
    }

    public func listApplications(_ page: PageRequest) -> Page<Application> {
        page.paginate(Array(applications.values)) { $0.id.rawValue }
    }

    public func updateApplication(_ application: Application) throws {
        guard applications[application.id] != nil else { throw StoreError.notFound("application") }
        if let uid = application.uid, applications.values.contains(where: { $0.uid == uid && $0.id != application.id }) {
            throw StoreError.conflict("an application with uid '\(uid)' already exists")
        }
        applications[application.id] = application
    }

    public func deleteApplication(_ id: ApplicationID) throws {
        guard applications.removeValue(forKey: id) != nil else { throw StoreError.notFound("application") }
        endpoints = endpoints.filter { $0.value.appID != id }
        messages = messages.filter { $0.value.appID != id }
        deliveries = deliveries.filter { $0.value.appID != id }
        attempts = attempts.filter { $0.value.appID != id }
        tokens = tokens.filter { $0.value.scope != .application(id) }
    }

    // MARK: Endpoints

    public func createEndpoint(_ endpoint: Endpoint) throws {
        guard applications[endpoint.appID] != nil else { throw StoreError.notFound("application") }
        if let uid = endpoint.uid, endpoints.values.contains(where: { $0.appID == endpoint.appID && $0.uid == uid }) {
            throw StoreError.conflict("an endpoint with uid '\(uid)' already exists")
        }
        var stored = endpoint
        stored.version = 0
        endpoints[endpoint.id] = stored
    }

    public func endpoint(app: ApplicationID, ref: String) -> Endpoint? {
        if let byID = endpoints[EndpointID(rawValue: ref)], byID.appID == app { return byID }
        return endpoints.values.first { $0.appID == app && $0.uid == ref }
    }

    public func listEndpoints(app: ApplicationID, _ page: PageRequest) -> Page<Endpoint> {
        page.paginate(endpoints.values.filter { $0.appID == app }) { $0.id.rawValue }
    }

    public func updateEndpoint(_ endpoint: Endpoint) throws {
        guard let existing = endpoints[endpoint.id], existing.appID == endpoint.appID else { throw StoreError.notFound("endpoint") }
        if let uid = endpoint.uid, endpoints.values.contains(where: { $0.appID == endpoint.appID && $0.uid == uid && $0.id != endpoint.id }) {
            throw StoreError.conflict("an endpoint with uid '\(uid)' already exists")
        }
        guard existing.version == endpoint.version else { throw StoreError.stale("endpoint") }
        var stored = endpoint
        stored.version += 1
        endpoints[endpoint.id] = stored
    }

    public func deleteEndpoint(app: ApplicationID, id: EndpointID) throws {
        guard let existing = endpoints[id], existing.appID == app else { throw StoreError.notFound("endpoint") }
        endpoints[id] = nil
        deliveries = deliveries.filter { $0.value.endpointID != id }
        attempts = attempts.filter { $0.value.endpointID != id }
    }

    // MARK: Event types

    public func createEventType(_ eventType: EventType) throws {
        guard eventTypes[eventType.name] == nil else { throw StoreError.conflict("event type '\(eventType.name)' already exists") }
        eventTypes[eventType.name] = eventType
    }

    public func eventType(name: String) -> EventType? { eventTypes[name] }

    public func listEventTypes(_ page: PageRequest, includeArchived: Bool) -> Page<EventType> {
        var result = page.paginate(eventTypes.values.filter { includeArchived || !$0.archived }, key: { $0.name },
                                   contentSize: { $0.schemas?.count ?? 0 })
        if !page.withContent { for index in result.items.indices { result.items[index].schemas = nil } }
        return result
    }

    public func updateEventType(_ eventType: EventType) throws {
        guard eventTypes[eventType.name] != nil else { throw StoreError.notFound("event type") }
        eventTypes[eventType.name] = eventType
    }

    public func deleteEventType(name: String) throws {
        guard eventTypes.removeValue(forKey: name) != nil else { throw StoreError.notFound("event type") }
    }

    // MARK: Messages

    public func publish(_ request: PublishRequest) throws -> PublishResult {
        var message = request.message
        if applications[message.appID] == nil {
            guard var toCreate = request.applicationToCreate else { throw StoreError.notFound("application") }
            if let uid = toCreate.uid, let existing = applications.values.first(where: { $0.uid == uid }) {
                toCreate = existing
            } else {
                try createApplication(toCreate)
            }
            message.appID = toCreate.id
        }
        if let eventID = message.eventID,
           messages.values.contains(where: { $0.appID == message.appID && $0.eventID == eventID }) {
            throw StoreError.conflict("a message with eventId '\(eventID)' already exists")
        }
        if let record = request.idempotency, let existing = idempotency[record.key], existing.expiresAt > record.createdAt {
            throw StoreError.conflict("idempotency key already used")
        }
        messages[message.id] = message
        var created: [Delivery] = []
        for endpoint in endpoints.values where endpoint.appID == message.appID
            && (request.onlyEndpoint.map { $0 == endpoint.id }
                ?? EndpointFilter.matches(endpoint, eventType: message.eventType, channels: message.channels)) {
            let delivery = request.delivery(of: message, to: endpoint.id)
            deliveries[Self.deliveryKey(message.id, endpoint.id)] = delivery
            created.append(delivery)
        }
        if let record = request.idempotency { idempotency[record.key] = record }
        return PublishResult(message: message, deliveries: created.sorted { $0.endpointID < $1.endpointID })
    }

    public func message(app: ApplicationID, ref: String) -> Message? {
        if let byID = messages[MessageID(rawValue: ref)], byID.appID == app { return byID }
        return messages.values.first { $0.appID == app && $0.eventID == ref }
    }

    public func listMessages(app: ApplicationID, filter: MessageFilter, _ page: PageRequest) -> Page<Message> {
        let matching = messages.values.filter {
            $0.appID == app && filter.matches(eventType: $0.eventType, channels: $0.channels, createdAt: $0.createdAt)
        }
        var result = page.paginate(matching, key: { $0.id.rawValue }, contentSize: { $0.payload?.count ?? 0 })
        if !page.withContent { for index in result.items.indices { result.items[index].payload = nil } }
        return result
    }

    public func expungeMessagePayload(app: ApplicationID, id: MessageID) throws {
        guard var message = messages[id], message.appID == app else { throw StoreError.notFound("message") }
        message.payload = nil
        messages[id] = message
    }

    // MARK: Deliveries and attempts

    public func listAttempts(app: ApplicationID, filter: AttemptFilter, _ page: PageRequest) -> Page<Attempt> {
        page.paginate(attempts.values.filter { $0.appID == app && filter.matches($0) }, key: { $0.id.rawValue },
                      contentSize: { $0.response.utf8.count })
    }

    public func attempt(app: ApplicationID, message: MessageID, id: AttemptID) -> Attempt? {
        guard let attempt = attempts[id], attempt.appID == app, attempt.messageID == message else { return nil }
        return attempt
    }

    public func expungeAttemptResponse(app: ApplicationID, message: MessageID, id: AttemptID) throws {
        guard var attempt = attempt(app: app, message: message, id: id) else { throw StoreError.notFound("attempt") }
        attempt.response = ""
        attempts[id] = attempt
    }

    public func listDeliveredMessages(app: ApplicationID, endpoint: EndpointID, status: DeliveryStatus?, filter: MessageFilter, _ page: PageRequest) -> Page<DeliveredMessage> {
        let matching = deliveries.values.compactMap { delivery -> DeliveredMessage? in
            guard delivery.appID == app, delivery.endpointID == endpoint,
                  status == nil || delivery.status == status,
                  let message = messages[delivery.messageID],
                  filter.matches(eventType: message.eventType, channels: message.channels, createdAt: message.createdAt)
            else { return nil }
            return DeliveredMessage(delivery: delivery, message: message)
        }
        var result = page.paginate(matching, key: { $0.message.id.rawValue }, contentSize: { $0.message.payload?.count ?? 0 })
        if !page.withContent { for index in result.items.indices { result.items[index].message.payload = nil } }
        return result
    }

    public func listDestinations(app: ApplicationID, message: MessageID, _ page: PageRequest) -> Page<MessageDestination> {
        let matching = deliveries.values.compactMap { delivery -> MessageDestination? in
            guard delivery.appID == app, delivery.messageID == message, let endpoint = endpoints[delivery.endpointID] else { return nil }
            return MessageDestination(delivery: delivery, endpoint: endpoint)
        }
        return page.paginate(matching) { $0.endpoint.id.rawValue }
    }

    public func endpointStats(app: ApplicationID, endpoint: EndpointID, since: Date?, until: Date?) -> EndpointStats {
        var stats = EndpointStats()
        for delivery in deliveries.values where delivery.appID == app && delivery.endpointID == endpoint {
            if let since, delivery.createdAt < since { continue }
            if let until, delivery.createdAt > until { continue }
            switch delivery.status {
            case .success: stats.success += 1
            case .pending: stats.pending += 1
            case .fail: stats.fail += 1
            case .sending: stats.sending += 1
            }
        }
        return stats
    }

    public func resend(app: ApplicationID, message: MessageID, endpoint: EndpointID, now: Date) throws {
        guard let stored = messages[message], stored.appID == app else { throw StoreError.notFound("message") }
        guard let target = endpoints[endpoint], target.appID == app else { throw StoreError.notFound("endpoint") }
        let key = Self.deliveryKey(message, endpoint)
        var delivery = deliveries[key] ?? Delivery(messageID: message, endpointID: target.id, appID: app, nextAttemptAt: now,
                                                   eventType: stored.eventType, channels: stored.channels, createdAt: stored.createdAt)
        delivery.status = .pending
        delivery.nextAttemptAt = now
        delivery.leaseExpiresAt = nil
        delivery.trigger = .manual
        delivery.interruptedCount = 0
        deliveries[key] = delivery
    }

    public func recover(app: ApplicationID, endpoint: EndpointID, since: Date, until: Date?, now: Date) -> Int {
        var count = 0
        for (key, var delivery) in deliveries where delivery.appID == app && delivery.endpointID == endpoint && delivery.status == .fail {
            guard delivery.createdAt >= since, until.map({ delivery.createdAt <= $0 }) ?? true else { continue }
            delivery.status = .pending
            delivery.nextAttemptAt = now
            delivery.leaseExpiresAt = nil
            delivery.trigger = .scheduled
            delivery.attemptCount = 0
            delivery.interruptedCount = 0
            deliveries[key] = delivery
            count += 1
        }
        return count
    }

    public func delivery(message: MessageID, endpoint: EndpointID) -> Delivery? {
        deliveries[Self.deliveryKey(message, endpoint)]
    }

    public func dueEndpoints(now: Date, after: EndpointID?, limit: Int) -> DueEndpointScan {
        var due: [EndpointID: DueEndpoint] = [:]
        var inFlight: [EndpointID: Int] = [:]
        for delivery in deliveries.values {
            switch delivery.status {
            case .pending:
                guard let next = delivery.nextAttemptAt else { continue }
                if after.map({ delivery.endpointID > $0 }) ?? true {
                    if let seen = due[delivery.endpointID], seen.earliestDue <= next { continue }
                    due[delivery.endpointID] = DueEndpoint(endpointID: delivery.endpointID, appID: delivery.appID, earliestDue: next, inFlight: 0)
                }
            case .sending where (delivery.leaseExpiresAt ?? .distantPast) >= now:
                inFlight[delivery.endpointID, default: 0] += 1
            default: continue
            }
        }
        let walked = due.values.sorted { $0.endpointID < $1.endpointID }
        let examined = walked.prefix(max(1, limit))
        let found = examined.filter { $0.earliestDue <= now }.map { endpoint in
            var endpoint = endpoint
            endpoint.inFlight = inFlight[endpoint.endpointID] ?? 0
            return endpoint
        }
        return DueEndpointScan(due: found, next: walked.count > examined.count ? examined.last?.endpointID : nil)
    }

    public func claimDueDeliveries(now: Date, quotas: [EndpointID: Int], leaseUntil: Date) -> [Delivery] {
        var byEndpoint: [EndpointID: [Delivery]] = [:]
        for delivery in deliveries.values where delivery.status == .pending && (delivery.nextAttemptAt ?? .distantFuture) <= now
            && (quotas[delivery.endpointID] ?? 0) > 0 {
            byEndpoint[delivery.endpointID, default: []].append(delivery)
        }
        var claimed: [Delivery] = []
        for (endpoint, due) in byEndpoint {
            let oldest = due.sorted { ($0.nextAttemptAt ?? .distantPast, $0.messageID) < ($1.nextAttemptAt ?? .distantPast, $1.messageID) }
            for delivery in oldest.prefix(quotas[endpoint] ?? 0) {
                var taken = delivery
                taken.status = .sending
                taken.leaseExpiresAt = leaseUntil
                deliveries[Self.deliveryKey(delivery.messageID, delivery.endpointID)] = taken
                claimed.append(taken)
            }
        }
        return claimed.sorted { ($0.nextAttemptAt ?? .distantPast, $0.messageID, $0.endpointID) < ($1.nextAttemptAt ?? .distantPast, $1.messageID, $1.endpointID) }
    }

    public func claimLapsedDeliveries(now: Date, limit: Int, leaseUntil: Date) -> [Delivery] {
        let lapsed = deliveries.values.filter { $0.status == .sending && ($0.leaseExpiresAt ?? .distantFuture) < now }
            .sorted { ($0.leaseExpiresAt ?? .distantPast, $0.messageID, $0.endpointID) < ($1.leaseExpiresAt ?? .distantPast, $1.messageID, $1.endpointID) }
            .prefix(max(0, limit))
        return lapsed.map { delivery in
            var claimed = delivery
            claimed.leaseExpiresAt = leaseUntil
            claimed.interruptedCount += 1
            deliveries[Self.deliveryKey(delivery.messageID, delivery.endpointID)] = claimed
            return claimed
        }
    }

    public func recordEndpointHealth(app: ApplicationID, endpoint id: EndpointID, _ change: EndpointHealthChange, at date: Date) -> Bool {
        guard var endpoint = endpoints[id], endpoint.appID == app else { return false }
        switch change {
        case .failing(let since):
            guard endpoint.failingSince == nil else { return false }
            endpoint.failingSince = since
        case .healthy:
            guard endpoint.failingSince != nil else { return false }
            endpoint.failingSince = nil
        case .disabled:
            guard !endpoint.disabled else { return false }
            endpoint.disabled = true
        }
        endpoint.updatedAt = date
        endpoint.version += 1
        endpoints[id] = endpoint
        return true
    }

    public func releaseClaims(_ claimed: [Delivery]) {
        for delivery in claimed {
            let key = Self.deliveryKey(delivery.messageID, delivery.endpointID)
            guard var stored = deliveries[key], stored.status == .sending, stored.leaseExpiresAt == delivery.leaseExpiresAt else { continue }
            stored.status = .pending
            stored.leaseExpiresAt = nil
            deliveries[key] = stored
        }
    }

    public func deliveryTargets(for claimed: [Delivery]) -> DeliveryTargets {
        var targets = DeliveryTargets()
        for delivery in claimed {
            if let endpoint = endpoints[delivery.endpointID], endpoint.appID == delivery.appID { targets.endpoints[endpoint.id] = endpoint }
            if let message = messages[delivery.messageID], message.appID == delivery.appID { targets.messages[message.id] = message }
        }
        return targets
    }

    public func deliveryCounts() -> [DeliveryStatus: Int] {
        deliveries.values.reduce(into: [:]) { $0[$1.status, default: 0] += 1 }
    }

    public func releaseAllClaims() -> Int {
        var count = 0
        for (key, var delivery) in deliveries where delivery.status == .sending {
            delivery.status = .pending
            delivery.leaseExpiresAt = nil
            delivery.interruptedCount += 1
            deliveries[key] = delivery
            count += 1
        }
        return count
    }

    public func recordAttempt(_ attempt: Attempt, delivery: Delivery) {
        // Deleted while the attempt was in flight: nothing is left to record it against.
        guard endpoints[delivery.endpointID] != nil, messages[delivery.messageID] != nil else { return }
        attempts[attempt.id] = attempt
        var recorded = delivery
        recorded.interruptedCount = 0
        deliveries[Self.deliveryKey(delivery.messageID, delivery.endpointID)] = recorded
    }

    // MARK: Idempotency

    public func idempotencyRecord(key: String, now: Date) -> IdempotencyRecord? {
        guard let record = idempotency[key], record.expiresAt > now else { return nil }
        return record
    }

    public func saveIdempotencyRecord(_ record: IdempotencyRecord) {
        if let existing = idempotency[record.key], existing.expiresAt > record.createdAt { return }
        idempotency[record.key] = record
    }

    // MARK: Retention

    public func purgeExpired(now: Date) -> PurgeResult {
        let before = idempotency.count
        idempotency = idempotency.filter { $0.value.expiresAt > now }
        var payloads = 0
        for (id, var message) in messages where message.payload != nil && message.payloadExpiresAt <= now {
            message.payload = nil
            messages[id] = message
            payloads += 1
        }
        return PurgeResult(idempotencyRecords: before - idempotency.count, payloads: payloads)
    }

    public func purgeMessages(createdBefore cutoff: Date, now: Date, limit: Int) -> PurgeResult {
        let inFlight = Set(deliveries.values.filter { $0.status == .sending && ($0.leaseExpiresAt ?? .distantPast) >= now }.map(\.messageID))
        let doomed = Set(messages.values.filter { $0.createdAt < cutoff && !inFlight.contains($0.id) }
            .sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }.prefix(max(0, limit)).map(\.id))
        guard !doomed.isEmpty else { return PurgeResult() }
        let deliveriesBefore = deliveries.count, attemptsBefore = attempts.count
        for id in doomed { messages[id] = nil }
        deliveries = deliveries.filter { !doomed.contains($0.value.messageID) }
        attempts = attempts.filter { !doomed.contains($0.value.messageID) }
        return PurgeResult(messages: doomed.count, deliveries: deliveriesBefore - deliveries.count, attempts: attemptsBefore - attempts.count)
    }

    // MARK: Tokens

    public func createToken(_ token: APIToken) { tokens[token.id] = token }

    public func token(hash: [UInt8]) -> APIToken? { tokens.values.first { $0.hash == hash } }

    public func deleteToken(id: TokenID) { tokens[id] = nil }

    public func adminTokenCount() -> Int { tokens.values.filter { $0.scope == .admin }.count }

    public func listAdminTokens(_ page: PageRequest) -> Page<APIToken> {
        page.paginate(tokens.values.filter { $0.scope == .admin }) { $0.id.rawValue }
    }

    public func revokeAdminToken(id: TokenID) -> Bool {
        guard tokens[id]?.scope == .admin else { return false }
        tokens[id] = nil
        return true
    }

    // MARK: Quotas

    public func createEndpoint(_ endpoint: Endpoint, limit: Int) throws {
        guard endpoints.values.count(where: { $0.appID == endpoint.appID }) < limit else {
            throw StoreError(.limitExceeded, "the application has \(limit) endpoints already")
        }
        try createEndpoint(endpoint)
    }

    public func createEventType(_ eventType: EventType, limit: Int) throws {
        if eventTypes[eventType.name] == nil, eventTypes.count >= limit {
            throw StoreError(.limitExceeded, "there are \(limit) event types already")
        }
        try createEventType(eventType)
    }
}
