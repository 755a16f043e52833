/// Which endpoints receive a message (Svix's rules): disabled endpoints get nothing; no event
/// types means every type; an endpoint with channels only gets messages whose channels overlap.
/// Manual resend ignores these rules.
public enum EndpointFilter {
    public static func matches(_ endpoint: Endpoint, eventType: String, channels: [String]?) -> Bool {
        if endpoint.disabled { return false }
        if let types = endpoint.eventTypes, !types.isEmpty, !types.contains(eventType) { return false }
        if let wanted = endpoint.channels, !wanted.isEmpty {
            guard let channels, !Set(wanted).isDisjoint(with: channels) else { return false }
        }
        return true
    }
}
