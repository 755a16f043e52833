import Foundation
import Testing
@testable import WebhookSignature

/// The published Standard Webhooks vectors (DESIGN.md "Test vectors").
enum Vector {
    static let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    static let id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    static let timestamp: Int64 = 1_614_265_330
    static let payload = #"{"test": 2432232314}"#
    static let signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    static let signingKey = "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg=="
    static let publicKey = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4="
    static let ed25519Signature = "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="
    static let signedAt = Date(timeIntervalSince1970: TimeInterval(timestamp))

    static func headers(id: String = id, timestamp: String = String(timestamp), signature: String = signature) -> WebhookHeaders {
        ["webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": signature]
    }
}

func expectCode(_ code: WebhookVerificationError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected \(code), but it succeeded", sourceLocation: sourceLocation)
    } catch let error as WebhookVerificationError {
        #expect(error.code == code, "\(error.message)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}

@Suite("Standard Webhooks v1 (HMAC-SHA256)")
struct StandardWebhookTests {
    let scheme = try! StandardWebhook(keys: [Vector.secret])

    @Test func signsThePublishedVector() throws {
        let signature = try scheme.signature(payload: Array(Vector.payload.utf8), id: Vector.id, timestamp: Vector.timestamp)
        #expect(signature == Vector.signature)
    }

    @Test func verifiesThePublishedVector() throws {
        let verified = try scheme.verify(payload: Vector.payload, headers: Vector.headers(), now: Vector.signedAt)
        #expect(verified.id == Vector.id)
        #expect(verified.timestamp == Vector.timestamp)
        #expect(verified.scheme == "standard")
    }

    @Test func secretWithoutPaddingAndRawBytesAreTheSameKey() throws {
        // 24 bytes encode to 32 characters with no padding; use a 25-byte secret to exercise padding.
        let bytes = (0..<25).map { UInt8($0 * 7 % 256) }
        let padded = WebhookSecret.prefix + Data(bytes).base64EncodedString()
        #expect(padded.hasSuffix("="))
        let unpadded = String(padded.drop(while: { _ in false }).reversed().drop(while: { $0 == "=" }).reversed())
        #expect(try WebhookSecret(padded).bytes == bytes)
        #expect(try WebhookSecret(unpadded).bytes == bytes)
        #expect(try WebhookSecret(bytes: bytes).bytes == bytes)
        // The vector's secret read without the prefix is the same key.
        #expect(try WebhookSecret(String(Vector.secret.dropFirst(6))) == WebhookSecret(Vector.secret))
    }

    @Test func svixHeaderNamesAreAliasesAndLookupIsCaseInsensitive() throws {
        let svix: WebhookHeaders = ["Svix-Id": Vector.id, "SVIX-TIMESTAMP": String(Vector.timestamp), "svix-signature": Vector.signature]
        #expect(try scheme.verify(payload: Vector.payload, headers: svix, now: Vector.signedAt).id == Vector.id)
        let mixed: WebhookHeaders = ["Webhook-ID": Vector.id, "Webhook-Timestamp": String(Vector.timestamp), "WEBHOOK-SIGNATURE": Vector.signature]
        #expect(try scheme.verify(payload: Vector.payload, headers: mixed, now: Vector.signedAt).id == Vector.id)
    }

    @Test func oneValidEntryAmongSeveralIsEnough() throws {
        let header = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,abc \(Vector.signature) v1,notbase64!!"
        #expect(throws: Never.self) { try scheme.verify(payload: Vector.payload, headers: Vector.headers(signature: header), now: Vector.signedAt) }
    }

    @Test func anyOfSeveralSecretsMayMatch() throws {
        let rotating = try StandardWebhook(keys: [WebhookSecret.generate().encoded, Vector.secret])
        #expect(throws: Never.self) { try rotating.verify(payload: Vector.payload, headers: Vector.headers(), now: Vector.signedAt) }
    }

    @Test func signsWithEveryKeyDuringRotation() throws {
        let other = WebhookSecret.generate()
        let both = try StandardWebhook(keys: [Vector.secret, other.encoded])
        let header = try both.signature(payload: Array(Vector.payload.utf8), id: Vector.id, timestamp: Vector.timestamp)
        let entries = header.split(separator: " ")
        #expect(entries.count == 2)
        #expect(entries[0] == Vector.signature[...])
        let onlyOther = try StandardWebhook(keys: [other.encoded])
        #expect(throws: Never.self) { try onlyOther.verify(payload: Vector.payload, headers: Vector.headers(signature: header), now: Vector.signedAt) }
    }

    // The must-fail cases.
    @Test func changedSignatureFails() {
        expectCode(.noMatchingSignature) {
            _ = try scheme.verify(payload: Vector.payload, headers: Vector.headers(signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="), now: Vector.signedAt)
        }
    }

    @Test func wrongVersionTagFails() {
        expectCode(.noMatchingSignature) {
            _ = try scheme.verify(payload: Vector.payload, headers: Vector.headers(signature: "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), now: Vector.signedAt)
        }
    }

    @Test(arguments: [Int64(301), -301, 100_000, -100_000])
    func timestampOutsideToleranceFails(offset: Int64) throws {
        let now = Date()
        let timestamp = now.unixSeconds + offset
        let signature = try scheme.signature(payload: Array(Vector.payload.utf8), id: Vector.id, timestamp: timestamp)
        expectCode(.timestampOutsideTolerance) {
            _ = try scheme.verify(payload: Vector.payload, headers: Vector.headers(timestamp: String(timestamp), signature: signature), now: now)
        }
    }

    @Test(arguments: [Int64(299), -299, 0])
    func timestampInsideTolerancePasses(offset: Int64) throws {
        let now = Date()
        let timestamp = now.unixSeconds + offset
        let signature = try scheme.signature(payload: Array(Vector.payload.utf8), id: Vector.id, timestamp: timestamp)
        #expect(throws: Never.self) {
            try scheme.verify(payload: Vector.payload, headers: Vector.headers(timestamp: String(timestamp), signature: signature), now: now)
        }
    }

    @Test func toleranceUsesTheTimeTheCallerPasses() throws {
        // Verified from a queue an hour later, against the time it was received.
        let receivedAt = Vector.signedAt.addingTimeInterval(10)
        #expect(throws: Never.self) { try scheme.verify(payload: Vector.payload, headers: Vector.headers(), now: receivedAt) }
        expectCode(.timestampOutsideTolerance) { _ = try scheme.verify(payload: Vector.payload, headers: Vector.headers(), now: receivedAt.addingTimeInterval(3600)) }
    }

    @Test(arguments: ["webhook-id", "webhook-timestamp", "webhook-signature"])
    func missingHeaderFails(name: String) {
        var headers = WebhookHeaders()
        for field in Vector.headers().fields where field.name != name { headers.add(field.name, field.value) }
        expectCode(.missingHeader) { _ = try scheme.verify(payload: Vector.payload, headers: headers, now: Vector.signedAt) }
    }

    @Test(arguments: ["hello", "", "1614265330.5", "-1614265330", "99999999999999999999999", "0x10"])
    func malformedTimestampFails(timestamp: String) {
        expectCode(.malformedTimestamp) { _ = try scheme.verify(payload: Vector.payload, headers: Vector.headers(timestamp: timestamp), now: Vector.signedAt) }
    }

    @Test(arguments: ["whsec_", "", "whsec_!!!!", "whsec_a", "   "])
    func malformedSecretFails(secret: String) {
        expectCode(.malformedSecret) { _ = try WebhookSecret(secret) }
    }

    @Test func emptyHeaderListFails() {
        expectCode(.missingHeader) { _ = try scheme.verify(payload: Vector.payload, headers: [:], now: Vector.signedAt) }
    }

    @Test(arguments: ["", " ", "v1,", ",abc", "v1", "v1,@@@@", String(repeating: "v1,AAAA ", count: 100)])
    func malformedSignatureEntriesAreSkippedNotFatal(header: String) {
        expectCode(.noMatchingSignature) { _ = try scheme.verify(payload: Vector.payload, headers: Vector.headers(signature: header), now: Vector.signedAt) }
    }

    @Test func hugeSignatureHeaderIsRefused() {
        let header = String(repeating: "v1,AAAA ", count: 5000)
        expectCode(.malformedHeader) { _ = try scheme.verify(payload: Vector.payload, headers: Vector.headers(signature: header), now: Vector.signedAt) }
    }

    @Test func errorsNeverPrintTheSecretOrExpectedSignature() throws {
        let secret = try WebhookSecret(Vector.secret)
        #expect(!"\(secret)".contains("MfKQ9r8G"))
        #expect(!String(reflecting: secret).contains("MfKQ9r8G"))
        var dumped = ""
        dump(secret, to: &dumped)
        #expect(!dumped.contains("MfKQ9r8G") && !dumped.contains("49"))  // no key text, no byte values
        do {
            _ = try scheme.verify(payload: Vector.payload + " ", headers: Vector.headers(), now: Vector.signedAt)
        } catch {
            #expect(!error.message.contains("MfKQ9r8G"))
            #expect(!error.message.contains("g0hM9SsE"))
            #expect(!error.description.contains("="))
        }
    }
}

@Suite("Standard Webhooks v1a (ed25519)")
struct Ed25519Tests {
    @Test func signingKeyMatchesThePublishedPublicKey() throws {
        let key = try Ed25519SigningKey(Vector.signingKey)
        #expect(key.publicKey.encoded == Vector.publicKey)
        #expect(key.encoded == Vector.signingKey)
    }

    @Test func signsThePublishedVector() throws {
        let scheme = try StandardWebhook(keys: [Vector.signingKey])
        let signature = try scheme.signature(payload: Array(Vector.payload.utf8), id: Vector.id, timestamp: Vector.timestamp)
        // BoringSSL's ed25519 (swift-crypto on Linux) is deterministic, as RFC 8032 specifies.
        #expect(signature == Vector.ed25519Signature)
    }

    @Test func verifiesThePublishedVectorWithThePublicKey() throws {
        let scheme = try StandardWebhook(keys: [Vector.publicKey])
        let verified = try scheme.verify(payload: Vector.payload, headers: Vector.headers(signature: Vector.ed25519Signature), now: Vector.signedAt)
        #expect(verified.id == Vector.id)
    }

    @Test func changedSignatureOrPayloadFails() throws {
        let scheme = try StandardWebhook(keys: [Vector.publicKey])
        var bytes = Array(Data(base64Encoded: String(Vector.ed25519Signature.dropFirst(4)))!)
        bytes[10] ^= 1
        expectCode(.noMatchingSignature) {
            _ = try scheme.verify(payload: Vector.payload, headers: Vector.headers(signature: "v1a," + Data(bytes).base64EncodedString()), now: Vector.signedAt)
        }
        expectCode(.noMatchingSignature) {
            _ = try scheme.verify(payload: Vector.payload + " ", headers: Vector.headers(signature: Vector.ed25519Signature), now: Vector.signedAt)
        }
        // A v1a signature is never accepted as v1, nor the HMAC as v1a.
        expectCode(.noMatchingSignature) {
            _ = try scheme.verify(payload: Vector.payload, headers: Vector.headers(signature: "v1," + Vector.ed25519Signature.dropFirst(4)), now: Vector.signedAt)
        }
    }

    @Test func publicKeyCannotSign() throws {
        let scheme = try StandardWebhook(keys: [Vector.publicKey])
        expectCode(.malformedSecret) { _ = try scheme.signature(payload: [], id: "x", timestamp: 1) }
    }

    @Test(arguments: ["whsk_", "whsk_AAAA", "whpk_AAAA", "whpk_", "whsk_!!!",
                      // 64 bytes whose second half is not the seed's public key
                      "whsk_" + Data(repeating: 1, count: 64).base64EncodedString()])
    func malformedKeysFail(key: String) {
        expectCode(.malformedSecret) { _ = try StandardWebhookKey(key) }
    }

    @Test func generatedKeysRoundTrip() throws {
        let key = Ed25519SigningKey.generate()
        let signer = StandardWebhook(keys: [.signingKey(key)])
        let verifier = try StandardWebhook(keys: [key.publicKey.encoded])
        let headers = try signer.sign(payload: Array("hi".utf8), id: "msg_1", timestamp: Date())
        #expect(headers[2].value.hasPrefix("v1a,"))
        #expect(throws: Never.self) { try verifier.verify(payload: "hi", headers: WebhookHeaders(headers.map { ($0.name, $0.value) })) }
        #expect(try Ed25519SigningKey(key.encoded).publicKey.encoded == key.publicKey.encoded)
    }
}
