import HeraldCore
import Testing

@Suite("Endpoint URL rules")
struct EndpointURLTests {
    static let valid = [
        "https://hooks.example.com/in", "http://127.0.0.1:8080/x?y=1#z", "http://127.0.0.1:65535/", "https://example.com:1/",
        "https://[::1]:8443/hook", "https://[2001:db8::1]/", "HTTPS://Example.COM/", "http://exämple.com/",
        "https://" + String(repeating: "a", count: 63) + "." + String(repeating: "b", count: 63) + ".com/",
    ]
    static let invalid: [(String, String)] = [
        ("http://127.0.0.1:65536/", "port"), ("http://127.0.0.1:0/", "port"), ("http://h.example:99999999999999999999/", "port"),
        ("http://h.example:/", "port"), ("http://h.example:-1/", "invalid"), ("http://h.example:8o/", "invalid"),
        ("http://[::1]:70000/", "port"), ("ftp://example.com/", "scheme"), ("file:///etc/passwd", "scheme"),
        ("javascript:alert(1)", "scheme"), ("example.com/hook", "scheme"), ("http:///hook", "host"), ("http://", "host"),
        ("https://example.com/a hook", "whitespace"), ("https://exa mple.com/", "whitespace"), ("https://example.com/\u{0}", "control"),
        ("https://example.com/\t", "whitespace"), ("https://user:pass@example.com/", "credentials"),
        ("https://" + String(repeating: "a", count: 254) + "/", "longer than 253"),
        ("https://example.com/" + String(repeating: "a", count: 65536), "longer than 65536"),
    ]

    @Test(arguments: valid)
    func validURLsPass(url: String) {
        #expect(EndpointURL.problem(url) == nil)
    }

    @Test(arguments: invalid)
    func invalidURLsGetAReasonThatNamesTheProblem(url: String, expected: String) throws {
        let problem = try #require(EndpointURL.problem(url), "\(url.prefix(80)) was accepted")
        #expect(problem.contains(expected), "\(problem)")
        #expect(!problem.contains("pass"))  // the URL itself is never quoted back
    }
}
