@testable import HeraldDelivery
import NIOConcurrencyHelpers

/// A resolver with no DNS: hosts in `answers` resolve at once, hosts in `gated` wait until
/// `openGate()` (then answer from `answers`, or fail), any other host does not exist.
final class FakeHostResolver: HostResolver {
    let answers: [String: [IPAddress]]
    let gated: Set<String>
    private struct State {
        var calls: [String: Int] = [:]
        var open = false
        var parked: [CheckedContinuation<Void, Never>] = []
    }
    private let state = NIOLockedValueBox(State())

    init(answers: [String: [IPAddress]] = [:], gated: Set<String> = []) {
        self.answers = answers
        self.gated = gated
    }

    func calls(_ host: String) -> Int { state.withLockedValue { $0.calls[host, default: 0] } }
    var totalCalls: Int { state.withLockedValue { $0.calls.values.reduce(0, +) } }

    func openGate() {
        let parked = state.withLockedValue { state in
            state.open = true
            defer { state.parked = [] }
            return state.parked
        }
        for continuation in parked { continuation.resume() }
    }

    func resolve(_ host: String) async throws -> [IPAddress] {
        state.withLockedValue { $0.calls[host, default: 0] += 1 }
        if gated.contains(host) {
            // Deliberately deaf to cancellation, like a getaddrinfo that hangs.
            await withCheckedContinuation { continuation in
                let now = state.withLockedValue { state -> Bool in
                    if state.open { return true }
                    state.parked.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        }
        if let addresses = answers[host] { return addresses }
        throw DeliveryRefusal("could not resolve host \(host)")
    }
}

/// Waits until `condition` holds or `timeout` passes; returns whether it held.
func holdsSoon(within timeout: Duration = .seconds(10), _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return await condition()
}
