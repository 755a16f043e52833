import HeraldCore
import HeraldDelivery
import HeraldPostgres
import ServiceLifecycle

/// Keeps the PostgreSQL store's connection pool open while the other services run, and closes it
/// once they have stopped (the service group stops services in reverse order; this one is first).
struct PostgresPoolService: Service {
    let store: PostgresStore

    func run() async throws {
        try? await gracefulShutdown()
        await store.close()
    }
}

/// Wakes this node's dispatcher when any node makes deliveries due (PostgreSQL `LISTEN`).
struct PostgresWakeupService: Service {
    let store: PostgresStore
    let wakeup: DeliveryWakeup

    func run() async throws {
        let wakeup = self.wakeup
        await cancelWhenGracefulShutdown {
            await store.listenForNewWork { wakeup.signal() }
        }
    }
}
