import HeraldCore

/// Quotas and response bounds of the API. Each refusal is a 422 naming the limit and the setting
/// that raises it.
public struct APILimits: Sendable, Hashable {
    /// Endpoints one application may have (`--max-endpoints-per-app`): one publish fans out to at
    /// most this many deliveries, inside one write transaction.
    public var maxEndpointsPerApplication = 100
    /// Custom headers one endpoint may carry (`--max-endpoint-headers`)...
    public var maxEndpointHeaders = 20
    /// ...and their names and values together, in bytes (`--max-endpoint-headers-bytes`).
    public var maxEndpointHeaderBytes = 8 * 1024
    /// Event types in all (`--max-event-types`), archived ones included.
    public var maxEventTypes = 1000
    /// Content (message payloads, attempt responses) in one list page, in bytes
    /// (`--max-list-bytes`): the page stops early with `done: false` and an `iterator`.
    public var maxListContentBytes = 16 << 20

    public init() {}

    /// Refuses headers over the count or size limit, naming the field `loc`.
    func checkHeaders(_ headers: [String: String], loc: [String] = ["body", "headers"]) throws {
        if headers.count > maxEndpointHeaders {
            throw ValidationFailure(loc: loc, "an endpoint may have at most \(maxEndpointHeaders) headers (--max-endpoint-headers)",
                                    type: "value_error.limit")
        }
        let bytes = headers.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }
        if bytes > maxEndpointHeaderBytes {
            throw ValidationFailure(loc: loc, "an endpoint's headers may hold at most \(maxEndpointHeaderBytes) bytes of names and values (--max-endpoint-headers-bytes)",
                                    type: "value_error.limit")
        }
    }

    static func endpointsFull(_ limit: Int) -> ValidationFailure {
        ValidationFailure(loc: ["body", "url"], "an application may have at most \(limit) endpoints (--max-endpoints-per-app)", type: "value_error.limit")
    }

    static func eventTypesFull(_ limit: Int) -> ValidationFailure {
        ValidationFailure(loc: ["body", "name"], "there may be at most \(limit) event types (--max-event-types)", type: "value_error.limit")
    }

    /// `page` bounded by `maxListContentBytes`, with or without content.
    func bounded(_ page: PageRequest, withContent: Bool = true) -> PageRequest {
        var page = page
        page.maxContentBytes = maxListContentBytes
        page.withContent = withContent
        return page
    }
}
