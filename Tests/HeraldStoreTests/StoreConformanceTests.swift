import HeraldCore
import HeraldTesting
import Testing

/// The conformance suite on every store: each check on each backend is one test case.
@Test("Store conformance", arguments: StoreBackend.allCases, StoreConformance.Check.allCases)
func storeConformance(_ backend: StoreBackend, _ check: StoreConformance.Check) async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let conformance = StoreConformance { try backend.makeStore(in: directory) }
    try await conformance.run(check)
}
