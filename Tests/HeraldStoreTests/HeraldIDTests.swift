import Foundation
import HeraldCore
import Testing

@Suite("Typed ids")
struct HeraldIDTests {
    @Test func idsAreUniqueWellFormedAndSortByCreationTime() {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var ids: [MessageID] = []
        for step in 0..<2000 { ids.append(MessageID.generate(at: start.addingTimeInterval(Double(step) * 0.002))) }
        #expect(Set(ids).count == ids.count)
        let sortedByTime = ids == ids.sorted()
        #expect(sortedByTime)
        for id in ids.prefix(50) {
            #expect(id.rawValue.hasPrefix("msg_") && id.rawValue.count == 4 + 22)
            #expect(MessageID(parsing: id.rawValue) == id)
        }
        // Many ids in the same millisecond are still distinct, and the random part varies everywhere.
        let same = (0..<5000).map { _ in ApplicationID.generate(at: start).rawValue }
        #expect(Set(same).count == same.count)
        for position in (4 + 9)..<(4 + 22) {
            let characters = Set(same.map { Array($0)[position] })
            #expect(characters.count > 30, "position \(position) barely varies")
        }
    }

    @Test func lowerBoundSortsBeforeEveryIdOfThatTimeAndAfterEarlierOnes() {
        let time = Date(timeIntervalSince1970: 1_800_000_000.5)
        let bound = AttemptID.lowerBound(for: time)
        #expect(bound <= AttemptID.generate(at: time))
        #expect(AttemptID.generate(at: time.addingTimeInterval(-0.002)) < bound)
        #expect(EndpointID(parsing: "app_0000000000000000000000") == nil)
        #expect(EndpointID(parsing: "ep_short") == nil)
    }
}
