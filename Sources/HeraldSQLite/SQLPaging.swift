import GRDB
import HeraldCore

/// `PageRequest.paginate` in SQL: the key bound, the walking order and the limit of a query, and the
/// page built from the fetched rows. Gives exactly the reference results.
struct SQLPaging {
    let limit: Int
    let backwards: Bool
    let after: String?
    /// Walking direction: the listing order, reversed when paging backwards.
    let ascending: Bool

    init(_ request: PageRequest) {
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

    /// Adds the key bound to `query`, then the ORDER BY and LIMIT (one more row than the page, to
    /// know whether there is more).
    func apply(to query: inout SQLQuery, key: String) {
        if let after {
            query.conditions.append("\(key) \(ascending ? ">" : "<") ?")
            query.arguments.append(after)
        }
        query.suffix = " ORDER BY \(key) \(ascending ? "ASC" : "DESC") LIMIT ?"
        query.arguments.append(limit + 1)
    }

    func page<Item>(_ fetched: [Item], key: (Item) -> String) -> Page<Item> {
        var items = Array(fetched.prefix(limit))
        let more = fetched.count > limit
        if backwards { items.reverse() }
        guard let first = items.first, let last = items.last else {
            return Page(items: [], iterator: after, prevIterator: after.map { "-" + $0 }, done: true)
        }
        return Page(items: items, iterator: key(last), prevIterator: "-" + key(first), done: backwards ? false : !more)
    }
}

/// A SELECT assembled from fixed SQL fragments and bound arguments.
struct SQLQuery {
    var head: String
    var conditions: [String] = []
    var arguments: [DatabaseValue] = []
    var suffix = ""

    init(_ head: String) { self.head = head }

    var sql: String {
        head + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")) + suffix
    }

    var statementArguments: StatementArguments { StatementArguments(arguments) }

    mutating func require(_ condition: String, _ values: any DatabaseValueConvertible...) {
        conditions.append(condition)
        arguments.append(contentsOf: values.map { $0.databaseValue })
    }

    /// Adds `MessageFilter`'s conditions on the columns of `table` (event_type, channels, created_at).
    mutating func filter(_ filter: MessageFilter, table: String) {
        if let types = filter.eventTypes, !types.isEmpty {
            conditions.append("\(table).event_type IN (\(Array(repeating: "?", count: types.count).joined(separator: ",")))")
            arguments.append(contentsOf: types.map { $0.databaseValue })
        }
        if let channel = filter.channel {
            require("EXISTS (SELECT 1 FROM json_each(\(table).channels) WHERE json_each.value = ?)", channel)
        }
        if let before = filter.before {
            require("\(table).created_at < ?", before.storedValue)
        }
        if let after = filter.after {
            require("\(table).created_at > ?", after.storedValue)
        }
    }
}

extension Array where Element == DatabaseValue {
    mutating func append(_ value: some DatabaseValueConvertible) { append(value.databaseValue) }
}
