import Foundation
import HeraldDelivery
import NIOConcurrencyHelpers

/// A scripted transport: answers each request with the next scripted response and records what
/// was sent, including how many requests to each URL were in flight at once.
final class FakeTransport: WebhookTransport, Sendable {
    struct State {
        var script: [TransportResponse.Outcome] = []
        var retryAfter: String?
        var sent: [OutboundRequest] = []
        var inFlight: [String: Int] = [:]
        var maxInFlight: [String: Int] = [:]
        var delay: Duration = .zero
    }
    let state = NIOLockedValueBox(State())

    init(_ script: [TransportResponse.Outcome] = [], retryAfter: String? = nil, delay: Duration = .zero) {
        state.withLockedValue {
            $0.script = script
            $0.retryAfter = retryAfter
            $0.delay = delay
        }
    }

    var sent: [OutboundRequest] { state.withLockedValue { $0.sent } }

    func send(_ request: OutboundRequest) async -> TransportResponse {
        let (outcome, retryAfter, delay) = state.withLockedValue { state -> (TransportResponse.Outcome, String?, Duration) in
            state.sent.append(request)
            state.inFlight[request.url, default: 0] += 1
            state.maxInFlight[request.url] = max(state.maxInFlight[request.url, default: 0], state.inFlight[request.url]!)
            let outcome = state.script.isEmpty ? .status(200) : state.script.removeFirst()
            return (outcome, state.retryAfter, state.delay)
        }
        if delay > .zero { try? await Task.sleep(for: delay) }
        state.withLockedValue { $0.inFlight[request.url, default: 1] -= 1 }
        return TransportResponse(outcome: outcome, body: "scripted", retryAfter: retryAfter, duration: .milliseconds(3))
    }
}

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let current: NIOLockedValueBox<Date>
    init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { current = NIOLockedValueBox(start) }
    var now: Date { current.withLockedValue { $0 } }
    func advance(_ seconds: TimeInterval) { current.withLockedValue { $0 = $0.addingTimeInterval(seconds) } }
}
