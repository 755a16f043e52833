import ArgumentParser
import Foundation
import HeraldApp
import Logging

/// `herald key …`: the main key that seals endpoint secrets and stored responses at rest.
struct KeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key",
        abstract: "Manage the main key that seals secrets at rest.",
        subcommands: [KeyRotateCommand.self]
    )
}

struct KeyRotateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate",
        abstract: "Re-seal every secret under a new main key, in one transaction.",
        discussion: """
        Stop Herald first (every node): a node still running with the old key cannot open what was
        re-sealed. The database is opened with the current key (the key file beside a SQLite
        database, or HERALD_MAIN_KEY), so a wrong current key changes nothing.
          - Key file (sqlite, no HERALD_MAIN_KEY): a new random key (or --new-key) replaces the
            file's key; start Herald as before.
          - HERALD_MAIN_KEY (PostgreSQL, or sqlite with the variable set): --new-key is required;
            then start every node with HERALD_MAIN_KEY set to it.
        Examples:
          herald key rotate --database sqlite:/var/lib/herald/herald.sqlite
          HERALD_MAIN_KEY=$OLD herald key rotate --database postgres://… --new-key "$(openssl rand -base64 32)"
        """
    )

    @Option(help: ArgumentHelp("sqlite:PATH or postgres://… [HERALD_DATABASE, default sqlite:herald.sqlite]", valueName: "url"))
    var database: String?

    @Option(name: .customLong("new-key"), help: ArgumentHelp("The new key: 32 bytes in base64 or 64 hex digits [HERALD_NEW_MAIN_KEY]; required with HERALD_MAIN_KEY.", valueName: "key"))
    var newKey: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        var configuration = HeraldConfiguration()
        if let text = database ?? environment["HERALD_DATABASE"].flatMap({ $0.isEmpty ? nil : $0 }) {
            do { configuration.database = try DatabaseLocation(parsing: text) } catch let error as HeraldStartupError { throw CLIError(error.description) }
        }
        if let key = environment["HERALD_MAIN_KEY"], !key.isEmpty {
            configuration.mainKey = try ServeSettings.mainKey(key, name: "HERALD_MAIN_KEY")
        }
        var replacement: [UInt8]?
        if let text = newKey {
            replacement = try ServeSettings.mainKey(text, name: "--new-key")
        } else if let text = environment["HERALD_NEW_MAIN_KEY"], !text.isEmpty {
            replacement = try ServeSettings.mainKey(text, name: "HERALD_NEW_MAIN_KEY")
        }
        var logger = Logger(label: "herald")
        logger.logLevel = .warning
        let outcome: MainKeyRotationOutcome
        do {
            outcome = try await HeraldServer.rotateMainKey(configuration: configuration, newKey: replacement, logger: logger)
        } catch let error as HeraldStartupError {
            throw CLIError(error.description)
        }
        let rotation = outcome.rotation
        var summary = "Re-sealed the secrets of \(rotation.endpoints) endpoint(s) and \(rotation.idempotencyRecords) stored response(s)"
        summary += outcome.keyFile.map { " under a new key, now in \($0)." } ?? "; start every node with HERALD_MAIN_KEY set to the new key."
        printFlushed(summary)
        if rotation.unreadableEndpoints > 0 {
            printError("herald: warning: \(rotation.unreadableEndpoints) endpoint(s) could not be unsealed with the old key either and were left as they were; delete or replace them")
        }
    }
}
