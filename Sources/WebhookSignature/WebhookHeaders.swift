/// A webhook request's headers, looked up case-insensitively.
///
/// ```swift
/// let headers = WebhookHeaders(["Webhook-Id": "msg_1", "webhook-timestamp": "1614265330"])
/// headers["WEBHOOK-ID"] // "msg_1"
/// ```
public struct WebhookHeaders: Sendable, Hashable, ExpressibleByDictionaryLiteral {
    /// Name (lowercased) and value pairs, in the order they were given.
    public private(set) var fields: [(name: String, value: String)]

    public init() { self.fields = [] }

    public init(_ fields: some Sequence<(String, String)>) {
        self.fields = fields.map { (name: $0.0.lowercased(), value: $0.1) }
    }

    public init(_ dictionary: [String: String]) {
        self.init(dictionary.map { ($0.key, $0.value) })
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    /// Appends a header; names are matched case-insensitively.
    public mutating func add(_ name: String, _ value: String) {
        fields.append((name: name.lowercased(), value: value))
    }

    /// The first value of `name`, if present.
    public subscript(_ name: String) -> String? {
        let lowered = name.lowercased()
        return fields.first { $0.name == lowered }?.value
    }

    /// Every value of `name`, in order.
    public func values(_ name: String) -> [String] {
        let lowered = name.lowercased()
        return fields.filter { $0.name == lowered }.map(\.value)
    }

    /// The first of `names` that is present, and its value.
    public func first(of names: [String]) -> (name: String, value: String)? {
        for name in names {
            if let value = self[name] { return (name, value) }
        }
        return nil
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.fields.elementsEqual(rhs.fields) { $0.name == $1.name && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for field in fields {
            hasher.combine(field.name)
            hasher.combine(field.value)
        }
    }
}
