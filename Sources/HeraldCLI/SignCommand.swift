import ArgumentParser
import Foundation
import HeraldCore
import WebhookSignature

struct SignCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Sign a payload and print the headers (or a ready-to-run curl command).",
        discussion: """
        Examples:
          herald sign --secret whsec_… --data '{"type":"ping"}'
          herald sign --secret whsec_… --file event.json --curl http://127.0.0.1:3000/webhook | sh
        """
    )

    @OptionGroup var scheme: SchemeOptions
    @OptionGroup var secret: SecretOptions
    @OptionGroup var payload: PayloadOptions

    @Option(help: ArgumentHelp("The webhook id (default: a new msg_… id).", valueName: "id"))
    var id: String?

    @Option(help: ArgumentHelp("The Unix timestamp to sign (default: now).", valueName: "seconds"))
    var timestamp: Int64?

    @Option(help: ArgumentHelp("Print a curl command that POSTs to this URL instead of the headers.", valueName: "url"))
    var curl: String?

    func run() async throws {
        let signer = try scheme.make(secrets: try secret.require(), tolerance: nil)
        let body = try payload.read()
        if let timestamp, timestamp < 0 { throw CLIError("--timestamp must be a positive Unix time") }
        let date = timestamp.map { Date(timeIntervalSince1970: TimeInterval($0)) } ?? Date()
        let headers: [(name: String, value: String)]
        do {
            headers = try signer.sign(payload: body, id: id ?? MessageID.generate().rawValue, timestamp: date)
        } catch {
            throw CLIError(error.message)
        }
        guard let curl else {
            for header in headers { print("\(header.name): \(header.value)") }
            return
        }
        var parts = ["curl", "-sS", "-X", "POST", shellQuote(curl), "-H", shellQuote("content-type: application/json")]
        for header in headers { parts += ["-H", shellQuote("\(header.name): \(header.value)")] }
        if let file = payload.file, file != "-" {
            parts += ["--data-binary", shellQuote("@" + file)]
        } else {
            guard let text = String(bytes: body, encoding: .utf8), !text.contains("\0") else {
                throw CLIError("a binary payload cannot be inlined in a curl command: use --file")
            }
            parts += ["--data-binary", shellQuote(text)]
        }
        print(parts.joined(separator: " "))
    }
}
