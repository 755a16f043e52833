import Foundation
import HeraldCore
import Logging
import WebhookSignature

/// Makes one attempt of one claimed delivery: signs the payload with every active key of the
/// endpoint, sends it, records the attempt, and moves the delivery to succeeded, to its next
/// attempt time, or to failed. Also disables endpoints that answer 410 or have failed for too long.
public struct DeliveryProcessor: Sendable {
    public struct Configuration: Sendable {
        public var retryPolicy = RetryPolicy()
        /// Seconds an attempt may take, in all.
        public var requestTimeout: TimeInterval = 30
        /// Send the `svix-*` header names as well as `webhook-*`.
        public var sendSvixHeaders = false
        /// An endpoint failing continuously for this long is disabled.
        public var disableAfterFailingFor: TimeInterval = 5 * 86400
        public var userAgent = "Herald/0.1.0"

        public init() {}
    }

    let queue: any DeliveryQueue
    let transport: any WebhookTransport
    let configuration: Configuration
    let now: @Sendable () -> Date
    let metrics: DeliveryMetrics
    let logger: Logger
    /// Called after this processor changed an endpoint (disabled it, or started or ended its
    /// failure streak), so that copies of it can be dropped.
    let endpointChanged: @Sendable () -> Void

    public init(queue: any DeliveryQueue, transport: any WebhookTransport, configuration: Configuration = .init(),
                now: @escaping @Sendable () -> Date = { Date() }, metrics: DeliveryMetrics = DeliveryMetrics(), logger: Logger,
                endpointChanged: @escaping @Sendable () -> Void = {}) {
        self.endpointChanged = endpointChanged
        self.queue = queue
        self.transport = transport
        self.configuration = configuration
        self.now = now
        self.metrics = metrics
        self.logger = logger
    }

    /// Processes `claimed` (a delivery this worker holds the lease of). Returns the stored delivery,
    /// or nil when nothing was recorded (cancelled by shutdown, or the delivery vanished).
    @discardableResult
    public func process(_ claimed: Delivery) async throws -> Delivery? {
        try await process(claimed, targets: try await queue.deliveryTargets(for: [claimed]))
    }

    /// Processes `claimed` with its endpoint and message already loaded (the dispatcher loads a
    /// whole claimed batch in one read).
    @discardableResult
    public func process(_ claimed: Delivery, targets: DeliveryTargets) async throws -> Delivery? {
        try await process(claimed, endpoint: targets.endpoints[claimed.endpointID], message: targets.messages[claimed.messageID])
    }

    /// Processes `claimed` with its endpoint and message (nil when deleted meanwhile). `answered`
    /// is called exactly once: when the request is over (answered, failed or not sent), before the
    /// attempt is recorded, or on the way out if it is never reached. With `failure`, nothing is
    /// sent: a failed attempt with that reason is recorded and the delivery fails for good.
    @discardableResult
    public func process(_ claimed: Delivery, endpoint: Endpoint?, message: Message?, failure: String? = nil,
                        answered: (@Sendable () -> Void)? = nil) async throws -> Delivery? {
        var answered = answered
        func markAnswered() {
            answered?()
            answered = nil
        }
        defer { markAnswered() }
        var logger = self.logger
        logger[metadataKey: "herald.message.id"] = "\(claimed.messageID)"
        logger[metadataKey: "herald.endpoint.id"] = "\(claimed.endpointID)"
        let started = now()
        guard let endpoint, let message else {
            return nil  // deleted meanwhile: its deliveries went with it
        }

        let response: TransportResponse
        var final = failure != nil
        if let failure {
            response = TransportResponse(outcome: .failed(failure), duration: .zero)
        } else if endpoint.disabled && claimed.trigger != .manual {
            response = TransportResponse(outcome: .failed("endpoint is disabled"), duration: .zero)
        } else if let reason = endpoint.unreadable {
            // Retried on the schedule: restoring the right main key, or replacing what is damaged
            // (a new secret), heals it.
            response = TransportResponse(outcome: .failed("not sent: \(reason)"), duration: .zero)
        } else if let payload = message.payload {
            do {
                let request = try makeRequest(message: message, payload: payload, endpoint: endpoint, at: started)
                response = await transport.send(request)
                if Task.isCancelled { return nil }  // shutting down: the lease lapses and another worker retries
            } catch {
                response = TransportResponse(outcome: .failed("not sent: the payload could not be signed (\(error))"), duration: .zero)
                final = true
            }
        } else {
            response = TransportResponse(outcome: .failed("the payload was expunged"), duration: .zero)
        }
        let finished = now()
        markAnswered()

        var next = claimed
        next.attemptCount += 1
        next.lastAttemptAt = finished
        next.leaseExpiresAt = nil
        var attemptStatus = DeliveryStatus.fail
        var disable = false
        var statusCode = 0
        switch response.outcome {
        case .status(let code):
            statusCode = code
            if (200..<300).contains(code) { attemptStatus = .success }
            if code == 410 { disable = true }
        case .timeout, .failed:
            break
        }
        if attemptStatus == .success {
            next.status = .success
            next.nextAttemptAt = nil
        } else if final || claimed.trigger == .manual || disable || endpoint.disabled || message.payload == nil {
            next.status = .fail
            next.nextAttemptAt = nil
        } else {
            var rng = SystemRandomNumberGenerator()
            let outcome: RetryPolicy.Outcome
            switch response.outcome {
            case .status(let code):
                outcome = .status(code, retryAfter: response.retryAfter.flatMap { RetryPolicy.parseRetryAfter($0, now: finished) })
            case .timeout: outcome = .timeout
            case .failed: outcome = .networkError
            }
            if let at = configuration.retryPolicy.nextAttempt(after: next.attemptCount, outcome: outcome, now: finished, random: &rng) {
                next.status = .pending
                next.nextAttemptAt = at
            } else {
                next.status = .fail
                next.nextAttemptAt = nil
            }
        }

        let text: String
        switch response.outcome {
        case .status: text = response.body
        case .timeout: text = "timed out after \(configuration.requestTimeout) s"
        case .failed(let reason): text = reason
        }
        let attempt = Attempt(
            messageID: message.id, endpointID: endpoint.id, appID: message.appID, url: endpoint.url,
            responseStatusCode: statusCode, response: text, responseDurationMs: Self.milliseconds(response.duration),
            status: attemptStatus, triggerType: claimed.trigger, eventType: message.eventType, channels: message.channels,
            createdAt: started
        )
        next.interruptedCount = 0
        try await record(attempt, delivery: next, leaseUntil: claimed.leaseExpiresAt, logger: logger)
        metrics.recordAttempt(status: attemptStatus, statusCode: statusCode, duration: response.duration,
                              publishToDelivery: attemptStatus == .success && claimed.attemptCount == 0 ? finished.timeIntervalSince(message.createdAt) : nil)
        logger.debug("attempt recorded", metadata: [
            "herald.attempt.id": "\(attempt.id)", "herald.attempt.status": "\(attemptStatus.text)",
            "herald.attempt.code": "\(statusCode)", "herald.delivery.next": "\(next.status.text)",
        ])
        try await updateEndpointHealth(endpoint, succeeded: attemptStatus == .success, gone: disable, at: finished, logger: logger)
        return next
    }

    /// Records the attempt; while the store cannot write (its disk is full, or it is unreachable),
    /// tries again with a growing pause until shortly before the claim's lease lapses. Then it
    /// gives up: the delivery stays claimed until the lease lapses and is attempted again.
    func record(_ attempt: Attempt, delivery: Delivery, leaseUntil: Date?, logger: Logger) async throws {
        var pause = 0.25
        while true {
            do {
                return try await queue.recordAttempt(attempt, delivery: delivery)
            } catch let error as StoreError where error.code == .storageFull || error.code == .unavailable {
                guard let leaseUntil, now().addingTimeInterval(pause + 1) < leaseUntil else { throw error }
                logger.debug("attempt not recorded yet; trying again", metadata: ["herald.error": "\(error)"])
                try await Task.sleep(for: .seconds(pause))
                pause = min(pause * 2, 5)
            }
        }
    }

    func makeRequest(message: Message, payload: [UInt8], endpoint: Endpoint, at date: Date) throws -> OutboundRequest {
        let keys = endpoint.activeSecrets(at: date).compactMap { secret -> StandardWebhookKey? in
            switch secret.kind {
            case .hmac: return (try? WebhookSecret(bytes: secret.key)).map(StandardWebhookKey.secret)
            case .ed25519: return (try? Ed25519SigningKey(bytes: secret.key)).map(StandardWebhookKey.signingKey)
            }
        }
        let timestamp = Int64(date.timeIntervalSince1970.rounded(.down))
        let signature = try StandardWebhook(keys: keys).signature(payload: payload, id: message.id.rawValue, timestamp: timestamp)
        var headers: [(name: String, value: String)] = endpoint.headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        headers += [
            ("content-type", "application/json"),
            ("user-agent", configuration.userAgent),
            ("webhook-id", message.id.rawValue),
            ("webhook-timestamp", String(timestamp)),
            ("webhook-signature", signature),
        ]
        if configuration.sendSvixHeaders {
            headers += [("svix-id", message.id.rawValue), ("svix-timestamp", String(timestamp)), ("svix-signature", signature)]
        }
        return OutboundRequest(url: endpoint.url, headers: headers, body: payload, timeout: configuration.requestTimeout)
    }

    /// 410 disables at once; a continuous failure longer than the limit disables; a success heals.
    /// Each change is a narrow write of the endpoint's health (`DeliveryQueue.recordEndpointHealth`),
    /// so it never undoes a change the API made meanwhile.
    func updateEndpointHealth(_ seen: Endpoint, succeeded: Bool, gone: Bool, at date: Date, logger: Logger) async throws {
        var changed = false
        if succeeded {
            guard seen.failingSince != nil else { return }  // the common case: healthy and succeeding
            changed = try await queue.recordEndpointHealth(app: seen.appID, endpoint: seen.id, .healthy, at: date)
        } else {
            if seen.failingSince == nil {
                changed = try await queue.recordEndpointHealth(app: seen.appID, endpoint: seen.id, .failing(since: date), at: date)
            }
            let failingFor = date.timeIntervalSince(seen.failingSince ?? date)
            if !seen.disabled && (gone || failingFor >= configuration.disableAfterFailingFor),
               try await queue.recordEndpointHealth(app: seen.appID, endpoint: seen.id, .disabled, at: date) {
                changed = true
                metrics.endpointDisabled()
                logger.notice("endpoint disabled", metadata: ["herald.endpoint.reason": "\(gone ? "410 Gone" : "failing for \(Self.seconds(failingFor)) s")"])
            }
        }
        if changed { endpointChanged() }
    }

    /// Whole seconds of an interval between stored dates, clamped (never traps).
    static func seconds(_ interval: TimeInterval) -> Int {
        interval.isFinite ? Int(min(max(interval, -1e15), 1e15)) : 0
    }

    /// Whole milliseconds of `duration`, clamped (a stored duration never traps).
    static func milliseconds(_ duration: Duration) -> Int {
        let value = duration.milliseconds
        guard value.isFinite else { return 0 }
        return Int(min(max(value, 0), 86_400_000))
    }
}

extension Duration {
    var milliseconds: Double {
        Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
    }
}
