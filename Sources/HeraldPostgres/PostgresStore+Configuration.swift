import Foundation
import HeraldCore
import PostgresNIO

extension PostgresStore {
    /// Where the database is and how the pool behaves. Built from a URL:
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require&pool_max=N&schema=NAME&connect_timeout=S&operation_timeout=S]`.
    public struct Configuration: Sendable {
        /// How the connection is encrypted (libpq's `sslmode` names).
        public enum TLSMode: String, Sendable, CaseIterable {
            /// Plain TCP.
            case disable
            /// TLS when the server offers it (the default, as with libpq).
            case prefer
            /// TLS or no connection.
            case require
        }

        public var host: String
        public var port: Int
        public var username: String
        public var password: String?
        public var database: String?
        /// The schema Herald's tables live in (first in `search_path`); nil: the server's default (`public`).
        public var schema: String?
        public var tls: TLSMode
        /// Connections this node opens at most. Each API request or delivery attempt holds one only
        /// for the length of its statements; the notification listener holds one for good.
        public var maximumConnections: Int
        /// How long an idle connection stays open. Short on purpose: the pool arms this timer each
        /// time a connection goes idle (after every statement), and a disarmed timer holds a little
        /// memory until it would have fired. (No minimum of open connections: PostgresNIO 1.33's pool
        /// traps when connections die below a minimum, as in a PostgreSQL restart.)
        public var idleTimeout: Duration
        /// How long to wait for one connection.
        public var connectTimeout: Duration
        /// How long `connect` waits for the first connection and the migrations.
        public var startupTimeout: Duration
        /// The longest a store operation (a statement, or a transaction) may take, waiting for a
        /// connection included; past it the caller gets an `.unavailable` error (HTTP 503), so a
        /// request caught in a database outage is answered. Also PostgreSQL's `statement_timeout`.
        public var operationTimeout: Duration

        public init(host: String = "127.0.0.1", port: Int = 5432, username: String = "postgres", password: String? = nil,
                    database: String? = nil, schema: String? = nil, tls: TLSMode = .prefer, maximumConnections: Int = 20,
                    idleTimeout: Duration = .seconds(10), connectTimeout: Duration = .seconds(10), startupTimeout: Duration = .seconds(30),
                    operationTimeout: Duration = .seconds(15)) {
            self.host = host
            self.port = port
            self.username = username
            self.password = password
            self.database = database
            self.schema = schema
            self.tls = tls
            self.maximumConnections = maximumConnections
            self.idleTimeout = idleTimeout
            self.connectTimeout = connectTimeout
            self.startupTimeout = startupTimeout
            self.operationTimeout = operationTimeout
        }

        /// Parses a `postgres://` or `postgresql://` URL. Errors name the bad part, never the password.
        public init(url text: String) throws {
            guard text.hasPrefix("postgres://") || text.hasPrefix("postgresql://"),
                  let components = URLComponents(string: text) else {
                throw StoreError(.unavailable, "expected a URL like postgres://USER:PASSWORD@HOST:PORT/DATABASE")
            }
            guard let host = components.host, !host.isEmpty else {
                throw StoreError(.unavailable, "the PostgreSQL URL has no host")
            }
            self.init(host: host, port: components.port ?? 5432,
                      username: components.user.flatMap { $0.removingPercentEncoding } ?? "postgres",
                      password: components.password.flatMap { $0.removingPercentEncoding })
            let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
            database = path.isEmpty ? nil : path.removingPercentEncoding
            for item in components.queryItems ?? [] {
                let value = item.value ?? ""
                switch item.name {
                case "sslmode":
                    switch value {
                    case "disable", "allow": tls = .disable
                    case "prefer": tls = .prefer
                    case "require", "verify-ca", "verify-full": tls = .require
                    default: throw StoreError(.unavailable, "sslmode must be disable, prefer or require, got '\(value.prefix(20))'")
                    }
                case "pool_max":
                    guard let count = Int(value), count >= 2, count <= 1000 else {
                        throw StoreError(.unavailable, "pool_max must be a whole number from 2 to 1000, got '\(value.prefix(20))'")
                    }
                    maximumConnections = count
                case "schema", "search_path":
                    guard Self.isPlainIdentifier(value) else {
                        throw StoreError(.unavailable, "schema must be letters, digits and underscores, got '\(value.prefix(60))'")
                    }
                    schema = value
                case "operation_timeout":
                    guard let seconds = Int(value), seconds > 0, seconds <= 3600 else {
                        throw StoreError(.unavailable, "operation_timeout must be a number of seconds from 1 to 3600")
                    }
                    operationTimeout = .seconds(seconds)
                case "connect_timeout":
                    guard let seconds = Int(value), seconds > 0 else {
                        throw StoreError(.unavailable, "connect_timeout must be a positive number of seconds")
                    }
                    connectTimeout = .seconds(seconds)
                default:
                    break  // Unknown libpq parameters (application_name, …) are ignored.
                }
            }
        }

        /// Host, port, database and schema: safe to show (never the user's password).
        public var safeDescription: String {
            "\(host):\(port)/\(database ?? username)\(schema.map { " (schema \($0))" } ?? "")"
        }

        static func isPlainIdentifier(_ text: String) -> Bool {
            !text.isEmpty && text.count <= 63 && text.utf8.allSatisfy { byte in
                (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39) || byte == 0x5F
            } && !(text.utf8.first! >= 0x30 && text.utf8.first! <= 0x39)
        }

        /// For one connection outside the pool (the start-up probe).
        func connectionConfiguration() throws -> PostgresConnection.Configuration {
            let connectionTLS: PostgresConnection.Configuration.TLS
            switch tls {
            case .disable: connectionTLS = .disable
            case .prefer: connectionTLS = .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
            case .require: connectionTLS = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
            }
            var configuration = PostgresConnection.Configuration(host: host, port: port, username: username, password: password,
                                                                 database: database, tls: connectionTLS)
            configuration.options.connectTimeout = TimeAmount(connectTimeout)
            return configuration
        }

        /// The pool's settings; `relaxed` pools commit without waiting for the WAL flush and get a
        /// quarter of the connections (at least 2).
        func clientConfiguration(relaxed: Bool = false) -> PostgresClient.Configuration {
            let clientTLS: PostgresClient.Configuration.TLS
            switch tls {
            case .disable: clientTLS = .disable
            case .prefer: clientTLS = .prefer(.makeClientConfiguration())
            case .require: clientTLS = .require(.makeClientConfiguration())
            }
            var configuration = PostgresClient.Configuration(host: host, port: port, username: username, password: password,
                                                             database: database, tls: clientTLS)
            let maximum = relaxed ? max(2, maximumConnections / 4) : max(2, maximumConnections)
            configuration.options.maximumConnections = maximum
            configuration.options.minimumConnections = 0
            configuration.options.connectionIdleTimeout = idleTimeout
            // No keep-alive query: the pool would arm a timer each time a connection goes idle (each
            // statement). The dispatcher's poll keeps connections in use; a connection that died
            // while idle fails one operation (an `.unavailable` error) and is replaced.
            configuration.options.keepAliveBehavior = nil
            configuration.options.connectTimeout = connectTimeout
            var parameters: [(String, String)] = []
            if let schema {
                // A startup parameter, checked above to be a plain identifier.
                parameters.append(("search_path", schema))
            }
            if relaxed { parameters.append(("synchronous_commit", "off")) }
            // The server gives up on a statement a little before the client gives up waiting.
            let milliseconds = max(1000, Int(operationTimeout.components.seconds) * 1000 - 500)
            parameters.append(("statement_timeout", "\(milliseconds)"))
            configuration.options.additionalStartupParameters = parameters
            return configuration
        }
    }
}
