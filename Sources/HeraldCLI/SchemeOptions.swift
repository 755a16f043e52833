import ArgumentParser
import Foundation
import WebhookSignature

/// The signature schemes the CLI speaks.
enum SchemeName: String, ExpressibleByArgument, CaseIterable {
    case standard, github, stripe, slack, shopify, hmac
}

extension HMACAlgorithm: ExpressibleByArgument {}
extension SignatureEncoding: ExpressibleByArgument {}

/// Where secrets come from: `--secret` (repeatable), `--secret-file`, or an environment variable,
/// so they need not appear in shell history or `ps`.
struct SecretOptions: ParsableArguments {
    @Option(name: .customLong("secret"), help: ArgumentHelp(
        "Secret or key (repeatable). Standard: whsec_…, whsk_… (ed25519 signing) or whpk_… (ed25519 verify); other schemes: the secret's text.",
        valueName: "secret"))
    var secrets: [String] = []

    @Option(name: .customLong("secret-file"), help: ArgumentHelp("Read secrets from a file, one per line.", valueName: "path"))
    var secretFile: String?

    @Option(name: .customLong("secret-env"), help: ArgumentHelp("Read the secret from this environment variable.", valueName: "name"))
    var secretEnv: String = "HERALD_WEBHOOK_SECRET"

    /// Every secret given, in order; empty when none was given anywhere.
    func resolve() throws -> [String] {
        var all = secrets
        if let secretFile {
            guard let text = try? String(contentsOfFile: secretFile, encoding: .utf8) else {
                throw CLIError("cannot read secret file '\(secretFile)'")
            }
            all += text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        if all.isEmpty, let value = ProcessInfo.processInfo.environment[secretEnv], !value.isEmpty {
            all.append(value)
        }
        return all
    }

    func require() throws -> [String] {
        let all = try resolve()
        guard !all.isEmpty else {
            throw CLIError("no secret: pass --secret, --secret-file, or set \(secretEnv)")
        }
        return all
    }
}

/// `--scheme` and the settings of the generic HMAC scheme.
struct SchemeOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Signature scheme: \(SchemeName.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "scheme"))
    var scheme: SchemeName = .standard

    @Option(name: .customLong("signature-header"), help: ArgumentHelp("hmac scheme: the header that holds the signature.", valueName: "name"))
    var signatureHeader: String?

    @Option(help: "hmac scheme: sha256 or sha512.")
    var algorithm: HMACAlgorithm = .sha256

    @Option(help: "hmac scheme: hex or base64.")
    var encoding: SignatureEncoding = .hex

    @Option(help: ArgumentHelp("hmac scheme: text before the signature, such as 'sha256='.", valueName: "text"))
    var prefix: String = ""

    @Option(name: .customLong("id-header"), help: ArgumentHelp("hmac scheme: the header that holds the webhook id.", valueName: "name"))
    var idHeader: String?

    /// Builds the scheme with these secrets; `tolerance` applies where the scheme has a timestamp.
    func make(secrets: [String], tolerance: Int64?) throws -> any WebhookVerifier & WebhookSigner {
        let hmacSecrets = secrets.map { HMACSecret($0) }
        switch scheme {
        case .standard:
            do {
                return try StandardWebhook(keys: secrets, tolerance: tolerance)
            } catch {
                throw CLIError(error.message)
            }
        case .github: return GenericHMACWebhook.github(secrets: hmacSecrets)
        case .shopify: return GenericHMACWebhook.shopify(secrets: hmacSecrets)
        case .stripe: return StripeWebhook(secrets: hmacSecrets, tolerance: tolerance)
        case .slack: return SlackWebhook(secrets: hmacSecrets, tolerance: tolerance)
        case .hmac:
            guard let signatureHeader, !signatureHeader.isEmpty else {
                throw CLIError("--scheme hmac needs --signature-header NAME")
            }
            return GenericHMACWebhook(signatureHeader: signatureHeader, algorithm: algorithm, encoding: encoding,
                                      prefix: prefix, idHeader: idHeader, secrets: hmacSecrets)
        }
    }
}

/// The payload: `--data TEXT`, `--file PATH` (`-` for stdin), or stdin when piped.
struct PayloadOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The payload text.", valueName: "text"))
    var data: String?

    @Option(help: ArgumentHelp("Read the payload from a file ('-' for stdin).", valueName: "path"))
    var file: String?

    func read() throws -> [UInt8] {
        if data != nil && file != nil { throw CLIError("give the payload with --data or --file, not both") }
        if let data { return Array(data.utf8) }
        if let file, file != "-" {
            guard let contents = FileManager.default.contents(atPath: file) else {
                throw CLIError("cannot read payload file '\(file)'")
            }
            return [UInt8](contents)
        }
        if file == nil && isatty(STDIN_FILENO) != 0 {
            throw CLIError("no payload: pass --data, --file, or pipe it on stdin")
        }
        return [UInt8](FileHandle.standardInput.readDataToEndOfFile())
    }
}

/// Quotes `text` for a POSIX shell.
func shellQuote(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// Parses `name: value`.
func parseHeaderArgument(_ text: String) throws -> (String, String) {
    guard let colon = text.firstIndex(of: ":") else {
        throw CLIError("header '\(text.prefix(40))' is not in the form 'name: value'")
    }
    let name = text[..<colon].trimmingCharacters(in: .whitespaces)
    let value = text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    guard !name.isEmpty else { throw CLIError("a header has an empty name") }
    return (name, value)
}

/// Whether a header carries a signature and must never be printed.
func isSignatureHeader(_ name: String) -> Bool {
    let lowered = name.lowercased()
    return lowered.contains("signature") || lowered.contains("hmac") || lowered == "authorization"
}
