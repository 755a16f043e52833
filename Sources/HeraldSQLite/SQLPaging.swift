import GRDB
import HeraldCore

/// `PageWindow` in SQLite's SQL: the key bound, the walking order and the limit of a query.
struct SQLPaging {
    let window: PageWindow

    init(_ request: PageRequest) { window = PageWindow(request) }

    /// Adds the key bound to `query`, then the ORDER BY and LIMIT (one more row than the page, to
    /// know whether there is more).
    func apply(to query: inout SQLQuery, key: String) {
        if let after = window.after {
            query.conditions.append("\(key) \(window.ascending ? ">" : "<") ?")
            query.arguments.append(after)
        }
        query.suffix = " ORDER BY \(key) \(window.ascending ? "ASC" : "DESC") LIMIT ?"
        query.arguments.append(window.limit + 1)
    }

    func page<Item>(_ fetched: [Item], key: (Item) -> String) -> Page<Item> { window.page(fetched, key: key) }
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
