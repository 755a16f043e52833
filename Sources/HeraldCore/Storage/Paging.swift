/// The order of a listing.
public enum ListOrder: String, Sendable, Codable {
    case ascending
    case descending
}

/// A page request: at most `limit` items after `iterator` in `order`. An iterator that starts
/// with `-` (a `prevIterator`) pages backwards from that key.
public struct PageRequest: Sendable, Hashable {
    public var limit: Int
    public var iterator: String?
    public var order: ListOrder
    /// At most this many bytes of content (message payloads, attempt responses) in one page; the
    /// page stops early (`done` false, `iterator` set) rather than go over, but always holds at
    /// least one item. Nil: no byte bound.
    public var maxContentBytes: Int?
    /// False: items come back without their content (payloads), which the store does not read.
    public var withContent: Bool

    public init(limit: Int = 50, iterator: String? = nil, order: ListOrder = .ascending,
                maxContentBytes: Int? = nil, withContent: Bool = true) {
        self.limit = max(1, min(limit, 250))
        self.iterator = iterator
        self.order = order
        self.maxContentBytes = maxContentBytes
        self.withContent = withContent
    }

    /// How many of `sizes` (content bytes of the items in walking order) fit in one page under
    /// `maxContentBytes`: at least one; `sizes.count` when there is no bound or all fit.
    public func contentFit(_ sizes: [Int]) -> Int {
        guard let budget = maxContentBytes, withContent else { return sizes.count }
        var total = 0
        for (index, size) in sizes.enumerated() {
            total += size
            if total > budget { return max(1, index) }
        }
        return sizes.count
    }
}

/// One page of a listing, in Svix's shape.
public struct Page<Item: Sendable>: Sendable {
    public var items: [Item]
    /// Pass as `iterator` for the next page.
    public var iterator: String?
    /// Pass as `iterator` for the previous page.
    public var prevIterator: String?
    public var done: Bool

    public init(items: [Item], iterator: String?, prevIterator: String?, done: Bool) {
        self.items = items
        self.iterator = iterator
        self.prevIterator = prevIterator
        self.done = done
    }

    public func map<T>(_ transform: (Item) throws -> T) rethrows -> Page<T> {
        Page<T>(items: try items.map(transform), iterator: iterator, prevIterator: prevIterator, done: done)
    }
}

extension PageRequest {
    /// Pages `all` (any order) by `key`: the reference implementation that every store must match.
    public func paginate<Item>(_ all: [Item], key: (Item) -> String, contentSize: ((Item) -> Int)? = nil) -> Page<Item> {
        var backwards = false
        var after: String?
        if let iterator, !iterator.isEmpty {
            if iterator.hasPrefix("-") { backwards = true; after = String(iterator.dropFirst()) } else { after = iterator }
        }
        // Walking direction: the listing order, reversed when paging backwards.
        let ascending = (order == .ascending) != backwards
        var sorted = all.sorted { ascending ? key($0) < key($1) : key($0) > key($1) }
        if let after {
            sorted = sorted.filter { ascending ? key($0) > after : key($0) < after }
        }
        var items = Array(sorted.prefix(limit))
        var more = sorted.count > limit
        if maxContentBytes != nil, let size = contentSize {
            let fit = contentFit(items.map(size))
            if fit < items.count { items = Array(items.prefix(fit)); more = true }
        }
        if backwards { items.reverse() }
        guard let first = items.first, let last = items.last else {
            return Page(items: [], iterator: after, prevIterator: after.map { "-" + $0 }, done: true)
        }
        return Page(
            items: items,
            iterator: key(last),
            prevIterator: "-" + key(first),
            done: backwards ? false : !more
        )
    }
}
