/// A storage failure, translated at the store boundary. Its description is safe to show a user.
public struct StoreError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String { case notFound = "not_found", conflict, unavailable, corrupt, stale, wrongKey = "wrong_key", limitExceeded = "limit_exceeded"
            case storageFull = "storage_full" }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        /// The thing does not exist (or belongs to another application).
        public static let notFound = Code(.notFound)
        /// A uid, name or eventId is already taken.
        public static let conflict = Code(.conflict)
        /// The database could not be reached or is busy.
        public static let unavailable = Code(.unavailable)
        /// Stored data could not be read back.
        public static let corrupt = Code(.corrupt)
        /// The row changed since it was read (a version check failed): read it again.
        public static let stale = Code(.stale)
        /// The main key is not the one the database's secrets were sealed with.
        public static let wrongKey = Code(.wrongKey)
        /// A quota (endpoints per application, event types) is full.
        public static let limitExceeded = Code(.limitExceeded)
        /// The database cannot write: its disk is full (or a size limit is reached). Nothing stored
        /// is lost; writes succeed again once space is freed.
        public static let storageFull = Code(.storageFull)
        public var description: String { base.rawValue }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    public static func notFound(_ what: String) -> StoreError { .init(.notFound, "\(what) not found") }
    public static func conflict(_ what: String) -> StoreError { .init(.conflict, what) }
    public static func stale(_ what: String) -> StoreError { .init(.stale, "\(what) changed since it was read") }
}
