import ArgumentParser
import Foundation
import WebhookSignature

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify a captured webhook: prints 'valid' and exits 0, or the reason and exits 1.",
        discussion: """
        Example:
          herald verify --secret whsec_… -H 'webhook-id: msg_1' -H 'webhook-timestamp: 1614265330' \\
            -H 'webhook-signature: v1,…' --file body.json
        """
    )

    @OptionGroup var scheme: SchemeOptions
    @OptionGroup var secret: SecretOptions
    @OptionGroup var payload: PayloadOptions

    @Option(name: [.customShort("H"), .customLong("header")], help: ArgumentHelp("A request header, 'name: value' (repeatable).", valueName: "header"))
    var headers: [String] = []

    @Option(help: ArgumentHelp("Seconds the timestamp may differ from now.", valueName: "seconds"))
    var tolerance: Int64 = 300

    @Option(help: ArgumentHelp("Check the timestamp against this Unix time instead of now (when the request was received).", valueName: "seconds"))
    var at: Int64?

    func run() async throws {
        guard tolerance >= 0 else { throw CLIError("--tolerance must be zero or more seconds") }
        let verifier = try scheme.make(secrets: try secret.require(), tolerance: tolerance)
        var parsed = WebhookHeaders()
        for header in headers {
            let (name, value) = try parseHeaderArgument(header)
            parsed.add(name, value)
        }
        let body = try payload.read()
        let now = at.map { Date(timeIntervalSince1970: TimeInterval($0)) } ?? Date()
        do {
            let verified = try verifier.verify(payload: body, headers: parsed, now: now)
            print("valid" + (verified.id.map { " (id \($0))" } ?? ""))
        } catch {
            printError("invalid: \(error.message)")
            throw ExitCode(1)
        }
    }
}
