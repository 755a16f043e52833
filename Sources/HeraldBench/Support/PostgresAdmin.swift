import HeraldPostgres
import Logging
import NIOPosix
import PostgresNIO

/// One PostgreSQL connection outside Herald, for what a scenario does behind the server's back
/// (seeding a backlog, dropping the schema it made). Plain TCP only (sslmode=disable or prefer):
/// the bench talks to 127.0.0.1.
enum PostgresAdmin {
    static let logger = Logger(label: "herald.bench.postgres", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Connects to `url` (Herald's URL syntax), sets `search_path` to its schema when `inSchema`,
    /// runs `work`, and closes, all within `timeout`.
    static func execute(url: String, inSchema: Bool = true, timeout: Duration,
                        _ work: @escaping @Sendable (PostgresConnection) async throws -> Void) async throws {
        let parsed = try PostgresStore.Configuration(url: url)
        guard parsed.tls != .require else { throw BenchError("the bench connects to PostgreSQL without TLS: use sslmode=disable") }
        var configuration = PostgresConnection.Configuration(host: parsed.host, port: parsed.port, username: parsed.username,
                                                             password: parsed.password, database: parsed.database, tls: .disable)
        configuration.options.connectTimeout = .seconds(10)
        let connectionConfiguration = configuration
        let schema = inSchema ? parsed.schema : nil
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                let connection = try await PostgresConnection.connect(on: MultiThreadedEventLoopGroup.singleton.next(), configuration: connectionConfiguration,
                                                                      id: 1, logger: logger)
                do {
                    if let schema {
                        // A plain identifier: Configuration(url:) checked it.
                        try await connection.query(.init(unsafeSQL: "SET search_path TO \"\(schema)\""), logger: logger)
                    }
                    try await work(connection)
                } catch {
                    try? await connection.close()
                    throw error
                }
                try await connection.close()
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw BenchError("deadline: PostgreSQL work did not finish within \(timeout)")
            }
            try await group.next()
            group.cancelAll()
        }
    }
}
