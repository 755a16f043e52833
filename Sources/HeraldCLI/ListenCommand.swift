import ArgumentParser
import Foundation
import Hummingbird
import Logging
import NIOCore
import WebhookSignature

struct ListenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "listen",
        abstract: "Run a local webhook receiver that shows each request and its signature verdict.",
        discussion: """
        Answers 200 (or --status), 401 to a bad signature when a secret is given.
        --fail-first K answers the first K requests with --fail-status, to exercise a sender's retries.
        Example:
          herald listen --port 3000 --secret whsec_…
        """
    )

    @Option(help: "Address to listen on.")
    var host: String = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one and prints it).")
    var port: Int = 3000

    @Option(help: "The path webhooks are posted to; other paths get 404.")
    var path: String = "/webhook"

    @OptionGroup var scheme: SchemeOptions
    @OptionGroup var secret: SecretOptions

    @Option(help: ArgumentHelp("Seconds a signed timestamp may differ from now.", valueName: "seconds"))
    var tolerance: Int64 = 300

    @Option(help: ArgumentHelp("Status to answer a good request with.", valueName: "code"))
    var status: Int = 200

    @Option(name: .customLong("fail-first"), help: ArgumentHelp("Answer the first K requests with --fail-status.", valueName: "K"))
    var failFirst: Int = 0

    @Option(name: .customLong("fail-status"), help: ArgumentHelp("Status for the --fail-first requests.", valueName: "code"))
    var failStatus: Int = 500

    @Option(name: .customLong("max-body"), help: ArgumentHelp("Largest body accepted, in bytes (413 beyond).", valueName: "bytes"))
    var maxBody: Int = 5 << 20

    @Flag(help: "Print one JSON object per request, for scripts.")
    var json = false

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard (100...599).contains(status), (100...599).contains(failStatus) else {
            throw ValidationError("--status and --fail-status must be HTTP status codes (100-599)")
        }
        guard failFirst >= 0 else { throw ValidationError("--fail-first must be zero or more") }
        guard path.hasPrefix("/") else { throw ValidationError("--path must start with '/'") }
        guard maxBody > 0 else { throw ValidationError("--max-body must be positive") }
    }

    func run() async throws {
        let secrets = try secret.resolve()
        let verifier = secrets.isEmpty ? nil : try scheme.make(secrets: secrets, tolerance: tolerance)
        let responder = ListenResponder(
            path: path, verifier: verifier, schemeName: scheme.scheme.rawValue, status: status,
            failFirst: failFirst, failStatus: failStatus, maxBody: maxBody, json: json, state: ListenState()
        )
        var logger = Logger(label: "herald.listen")
        logger.logLevel = .warning
        let json = self.json
        let verifying = verifier == nil ? "not verifying signatures: no secret given" : "verifying \(scheme.scheme.rawValue) signatures"
        let app = Application(
            responder: responder,
            configuration: .init(address: .hostname(host, port: port), serverName: "herald-listen"),
            onServerRunning: { [host, path] channel in
                let boundPort = channel.localAddress?.port ?? 0
                if json {
                    printFlushed(#"{"event":"listening","url":"http://\#(host):\#(boundPort)\#(path)"}"#)
                } else {
                    printFlushed("Listening on http://\(host):\(boundPort)\(path) (\(verifying)). Ctrl-C to stop.")
                }
            },
            logger: logger
        )
        do {
            try await app.runService()
        } catch {
            throw CLIError("cannot listen on \(host):\(port): \(error)")
        }
    }
}

/// Counts requests and how often each webhook id was seen.
actor ListenState {
    private var requests = 0
    private var seen: [String: Int] = [:]

    /// Returns this request's number (1-based) and how many times `id` was seen before.
    func record(id: String?) -> (request: Int, previous: Int) {
        requests += 1
        guard let id else { return (requests, 0) }
        let previous = seen[id, default: 0]
        seen[id] = previous + 1
        return (requests, previous)
    }
}

struct ListenResponder: HTTPResponder {
    typealias Context = BasicRequestContext
    let path: String
    let verifier: (any WebhookVerifier)?
    let schemeName: String
    let status: Int
    let failFirst: Int
    let failStatus: Int
    let maxBody: Int
    let json: Bool
    let state: ListenState

    func respond(to request: Request, context: Context) async throws -> Response {
        let receivedAt = Date()
        var request = request
        let headers = request.headers.map { (name: $0.name.canonicalName, value: $0.value) }
        let webhookHeaders = WebhookHeaders(headers.map { ($0.name, $0.value) })
        var body: [UInt8] = []
        var verdict: (valid: Bool?, reason: String?) = (nil, nil)
        var answer: Int

        do {
            body = Array(try await request.collectBody(upTo: maxBody).readableBytesView)
            if request.uri.path != path {
                answer = 404
                verdict.reason = "not the webhook path \(path)"
            } else if let verifier {
                do {
                    _ = try verifier.verify(payload: body, headers: webhookHeaders, now: receivedAt)
                    verdict = (true, nil)
                    answer = status
                } catch {
                    verdict = (false, error.message)
                    answer = 401
                }
            } else {
                answer = status
            }
        } catch {
            answer = 413
            verdict.reason = "body larger than \(maxBody) bytes"
        }

        let id = webhookHeaders.first(of: StandardWebhook.idHeaders + ["x-github-delivery", "x-shopify-webhook-id"])?.value
        let (number, previous) = await state.record(id: answer == 404 ? nil : id)
        if answer == status && number <= failFirst { answer = failStatus }

        let report = ListenReport(
            number: number, receivedAt: receivedAt, method: request.method.rawValue, path: request.uri.description,
            headers: headers, body: body, scheme: schemeName, valid: verdict.valid, reason: verdict.reason,
            id: id, previousDeliveries: previous, status: answer
        )
        printFlushed(json ? report.jsonLine() : report.humanText())

        var responseBody: [String: Any] = ["status": answer]
        if verdict.valid == false { responseBody = ["error": "invalid_signature", "message": verdict.reason ?? ""] }
        if answer == 404 || answer == 413 { responseBody = ["error": answer == 404 ? "not_found" : "payload_too_large", "message": verdict.reason ?? ""] }
        let data = (try? JSONSerialization.data(withJSONObject: responseBody, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(
            status: .init(code: answer),
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}

/// What `herald listen` shows of one request. Signature headers are never printed in full.
struct ListenReport {
    let number: Int
    let receivedAt: Date
    let method: String
    let path: String
    let headers: [(name: String, value: String)]
    let body: [UInt8]
    let scheme: String
    let valid: Bool?
    let reason: String?
    let id: String?
    let previousDeliveries: Int
    let status: Int

    var duplicate: Bool { previousDeliveries > 0 }

    var shownHeaders: [(name: String, value: String)] {
        headers.map { header in
            guard isSignatureHeader(header.name) else { return header }
            let count = header.value.split(separator: " ").count
            return (header.name, "<redacted: \(count) signature\(count == 1 ? "" : "s")>")
        }
    }

    var verdictText: String {
        switch valid {
        case true?: "valid (\(scheme))"
        case false?: "INVALID: \(reason ?? "")"
        case nil: reason ?? "not checked (no secret given)"
        }
    }

    func humanText() -> String {
        let time = ISO8601DateFormatter.string(from: receivedAt, timeZone: .current, formatOptions: [.withFullTime, .withFractionalSeconds])
        var lines = ["── #\(number) \(time)  \(method) \(path)  → \(status)"]
        for header in shownHeaders { lines.append("  \(header.name): \(header.value)") }
        lines.append("  body (\(body.count) bytes):")
        for line in prettyBody().split(separator: "\n", omittingEmptySubsequences: false) { lines.append("    " + line) }
        lines.append("  signature: \(verdictText)")
        if let id {
            lines.append("  duplicate: " + (duplicate ? "yes, delivery #\(previousDeliveries + 1) of \(id)" : "no"))
        }
        return lines.joined(separator: "\n")
    }

    func jsonLine() -> String {
        var object: [String: Any] = [
            "request": number,
            "receivedAt": ISO8601DateFormatter().string(from: receivedAt),
            "method": method,
            "path": path,
            "headers": Dictionary(shownHeaders.map { ($0.name, $0.value) }, uniquingKeysWith: { a, b in a + ", " + b }),
            "scheme": scheme,
            "status": status,
            "duplicate": duplicate,
            "deliveries": previousDeliveries + 1,
        ]
        object["valid"] = valid.map { $0 as Any } ?? NSNull()
        object["reason"] = reason.map { $0 as Any } ?? NSNull()
        object["id"] = id.map { $0 as Any } ?? NSNull()
        if let parsed = try? JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed]) {
            object["body"] = parsed
        } else {
            object["body"] = String(bytes: body, encoding: .utf8) ?? "<\(body.count) bytes of binary>"
        }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    func prettyBody() -> String {
        if body.isEmpty { return "(empty)" }
        if let parsed = try? JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed]),
           let pretty = try? JSONSerialization.data(withJSONObject: parsed, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes, .fragmentsAllowed]) {
            return String(decoding: pretty, as: UTF8.self)
        }
        return String(bytes: body, encoding: .utf8) ?? "<\(body.count) bytes of binary>"
    }
}
