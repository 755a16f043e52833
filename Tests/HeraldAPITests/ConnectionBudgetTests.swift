import HeraldApp
import Testing

@Suite("Connection budget")
struct ConnectionBudgetTests {
    @Test func theAPIGetsWhatTheOutboundAndDatabaseReservesLeave() {
        var configuration = HeraldConfiguration()
        // 20,000 − (2 × 1,000 + 64) − 64 − 256
        #expect(ConnectionBudget.defaultMaxConnections(configuration, descriptorLimit: 20_000) == 17_616)
        configuration.role = .api  // no dispatcher: no outbound reserve
        #expect(ConnectionBudget.defaultMaxConnections(configuration, descriptorLimit: 20_000) == 19_680)
        configuration.role = .all
        configuration.deliveryConcurrency = 100
        configuration.database = .postgres("postgres://u@h/db?pool_max=40")
        // 20,000 − 264 − (40 × 5/4 + 16) − 256
        #expect(ConnectionBudget.defaultMaxConnections(configuration, descriptorLimit: 20_000) == 19_414)
        #expect(ConnectionBudget.defaultMaxConnections(configuration, descriptorLimit: 256) == 64, "never below 64")
    }
}
