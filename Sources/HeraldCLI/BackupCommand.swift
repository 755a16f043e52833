import ArgumentParser
import Foundation
import HeraldApp

/// `herald backup PATH`: a consistent copy of a live SQLite database and its main key file.
struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy a live SQLite database (and its main key file) to PATH.",
        discussion: """
        Uses SQLite's online backup: one consistent snapshot, taken while Herald keeps running.
        The copy is created with mode 0600; <database>.key is copied to PATH.key unless the key comes
        from HERALD_MAIN_KEY. Restore with: herald serve --database sqlite:PATH
        PostgreSQL is backed up with pg_dump instead.
        Examples:
          herald backup /backups/herald-2026-12-04.sqlite
          herald backup --database sqlite:/var/lib/herald/herald.sqlite /backups/herald.sqlite
        """
    )

    @Argument(help: ArgumentHelp("Where to write the copy.", valueName: "path"))
    var path: String

    @Option(help: ArgumentHelp("The database to copy: sqlite:PATH [HERALD_DATABASE, default sqlite:herald.sqlite]", valueName: "url"))
    var database: String?

    @Flag(help: "Replace PATH (and PATH.key) if they exist.")
    var force = false

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let text = database ?? environment["HERALD_DATABASE"].flatMap { $0.isEmpty ? nil : $0 } ?? "sqlite:herald.sqlite"
        do {
            let location = try DatabaseLocation(parsing: text)
            let fromEnvironment = !(environment["HERALD_MAIN_KEY"] ?? "").isEmpty
            let result = try HeraldBackup.run(database: location, destination: path, replace: force, mainKeyFromEnvironment: fromEnvironment)
            let key = result.keyFile.map { "; main key copied to \($0)" }
                ?? (fromEnvironment ? "; the main key is HERALD_MAIN_KEY: keep it with the copy" : "; no main key file to copy")
            printFlushed("Backed up \(location) to \(path) (\(result.pages) pages)\(key)")
        } catch let error as HeraldStartupError {
            throw CLIError(error.description)
        }
    }
}
