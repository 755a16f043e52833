import Foundation
import Testing
@testable import WebhookSignature

// Expected values come from the providers' documentation (GitHub) or from Python's hmac module,
// an implementation independent of ours.

@Suite("GitHub, Stripe, Slack, Shopify and generic HMAC")
struct ProviderSchemeTests {
    @Test func githubPublishedVector() throws {
        let github = GenericHMACWebhook.github(secrets: ["It's a Secret to Everybody"])
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        let headers = try github.sign(payload: Array("Hello, World!".utf8), id: "d1", timestamp: Date())
        #expect(headers.first?.value == expected)
        let verified = try github.verify(payload: "Hello, World!", headers: ["X-Hub-Signature-256": expected, "X-GitHub-Delivery": "72d3162e"])
        #expect(verified.id == "72d3162e")
        #expect(verified.scheme == "github")
        // Uppercase hex is the same signature.
        #expect(throws: Never.self) { try github.verify(payload: "Hello, World!", headers: ["x-hub-signature-256": expected.uppercased().replacingOccurrences(of: "SHA256=", with: "sha256=")]) }
    }

    @Test func githubMustFail() {
        let github = GenericHMACWebhook.github(secrets: ["It's a Secret to Everybody"])
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        expectCode(.noMatchingSignature) { _ = try github.verify(payload: "Hello, World?", headers: ["X-Hub-Signature-256": good]) }
        expectCode(.noMatchingSignature) { _ = try github.verify(payload: "Hello, World!", headers: ["X-Hub-Signature-256": String(good.dropLast()) + "8"]) }
        expectCode(.missingHeader) { _ = try github.verify(payload: "Hello, World!", headers: [:]) }
        expectCode(.malformedHeader) { _ = try github.verify(payload: "Hello, World!", headers: ["X-Hub-Signature-256": "sha1=" + good.dropFirst(7)]) }
        expectCode(.malformedHeader) { _ = try github.verify(payload: "Hello, World!", headers: ["X-Hub-Signature-256": "sha256=zz"]) }
        let wrongSecret = GenericHMACWebhook.github(secrets: ["It's a secret to everybody"])
        expectCode(.noMatchingSignature) { _ = try wrongSecret.verify(payload: "Hello, World!", headers: ["X-Hub-Signature-256": good]) }
    }

    static let stripeHeader = "t=1700000000,v1=248a374f50f943a28b0f6ab50faf9a7e7e29b710fa26df9fb1618b9bf8ea9c9a"
    static let stripeBody = #"{"id":"evt_1"}"#
    static let stripeTime = Date(timeIntervalSince1970: 1_700_000_000)

    @Test func stripeVector() throws {
        let stripe = StripeWebhook(secrets: ["whsec_test_secret"])
        let signed = try stripe.sign(payload: Array(Self.stripeBody.utf8), id: "", timestamp: Self.stripeTime)
        #expect(signed.first?.value == Self.stripeHeader)
        let verified = try stripe.verify(payload: Self.stripeBody, headers: ["Stripe-Signature": Self.stripeHeader], now: Self.stripeTime.addingTimeInterval(120))
        #expect(verified.timestamp == 1_700_000_000)
        // Several v1 entries (Stripe sends one per active secret) and a v0 entry: one match is enough.
        let several = "t=1700000000,v1=\(String(repeating: "ab", count: 32)),v0=deadbeef," + Self.stripeHeader.split(separator: ",")[1]
        #expect(throws: Never.self) { try stripe.verify(payload: Self.stripeBody, headers: ["stripe-signature": several], now: Self.stripeTime) }
    }

    @Test func stripeMustFail() {
        let stripe = StripeWebhook(secrets: ["whsec_test_secret"])
        expectCode(.timestampOutsideTolerance) { _ = try stripe.verify(payload: Self.stripeBody, headers: ["Stripe-Signature": Self.stripeHeader], now: Self.stripeTime.addingTimeInterval(301)) }
        expectCode(.noMatchingSignature) { _ = try stripe.verify(payload: Self.stripeBody + " ", headers: ["Stripe-Signature": Self.stripeHeader], now: Self.stripeTime) }
        expectCode(.noMatchingSignature) {
            _ = try stripe.verify(payload: Self.stripeBody, headers: ["Stripe-Signature": Self.stripeHeader.replacingOccurrences(of: "1700000000", with: "1700000001")], now: Self.stripeTime)
        }
        expectCode(.malformedHeader) { _ = try stripe.verify(payload: Self.stripeBody, headers: ["Stripe-Signature": "v1=abc"], now: Self.stripeTime) }
        expectCode(.malformedTimestamp) { _ = try stripe.verify(payload: Self.stripeBody, headers: ["Stripe-Signature": "t=hello,v1=abc"], now: Self.stripeTime) }
        expectCode(.missingHeader) { _ = try stripe.verify(payload: Self.stripeBody, headers: [:], now: Self.stripeTime) }
        // The whsec_ text is the key as given: decoding it would be a different key.
        let decoded = StripeWebhook(secrets: [HMACSecret(bytes: Array("test_secret".utf8))])
        expectCode(.noMatchingSignature) { _ = try decoded.verify(payload: Self.stripeBody, headers: ["Stripe-Signature": Self.stripeHeader], now: Self.stripeTime) }
    }

    static let slackSecret: HMACSecret = "8f742231b10e8888abcd99yyyzzz85a5"
    static let slackBody = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J"
    static let slackHeaders: WebhookHeaders = [
        "X-Slack-Request-Timestamp": "1531420618",
        "X-Slack-Signature": "v0=bca5eef5dd737ed259b428b18cd24f679baa18c3fc5f1cb2a6ac9f03e717969a",
    ]

    @Test func slackVector() throws {
        let slack = SlackWebhook(secrets: [Self.slackSecret])
        let at = Date(timeIntervalSince1970: 1_531_420_618)
        let signed = try slack.sign(payload: Array(Self.slackBody.utf8), id: "", timestamp: at)
        #expect(WebhookHeaders(signed.map { ($0.name, $0.value) }) == Self.slackHeaders)
        #expect(try slack.verify(payload: Self.slackBody, headers: Self.slackHeaders, now: at).timestamp == 1_531_420_618)
    }

    @Test func slackMustFail() {
        let slack = SlackWebhook(secrets: [Self.slackSecret])
        let at = Date(timeIntervalSince1970: 1_531_420_618)
        expectCode(.timestampOutsideTolerance) { _ = try slack.verify(payload: Self.slackBody, headers: Self.slackHeaders, now: at.addingTimeInterval(-301)) }
        expectCode(.noMatchingSignature) { _ = try slack.verify(payload: Self.slackBody + "&x=1", headers: Self.slackHeaders, now: at) }
        expectCode(.missingHeader) { _ = try slack.verify(payload: Self.slackBody, headers: ["X-Slack-Signature": "v0=00"], now: at) }
        expectCode(.malformedHeader) {
            _ = try slack.verify(payload: Self.slackBody, headers: ["X-Slack-Request-Timestamp": "1531420618", "X-Slack-Signature": "v1=00"], now: at)
        }
        expectCode(.malformedTimestamp) {
            _ = try slack.verify(payload: Self.slackBody, headers: ["X-Slack-Request-Timestamp": "hello", "X-Slack-Signature": "v0=00"], now: at)
        }
    }

    @Test func shopifyVector() throws {
        let shopify = GenericHMACWebhook.shopify(secrets: ["shpss_secret"])
        let body = #"{"id":820982911946154508}"#
        let expected = "jqbalbO3Z8mDmrF2/+wzM3KYvbgqzVBF969vgiIy80I="
        #expect(try shopify.sign(payload: Array(body.utf8), id: "w1", timestamp: Date()).first?.value == expected)
        #expect(try shopify.verify(payload: body, headers: ["X-Shopify-Hmac-Sha256": expected, "X-Shopify-Webhook-Id": "w1"]).id == "w1")
        expectCode(.noMatchingSignature) { _ = try shopify.verify(payload: body + " ", headers: ["X-Shopify-Hmac-Sha256": expected]) }
        expectCode(.malformedHeader) { _ = try shopify.verify(payload: body, headers: ["X-Shopify-Hmac-Sha256": "not base64!"]) }
        expectCode(.missingHeader) { _ = try shopify.verify(payload: body, headers: [:]) }
    }

    @Test func genericHMACSHA512Base64WithPrefix() throws {
        let scheme = GenericHMACWebhook(signatureHeader: "X-Acme-Signature", algorithm: .sha512, encoding: .base64,
                                        prefix: "sha512=", idHeader: "X-Acme-Id", secrets: ["k"])
        let expected = "sha512=TZSLiacRM+getZIrei7/ZJrcGgaM0pyN2WUJRvDnmXdRH1LgaTNhlBb3C+kbdWjCWKA3pdIs1ksAy8nKsfmBpg=="
        #expect(try scheme.sign(payload: Array("body".utf8), id: "a1", timestamp: Date()).first?.value == expected)
        #expect(try scheme.verify(payload: "body", headers: ["x-acme-signature": expected, "x-acme-id": "a1"]).id == "a1")
        expectCode(.noMatchingSignature) { _ = try scheme.verify(payload: "Body", headers: ["x-acme-signature": expected]) }
        // A SHA-256-sized MAC is not a SHA-512 signature.
        expectCode(.malformedHeader) { _ = try scheme.verify(payload: "body", headers: ["x-acme-signature": "sha512=" + Data(count: 32).base64EncodedString()]) }
    }
}

@Suite("Constant-time comparison and header lookup")
struct PrimitiveTests {
    @Test func constantTimeEqualsComparesBytes() {
        #expect(constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2]))
        #expect(constantTimeEquals([UInt8](), [UInt8]()))
    }

    @Test func headersAreCaseInsensitiveAndKeepEveryValue() {
        var headers: WebhookHeaders = ["X-One": "1"]
        headers.add("x-one", "2")
        #expect(headers["X-ONE"] == "1")
        #expect(headers.values("x-One") == ["1", "2"])
        #expect(headers["missing"] == nil)
    }

    @Test(arguments: [("", nil), ("0", nil), ("abc", nil), ("zz", nil), ("0aFf", [10, 255])] as [(String, [UInt8]?)])
    func hexDecoding(text: String, expected: [UInt8]?) {
        #expect(ByteEncoding.hexDecode(text) == expected)
    }
}
