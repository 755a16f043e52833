import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import HeraldApp
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run Herald: the Svix-compatible API on a durable store.",
        discussion: """
        Every setting comes from its flag, else its HERALD_* environment variable, else the default.
        With no --token and no admin token stored, the first start prints a new admin token once.
        --token adds that admin token; tokens accepted before stay valid until revoked
        (herald token list / herald token revoke ID, or DELETE /api/v1/token/ID).
        Examples:
          herald serve
          herald serve --database sqlite:/var/lib/herald/herald.sqlite --host 0.0.0.0 --port 8071
        """
    )

    @Option(help: ArgumentHelp("sqlite:PATH, sqlite::memory: or postgres://… [HERALD_DATABASE, default sqlite:herald.sqlite]", valueName: "url"))
    var database: String?

    @Option(help: ArgumentHelp("Address to listen on [HERALD_HOST, default 127.0.0.1].", valueName: "host"))
    var host: String?

    @Option(help: ArgumentHelp("Port to listen on; 0 picks a free one and prints it [HERALD_PORT, default 8071].", valueName: "port"))
    var port: String?

    @Option(help: ArgumentHelp("An admin API token to accept, stored hashed; tokens accepted before stay valid until revoked (herald token) [HERALD_TOKEN].", valueName: "token"))
    var token: String?

    @Option(help: ArgumentHelp("all, api or worker [HERALD_ROLE, default all].", valueName: "role"))
    var role: String?

    @Option(name: .customLong("retry-schedule"), help: ArgumentHelp("Seconds between attempts, comma-separated [HERALD_RETRY_SCHEDULE, default 5,300,1800,7200,18000,36000,36000].", valueName: "list"))
    var retrySchedule: String?

    @Option(name: .customLong("request-timeout"), help: ArgumentHelp("Seconds an attempt may take [HERALD_REQUEST_TIMEOUT, default 30].", valueName: "seconds"))
    var requestTimeout: String?

    @Option(name: .customLong("lease"), help: ArgumentHelp("Seconds a claimed delivery stays with this node before another may take it over; more than twice the request timeout [HERALD_LEASE, default the larger of 120 and 4 × the request timeout].", valueName: "seconds"))
    var lease: String?

    @Option(name: .customLong("allow-network"), help: ArgumentHelp("A CIDR deliveries may reach although private or loopback (repeatable) [HERALD_ALLOW_NETWORK, comma-separated].", valueName: "cidr"))
    var allowNetwork: [String] = []

    @Option(name: .customLong("sqlite-synchronous"), help: ArgumentHelp("full (durable, default) or normal [HERALD_SQLITE_SYNCHRONOUS].", valueName: "mode"))
    var sqliteSynchronous: String?

    @Flag(name: .customLong("svix-headers"), help: "Also send svix-id, svix-timestamp and svix-signature [HERALD_SVIX_HEADERS=1].")
    var svixHeaders = false

    @Option(name: .customLong("delivery-concurrency"), help: ArgumentHelp("Attempts in flight at once [HERALD_DELIVERY_CONCURRENCY, default 1000].", valueName: "n"))
    var deliveryConcurrency: String?

    @Option(name: .customLong("endpoint-concurrency"), help: ArgumentHelp("Attempts in flight to one endpoint at once [HERALD_ENDPOINT_CONCURRENCY, default 16].", valueName: "n"))
    var endpointConcurrency: String?

    @Option(name: .customLong("max-http-clients"), help: ArgumentHelp("Outbound destinations with open connections at once, at most 64 connections each [HERALD_MAX_HTTP_CLIENTS, default 128].", valueName: "n"))
    var maxHTTPClients: String?

    @Option(name: .customLong("dns-cache-ttl"), help: ArgumentHelp("Seconds a resolved host name is kept [HERALD_DNS_CACHE_TTL, default 60].", valueName: "seconds"))
    var dnsCacheTTL: String?

    @Option(name: .customLong("header-timeout"), help: ArgumentHelp("Seconds a request head may take to arrive, from the accept or a kept-alive connection's next byte; then 408 and close [HERALD_HEADER_TIMEOUT, default 10].", valueName: "seconds"))
    var headerTimeout: String?

    @Option(name: .customLong("body-timeout"), help: ArgumentHelp("Seconds a request body may take after its head; then the connection is closed [HERALD_BODY_TIMEOUT, default 30].", valueName: "seconds"))
    var bodyTimeout: String?

    @Option(name: .customLong("idle-timeout"), help: ArgumentHelp("Seconds a kept-alive connection may wait for its next request [HERALD_IDLE_TIMEOUT, default 60].", valueName: "seconds"))
    var idleTimeout: String?

    @Option(name: .customLong("max-connections"), help: ArgumentHelp("Open API connections at most; more are answered 503 and closed [HERALD_MAX_CONNECTIONS, default: the open-file limit less the outbound and database reserve].", valueName: "n"))
    var maxConnections: String?

    @Option(name: .customLong("max-endpoints-per-app"), help: ArgumentHelp("Endpoints one application may have [HERALD_MAX_ENDPOINTS_PER_APP, default 100].", valueName: "n"))
    var maxEndpointsPerApp: String?

    @Option(name: .customLong("max-endpoint-headers"), help: ArgumentHelp("Custom headers one endpoint may have [HERALD_MAX_ENDPOINT_HEADERS, default 20].", valueName: "n"))
    var maxEndpointHeaders: String?

    @Option(name: .customLong("max-endpoint-headers-bytes"), help: ArgumentHelp("Bytes of an endpoint's header names and values together [HERALD_MAX_ENDPOINT_HEADERS_BYTES, default 8192].", valueName: "bytes"))
    var maxEndpointHeadersBytes: String?

    @Option(name: .customLong("max-event-types"), help: ArgumentHelp("Event types in all [HERALD_MAX_EVENT_TYPES, default 1000].", valueName: "n"))
    var maxEventTypes: String?

    @Option(name: .customLong("max-list-bytes"), help: ArgumentHelp("Bytes of payloads and responses in one list page; a fuller page stops early with done: false [HERALD_MAX_LIST_BYTES, default 16777216].", valueName: "bytes"))
    var maxListBytes: String?

    @Option(name: .customLong("metrics-token"), help: ArgumentHelp("A bearer token GET /metrics requires; without one /metrics is open [HERALD_METRICS_TOKEN].", valueName: "token"))
    var metricsToken: String?

    @Option(name: .customLong("message-retention"), help: ArgumentHelp("How long whole messages, with their deliveries and attempts, are kept: days, or a number with s, m, h or d [HERALD_MESSAGE_RETENTION, default 90].", valueName: "duration"))
    var messageRetention: String?

    @Option(name: .customLong("retention-interval"), help: ArgumentHelp("How often expired data is purged: seconds, or a number with s, m, h or d [HERALD_RETENTION_INTERVAL, default 60s].", valueName: "duration"))
    var retentionInterval: String?

    @Option(name: .customLong("sqlite-max-pages"), help: ArgumentHelp("Cap the SQLite file at this many pages (PRAGMA max_page_count), for testing a full disk [HERALD_SQLITE_MAX_PAGES].", valueName: "n"))
    var sqliteMaxPages: String?

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error [HERALD_LOG_LEVEL, default info].", valueName: "level"))
    var logLevel: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let settings = try ServeSettings.resolve(command: self, environment: environment)
        var logger = Logger(label: "herald")
        logger.logLevel = settings.logLevel
        Self.raiseDescriptorLimit(logger: logger)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let server: HeraldServer
        do {
            server = try await HeraldServer.build(configuration: settings.configuration, logger: logger, metrics: registry) { port in
                printFlushed("Herald listening on http://\(settings.configuration.host):\(port)")
            }
        } catch let error as HeraldStartupError {
            throw CLIError(error.description)
        }
        if let token = server.generatedAdminToken {
            printFlushed("Admin token (shown once, store it now): \(token)")
        }
        if settings.configuration.role == .worker {
            printFlushed("Herald worker started (no API)")
            let group = ServiceGroup(services: server.services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            try await group.run()
            return
        }
        do {
            try await server.application.runService()
        } catch {
            throw CLIError("cannot serve on \(settings.configuration.host):\(settings.configuration.port): \(error)")
        }
    }
}

extension ServeCommand {
    /// Raises the soft limit on open files to the hard limit (as Go's runtime does): a thousand
    /// deliveries in flight need a thousand sockets, and a soft limit of 1,024 is common.
    static func raiseDescriptorLimit(logger: Logger) {
        #if canImport(Glibc)
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        let before = limit.rlim_cur
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            logger.debug("open file limit raised", metadata: ["herald.nofile.from": "\(before)", "herald.nofile.to": "\(limit.rlim_max)"])
        }
        #endif
    }
}

/// Resolves each setting: flag, then `HERALD_*` variable, then default; validates every one.
struct ServeSettings {
    var configuration: HeraldConfiguration
    var logLevel: Logger.Level

    static func resolve(command: ServeCommand, environment: [String: String]) throws -> ServeSettings {
        func value(_ flag: String?, _ variable: String) -> (String, String)? {
            if let flag { return (flag, "--" + variable.dropFirst("HERALD_".count).lowercased().replacingOccurrences(of: "_", with: "-")) }
            if let env = environment[variable], !env.isEmpty { return (env, variable) }
            return nil
        }
        var configuration = HeraldConfiguration()
        if let (text, _) = value(command.database, "HERALD_DATABASE") {
            do { configuration.database = try DatabaseLocation(parsing: text) } catch let error as HeraldStartupError { throw CLIError(error.description) }
        }
        if let (text, name) = value(command.host, "HERALD_HOST") {
            guard !text.isEmpty, !text.contains(" ") else { throw CLIError("\(name): '\(text)' is not a host name or address") }
            configuration.host = text
        }
        if let (text, name) = value(command.port, "HERALD_PORT") {
            guard let port = Int(text), (0...65535).contains(port) else { throw CLIError("\(name): '\(text)' is not a port (0-65535)") }
            configuration.port = port
        }
        if let (text, name) = value(command.token, "HERALD_TOKEN") {
            guard text.count >= 8, !text.contains(where: \.isWhitespace) else { throw CLIError("\(name): a token needs at least 8 characters and no spaces") }
            configuration.token = text
        }
        if let (text, name) = value(command.role, "HERALD_ROLE") {
            guard let role = HeraldRole(rawValue: text) else { throw CLIError("\(name): '\(text)' is not one of all, api, worker") }
            configuration.role = role
        }
        if let (text, name) = value(command.retrySchedule, "HERALD_RETRY_SCHEDULE") {
            let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            let seconds = parts.compactMap { Int($0) }
            guard !parts.isEmpty, seconds.count == parts.count, seconds.allSatisfy({ $0 >= 0 && $0 <= 7 * 86400 }) else {
                throw CLIError("\(name): '\(text)' is not a comma-separated list of seconds (0 to 604800)")
            }
            configuration.retrySchedule = seconds
        }
        if let (text, name) = value(command.requestTimeout, "HERALD_REQUEST_TIMEOUT") {
            guard let seconds = Double(text), seconds > 0, seconds <= 300 else { throw CLIError("\(name): '\(text)' is not a number of seconds between 0 and 300") }
            configuration.requestTimeout = seconds
        }
        if let (text, name) = value(command.lease, "HERALD_LEASE") {
            guard let seconds = Double(text), seconds >= 1, seconds <= 86400 else { throw CLIError("\(name): '\(text)' is not a number of seconds between 1 and 86400") }
            guard seconds > 2 * configuration.requestTimeout else {
                throw CLIError("\(name): \(text) s must be more than twice the request timeout (\(configuration.requestTimeout) s), or an attempt could outlive its claim")
            }
            configuration.leaseDuration = seconds
        }
        var networks = command.allowNetwork
        if networks.isEmpty, let env = environment["HERALD_ALLOW_NETWORK"], !env.isEmpty {
            networks = env.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        for network in networks where !CIDRSyntax.isValid(network) {
            throw CLIError("--allow-network: '\(network)' is not a CIDR such as 127.0.0.0/8 or ::1/128")
        }
        configuration.allowedNetworks = networks
        if let (text, name) = value(command.sqliteSynchronous, "HERALD_SQLITE_SYNCHRONOUS") {
            guard let mode = HeraldConfiguration().sqliteSynchronous.allCasesMatching(text) else { throw CLIError("\(name): '\(text)' is not full or normal") }
            configuration.sqliteSynchronous = mode
        }
        if let key = environment["HERALD_MAIN_KEY"], !key.isEmpty {
            configuration.mainKey = try mainKey(key, name: "HERALD_MAIN_KEY")
        }
        if command.svixHeaders || ["1", "true", "yes"].contains(environment["HERALD_SVIX_HEADERS"]?.lowercased() ?? "") {
            configuration.sendSvixHeaders = true
        }
        /// A concurrency limit from a flag or its variable: 1 to 4096.
        func concurrency(_ flag: String?, _ variable: String) throws -> Int? {
            guard let (text, name) = value(flag, variable) else { return nil }
            guard let count = Int(text), (1...4096).contains(count) else { throw CLIError("\(name): '\(text)' is not a number from 1 to 4096") }
            return count
        }
        if let count = try concurrency(command.deliveryConcurrency, "HERALD_DELIVERY_CONCURRENCY") { configuration.deliveryConcurrency = count }
        if let count = try concurrency(command.endpointConcurrency, "HERALD_ENDPOINT_CONCURRENCY") { configuration.perEndpointConcurrency = count }
        if let (text, name) = value(command.maxHTTPClients, "HERALD_MAX_HTTP_CLIENTS") {
            guard let count = Int(text), (1...100_000).contains(count) else { throw CLIError("\(name): '\(text)' is not a number from 1 to 100000") }
            configuration.maxHTTPClients = count
        }
        if let (text, name) = value(command.dnsCacheTTL, "HERALD_DNS_CACHE_TTL") {
            guard let seconds = Double(text), seconds >= 0, seconds <= 86400 else { throw CLIError("\(name): '\(text)' is not a number of seconds from 0 to 86400") }
            configuration.dnsCacheTTL = seconds
        }
        /// Seconds from a flag or its variable, within `range`.
        func seconds(_ flag: String?, _ variable: String, _ range: ClosedRange<Double>) throws -> Double? {
            guard let (text, name) = value(flag, variable) else { return nil }
            guard let seconds = Double(text), range.contains(seconds) else {
                throw CLIError("\(name): '\(text)' is not a number of seconds from \(Int(range.lowerBound)) to \(Int(range.upperBound))")
            }
            return seconds
        }
        /// A count from a flag or its variable, within `range`.
        func count(_ flag: String?, _ variable: String, _ range: ClosedRange<Int>) throws -> Int? {
            guard let (text, name) = value(flag, variable) else { return nil }
            guard let count = Int(text), range.contains(count) else { throw CLIError("\(name): '\(text)' is not a number from \(range.lowerBound) to \(range.upperBound)") }
            return count
        }
        if let value = try seconds(command.headerTimeout, "HERALD_HEADER_TIMEOUT", 0.1...3600) { configuration.headerTimeout = value }
        if let value = try seconds(command.bodyTimeout, "HERALD_BODY_TIMEOUT", 0.1...3600) { configuration.bodyTimeout = value }
        if let value = try seconds(command.idleTimeout, "HERALD_IDLE_TIMEOUT", 0.1...86400) { configuration.idleTimeout = value }
        if let value = try count(command.maxConnections, "HERALD_MAX_CONNECTIONS", 1...10_000_000) { configuration.maxConnections = value }
        if let value = try count(command.maxEndpointsPerApp, "HERALD_MAX_ENDPOINTS_PER_APP", 1...1_000_000) { configuration.apiLimits.maxEndpointsPerApplication = value }
        if let value = try count(command.maxEndpointHeaders, "HERALD_MAX_ENDPOINT_HEADERS", 0...10_000) { configuration.apiLimits.maxEndpointHeaders = value }
        if let value = try count(command.maxEndpointHeadersBytes, "HERALD_MAX_ENDPOINT_HEADERS_BYTES", 0...(1 << 20)) { configuration.apiLimits.maxEndpointHeaderBytes = value }
        if let value = try count(command.maxEventTypes, "HERALD_MAX_EVENT_TYPES", 1...10_000_000) { configuration.apiLimits.maxEventTypes = value }
        if let value = try count(command.maxListBytes, "HERALD_MAX_LIST_BYTES", 1024...(1 << 30)) { configuration.apiLimits.maxListContentBytes = value }
        if let (text, name) = value(command.metricsToken, "HERALD_METRICS_TOKEN") {
            guard text.count >= 8, !text.contains(where: \.isWhitespace) else { throw CLIError("\(name): a token needs at least 8 characters and no spaces") }
            configuration.metricsToken = text
        }
        if let (text, name) = value(command.messageRetention, "HERALD_MESSAGE_RETENTION") {
            guard let seconds = DurationSyntax.seconds(text, bareUnit: 86400), seconds >= 1, seconds <= 100 * 365 * 86400 else {
                throw CLIError("\(name): '\(text)' is not a retention period: days (90), or a number with s, m, h or d (30s, 10m, 12h, 90d)")
            }
            configuration.messageRetention = seconds
        }
        if let (text, name) = value(command.retentionInterval, "HERALD_RETENTION_INTERVAL") {
            guard let seconds = DurationSyntax.seconds(text, bareUnit: 1), seconds >= 0.1, seconds <= 86400 else {
                throw CLIError("\(name): '\(text)' is not an interval from 0.1 s to 1 day: seconds (60), or a number with s, m, h or d")
            }
            configuration.retentionInterval = seconds
        }
        if let (text, name) = value(command.sqliteMaxPages, "HERALD_SQLITE_MAX_PAGES") {
            guard let pages = Int(text), pages >= 1, pages <= 1 << 31 else { throw CLIError("\(name): '\(text)' is not a number of pages from 1 to 2147483648") }
            configuration.sqliteMaxPages = pages
        }
        var level = Logger.Level.info
        if let (text, name) = value(command.logLevel, "HERALD_LOG_LEVEL") {
            guard let parsed = Logger.Level(rawValue: text.lowercased()) else { throw CLIError("\(name): '\(text)' is not a log level") }
            level = parsed
        }
        return ServeSettings(configuration: configuration, logLevel: level)
    }

    /// A main key given as text: 32 bytes in base64, or 64 hex digits.
    static func mainKey(_ text: String, name: String) throws -> [UInt8] {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if let data = Data(base64Encoded: trimmed), data.count == 32 { return [UInt8](data) }
        if trimmed.count == 64, let bytes = hexBytes(trimmed) { return bytes }
        throw CLIError("\(name): expected 32 bytes in base64 or 64 hex digits")
    }

    static func hexBytes(_ text: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            guard let byte = UInt8(text[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
    }
}

extension HeraldSQLiteSynchronous {
    func allCasesMatching(_ text: String) -> Self? { Self.allCases.first { $0.rawValue == text.lowercased() } }
}

/// Checks CIDR notation (`a.b.c.d/n` or an IPv6 address with `/n`).
enum CIDRSyntax {
    static func isValid(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let prefix = Int(parts[1]) else { return false }
        let address = String(parts[0])
        if address.contains(":") {
            var storage = in6_addr()
            return prefix >= 0 && prefix <= 128 && inet_pton(AF_INET6, address, &storage) == 1
        }
        var storage = in_addr()
        return prefix >= 0 && prefix <= 32 && inet_pton(AF_INET, address, &storage) == 1
    }
}

/// Durations on the command line: a plain number counts `bareUnit` seconds; `30s`, `10m`, `12h`
/// and `90d` name their unit. Public for `herald-bench`.
public enum DurationSyntax {
    public static func seconds(_ text: String, bareUnit: Double) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var number = Substring(trimmed)
        var unit = bareUnit
        if let last = trimmed.last, let named = units[last] {
            number = trimmed.dropLast()
            unit = named
        }
        guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let value = Double(number), value.isFinite else { return nil }
        return value * unit
    }
}
