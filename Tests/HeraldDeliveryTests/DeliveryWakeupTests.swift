import Foundation
@testable import HeraldDelivery
import Testing

/// The dispatcher runs a claim (a write transaction) only when work may have been stored, not at
/// every wake-up: a freed slot or a hand-over wakes it without saying so.
@Suite("DeliveryWakeup")
struct DeliveryWakeupTests {
    @Test func onlyASignalSaysThatWorkWasStored() async {
        let wakeup = DeliveryWakeup()
        #expect(!wakeup.hasNewWork)
        wakeup.nudge()
        #expect(!wakeup.hasNewWork, "a freed slot or a hand-over is not stored work")
        await wakeup.wait(upTo: .seconds(10))  // consumes the nudge
        wakeup.signal()
        #expect(wakeup.hasNewWork)
        await wakeup.wait(upTo: .seconds(10))
        #expect(wakeup.hasNewWork, "waking does not clear it; only a claim does")
        wakeup.claimingNewWork()
        #expect(!wakeup.hasNewWork)
    }
}
