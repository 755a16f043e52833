import ArgumentParser
import Foundation
import NIOCore
import NIOPosix

/// Herald's version, sent as `user-agent: Herald/<version>`.
public enum HeraldVersion {
    public static let current = "0.1.0"
}

/// The `herald` command line: sign, verify, send and receive webhooks.
public struct HeraldCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "herald",
        abstract: "Herald: send, receive and debug webhooks.",
        version: HeraldVersion.current,
        subcommands: [ServeCommand.self, SignCommand.self, VerifyCommand.self, SendCommand.self, ListenCommand.self, KeyCommand.self, TokenCommand.self, BackupCommand.self]
    )

    public init() {}

    /// Runs Swift concurrency's tasks on NIO's event-loop threads instead of a second pool of
    /// threads, so a request handler, a database call's continuation and the HTTP client's I/O do
    /// not hop between two sets of threads. Call it first thing in `main`, once, on the main thread.
    /// `HERALD_EVENT_LOOP_EXECUTOR=0` keeps Swift's own global executor. (`herald-bench`, a separate
    /// executable, keeps Swift's: its raw-client rate, the yardstick Herald is compared with, measured
    /// higher on Swift's pool.)
    public static func installEventLoopExecutor(arguments: [String] = CommandLine.arguments) {
        if ProcessInfo.processInfo.environment["HERALD_EVENT_LOOP_EXECUTOR"] == "0" { return }
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }

    /// Runs the command line, printing any error as one line on stderr with a non-zero exit.
    public static func runFromCommandLine() async -> Never {
        await runAsRoot(toolName: "herald")
    }
}

extension ParsableCommand {
    /// Parses the process's arguments as this root command and runs it: `--help` and `--version`
    /// print and exit 0; any error is one line on stderr (`TOOL: error: …`) and a non-zero exit.
    /// Shared by `herald` and `herald-bench`.
    public static func runAsRoot(toolName: String) async -> Never {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            Foundation.exit(0)
        } catch {
            let code = exitCode(for: error)
            if code == .success || error is CleanExit {
                exit(withError: error)  // --help, --version
            }
            if let exitCode = error as? ExitCode {
                Foundation.exit(exitCode.rawValue)  // the command already said why
            }
            let message = self.message(for: error)
                .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }.joined(separator: " ")
            let trimmed = message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message
            FileHandle.standardError.write(Data("\(toolName): error: \(trimmed)\n".utf8))
            Foundation.exit(code.rawValue == 0 ? 1 : code.rawValue)
        }
    }
}

/// A command-line error whose message is one line safe to print.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Writes one line to stderr.
func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Prints to stdout and flushes, so a pipe sees each line as it happens.
func printFlushed(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
