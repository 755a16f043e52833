import Foundation

extension SQLiteStore {
    /// Settings of a `SQLiteStore`.
    public struct Configuration: Sendable, Hashable {
        /// SQLite's `synchronous` setting for the WAL.
        public enum Synchronous: String, Sendable, Hashable, CaseIterable {
            /// Every commit is fsynced: a publish that returned survives a power loss.
            case full
            /// Commits are fsynced at checkpoints only: faster, but the last commits may be lost on
            /// power loss (never on a process crash).
            case normal

            var pragmaValue: String {
                switch self {
                case .full: "FULL"
                case .normal: "NORMAL"
                }
            }
        }

        /// How durable a commit is. Default `.full`.
        public var synchronous: Synchronous
        /// How long a connection waits for a lock held by another connection or process.
        public var busyTimeout: TimeInterval
        /// The most publish requests committed in one transaction (group commit).
        public var maxPublishBatch: Int

        /// The most pages the database file may have (`PRAGMA max_page_count` on every
        /// connection), or nil for SQLite's default: a size cap, for testing a full disk.
        public var maxPageCount: Int?
        /// The size in bytes the WAL file is truncated to after a checkpoint resets it
        /// (`PRAGMA journal_size_limit`), so a burst of writes does not leave a large file behind.
        public var walSizeLimit: Int = 64 << 20

        public init(synchronous: Synchronous = .full, busyTimeout: TimeInterval = 5, maxPublishBatch: Int = 256) {
            self.synchronous = synchronous
            self.busyTimeout = busyTimeout
            self.maxPublishBatch = max(1, maxPublishBatch)
        }
    }
}
