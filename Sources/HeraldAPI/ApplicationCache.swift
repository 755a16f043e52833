import HeraldCore
import NIOConcurrencyHelpers

/// The applications that publishes named recently (by id or uid), for a second or two, so a
/// publish need not read its application from the store first: on PostgreSQL that read was a
/// round trip and a query plan per message. Safe to be stale: the publish itself checks, in its
/// own statement, that the application still exists. Any application or endpoint change through
/// this node empties it (`EndpointChangeMiddleware`); one through another node is seen within `ttl`.
final class ApplicationCache: Sendable {
    private struct Entry { let application: Application; let until: ContinuousClock.Instant }
    // A lock, not an actor: every publish asks, and an actor hop costs a thread switch.
    private let entries = NIOLockedValueBox<[String: Entry]>([:])
    private let ttl: Duration
    private let capacity: Int

    init(ttl: Duration = .seconds(2), capacity: Int = 10_000) {
        self.ttl = ttl
        self.capacity = capacity
    }

    /// The application `ref` names, from the cache or else the store (only found ones are kept).
    func application(ref: String, store: any HeraldStore) async throws -> Application? {
        let now = ContinuousClock.now
        let cached = entries.withLockedValue { entries -> Application? in
            guard let entry = entries[ref] else { return nil }
            guard entry.until > now else { entries[ref] = nil; return nil }
            return entry.application
        }
        if let cached { return cached }
        guard let found = try await store.application(ref: ref) else { return nil }
        let until = now + ttl
        entries.withLockedValue { entries in
            if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            entries[ref] = Entry(application: found, until: until)
        }
        return found
    }

    func removeAll() {
        entries.withLockedValue { $0.removeAll() }
    }
}
