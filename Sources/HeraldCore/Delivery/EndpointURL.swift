import Foundation

/// The rules an endpoint URL must meet, shared by the API (which refuses such URLs with a 422) and
/// the delivery transport (which re-checks every URL before it connects: endpoints stored by older
/// versions may hold URLs that these rules now refuse).
///
/// A valid URL is at most 65,536 characters of text without whitespace or control characters, has
/// the scheme `http` or `https`, a host of 1 to 253 characters, an explicit port (if any) from 1 to
/// 65535, and no `user:password@` credentials (they would be stored and shown back with the URL,
/// and appear in every attempt's log: put them in an endpoint header instead).
///
/// ```swift
/// EndpointURL.problem("https://hooks.example.com/in")   // nil: valid
/// EndpointURL.problem("http://127.0.0.1:65536/")        // "the port must be a number from 1 to 65535"
/// ```
public enum EndpointURL {
    /// The longest URL accepted, in characters.
    public static let maxLength = 65536
    /// The longest host accepted, in characters (the DNS limit for a name).
    public static let maxHostLength = 253

    /// Why `text` is not a valid endpoint URL, as a short sentence safe to show a user (it never
    /// repeats the URL, which may hold a token), or nil when it is valid.
    public static func problem(_ text: String) -> String? {
        guard text.count <= maxLength else { return "the URL is longer than \(maxLength) characters" }
        guard !text.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control }) else {
            return "the URL contains whitespace or control characters"
        }
        guard let url = URL(string: text) else { return "invalid URL" }
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            return "invalid or missing URL scheme: expected an http or https URL"
        }
        guard let authority = authority(of: text) else { return "the URL has no host" }
        if authority.hasCredentials {
            return "credentials in the URL are not allowed: set an authorization header on the endpoint instead"
        }
        guard let host = url.host, !host.isEmpty, !authority.host.isEmpty else { return "the URL has no host" }
        guard host.count <= maxHostLength, authority.host.count <= maxHostLength + 2 else {
            return "the host is longer than \(maxHostLength) characters"
        }
        if let port = authority.port {
            // Checked on the text: Foundation reads a port too large for an Int as no port at all,
            // and a port above 65535 traps the 16-bit conversion inside the HTTP client.
            guard !port.isEmpty, port.utf8.count <= 5, port.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let value = Int(port), (1...65535).contains(value) else {
                return "the port must be a number from 1 to 65535"
            }
        }
        return nil
    }

    /// The port a valid endpoint URL connects to: its explicit port, else 443 for https and 80 for http.
    public static func effectivePort(of url: URL) -> Int? {
        if let port = url.port { return (1...65535).contains(port) ? port : nil }
        switch url.scheme?.lowercased() {
        case "https": return 443
        case "http": return 80
        default: return nil
        }
    }

    /// The authority of `scheme://authority/…` split by hand, so that the port is read as written.
    private static func authority(of text: String) -> (host: Substring, port: Substring?, hasCredentials: Bool)? {
        guard let separator = text.range(of: "://") else { return nil }
        let rest = text[separator.upperBound...]
        let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        var authority = rest[..<end]
        var hasCredentials = false
        if let at = authority.lastIndex(of: "@") {
            hasCredentials = true
            authority = authority[authority.index(after: at)...]
        }
        if authority.hasPrefix("[") {
            // An IPv6 literal: `[…]` then an optional `:port`.
            guard let close = authority.firstIndex(of: "]") else { return nil }
            let host = authority[...close]
            let after = authority[authority.index(after: close)...]
            if after.isEmpty { return (host, nil, hasCredentials) }
            guard after.hasPrefix(":") else { return nil }
            return (host, after.dropFirst(), hasCredentials)
        }
        if let colon = authority.lastIndex(of: ":") {
            return (authority[..<colon], authority[authority.index(after: colon)...], hasCredentials)
        }
        return (authority, nil, hasCredentials)
    }
}
