import ArgumentParser
import Foundation
import HeraldAPI
import HeraldApp
import HeraldCore
import Logging

/// `herald token list|create|revoke`: admin tokens, straight on the database (the same
/// `--database`, `HERALD_DATABASE` and main key as `serve`), so an operator can recover access
/// without a token. A running server sees a revoke within its token cache's 5 s.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "List, create and revoke admin API tokens (opens the database directly).",
        discussion: """
        Examples:
          herald token list --database sqlite:/var/lib/herald/herald.sqlite
          herald token create --name ci --expires-in 30d
          herald token revoke tok_2x…
          herald token revoke --all-except tok_2x…
        """,
        subcommands: [List.self, Create.self, Revoke.self]
    )

    struct DatabaseOptions: ParsableArguments {
        @Option(help: ArgumentHelp("sqlite:PATH or postgres://… [HERALD_DATABASE, default sqlite:herald.sqlite]", valueName: "url"))
        var database: String?

        @Flag(help: "Print JSON instead of text.")
        var json = false

        /// Opens the store as `serve` would, but never creates a SQLite database that is not there.
        func open() async throws -> any HeraldStore {
            let serve = try ServeCommand.parse(database.map { ["--database", $0] } ?? [])
            let configuration = try ServeSettings.resolve(command: serve, environment: ProcessInfo.processInfo.environment).configuration
            switch configuration.database {
            case .sqliteMemory:
                throw CLIError("--database: sqlite::memory: holds no tokens; name the database file of the server")
            case .sqliteFile(let path):
                guard FileManager.default.fileExists(atPath: path) else { throw CLIError("--database: no database at \(path)") }
            case .postgres:
                break
            }
            var logger = Logger(label: "herald")
            logger.logLevel = .warning
            do {
                return try await HeraldServer.openStore(configuration, logger: logger)
            } catch let error as HeraldStartupError {
                throw CLIError(error.description)
            }
        }

        func withStore<T>(_ body: (any HeraldStore) async throws -> T) async throws -> T {
            let store = try await open()
            do {
                let result = try await body(store)
                await HeraldServer.close(store)
                return result
            } catch let error as StoreError {
                await HeraldServer.close(store)
                throw CLIError("the database: \(error.message)")
            } catch {
                await HeraldServer.close(store)
                throw error
            }
        }

        func printJSON(_ value: some Encodable) throws {
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            encoder.outputFormatting = [.sortedKeys]
            printFlushed(String(decoding: try encoder.encode(value), as: UTF8.self))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List admin tokens: id, name, created, expiry (never their value).")
        @OptionGroup var options: DatabaseOptions

        func run() async throws {
            let tokens = try await options.withStore { try await AdminTokens.all(in: $0) }
            let now = Date()
            if options.json { return try options.printJSON(tokens.map { AdminTokenOut($0, now: now) }) }
            let format = ISO8601DateFormatter()
            printFlushed("ID\tNAME\tCREATED\tEXPIRES")
            for token in tokens {
                let expiry = token.expiresAt.map { format.string(from: $0) + ($0 <= now ? " (expired)" : "") } ?? "never"
                printFlushed("\(token.id)\t\(token.name.isEmpty ? "-" : token.name)\t\(format.string(from: token.createdAt))\t\(expiry)")
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an admin token and print it once.")
        @OptionGroup var options: DatabaseOptions

        @Option(help: ArgumentHelp("What the token is for (1 to 128 characters).", valueName: "name"))
        var name: String

        @Option(name: .customLong("expires-in"), help: ArgumentHelp("Lifetime: seconds, or a number with s, m, h or d (30d). Default: never expires.", valueName: "duration"))
        var expiresIn: String?

        func run() async throws {
            guard (1...AdminTokens.maxNameLength).contains(name.count) else { throw CLIError("--name: 1 to \(AdminTokens.maxNameLength) characters") }
            var expiresAt: Date?
            if let expiresIn {
                guard let seconds = Self.seconds(expiresIn), seconds > 0 else {
                    throw CLIError("--expires-in: '\(expiresIn)' is not a duration such as 3600, 90m, 12h or 30d")
                }
                expiresAt = Date().addingTimeInterval(seconds)
            }
            let (token, text) = try await options.withStore { try await AdminTokens.create(in: $0, name: name, expiresAt: expiresAt) }
            if options.json { return try options.printJSON(AdminTokenOut(token, text: text)) }
            printFlushed("Admin token \(token.id) (\(token.name)) — shown once, store it now:")
            printFlushed(text)
        }

        /// `3600`, `90s`, `90m`, `12h`, `30d` in seconds (at most 100 years).
        static func seconds(_ text: String) -> TimeInterval? {
            let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
            var number = Substring(text)
            var unit = 1.0
            if let last = text.last, let scale = units[last] { unit = scale; number = number.dropLast() }
            guard let value = Double(number), value.isFinite, value * unit <= 100 * 365 * 86400 else { return nil }
            return value * unit
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke an admin token by id, or every admin token but one (--all-except).")
        @OptionGroup var options: DatabaseOptions

        @Argument(help: ArgumentHelp("The id of the token to revoke (tok_…).", valueName: "id"))
        var id: String?

        @Option(name: .customLong("all-except"), help: ArgumentHelp("Revoke every admin token except this one.", valueName: "id"))
        var allExcept: String?

        func validate() throws {
            guard (id == nil) != (allExcept == nil) else { throw ValidationError("give a token id, or --all-except ID") }
        }

        func run() async throws {
            if let id {
                let revoked = try await options.withStore { try await $0.revokeAdminToken(id: TokenID(rawValue: id)) }
                guard revoked else { throw CLIError("no admin token with id \(id)") }
                if options.json { return try options.printJSON(["revoked": [id]]) }
                printFlushed("revoked \(id)")
                return
            }
            guard let allExcept else { return }
            let revoked = try await options.withStore { store -> [String] in
                let tokens = try await AdminTokens.all(in: store)
                guard tokens.contains(where: { $0.id.rawValue == allExcept }) else { throw CLIError("no admin token with id \(allExcept): nothing revoked") }
                var revoked: [String] = []
                for token in tokens where token.id.rawValue != allExcept {
                    if try await store.revokeAdminToken(id: token.id) { revoked.append(token.id.rawValue) }
                }
                return revoked
            }
            if options.json { return try options.printJSON(["revoked": revoked]) }
            printFlushed("revoked \(revoked.count) token\(revoked.count == 1 ? "" : "s"), kept \(allExcept)")
        }
    }
}
