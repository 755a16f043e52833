import Foundation

/// One `herald serve` subprocess started by a scenario: port 0 on 127.0.0.1, a fixed token,
/// loopback allowed as a delivery target. Its stdout and stderr go to files in the scenario's
/// work directory (the listening line is read from there); `stop` ends it.
final class HeraldServerProcess: @unchecked Sendable {
    // @unchecked: `process` is only touched by the scenario's one task (start, rss, stop); the
    // remaining properties are constants.
    let process: Process
    let url: String
    let pid: Int32
    let stderrPath: String

    private init(process: Process, url: String, stderrPath: String) {
        self.process = process
        self.url = url
        self.pid = process.processIdentifier
        self.stderrPath = stderrPath
    }

    /// Starts `herald serve` and waits (until `deadline`) for its `Herald listening on …` line.
    static func start(binary: String, database: String, token: String, mainKey: String, workDirectory: String, name: String,
                      extraArguments: [String] = [], deadline: ContinuousClock.Instant) async throws -> HeraldServerProcess {
        let stdoutPath = "\(workDirectory)/\(name).out"
        let stderrPath = "\(workDirectory)/\(name).err"
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        guard let stdout = FileHandle(forWritingAtPath: stdoutPath), let stderr = FileHandle(forWritingAtPath: stderrPath) else {
            throw BenchError("cannot write the server's logs in \(workDirectory)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--database", database, "--host", "127.0.0.1", "--port", "0", "--token", token,
                             "--allow-network", "127.0.0.0/8", "--log-level", "warning"] + extraArguments
        // No inherited HERALD_* setting leaks in (a concurrency flag from the environment would
        // change what is measured); the main key is the same across restarts of one scenario.
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("HERALD_") }
        environment["HERALD_MAIN_KEY"] = mainKey
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = stdout
        process.standardError = stderr
        do {
            try process.run()
        } catch {
            throw BenchError("cannot start \(binary): \(error.localizedDescription)")
        }
        try? stdout.close()
        try? stderr.close()

        while true {
            let text = (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Herald listening on ") }) {
                let url = String(line.dropFirst("Herald listening on ".count)).trimmingCharacters(in: .whitespaces)
                return HeraldServerProcess(process: process, url: url, stderrPath: stderrPath)
            }
            if !process.isRunning {
                throw BenchError("herald serve exited (status \(process.terminationStatus)) before listening: \(lastLine(of: stderrPath))")
            }
            if ContinuousClock.now >= deadline {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                throw BenchError("deadline: herald serve did not print its listening line in time")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    static func lastLine(of path: String) -> String {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").last.map { String($0.prefix(300)) } ?? "(nothing on stderr)"
    }

    /// A field of `/proc/PID/status` in bytes (`VmRSS`, `VmHWM`), nil once the process is gone.
    func memory(_ field: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return nil }
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count >= 2, let kilobytes = Int(parts[1]) else { return nil }
        return kilobytes * 1024
    }

    /// Resident memory now.
    var rss: Int? { memory("VmRSS") }

    /// Whether the server is still running.
    var isRunning: Bool { process.isRunning }

    /// SIGTERM, then SIGKILL after `grace`. Returns whether it exited within the grace period.
    @discardableResult
    func stop(grace: Duration = .seconds(5)) async -> Bool {
        guard process.isRunning else { return true }
        kill(pid, SIGTERM)
        let end = ContinuousClock.now + grace
        while process.isRunning, ContinuousClock.now < end {
            try? await Task.sleep(for: .milliseconds(20))
        }
        guard process.isRunning else { return true }
        kill(pid, SIGKILL)
        process.waitUntilExit()
        return false
    }
}

/// Formats a byte count as MB (10^6 bytes, like the goals are stated).
func megabytes(_ bytes: Int?) -> String {
    bytes.map { String(format: "%.1f MB", Double($0) / 1e6) } ?? "?"
}
