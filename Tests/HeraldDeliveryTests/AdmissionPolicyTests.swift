import Foundation
import HeraldCore
@testable import HeraldDelivery
import Testing

/// The admission policy with plain values: no store, no sockets, times passed in.
@Suite("Admission policy")
struct AdmissionPolicyTests {
    static let origin = Date(timeIntervalSinceReferenceDate: 1_000_000)

    static func due(_ endpoint: String, app: String, waitingFor seconds: TimeInterval = 0, inFlight: Int = 0) -> DueEndpoint {
        DueEndpoint(endpointID: EndpointID(rawValue: endpoint), appID: ApplicationID(rawValue: app),
                    earliestDue: origin.addingTimeInterval(-seconds), inFlight: inFlight)
    }

    static func delivery(_ endpoint: String, app: String = "app_a", interrupted: Int = 0) -> Delivery {
        Delivery(messageID: .generate(), endpointID: EndpointID(rawValue: endpoint), appID: ApplicationID(rawValue: app),
                 status: .sending, nextAttemptAt: origin, eventType: "t", channels: nil, createdAt: origin,
                 interruptedCount: interrupted)
    }

    @Test func anEndpointAtItsCapIsNotClaimedAndTakesNoBudget() {
        var policy = AdmissionPolicy(configuration: .init(concurrency: 100, perEndpointConcurrency: 4))
        let quotas = policy.quotas(for: [Self.due("ep_slow", app: "app_a", waitingFor: 3600, inFlight: 4),
                                         Self.due("ep_fast", app: "app_b")], budget: 10, local: .init())
        #expect(quotas[EndpointID(rawValue: "ep_slow")] == nil, "at its cap (counted over every node): nothing claimed")
        #expect(quotas[EndpointID(rawValue: "ep_fast")] == 4, "the other endpoint gets up to its own cap")
    }

    @Test func theLocalCountAlsoHoldsAnEndpointBack() {
        var policy = AdmissionPolicy(configuration: .init(concurrency: 100, perEndpointConcurrency: 4))
        let local = AdmissionPolicy.Load(inFlight: 3, perEndpoint: [EndpointID(rawValue: "ep_a"): 3])
        let quotas = policy.quotas(for: [Self.due("ep_a", app: "app_a", inFlight: 1)], budget: 10, local: local)
        #expect(quotas == [EndpointID(rawValue: "ep_a"): 1], "the larger of the two counts applies")
    }

    @Test func applicationsGetEqualSharesWhateverTheirNumberOfEndpoints() {
        var policy = AdmissionPolicy(configuration: .init(concurrency: 1000, perEndpointConcurrency: 16))
        // Application A has 1,000 endpoints with work due (waiting longer); B has one.
        var due = (0..<1000).map { Self.due(String(format: "ep_a%04d", $0), app: "app_a", waitingFor: 600) }
        due.append(Self.due("ep_b", app: "app_b"))
        let quotas = policy.quotas(for: due, budget: 20, local: .init())
        #expect(quotas.values.reduce(0, +) == 20)
        #expect(quotas[EndpointID(rawValue: "ep_b")] == 10, "B's single endpoint gets B's half of the budget")
        let aShare = quotas.filter { $0.key.rawValue.hasPrefix("ep_a") }
        #expect(aShare.count == 10 && aShare.values.allSatisfy { $0 == 1 }, "A's half is spread over its endpoints in turn")
    }

    @Test func budgetAnApplicationCannotUseGoesToTheOthers() {
        var policy = AdmissionPolicy(configuration: .init(concurrency: 1000, perEndpointConcurrency: 3))
        let due = [Self.due("ep_b", app: "app_b"), Self.due("ep_a1", app: "app_a"), Self.due("ep_a2", app: "app_a")]
        let quotas = policy.quotas(for: due, budget: 100, local: .init())
        #expect(quotas == [EndpointID(rawValue: "ep_b"): 3, EndpointID(rawValue: "ep_a1"): 3, EndpointID(rawValue: "ep_a2"): 3],
                "every endpoint up to its cap, and no more than the caps allow")
    }

    @Test func endpointsOfOneApplicationTakeTurnsLongestWaitingFirst() {
        var policy = AdmissionPolicy(configuration: .init(concurrency: 1000, perEndpointConcurrency: 16))
        let due = [Self.due("ep_new", app: "app_a", waitingFor: 1), Self.due("ep_old", app: "app_a", waitingFor: 100),
                   Self.due("ep_mid", app: "app_a", waitingFor: 50)]
        #expect(policy.quotas(for: due, budget: 1, local: .init()) == [EndpointID(rawValue: "ep_old"): 1])
        #expect(policy.quotas(for: due, budget: 2, local: .init()) == [EndpointID(rawValue: "ep_old"): 1, EndpointID(rawValue: "ep_mid"): 1])
        #expect(policy.quotas(for: due, budget: 7, local: .init()) == [EndpointID(rawValue: "ep_old"): 3, EndpointID(rawValue: "ep_mid"): 2,
                                                                          EndpointID(rawValue: "ep_new"): 2])
    }

    @Test func aBudgetSmallerThanTheApplicationsRotatesBetweenClaims() {
        var policy = AdmissionPolicy(configuration: .init(concurrency: 1000, perEndpointConcurrency: 16))
        let due = (0..<4).map { Self.due("ep_\($0)", app: "app_\($0)") }
        var served: [String] = []
        for _ in 0..<4 {
            served += policy.quotas(for: due, budget: 1, local: .init()).keys.map(\.rawValue)
        }
        #expect(Set(served) == ["ep_0", "ep_1", "ep_2", "ep_3"], "four claims of one delivery serve four applications: \(served)")
    }

    @Test func aBacklogOnOneEndpointDoesNotDelayAnother() {
        // Endpoint A has had work due for an hour (a backlog of any size); B's message is new. A
        // claim with room for both gives B its share at once, whatever A's backlog.
        var policy = AdmissionPolicy(configuration: .init(concurrency: 64, perEndpointConcurrency: 16))
        let quotas = policy.quotas(for: [Self.due("ep_backlog", app: "app_a", waitingFor: 3600), Self.due("ep_new", app: "app_b")],
                                   budget: 64, local: .init())
        #expect(quotas[EndpointID(rawValue: "ep_new")] == 16)
        #expect(quotas[EndpointID(rawValue: "ep_backlog")] == 16, "the backlog is capped too, leaving budget unclaimed for others")
    }

    @Test func oneApplicationNeverTakesTheSlotsKeptForOthers() {
        // Application A has 100 slow endpoints, each with room; the budget is 100 with 10 kept.
        var policy = AdmissionPolicy(configuration: .init(concurrency: 100, perEndpointConcurrency: 16, applicationReserve: 10))
        let many = (0..<100).map { Self.due(String(format: "ep_a%03d", $0), app: "app_a") }
        #expect(policy.quotas(for: many, budget: 100, local: .init()).values.reduce(0, +) == 90, "A alone fills at most 90")
        let local = AdmissionPolicy.Load(inFlight: 90, perApplication: [ApplicationID(rawValue: "app_a"): 90])
        #expect(policy.quotas(for: many, budget: 10, local: local).isEmpty, "A at its cap gets no more")
        let withB = many + [Self.due("ep_b", app: "app_b")]
        #expect(policy.quotas(for: withB, budget: 10, local: local) == [EndpointID(rawValue: "ep_b"): 10],
                "the kept slots go to B at once")
        let a = Self.delivery("ep_a001", app: "app_a")
        #expect(policy.admit(a, payloadBytes: 1, load: local) == .waitForEndpoint, "a hand-over to A at its cap goes back to the queue")
        #expect(policy.admit(Self.delivery("ep_b", app: "app_b"), payloadBytes: 1, load: local) == .start)
    }

    @Test func noBudgetOrNothingDueClaimsNothing() {
        var policy = AdmissionPolicy()
        #expect(policy.quotas(for: [Self.due("ep_a", app: "app_a")], budget: 0, local: .init()).isEmpty)
        #expect(policy.quotas(for: [], budget: 10, local: .init()).isEmpty)
    }

    @Test func admitEnforcesTheGlobalBudgetTheCapAndBytes() {
        let policy = AdmissionPolicy(configuration: .init(concurrency: 2, perEndpointConcurrency: 1, maxInFlightBytes: 1000))
        let a = Self.delivery("ep_a")
        #expect(policy.admit(a, payloadBytes: 10, load: .init()) == .start)
        #expect(policy.admit(a, payloadBytes: 10, load: .init(inFlight: 1, perEndpoint: [a.endpointID: 1])) == .waitForEndpoint)
        #expect(policy.admit(a, payloadBytes: 10, load: .init(inFlight: 2)) == .waitForBudget)
        #expect(policy.admit(a, payloadBytes: 600, load: .init(inFlight: 1, inFlightBytes: 500)) == .waitForBudget, "over the byte budget")
        #expect(policy.admit(a, payloadBytes: 5000, load: .init()) == .start, "a single large delivery still goes, alone")
    }

    @Test func poisonDeliveriesAreFailedAndSuspectsGoOneAtATime() {
        let policy = AdmissionPolicy(configuration: .init(concurrency: 10, perEndpointConcurrency: 10))
        let once = Self.delivery("ep_a", interrupted: 1)
        let twice = Self.delivery("ep_a", interrupted: 2)
        let thrice = Self.delivery("ep_a", interrupted: 3)
        #expect(policy.admit(once, payloadBytes: 1, load: .init(inFlight: 5, suspects: 1)) == .start, "one interruption is not suspect")
        #expect(policy.admit(twice, payloadBytes: 1, load: .init(inFlight: 5)) == .start)
        #expect(policy.admit(twice, payloadBytes: 1, load: .init(inFlight: 5, suspects: 1)) == .waitForBudget,
                "a second suspect waits until the first is answered")
        guard case .fail(let reason) = policy.admit(thrice, payloadBytes: 1, load: .init()) else {
            Issue.record("a delivery interrupted 3 times is failed")
            return
        }
        #expect(reason.contains("3 times in a row"))
        #expect(AdmissionPolicy.isSuspect(twice) && !AdmissionPolicy.isSuspect(once))
    }
}
