import Foundation
import Testing

/// The PostgreSQL server that tests run against: `HERALD_TEST_POSTGRES_URL` (the test command,
/// `scripts/test`, starts a throwaway one and sets it). Without it the PostgreSQL tests are skipped
/// with this reason, except in CI (`CI=true`), where a missing server is a failure.
///
/// ```swift
/// @Suite(.enabled(if: TestPostgres.url != nil, TestPostgres.skipReason))
/// struct MyPostgresTests { … TestPostgres.freshSchemaURL()! … }
/// ```
public enum TestPostgres {
    /// The server's URL, if one is configured.
    public static var url: String? {
        guard let text = ProcessInfo.processInfo.environment["HERALD_TEST_POSTGRES_URL"], !text.isEmpty else { return nil }
        return text
    }

    /// Whether a missing server fails the run (in CI).
    public static var isRequired: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    public static let skipReason: Comment =
        "PostgreSQL tests skipped: HERALD_TEST_POSTGRES_URL is not set (scripts/test starts a throwaway server)"

    /// The server's URL with a new, unique schema, so that each test has an empty database of its
    /// own (Herald creates the schema; drop it with `PostgresStore.dropSchema()`).
    public static func freshSchemaURL() -> String? {
        guard let url else { return nil }
        let schema = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
        // Small pools: many tests hold stores at once on one server.
        return url + (url.contains("?") ? "&" : "?") + "schema=\(schema)&pool_max=8"
    }
}
