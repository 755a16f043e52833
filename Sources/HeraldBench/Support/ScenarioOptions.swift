import ArgumentParser
import AsyncHTTPClient
import Foundation

/// The options every scenario takes.
struct ScenarioOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The herald binary to run (default: the one next to herald-bench).", valueName: "path"))
    var herald: String?

    @Option(help: ArgumentHelp("sqlite (a fresh file in a temporary folder), sqlite:PATH, or a postgres:// URL (a fresh schema in it unless the URL names one).", valueName: "database"))
    var database: String = "sqlite"

    @Option(help: ArgumentHelp("The admin token herald serve is started with.", valueName: "token"))
    var token: String = "herald_bench_token_0123456789abcdef"

    @Option(help: ArgumentHelp("Seconds the whole scenario may take (default: the scenario's own); past it the scenario reports what it has and exits non-zero.", valueName: "seconds"))
    var deadline: Double?

    @Flag(help: "Keep the temporary folder (the server's logs, the SQLite file).")
    var keep = false

    @Option(name: .customLong("serve-arg"), parsing: .unconditionalSingleValue,
            help: ArgumentHelp("An extra argument for herald serve (repeatable), to compare settings; the goals are about the defaults.", valueName: "arg"))
    var serveArguments: [String] = []

    func validate() throws {
        if let deadline, !(deadline > 0) { throw ValidationError("--deadline must be a positive number of seconds") }
        guard database == "sqlite" || database.hasPrefix("sqlite:") || database.hasPrefix("postgres://") || database.hasPrefix("postgresql://") else {
            throw ValidationError("--database must be sqlite, sqlite:PATH or a postgres:// URL, got '\(database.prefix(40))'")
        }
        if database == "sqlite:" { throw ValidationError("--database sqlite: needs a path") }
        if let herald, !FileManager.default.isExecutableFile(atPath: herald) {
            throw ValidationError("--herald: no executable at \(herald)")
        }
        guard token.count >= 16, token.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
            throw ValidationError("--token must be at least 16 letters, digits, '_' or '-'")
        }
    }

    /// The `herald` binary: --herald, or `herald` in herald-bench's own folder.
    func heraldBinary() throws -> String {
        if let herald { return herald }
        let own = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let path = URL(fileURLWithPath: own).deletingLastPathComponent().appendingPathComponent("herald").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw BenchError("no herald binary next to herald-bench (\(path)); build it (swift build) or pass --herald PATH")
        }
        return path
    }
}

/// What a running scenario holds: its deadline, work folder, database, servers and HTTP client.
/// `ScenarioContext.run` sets it up and tears it down (servers stopped, client shut down, the
/// PostgreSQL schema it made dropped, the folder removed) on every path.
final class ScenarioContext: @unchecked Sendable {
    // @unchecked: used by the scenario's one task only; `servers` changes only there.
    let binary: String
    let token: String
    let mainKey: String
    let workDirectory: String
    /// The `--database` value herald serve gets.
    let database: String
    /// The schema this run created in a PostgreSQL database (dropped at the end), if any.
    let createdSchema: String?
    /// Extra `herald serve` arguments (`--serve-arg`).
    let serveArguments: [String]
    let begin: ContinuousClock.Instant
    let deadline: ContinuousClock.Instant
    let client: HTTPClient
    private(set) var servers: [HeraldServerProcess] = []

    private init(options: ScenarioOptions, defaultDeadline: Double) throws {
        binary = try options.heraldBinary()
        token = options.token
        serveArguments = options.serveArguments
        var key = [UInt8](repeating: 0, count: 32)
        var generator = SystemRandomNumberGenerator()
        for index in key.indices { key[index] = generator.next() }
        mainKey = Data(key).base64EncodedString()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-bench-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        workDirectory = folder.path
        switch options.database {
        case "sqlite":
            database = "sqlite:\(workDirectory)/bench.sqlite"
            createdSchema = nil
        case let text where text.hasPrefix("sqlite:"):
            database = text
            createdSchema = nil
        default:
            let components = URLComponents(string: options.database)
            if components?.queryItems?.contains(where: { $0.name == "schema" || $0.name == "search_path" }) == true {
                database = options.database
                createdSchema = nil
            } else {
                let schema = "herald_bench_\(UInt32.random(in: 0...UInt32.max))"
                database = options.database + (options.database.contains("?") ? "&" : "?") + "schema=\(schema)"
                createdSchema = schema
            }
        }
        begin = .now
        deadline = begin + Duration.seconds(options.deadline ?? defaultDeadline)
        client = ScenarioAPI.makeClient()
    }

    /// Runs a scenario: `body` gets the context; everything is torn down afterwards.
    static func run(_ options: ScenarioOptions, defaultDeadline: Double, _ body: (ScenarioContext) async throws -> Void) async throws {
        let context = try ScenarioContext(options: options, defaultDeadline: defaultDeadline)
        do {
            try await body(context)
        } catch {
            await context.tearDown(keep: options.keep)
            throw error
        }
        await context.tearDown(keep: options.keep)
    }

    /// Starts `herald serve` (no concurrency flags: the defaults are what the goals are about).
    func startServer(name: String = "serve") async throws -> HeraldServerProcess {
        let server = try await HeraldServerProcess.start(binary: binary, database: database, token: token, mainKey: mainKey,
                                                         workDirectory: workDirectory, name: "\(name)\(servers.count + 1)",
                                                         extraArguments: serveArguments, deadline: deadline)
        servers.append(server)
        return server
    }

    func api(_ server: HeraldServerProcess) -> ScenarioAPI {
        ScenarioAPI(client: client, base: server.url, token: token)
    }

    /// Seconds left before the deadline.
    var remaining: Double { seconds(deadline - .now) }

    /// The sooner of the scenario's deadline and `seconds` from now.
    func deadline(within seconds: Double) -> ContinuousClock.Instant {
        min(deadline, .now + Duration.seconds(seconds))
    }

    /// The error for a missed deadline: reported as a line first, then one line on stderr and a non-zero exit.
    /// `overall`: the scenario's own deadline passed (else a wait with its own bound, such as a probe's).
    func missed(_ what: String, overall: Bool = true) -> BenchError {
        line("deadline", overall ? "missed (\(String(format: "%.0f", seconds(deadline - begin))) s): \(what)" : "missed: \(what)")
        return BenchError("deadline missed: \(what)")
    }

    /// Prints one `name: value` line of the report, flushed.
    func line(_ name: String, _ value: String) {
        let padded = (name + ":").padding(toLength: max(name.count + 2, 34), withPad: " ", startingAt: 0)
        FileHandle.standardOutput.write(Data((padded + value + "\n").utf8))
    }

    /// A line for a goal and whether it was met.
    func goal(_ description: String, met: Bool) {
        line("goal", description)
        line("goal met", met ? "yes" : "no")
    }

    func tearDown(keep: Bool) async {
        for server in servers { await server.stop(grace: .seconds(3)) }
        try? await client.shutdown()
        if let createdSchema {
            try? await PostgresAdmin.execute(url: database, inSchema: false, timeout: .seconds(60)) { connection in
                try await connection.query(.init(unsafeSQL: "DROP SCHEMA IF EXISTS \"\(createdSchema)\" CASCADE"), logger: PostgresAdmin.logger)
            }
        }
        if !keep { try? FileManager.default.removeItem(atPath: workDirectory) } else { line("kept", workDirectory) }
    }
}
