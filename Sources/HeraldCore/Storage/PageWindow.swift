/// `PageRequest.paginate` for a database: which key bound and walking order a query needs for a
/// page, and the page built from the fetched rows. A store fetches up to `limit + 1` rows with
/// `key > after` (or `<`, per `ascending`) ordered by the key in the walking direction, then calls
/// `page`. Gives exactly the reference results.
public struct PageWindow: Sendable {
    public let limit: Int
    /// Paging backwards (a `-` prefixed iterator): the rows are walked in reverse and turned around.
    public let backwards: Bool
    /// The key bound, exclusive; nil on the first page.
    public let after: String?
    /// Walking direction: the listing order, reversed when paging backwards.
    public let ascending: Bool

    public init(_ request: PageRequest) {
        var backwards = false
        var after: String?
        if let iterator = request.iterator, !iterator.isEmpty {
            if iterator.hasPrefix("-") {
                backwards = true
                after = String(iterator.dropFirst())
            } else {
                after = iterator
            }
        }
        self.limit = request.limit
        self.backwards = backwards
        self.after = after
        self.ascending = (request.order == .ascending) != backwards
    }

    /// The page made of `fetched` (the rows in walking order, up to `limit + 1`). With
    /// `contentFit` (how many of the first `limit` rows fit the request's byte budget:
    /// `PageRequest.contentFit`), the page stops there and is not done.
    public func page<Item>(_ fetched: [Item], key: (Item) -> String, contentFit: Int? = nil) -> Page<Item> {
        var items = Array(fetched.prefix(limit))
        var more = fetched.count > limit
        if let contentFit, contentFit < items.count {
            items = Array(items.prefix(max(1, contentFit)))
            more = true
        }
        if backwards { items.reverse() }
        guard let first = items.first, let last = items.last else {
            return Page(items: [], iterator: after, prevIterator: after.map { "-" + $0 }, done: true)
        }
        return Page(items: items, iterator: key(last), prevIterator: "-" + key(first), done: backwards ? false : !more)
    }
}
