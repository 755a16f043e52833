import ArgumentParser
import AsyncHTTPClient
import Foundation
import HeraldCore
import NIOCore
import NIOHTTP1
import NIOPosix
import WebhookSignature

struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send a correctly signed test webhook; prints the status and time, exits non-zero unless 2xx.",
        discussion: """
        The body is the Standard Webhooks envelope {"type", "timestamp", "data"} unless --raw.
        Examples:
          herald send http://127.0.0.1:3000/webhook --secret whsec_… --event user.created --data '{"id": 1}'
          herald send http://127.0.0.1:3000/webhook --secret whsec_… --event invoice.paid --data @invoice.json
        """
    )

    @Argument(help: "The receiver's URL.")
    var url: String

    @OptionGroup var scheme: SchemeOptions
    @OptionGroup var secret: SecretOptions

    @Option(help: ArgumentHelp("The event type, such as user.created.", valueName: "type"))
    var event: String

    @Option(help: ArgumentHelp("The event data as JSON, or @file to read it from a file.", valueName: "json|@file"))
    var data: String

    @Flag(help: "Send the data as the whole body instead of wrapping it in {type, timestamp, data}.")
    var raw = false

    @Option(help: ArgumentHelp("The webhook id (default: a new msg_… id). Send the same id twice to test deduplication.", valueName: "id"))
    var id: String?

    @Option(name: [.customShort("H"), .customLong("header")], help: ArgumentHelp("An extra header, 'name: value' (repeatable).", valueName: "header"))
    var headers: [String] = []

    @Option(help: ArgumentHelp("Seconds before giving up.", valueName: "seconds"))
    var timeout: Double = 30

    func run() async throws {
        guard let target = URL(string: url), let scheme = target.scheme?.lowercased(), ["http", "https"].contains(scheme), target.host != nil else {
            throw CLIError("'\(url)' is not an http(s) URL")
        }
        guard timeout > 0 else { throw CLIError("--timeout must be more than 0 seconds") }
        let signer = try self.scheme.make(secrets: try secret.require(), tolerance: nil)
        let body = try makeBody()
        let webhookID = id ?? MessageID.generate().rawValue
        let now = Date()

        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "user-agent", value: "Herald/\(HeraldVersion.current)")
        do {
            for header in try signer.sign(payload: body, id: webhookID, timestamp: now) {
                request.headers.add(name: header.name, value: header.value)
            }
        } catch {
            throw CLIError(error.message)
        }
        switch self.scheme.scheme {
        case .github: request.headers.add(name: "X-GitHub-Event", value: event)
        case .shopify: request.headers.add(name: "X-Shopify-Topic", value: event)
        default: break
        }
        for header in headers {
            let (name, value) = try parseHeaderArgument(header)
            request.headers.replaceOrAdd(name: name, value: value)
        }
        request.body = .bytes(ByteBuffer(bytes: body))

        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .milliseconds(Int64(timeout * 1000)), read: .milliseconds(Int64(timeout * 1000)))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let started = ContinuousClock.now
        let outcome: Result<(HTTPResponseStatus, String), any Error>
        do {
            let response = try await client.execute(request, timeout: .milliseconds(Int64(timeout * 1000)))
            let responseBody = try await response.body.collect(upTo: 20_000)
            outcome = .success((response.status, String(buffer: responseBody)))
        } catch {
            outcome = .failure(error)
        }
        let elapsed = ContinuousClock.now - started
        try? await client.shutdown()

        let millis = Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000
        let time = String(format: "%.1f ms", millis)
        switch outcome {
        case .success(let (status, text)):
            print("\(status.code) \(status.reasonPhrase) in \(time) (id \(webhookID))")
            guard (200..<300).contains(status.code) else {
                let snippet = text.split(whereSeparator: \.isNewline).first.map { String($0.prefix(200)) } ?? ""
                printError("herald: error: the receiver answered \(status.code)" + (snippet.isEmpty ? "" : ": \(snippet)"))
                throw ExitCode(1)
            }
        case .failure(let error):
            throw CLIError("could not deliver to \(url) after \(time): \(Self.describe(error))")
        }
    }

    func makeBody() throws -> [UInt8] {
        let dataBytes: Data
        if data.hasPrefix("@") {
            let path = String(data.dropFirst())
            guard let contents = FileManager.default.contents(atPath: path) else {
                throw CLIError("cannot read data file '\(path)'")
            }
            dataBytes = contents
        } else {
            dataBytes = Data(data.utf8)
        }
        guard let object = try? JSONSerialization.jsonObject(with: dataBytes, options: [.fragmentsAllowed]) else {
            throw CLIError("--data is not valid JSON")
        }
        guard !event.isEmpty else { throw CLIError("--event must not be empty") }
        if raw { return [UInt8](dataBytes) }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let envelope: [String: Any] = ["type": event, "timestamp": formatter.string(from: Date()), "data": object]
        return [UInt8](try JSONSerialization.data(withJSONObject: envelope, options: [.sortedKeys, .withoutEscapingSlashes]))
    }

    static func describe(_ error: any Error) -> String { HTTPFailure.describe(error) }
}

/// One short line for an HTTP client or connection error (no header values, no bodies).
public enum HTTPFailure {
    public static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout: return "timed out"
            case .remoteConnectionClosed: return "the receiver closed the connection"
            default: return "\(error)"
            }
        }
        if let error = error as? NIOConnectionError {
            return "connection failed (\(error.connectionErrors.first.map { "\($0.error)" } ?? "refused"))"
        }
        return "\(error)"
    }
}
