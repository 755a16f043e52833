import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif
import HeraldCore

/// The default `HeraldStore`: one SQLite file through GRDB, in WAL mode, with `synchronous=FULL`
/// by default so that a publish that returned is on disk. `:memory:` gives a private in-memory
/// database (for tests).
///
/// Migrations run in `init`. Concurrent publishes are committed together (group commit, see
/// `PublishBatcher`), so durability does not cost one fsync per request.
///
/// ```swift
/// let store = try SQLiteStore(path: "herald.sqlite", sealer: mySealer)
/// try await store.createApplication(Application(name: "Acme"))
/// ```
public final class SQLiteStore: HeraldStore {
    /// The path that was opened, or `:memory:`.
    public let path: String
    let writer: any DatabaseWriter
    /// The connection of `lookup`: a read-only one of its own for a file (the writer's queue for
    /// `:memory:`). Never a pooled reader: see `lookup`.
    private let lookups: any DatabaseReader
    /// Whether commits wait for fsync (`synchronous=FULL`) on this store.
    let durableCommits: Bool
    let secrets: EndpointSecretsCodec
    private let batcher: PublishBatcher
    /// Group commit for attempts: the dispatcher finishes many at once.
    private let attemptBatcher: WriteBatcher<AttemptRecord, Void>

    /// Opens (creating if needed) the database at `path`, or an in-memory one for `":memory:"`,
    /// and migrates it. Endpoint secrets are sealed with `sealer` when one is given.
    public init(path: String, configuration: Configuration = .init(), sealer: (any SecretSealer)? = nil) throws {
        var config = GRDB.Configuration()
        config.foreignKeysEnabled = true
        config.busyMode = .timeout(configuration.busyTimeout)
        config.label = "herald"
        let synchronous = configuration.synchronous.pragmaValue
        let maxPageCount = configuration.maxPageCount
        let walSizeLimit = configuration.walSizeLimit
        config.prepareDatabase { db in
            // A fixed keyword from an enum, not user input.
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            // Integers, not user text.
            try db.execute(sql: "PRAGMA journal_size_limit = \(walSizeLimit)")
            if let maxPageCount { try db.execute(sql: "PRAGMA max_page_count = \(maxPageCount)") }
        }
        let writer: any DatabaseWriter
        do {
            if path == ":memory:" {
                writer = try DatabaseQueue(configuration: config)
            } else {
                // A wrong key is refused before anything is written.
                if let sealer, FileManager.default.fileExists(atPath: path) {
                    try Self.checkMainKeyBeforeOpening(path: path, sealer: sealer)
                }
                try Self.createPrivately(path)
                writer = try DatabasePool(path: path, configuration: config)
            }
            try SQLiteMigrations.migrator.migrate(writer)
            if let sealer { try Self.establishMainKeyCheck(writer, sealer: sealer) }
            if path == ":memory:" {
                lookups = writer
            } else {
                var readOnly = config
                readOnly.readonly = true
                readOnly.label = "herald.lookups"
                lookups = try DatabaseQueue(path: path, configuration: readOnly)
            }
        } catch {
            throw SQLiteErrorMapping.storeError(error)
        }
        self.path = path
        self.writer = writer
        self.durableCommits = configuration.synchronous == .full && path != ":memory:"
        self.secrets = EndpointSecretsCodec(sealer: sealer)
        let durable = configuration.synchronous == .full && path != ":memory:"
        self.attemptBatcher = WriteBatcher(maxBatch: configuration.maxPublishBatch, mapError: SQLiteErrorMapping.storeError) { [writer] records in
            try await Self.inOneTransaction(records, write: { body in try await Self.relaxedWrite(writer, durable: durable, body) }) { record, db in
                try Self.recordAttempt(record.attempt, delivery: record.delivery, in: db)
            }
        }
        let codec = self.secrets
        self.batcher = PublishBatcher(maxBatch: configuration.maxPublishBatch, mapError: SQLiteErrorMapping.storeError) { [writer] requests in
            try await Self.publishBatch(requests.map { try codec.sealingRecord(of: $0) }, on: writer)
        }
    }

    /// Creates a missing database file with mode 0600 before SQLite opens it: SQLite would make it
    /// 0644 (less the umask), and gives its `-wal` and `-shm` files the database file's mode. The
    /// file holds sealed secrets, custom headers and payloads: nobody else should read it.
    static func createPrivately(_ path: String) throws {
        let descriptor = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if descriptor >= 0 {
            Glibc.close(descriptor)
        } else if errno != EEXIST {
            throw StoreError(.unavailable, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Closes the database connections. The store must not be used afterwards.
    public func close() throws {
        do {
            if lookups !== writer { try lookups.close() }
            try writer.close()
        } catch { throw SQLiteErrorMapping.storeError(error) }
    }

    // MARK: Access

    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do { return try await writer.read(body) } catch { throw SQLiteErrorMapping.storeError(error) }
    }

    /// A read by key that takes microseconds, run on the calling thread instead of a hop to a
    /// reader's dispatch queue and back (two thread switches). Only for point lookups on the hot
    /// path (the application of a publish, a claimed batch's targets); scans use `read`.
    ///
    /// It has a read-only connection of its own (WAL: it never waits for the writer), used only
    /// here and only synchronously, so a lookup waits at most for another lookup. It must not take
    /// a reader from the pool: async reads hold theirs across suspensions, and lookups blocking
    /// every thread while waiting for one would leave those reads no thread to finish on (a
    /// deadlock, found by `lookupsAndScansTogether`). Not wrapped in a transaction (`BEGIN` and
    /// `COMMIT` cost more than the lookup): each statement reads a consistent snapshot.
    func lookup<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try lookups.unsafeRead(body) } catch { throw SQLiteErrorMapping.storeError(error) }
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do { return try await writer.write(body) } catch { throw SQLiteErrorMapping.storeError(error) }
    }

    /// A write whose loss in a power cut is harmless — a claim (the delivery stays due) or an attempt
    /// record (the delivery is attempted again): committed without waiting for fsync. In WAL mode the
    /// next durable commit (a publish) syncs these frames too; a killed process loses nothing.
    static func relaxedWrite<T: Sendable>(_ writer: any DatabaseWriter, durable: Bool, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        guard durable else { return try await writer.write(body) }
        return try await writer.writeWithoutTransaction { db in
            try db.cachedStatement(sql: "PRAGMA synchronous = NORMAL").execute()
            defer { try? db.cachedStatement(sql: "PRAGMA synchronous = FULL").execute() }
            var result: T?
            try db.inTransaction {
                result = try body(db)
                return .commit
            }
            return result!
        }
    }

    func relaxedWrite<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do { return try await Self.relaxedWrite(writer, durable: durableCommits, body) } catch { throw SQLiteErrorMapping.storeError(error) }
    }

    // MARK: Messages

    public func publish(_ request: PublishRequest) async throws -> PublishResult {
        try await batcher.publish(request)
    }

    public func recordAttempt(_ attempt: Attempt, delivery: Delivery) async throws {
        try await attemptBatcher.submit(AttemptRecord(attempt: attempt, delivery: delivery))
    }

    /// Publishes `requests` in one write transaction, each in its own savepoint: a request that
    /// fails is rolled back alone and gets its error; the others commit together (one fsync).
    /// Throws only when the transaction as a whole failed, in which case nothing was written.
    func publishBatch(_ requests: [PublishRequest]) async throws -> [Result<PublishResult, StoreError>] {
        try await Self.publishBatch(requests.map { try secrets.sealingRecord(of: $0) }, on: writer)
    }

    static func publishBatch(_ requests: [PublishRequest], on writer: any DatabaseWriter) async throws
        -> [Result<PublishResult, StoreError>] {
        try await inOneTransaction(requests, write: { body in try await writer.write(body) }) { request, db in
            try publish(request, in: db)
        }
    }

    /// Runs `apply` on each item in one write transaction and returns each item's result. First
    /// without savepoints (a `SAVEPOINT` and its `RELEASE` per item cost as much as a small insert);
    /// if any item fails, that transaction is rolled back whole and the batch runs again with a
    /// savepoint per item, so only the failing items fail and the others commit.
    static func inOneTransaction<Item: Sendable, Output: Sendable>(
        _ items: [Item],
        write: (@escaping @Sendable (Database) throws -> [Result<Output, StoreError>]) async throws -> [Result<Output, StoreError>],
        apply: @escaping @Sendable (Item, Database) throws -> Output
    ) async throws -> [Result<Output, StoreError>] {
        do {
            return try await write { db in try items.map { .success(try apply($0, db)) } }
        } catch {
            // A full database fails every item alike (and SQLite may have rolled the whole
            // transaction back): no retry item by item.
            let mapped = SQLiteErrorMapping.storeError(error)
            if mapped.code == .storageFull { throw mapped }
            return try await write { db in
                items.map { item in
                    do {
                        var output: Output?
                        try db.inSavepoint {
                            output = try apply(item, db)
                            return .commit
                        }
                        guard let output else { throw StoreError(.unavailable, "the write produced no result") }
                        return .success(output)
                    } catch {
                        return .failure(SQLiteErrorMapping.storeError(error))
                    }
                }
            }
        }
    }
}
