#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Remembers webhook ids so a redelivered webhook is processed once.
///
/// Senders deliver at least once: the same id arrives again after a timeout or a lost response.
/// Call `markSeen` after verifying; process only when it answers `true`. If processing fails,
/// call `forget` so the sender's retry is processed.
public protocol WebhookDeduplicator: Sendable {
    /// Records `id` as seen at `now`. Returns `true` when it had not been seen within the window
    /// (process it), `false` for a duplicate.
    func markSeen(_ id: String, now: Date) async -> Bool
    /// Removes `id`, so its next delivery counts as new.
    func forget(_ id: String) async
}

extension WebhookDeduplicator {
    public func markSeen(_ id: String) async -> Bool { await markSeen(id, now: Date()) }
}

/// An in-process deduplicator: ids expire after `ttl` and at most `capacity` are kept (the
/// oldest go first). Pick a ttl longer than the sender's whole retry schedule (Svix and Herald
/// retry for about 28 hours by default, hence 48 h here).
///
/// ```swift
/// let dedup = InMemoryWebhookDeduplicator(ttl: .seconds(48 * 3600), capacity: 100_000)
/// if await dedup.markSeen(webhook.id!) { try await process(webhook) }
/// ```
public actor InMemoryWebhookDeduplicator: WebhookDeduplicator {
    public let ttl: TimeInterval
    public let capacity: Int

    private struct Entry { let id: String; let expires: Date; let generation: UInt64 }
    private var live: [String: (expires: Date, generation: UInt64)] = [:]
    private var order: [Entry] = []  // insertion order; entries are dropped lazily
    private var head = 0
    private var generation: UInt64 = 0

    public init(ttl: TimeInterval = 48 * 3600, capacity: Int = 100_000) {
        precondition(ttl > 0 && capacity > 0, "ttl and capacity must be positive")
        self.ttl = ttl
        self.capacity = capacity
    }

    /// How many ids are currently remembered.
    public var count: Int { live.count }

    public func markSeen(_ id: String, now: Date) -> Bool {
        evict(now: now)
        if let existing = live[id], existing.expires > now { return false }
        generation &+= 1
        let expires = now.addingTimeInterval(ttl)
        live[id] = (expires, generation)
        order.append(Entry(id: id, expires: expires, generation: generation))
        evict(now: now)
        return true
    }

    public func forget(_ id: String) {
        live[id] = nil
    }

    private func evict(now: Date) {
        while head < order.count {
            let entry = order[head]
            let current = live[entry.id]
            let stale = current?.generation != entry.generation  // forgotten or re-added later
            if stale || entry.expires <= now || live.count > capacity {
                if !stale { live[entry.id] = nil }
                head += 1
            } else {
                break
            }
        }
        // Compact the queue once the consumed prefix dominates it.
        if head > 1024 && head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }
}
