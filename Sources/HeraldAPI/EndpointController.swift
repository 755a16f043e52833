import Foundation
import HeraldCore
import Hummingbird
import WebhookSignature

/// `/api/v1/app/{app}/endpoint`: CRUD by id or uid, secret get/rotate, headers, stats,
/// send-example, recover.
struct EndpointController {
    let store: any HeraldStore
    let onNewWork: @Sendable () -> Void
    let limits: APILimits

    /// Old secrets kept signing during rotation, at most.
    static let maxOldSecrets = 10
    /// Headers that Herald sets itself and an endpoint may not override.
    static let reservedHeaders: Set<String> = [
        "webhook-id", "webhook-timestamp", "webhook-signature", "svix-id", "svix-timestamp", "svix-signature",
        "content-type", "content-length", "host", "connection", "transfer-encoding", "keep-alive", "te",
        "trailer", "upgrade", "user-agent", "expect",
    ]
    /// Headers whose values are never shown back.
    static let sensitiveHeaders: Set<String> = ["authorization", "proxy-authorization", "cookie", "x-api-key", "x-auth-token"]

    func register(on group: RouterGroup<APIRequestContext>) {
        group.get("app/:app_id/endpoint", use: list)
        group.post("app/:app_id/endpoint", use: create)
        group.get("app/:app_id/endpoint/:endpoint_id", use: get)
        group.put("app/:app_id/endpoint/:endpoint_id", use: update)
        group.patch("app/:app_id/endpoint/:endpoint_id", use: patch)
        group.delete("app/:app_id/endpoint/:endpoint_id", use: delete)
        group.get("app/:app_id/endpoint/:endpoint_id/secret", use: getSecret)
        group.post("app/:app_id/endpoint/:endpoint_id/secret/rotate", use: rotateSecret)
        group.get("app/:app_id/endpoint/:endpoint_id/headers", use: getHeaders)
        group.put("app/:app_id/endpoint/:endpoint_id/headers", use: putHeaders)
        group.patch("app/:app_id/endpoint/:endpoint_id/headers", use: patchHeaders)
        group.get("app/:app_id/endpoint/:endpoint_id/stats", use: stats)
        group.post("app/:app_id/endpoint/:endpoint_id/send-example", use: sendExample)
        group.post("app/:app_id/endpoint/:endpoint_id/recover", use: recover)
    }

    // MARK: Reading input

    static func parseSecret(_ body: inout BodyReader, key: String) -> EndpointSecret? {
        guard let text = body.string(key) else { return nil }
        if text.hasPrefix(Ed25519SigningKey.prefix) {
            // A Herald extension: an ed25519 signing key, so the endpoint gets `v1a,` signatures.
            guard let signing = try? Ed25519SigningKey(text) else {
                body.fail(key, "an ed25519 key is 'whsk_' followed by 32 or 64 bytes in base64", type: "value_error")
                return nil
            }
            return EndpointSecret(key: signing.seed, kind: .ed25519)
        }
        let encoded = text.hasPrefix("whsec_") ? String(text.dropFirst(6)) : text
        let validCharacters = encoded.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "+") || c == UInt8(ascii: "/") || c == UInt8(ascii: "=")
        }
        guard validCharacters, (32...100).contains(encoded.count), let secret = try? WebhookSecret(text), (24...75).contains(secret.bytes.count) else {
            body.fail(key, "secret must be 'whsec_' followed by 24 to 75 bytes in base64", type: "value_error.str.regex")
            return nil
        }
        return EndpointSecret(key: secret.bytes)
    }

    /// The text form of a key: `whsec_…`, or `whsk_…` for ed25519.
    static func encoded(_ secret: EndpointSecret) -> String {
        switch secret.kind {
        case .hmac: return "whsec_" + Data(secret.key).base64EncodedString()
        case .ed25519: return (try? Ed25519SigningKey(bytes: secret.key).encoded) ?? ""
        }
    }

    /// A new key of the same kind as `current` (HMAC when there is none).
    static func generate(like current: EndpointSecret?) -> EndpointSecret {
        if current?.kind == .ed25519 { return EndpointSecret(key: Ed25519SigningKey.generate().seed, kind: .ed25519) }
        return EndpointSecret(key: WebhookSecret.generate().bytes)
    }

    /// Whether `text` meets `EndpointURL`'s rules (scheme, host, port, length, no credentials).
    static func validURL(_ text: String) -> Bool { EndpointURL.problem(text) == nil }

    static func read(_ body: inout BodyReader, into endpoint: inout Endpoint, partial: Bool) {
        if !partial || body.has("url") {
            if let url = body.string("url", required: true, minLength: 1, maxLength: 65536) {
                if let problem = EndpointURL.problem(url) { body.fail("url", problem, type: "value_error.url") } else { endpoint.url = url }
            }
        }
        if !partial || body.has("description") { endpoint.description = body.string("description") ?? "" }
        if !partial || body.has("disabled") { endpoint.disabled = body.bool("disabled") ?? false }
        if !partial || body.has("uid") { endpoint.uid = body.string("uid", minLength: 1, maxLength: 256, pattern: .identifier) }
        for key in ["eventTypes", "filterTypes"] where !partial || body.has(key) {
            if key == "filterTypes" && !body.has(key) { continue }
            let types = body.stringArray(key, pattern: .identifier)
            endpoint.eventTypes = (types?.isEmpty ?? true) ? nil : types
        }
        if !partial || body.has("channels") {
            let channels = body.stringArray("channels", maxItems: 10, pattern: .channel, itemMaxLength: 128)
            endpoint.channels = (channels?.isEmpty ?? true) ? nil : channels
        }
        for key in ["throttleRate", "rateLimit"] where body.has(key) || (!partial && key == "throttleRate") {
            endpoint.throttleRate = body.int(key, min: partial ? 0 : 1, max: 65535)
            if body.has(key) { break }
        }
        if !partial || body.has("metadata") { endpoint.metadata = body.stringMap("metadata") ?? [:] }
    }

    /// Validates headers: names are HTTP tokens and not reserved; no CR, LF or NUL anywhere.
    static func validateHeaders(_ headers: [String: String?], body: inout BodyReader) {
        for (name, value) in headers {
            let lowered = name.lowercased()
            let isToken = !name.isEmpty && name.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || "!#$%&'*+-.^_`|~".utf8.contains(c)
            }
            if !isToken {
                body.fail(["headers", name], "invalid header name", type: "value_error")
            } else if reservedHeaders.contains(lowered) || lowered.hasPrefix("proxy-") {
                body.fail(["headers", name], "'\(name)' is set by Herald and cannot be overridden", type: "value_error")
            } else if let value, value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 }) {
                body.fail(["headers", name], "header values cannot contain CR, LF or NUL", type: "value_error")
            }
        }
    }

    static func readHeaders(_ body: inout BodyReader, allowNull: Bool) -> [String: String?]? {
        guard let raw = body.object["headers"] else { body.fail("headers", "field required", type: "value_error.missing"); return nil }
        guard let dictionary = raw as? [String: Any] else { body.fail("headers", "value is not a valid dict", type: "type_error.dict"); return nil }
        var result: [String: String?] = [:]
        for (name, value) in dictionary {
            if let text = value as? String { result[name] = .some(text) }
            else if allowNull, value is NSNull { result[name] = .some(nil) }
            else { body.fail(["headers", name], "str type expected", type: "type_error.str") }
        }
        validateHeaders(result, body: &body)
        return result
    }

    func find(_ context: APIRequestContext) async throws -> (Application, Endpoint) {
        let app = try await resolveApplication(context.parameters.require("app_id"), store: store, context: context)
        guard let endpoint = try await store.endpoint(app: app.id, ref: context.parameters.require("endpoint_id")) else {
            throw APIError.notFound("Endpoint")
        }
        return (app, endpoint)
    }

    // MARK: CRUD

    @Sendable func list(_ request: Request, context: APIRequestContext) async throws -> Response {
        let app = try await resolveApplication(context.parameters.require("app_id"), store: store, context: context)
        var query = QueryReader(request)
        let page = query.page(defaultOrder: .ascending)
        try query.finish()
        let result = try await store.listEndpoints(app: app.id, page)
        return APIResponse.json(.ok, try ListOut.encode(result) { try APIJSON.encode(EndpointOut(endpoint: $0)) })
    }

    func createEndpoint(app: Application, body: inout BodyReader, uidFromPath: String? = nil) async throws -> Endpoint {
        var endpoint = Endpoint(appID: app.id, url: "", secrets: [])
        Self.read(&body, into: &endpoint, partial: false)
        let secret = Self.parseSecret(&body, key: "secret") ?? EndpointSecret(key: WebhookSecret.generate().bytes)
        endpoint.secrets = [secret]
        if body.has("headers"), let headers = Self.readHeaders(&body, allowNull: false) {
            endpoint.headers = headers.compactMapValues { $0 }
        }
        try body.finish()
        try limits.checkHeaders(endpoint.headers)
        if endpoint.uid == nil, let uidFromPath { endpoint.uid = uidFromPath }
        if let uid = endpoint.uid, try await store.endpoint(app: app.id, ref: uid) != nil {
            throw APIError.conflict("An endpoint with uid '\(uid)' already exists")
        }
        do {
            try await store.createEndpoint(endpoint, limit: limits.maxEndpointsPerApplication)
        } catch let error as StoreError where error.code == .limitExceeded {
            throw APILimits.endpointsFull(limits.maxEndpointsPerApplication)
        }
        return endpoint
    }

    @Sendable func create(_ request: Request, context: APIRequestContext) async throws -> Response {
        let app = try await resolveApplication(context.parameters.require("app_id"), store: store, context: context)
        var body = try await BodyReader.read(request)
        let endpoint = try await createEndpoint(app: app, body: &body)
        return try APIResponse.json(.created, EndpointOut(endpoint: endpoint))
    }

    @Sendable func get(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (_, endpoint) = try await find(context)
        return try APIResponse.json(.ok, EndpointOut(endpoint: endpoint))
    }

    @Sendable func update(_ request: Request, context: APIRequestContext) async throws -> Response {
        let app = try await resolveApplication(context.parameters.require("app_id"), store: store, context: context)
        let ref = try context.parameters.require("endpoint_id")
        var body = try await BodyReader.read(request)
        let updated = try await modify(app: app, ref: ref) { endpoint in
            var reader = body
            Self.read(&reader, into: &endpoint, partial: false)
            try reader.finish()
        }
        guard let updated else {
            let uid = IDPattern.identifier.matches(ref) && EndpointID(parsing: ref) == nil ? ref : nil
            let created = try await createEndpoint(app: app, body: &body, uidFromPath: uid)
            return try APIResponse.json(.created, EndpointOut(endpoint: created))
        }
        return try APIResponse.json(.ok, EndpointOut(endpoint: updated))
    }

    @Sendable func patch(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (app, found) = try await find(context)
        let body = try await BodyReader.read(request)
        let updated = try await modify(app: app, ref: found.id.rawValue) { endpoint in
            var reader = body
            Self.read(&reader, into: &endpoint, partial: true)
            try reader.finish()
        }
        guard let updated else { throw APIError.notFound("Endpoint") }
        return try APIResponse.json(.ok, EndpointOut(endpoint: updated))
    }

    /// Reads the endpoint, applies `change` and writes it over the version it read, again from a
    /// fresh read if another write came in between (another request, another node, or the
    /// dispatcher's health write), so no change is ever undone by a concurrent one. An endpoint
    /// enabled again starts with a clean failure streak. Nil when there is no such endpoint.
    func modify(app: Application, ref: String, _ change: (inout Endpoint) throws -> Void) async throws -> Endpoint? {
        try await store.modifyEndpoint(app: app.id, ref: ref) { endpoint in
            let wasDisabled = endpoint.disabled
            try change(&endpoint)
            if wasDisabled && !endpoint.disabled { endpoint.failingSince = nil }
            endpoint.updatedAt = Date()
        }
    }

    @Sendable func delete(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (app, endpoint) = try await find(context)
        try await store.deleteEndpoint(app: app.id, id: endpoint.id)
        return APIResponse.empty()
    }

    // MARK: Secret

    @Sendable func getSecret(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (_, endpoint) = try await find(context)
        guard let current = endpoint.secrets.first else {
            if endpoint.unreadable != nil { throw Self.unreadableSecret }
            throw APIError.notFound("Endpoint secret")
        }
        return try APIResponse.json(.ok, ["key": Self.encoded(current)])
    }

    static let unreadableSecret = APIError(.conflict, code: "secret_unreadable",
        "The endpoint's secret cannot be read: it was sealed with another main key (HERALD_MAIN_KEY or the key file) or is damaged. Rotate the secret to set a new one; deliveries to this endpoint fail until then")

    @Sendable func rotateSecret(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (app, found) = try await find(context)
        var body = try await BodyReader.read(request)
        let requested = Self.parseSecret(&body, key: "key")
        let grace = body.int("gracePeriodSeconds", min: 0, max: 604_800) ?? 86_400
        try body.finish()
        let generated = requested ?? Self.generate(like: found.secrets.first)
        let updated = try await modify(app: app, ref: found.id.rawValue) { endpoint in
            let now = Date()
            var old = endpoint.secrets.filter { $0.expiresAt.map { $0 > now } ?? true }
            if !old.isEmpty {
                // The current key keeps signing during the grace period.
                if old[0].expiresAt == nil { old[0].expiresAt = now.addingTimeInterval(TimeInterval(grace)) }
            }
            old = old.filter { ($0.expiresAt ?? now) > now }
            endpoint.secrets = [generated] + old.prefix(Self.maxOldSecrets)
        }
        guard updated != nil else { throw APIError.notFound("Endpoint") }
        // The Svix SDKs (2.x) read the new key back from this answer.
        return try APIResponse.json(.ok, ["key": Self.encoded(generated)])
    }

    // MARK: Headers

    @Sendable func getHeaders(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (_, endpoint) = try await find(context)
        struct HeadersOut: Encodable { let headers: [String: String]; let sensitive: [String] }
        let visible = endpoint.headers.filter { !Self.sensitiveHeaders.contains($0.key.lowercased()) }
        let sensitive = endpoint.headers.keys.filter { Self.sensitiveHeaders.contains($0.lowercased()) }.sorted()
        return try APIResponse.json(.ok, HeadersOut(headers: visible, sensitive: sensitive))
    }

    @Sendable func putHeaders(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (app, found) = try await find(context)
        var body = try await BodyReader.read(request)
        let headers = Self.readHeaders(&body, allowNull: false)
        try body.finish()
        let limits = self.limits
        let updated = try await modify(app: app, ref: found.id.rawValue) { endpoint in
            endpoint.headers = (headers ?? [:]).compactMapValues { $0 }
            try limits.checkHeaders(endpoint.headers)
        }
        guard updated != nil else { throw APIError.notFound("Endpoint") }
        return APIResponse.empty()
    }

    @Sendable func patchHeaders(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (app, found) = try await find(context)
        var body = try await BodyReader.read(request)
        let headers = Self.readHeaders(&body, allowNull: true)
        // The Svix SDKs send removals as `deleteHeaders`; a null value removes too.
        let removals = body.stringArray("deleteHeaders", itemMaxLength: 1024) ?? []
        try body.finish()
        let limits = self.limits
        let updated = try await modify(app: app, ref: found.id.rawValue) { endpoint in
            for name in removals {
                for existing in endpoint.headers.keys where existing.lowercased() == name.lowercased() { endpoint.headers[existing] = nil }
            }
            for (name, value) in headers ?? [:] {
                // Header names are case-insensitive: replace any spelling of the same name.
                for existing in endpoint.headers.keys where existing.lowercased() == name.lowercased() { endpoint.headers[existing] = nil }
                if let value { endpoint.headers[name] = value }
            }
            try limits.checkHeaders(endpoint.headers)
        }
        guard updated != nil else { throw APIError.notFound("Endpoint") }
        return APIResponse.empty()
    }

    // MARK: Stats, example, recover

    @Sendable func stats(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (app, endpoint) = try await find(context)
        var query = QueryReader(request)
        let since = query.date("since")
        let until = query.date("until")
        try query.finish()
        let stats = try await store.endpointStats(app: app.id, endpoint: endpoint.id, since: since, until: until)
        return try APIResponse.json(.ok, stats)
    }

    @Sendable func sendExample(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (app, endpoint) = try await find(context)
        var body = try await BodyReader.read(request)
        let eventType = body.string("eventType", required: true, minLength: 1, maxLength: 256, pattern: .identifier)
        try body.finish()
        guard let eventType else { throw ValidationFailure(body.errors) }
        let payload = try await examplePayload(for: eventType)
        let message = Message(appID: app.id, eventType: eventType, payload: payload)
        let result = try await store.publish(PublishRequest(message: message, onlyEndpoint: endpoint.id))
        onNewWork()
        return APIResponse.json(.ok, MessageOut(message: result.message).json(withContent: true))
    }

    /// The first example of the event type's newest schema, or a small placeholder object.
    func examplePayload(for eventType: String) async throws -> [UInt8] {
        if let stored = try await store.eventType(name: eventType), let schemas = stored.schemas,
           let object = try? JSONSerialization.jsonObject(with: Data(schemas)) as? [String: Any] {
            for version in object.keys.sorted().reversed() {
                if let schema = object[version] as? [String: Any], let examples = schema["examples"] as? [Any],
                   let example = examples.first, example is [String: Any],
                   let data = try? JSONSerialization.data(withJSONObject: example, options: [.sortedKeys, .withoutEscapingSlashes]) {
                    return [UInt8](data)
                }
            }
        }
        return Array(#"{"type":"\#(eventType)","example":true}"#.utf8)
    }

    @Sendable func recover(_ request: Request, context: APIRequestContext) async throws -> Response {
        let (app, endpoint) = try await find(context)
        var body = try await BodyReader.read(request)
        let since = body.date("since", required: true)
        let until = body.date("until")
        try body.finish()
        let now = Date()
        let count = try await store.recover(app: app.id, endpoint: endpoint.id, since: since ?? now, until: until, now: now)
        if count > 0 { onNewWork() }
        context.logger.info("recover queued", metadata: ["herald.endpoint.id": "\(endpoint.id)", "herald.recover.count": "\(count)"])
        struct RecoverOut: Encodable { let id: String; let status: String; let task: String; let updatedAt: Date }
        return try APIResponse.json(.accepted, RecoverOut(id: "qtask_" + String(MessageID.generate().rawValue.dropFirst(4)), status: "running", task: "endpoint.recover", updatedAt: now))
    }
}
