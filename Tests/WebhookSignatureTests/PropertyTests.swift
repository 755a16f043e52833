import Foundation
import Testing
@testable import WebhookSignature

/// A seeded generator, so a failing case can be reproduced from the seed in the test name.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension RandomNumberGenerator {
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) } }
    mutating func printable(_ count: Int) -> String {
        String((0..<count).map { _ in Character(Unicode.Scalar(UInt8.random(in: 0x21...0x7E, using: &self))) })
    }
}

/// Each scheme, built from random key material, as a signer/verifier pair.
func randomSchemes(_ rng: inout SplitMix64) throws -> [(name: String, scheme: any WebhookSigner & WebhookVerifier)] {
    let hmacKey = HMACSecret(bytes: rng.bytes(Int.random(in: 1...64, using: &rng)))
    return [
        ("standard-v1", StandardWebhook(keys: [.secret(try WebhookSecret(bytes: rng.bytes(Int.random(in: 1...64, using: &rng))))])),
        ("standard-v1a", StandardWebhook(keys: [.signingKey(try Ed25519SigningKey(bytes: rng.bytes(32)))])),
        ("github", GenericHMACWebhook.github(secrets: [hmacKey])),
        ("shopify", GenericHMACWebhook.shopify(secrets: [hmacKey])),
        ("stripe", StripeWebhook(secrets: [hmacKey])),
        ("slack", SlackWebhook(secrets: [hmacKey])),
        ("hmac-sha512", GenericHMACWebhook(signatureHeader: "X-Sig", algorithm: .sha512, encoding: .base64, prefix: "v=", secrets: [hmacKey])),
    ]
}

@Suite("Property tests: round trips and one-byte changes")
struct PropertyTests {
    static let seeds: [UInt64] = Array(1...40)

    @Test(arguments: seeds)
    func signThenVerifyRoundTrips(seed: UInt64) throws {
        var rng = SplitMix64(state: seed)
        let payload = rng.bytes(Int.random(in: 0...2048, using: &rng))
        let id = "msg_" + rng.printable(Int.random(in: 1...40, using: &rng))
        let now = Date(timeIntervalSince1970: TimeInterval(Int64.random(in: 1_000_000_000...4_000_000_000, using: &rng)))
        for (name, scheme) in try randomSchemes(&rng) {
            let headers = WebhookHeaders(try scheme.sign(payload: payload, id: id, timestamp: now).map { ($0.name, $0.value) })
            let verified = try scheme.verify(payload: payload, headers: headers, now: now)
            if name.hasPrefix("standard") { #expect(verified.id == id) }
        }
    }

    @Test(arguments: seeds)
    func anyOneByteChangeToTheBodyFails(seed: UInt64) throws {
        var rng = SplitMix64(state: seed)
        let payload = rng.bytes(Int.random(in: 1...1024, using: &rng))
        let now = Date()
        for (name, scheme) in try randomSchemes(&rng) {
            let headers = WebhookHeaders(try scheme.sign(payload: payload, id: "msg_x", timestamp: now).map { ($0.name, $0.value) })
            var changed = payload
            let index = Int.random(in: 0..<changed.count, using: &rng)
            changed[index] ^= UInt8.random(in: 1...255, using: &rng)
            #expect(throws: WebhookVerificationError.self, "\(name) accepted a changed body") {
                try scheme.verify(payload: changed, headers: headers, now: now)
            }
            // Appending or dropping a byte fails too.
            #expect(throws: WebhookVerificationError.self) { try scheme.verify(payload: payload + [0], headers: headers, now: now) }
            #expect(throws: WebhookVerificationError.self) { try scheme.verify(payload: Array(payload.dropLast()), headers: headers, now: now) }
        }
    }

    @Test(arguments: seeds)
    func anyOneCharacterChangeToIdTimestampOrSignatureFails(seed: UInt64) throws {
        var rng = SplitMix64(state: seed)
        let payload = rng.bytes(Int.random(in: 0...512, using: &rng))
        let scheme = StandardWebhook(keys: [.secret(try WebhookSecret(bytes: rng.bytes(24))), .signingKey(.generate())], tolerance: nil)
        let id = "msg_" + rng.printable(20)
        let now = Date()
        let signed = try scheme.sign(payload: payload, id: id, timestamp: now)
        for (index, header) in signed.enumerated() {
            // For the signature header, change one entry at a time so the other cannot still match.
            let variants: [String]
            if header.name == "webhook-signature" {
                let entries = header.value.split(separator: " ").map(String.init)
                variants = entries.map { entry in
                    var bytes = Array(entry.utf8)
                    // Not the last base64 character before the padding: its low bits are padding
                    // bits, so some changes there decode to the same bytes.
                    let position = Int.random(in: (entry.firstIndex(of: ",")!.utf16Offset(in: entry) + 1)..<(bytes.count - 3), using: &rng)
                    bytes[position] = bytes[position] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
                    return String(decoding: bytes, as: UTF8.self)
                }
            } else {
                var bytes = Array(header.value.utf8)
                let position = Int.random(in: 0..<bytes.count, using: &rng)
                bytes[position] = bytes[position] == UInt8(ascii: "1") ? UInt8(ascii: "2") : UInt8(ascii: "1")
                variants = [String(decoding: bytes, as: UTF8.self)]
            }
            for variant in variants {
                var headers = signed
                headers[index].value = variant
                #expect(throws: WebhookVerificationError.self, "changed \(header.name) was accepted") {
                    try scheme.verify(payload: payload, headers: WebhookHeaders(headers.map { ($0.name, $0.value) }), now: now)
                }
            }
        }
    }

    @Test(arguments: seeds)
    func randomHeadersNeverCrash(seed: UInt64) throws {
        var rng = SplitMix64(state: seed)
        for (_, scheme) in try randomSchemes(&rng) {
            var headers = WebhookHeaders()
            for name in ["webhook-id", "webhook-timestamp", "webhook-signature", "stripe-signature", "x-hub-signature-256",
                         "x-slack-signature", "x-slack-request-timestamp", "x-shopify-hmac-sha256", "x-sig"] {
                headers.add(name, String(decoding: rng.bytes(Int.random(in: 0...80, using: &rng)), as: UTF8.self))
            }
            #expect(throws: WebhookVerificationError.self) { try scheme.verify(payload: rng.bytes(16), headers: headers) }
        }
    }
}
