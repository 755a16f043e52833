#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What `WebhookDeduplicator.claim` found for a webhook id.
public enum WebhookClaim: Sendable, Hashable {
    /// Not seen: process it, then call `complete` (or `forget` if processing failed).
    case new
    /// Another copy is being processed right now: answer so that the sender retries later (its
    /// retry then finds it processed, or new again if that copy failed).
    case inProgress
    /// Already processed: acknowledge without processing again.
    case processed
}

/// Remembers webhook ids so a redelivered webhook is processed once.
///
/// Senders deliver at least once: the same id arrives again after a timeout or a lost response,
/// sometimes while the first copy is still being processed. Call `claim` after verifying; process
/// only `.new`, then `complete` it once processing succeeded, or `forget` it if processing failed
/// (so the sender's retry is processed). `markSeen` claims and completes at once.
public protocol WebhookDeduplicator: Sendable {
    /// Records `id` as seen (processed) at `now`. Returns `true` when it had not been seen within
    /// the window (process it), `false` for a duplicate.
    func markSeen(_ id: String, now: Date) async -> Bool
    /// Removes `id` (processed or in progress), so its next delivery counts as new.
    func forget(_ id: String) async
    /// Claims `id` for processing at `now`, unless it is processed or being processed.
    func claim(_ id: String, now: Date) async -> WebhookClaim
    /// Marks a claimed `id` processed at `now`.
    func complete(_ id: String, now: Date) async
}

extension WebhookDeduplicator {
    public func markSeen(_ id: String) async -> Bool { await markSeen(id, now: Date()) }
}

/// An in-process deduplicator: ids expire after `ttl` and at most `capacity` are kept (the
/// oldest go first). Pick a ttl longer than the sender's whole retry schedule (Svix and Herald
/// retry for about 28 hours by default, hence 48 h here). A claim in progress lasts at most
/// `claimTimeout` (a handler that never returned does not block its id for ever); at most
/// `capacity` claims are kept too.
///
/// ```swift
/// let dedup = InMemoryWebhookDeduplicator(ttl: 48 * 3600, capacity: 100_000)
/// if await dedup.claim(webhook.id!, now: Date()) == .new {
///     do { try await process(webhook); await dedup.complete(webhook.id!, now: Date()) }
///     catch { await dedup.forget(webhook.id!) }
/// }
/// ```
public actor InMemoryWebhookDeduplicator: WebhookDeduplicator {
    public let ttl: TimeInterval
    public let capacity: Int
    public let claimTimeout: TimeInterval
    /// Ids being processed, with when they were claimed.
    private var claims: [String: Date] = [:]

    private struct Entry { let id: String; let expires: Date; let generation: UInt64 }
    private var live: [String: (expires: Date, generation: UInt64)] = [:]
    private var order: [Entry] = []  // insertion order; entries are dropped lazily
    private var head = 0
    private var generation: UInt64 = 0

    public init(ttl: TimeInterval = 48 * 3600, capacity: Int = 100_000, claimTimeout: TimeInterval = 300) {
        precondition(ttl > 0 && capacity > 0 && claimTimeout > 0, "ttl, capacity and claimTimeout must be positive")
        self.ttl = ttl
        self.capacity = capacity
        self.claimTimeout = claimTimeout
    }

    /// How many ids are being processed right now.
    public var inProgressCount: Int { claims.count }

    public func claim(_ id: String, now: Date) -> WebhookClaim {
        evict(now: now)
        if let existing = live[id], existing.expires > now { return .processed }
        if let claimed = claims[id], now.timeIntervalSince(claimed) < claimTimeout { return .inProgress }
        if claims.count >= capacity {
            claims = claims.filter { now.timeIntervalSince($0.value) < claimTimeout }
            if claims.count >= capacity, let oldest = claims.min(by: { $0.value < $1.value }) { claims[oldest.key] = nil }
        }
        claims[id] = now
        return .new
    }

    public func complete(_ id: String, now: Date) {
        claims[id] = nil
        _ = markSeen(id, now: now)
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
        claims[id] = nil
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
