// libFuzzer target for WebhookSignature's header and secret parsers.
// Built and run by scripts/fuzz; the input is split on NUL bytes into a secret/key text,
// header values and a payload, and fed to every parser and verifier.
import Foundation
import WebhookSignature

private let fixedNow = Date(timeIntervalSince1970: 1_614_265_330)
private let hmacSchemes: [any WebhookVerifier] = [
    GenericHMACWebhook.github(secrets: ["It's a Secret to Everybody"]),
    GenericHMACWebhook.shopify(secrets: ["secret"]),
    GenericHMACWebhook(signatureHeader: "x-sig", algorithm: .sha512, encoding: .base64, prefix: "v=", secrets: ["k"]),
    StripeWebhook(secrets: ["whsec_test"]),
    SlackWebhook(secrets: ["slack"]),
]
private let standard = try! StandardWebhook(keys: [
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=",
])

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let parts = bytes.split(separator: 0, maxSplits: 4, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    let part = { (i: Int) in i < parts.count ? parts[i] : "" }

    // Secret and key parsers: must throw or succeed, never crash.
    _ = try? WebhookSecret(part(0))
    _ = try? StandardWebhookKey(part(0))
    _ = try? Ed25519SigningKey(part(0))
    _ = try? Ed25519PublicKey(part(0))
    if let key = try? StandardWebhookKey(part(0)) {
        let scheme = StandardWebhook(keys: [key])
        _ = try? scheme.sign(payload: Array(part(4).utf8), id: part(1), timestamp: fixedNow)
    }

    // Header parsers, through the verifiers.
    _ = StandardWebhook.parseSignatureHeader(part(3))
    let headers: WebhookHeaders = [
        "webhook-id": part(1), "webhook-timestamp": part(2), "webhook-signature": part(3),
        "stripe-signature": part(3), "x-hub-signature-256": part(3), "x-shopify-hmac-sha256": part(3),
        "x-sig": part(3), "x-slack-signature": part(3), "x-slack-request-timestamp": part(2),
    ]
    let payload = Array(part(4).utf8)
    _ = try? standard.verify(payload: payload, headers: headers, now: fixedNow)
    for scheme in hmacSchemes { _ = try? scheme.verify(payload: payload, headers: headers, now: fixedNow) }
    return 0
}

// SwiftPM gives executables its own `main`, so hand control to libFuzzer's driver from here.
var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv, { data, size in fuzz(data, size) }))
