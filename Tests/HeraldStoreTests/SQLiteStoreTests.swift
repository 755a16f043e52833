import Foundation
import NIOConcurrencyHelpers
import HeraldCore
@testable import HeraldSQLite
import Testing

@Suite("SQLiteStore")
struct SQLiteStoreTests {
    private static let origin = Date(timeIntervalSince1970: 1_750_000_000)

    private func message(app: ApplicationID, eventID: String? = nil, second: Double = 0) -> Message {
        let created = Self.origin.addingTimeInterval(second)
        return Message(id: .generate(at: created), appID: app, eventID: eventID, eventType: "user.created",
                       payload: Array(#"{"hello":"world"}"#.utf8), createdAt: created)
    }

    @Test("lookups on the calling thread never wait for scans that need a thread back (no deadlock)", arguments: [false, true])
    func lookupsAndScansTogether(inMemory: Bool) async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try SQLiteStore(path: inMemory ? ":memory:" : directory.path("herald.sqlite"))
        let app = Application(uid: "acme", name: "Acme")
        try await store.createApplication(app)
        // Many more tasks than threads, half doing point lookups (synchronous, on the calling
        // thread) and half doing scans (asynchronous, holding a pooled reader across suspensions).
        // A lookup that waited for a pooled reader would block the threads those scans need to
        // finish and hand their reader back: everything would hang.
        // A deadlock blocks every thread of the concurrency pool, so the watchdog is a dispatch timer.
        let done = NIOLockedValueBox(false)
        DispatchQueue.global().asyncAfter(deadline: .now() + 60) {
            if !done.withLockedValue({ $0 }) { fatalError("SQLiteStore lookups and scans deadlocked") }
        }
        await withTaskGroup(of: Void.self) { workers in
            for worker in 0..<64 {
                workers.addTask {
                    for _ in 0..<100 {
                        switch worker % 3 {
                        case 0: _ = try? await store.application(ref: "acme")
                        case 1: _ = try? await store.listApplications(PageRequest(limit: 10))
                        default: try? await store.updateApplication(app)
                        }
                    }
                }
            }
        }
        done.withLockedValue { $0 = true }
        #expect(try await store.application(ref: "acme")?.id == app.id)
    }

    @Test("data survives closing and reopening the file; migrations are idempotent")
    func reopen() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path("herald.sqlite")
        let app = Application(uid: "acme", name: "Acme")
        let endpoint = Endpoint(appID: app.id, uid: "ep", url: "https://example.com", secrets: [EndpointSecret(key: [1, 2, 3])])
        let published: PublishResult
        do {
            let store = try SQLiteStore(path: path, sealer: XORSealer())
            try await store.createApplication(app)
            try await store.createEndpoint(endpoint)
            try await store.createEventType(EventType(name: "user.created", description: "Created"))
            published = try await store.publish(PublishRequest(message: message(app: app.id, eventID: "evt")))
            try store.close()
        }
        for _ in 0..<2 {
            let store = try SQLiteStore(path: path, sealer: XORSealer())
            #expect(try await store.application(ref: "acme") == app)
            #expect(try await store.endpoint(app: app.id, ref: "ep") == endpoint)
            #expect(try await store.eventType(name: "user.created") != nil)
            #expect(try await store.message(app: app.id, ref: "evt") == published.message)
            #expect(try await store.delivery(message: published.message.id, endpoint: endpoint.id) == published.deliveries.first)
            #expect(try await store.listApplications(PageRequest()).items.count == 1)
            try store.close()
        }
    }

    @Test("synchronous=NORMAL is accepted")
    func synchronousNormal() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try SQLiteStore(path: directory.path("n.sqlite"), configuration: .init(synchronous: .normal))
        try await store.createApplication(Application(name: "A"))
        #expect(try await store.listApplications(PageRequest()).items.count == 1)
    }

    @Test("endpoint secrets are not in clear in the database files when a sealer is given")
    func secretsAreSealed() async throws {
        var generator = SystemRandomNumberGenerator()
        let key = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let base64 = Array(Data(key).base64EncodedString().utf8)

        func storeEndpoint(sealer: (any SecretSealer)?) async throws -> (bytes: [UInt8], directory: TemporaryDirectory) {
            let directory = try TemporaryDirectory()
            let store = try SQLiteStore(path: directory.path("s.sqlite"), sealer: sealer)
            let app = Application(name: "A")
            try await store.createApplication(app)
            var endpoint = Endpoint(appID: app.id, uid: "ep", url: "https://example.com", secrets: [EndpointSecret(key: key)])
            try await store.createEndpoint(endpoint)
            endpoint.secrets.append(EndpointSecret(key: key, expiresAt: Date()))
            try await store.updateEndpoint(endpoint)
            #expect(try await store.endpoint(app: app.id, ref: "ep")?.secrets == endpoint.secrets)
            let bytes = try directory.allBytes()
            try store.close()
            return (bytes + (try directory.allBytes()), directory)
        }

        // Control: without a sealer the scan finds the secret, so the scan can see it.
        let clear = try await storeEndpoint(sealer: nil)
        defer { clear.directory.remove() }
        #expect(clear.bytes.contains(subsequence: base64))

        let sealed = try await storeEndpoint(sealer: XORSealer())
        defer { sealed.directory.remove() }
        #expect(!sealed.bytes.contains(subsequence: base64))
        #expect(!sealed.bytes.contains(subsequence: key))

        // Reading sealed secrets without the sealer fails safely: the endpoint is there, without
        // its secrets, and says why; an update that does not replace the secrets keeps them.
        let reopened = try SQLiteStore(path: sealed.directory.path("s.sqlite"))
        let app = try #require(try await reopened.listApplications(PageRequest()).items.first)
        var unreadable = try #require(try await reopened.endpoint(app: app.id, ref: "ep"))
        #expect(unreadable.secrets.isEmpty)
        #expect(unreadable.unreadable?.contains("sealed") == true, "\(unreadable.unreadable ?? "nil")")
        unreadable.description = "renamed while unreadable"
        try await reopened.updateEndpoint(unreadable)
        let withSealer = try SQLiteStore(path: sealed.directory.path("s.sqlite"), sealer: XORSealer())
        #expect(try await withSealer.endpoint(app: app.id, ref: "ep")?.secrets.first?.key == key)
        #expect(try await withSealer.endpoint(app: app.id, ref: "ep")?.description == "renamed while unreadable")
        #expect(try await withSealer.endpoint(app: app.id, ref: "ep")?.unreadable == nil)
    }

    @Test("200 concurrent publishes all land with their deliveries")
    func concurrentPublishes() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try SQLiteStore(path: directory.path("c.sqlite"))
        let app = Application(name: "A")
        try await store.createApplication(app)
        for index in 0..<3 {
            try await store.createEndpoint(Endpoint(appID: app.id, url: "https://e/\(index)", secrets: [EndpointSecret(key: [1])]))
        }
        _ = try await store.publish(PublishRequest(message: message(app: app.id, eventID: "taken")))

        let outcomes = await withTaskGroup(of: (Int, Result<PublishResult, any Error>).self) { group in
            for index in 0..<200 {
                // Every 10th request reuses a taken eventId and must fail alone.
                let request = PublishRequest(
                    message: message(app: app.id, eventID: index.isMultiple(of: 10) ? "taken" : "evt-\(index)", second: Double(index)),
                    idempotency: IdempotencyRecord(key: "k-\(index)", statusCode: 202, body: [1],
                                                   createdAt: Self.origin, expiresAt: Self.origin.addingTimeInterval(3600)))
                group.addTask {
                    do { return (index, .success(try await store.publish(request))) } catch { return (index, .failure(error)) }
                }
            }
            var outcomes: [Int: Result<PublishResult, any Error>] = [:]
            for await (index, outcome) in group { outcomes[index] = outcome }
            return outcomes
        }
        #expect(outcomes.count == 200)
        for (index, outcome) in outcomes {
            switch outcome {
            case .success(let result):
                #expect(!index.isMultiple(of: 10))
                #expect(result.deliveries.count == 3)
                #expect(try await store.message(app: app.id, ref: "evt-\(index)")?.id == result.message.id)
                #expect(try await store.idempotencyRecord(key: "k-\(index)", now: Self.origin) != nil)
            case .failure(let error):
                #expect(index.isMultiple(of: 10))
                #expect((error as? StoreError)?.code == .conflict)
                #expect(try await store.idempotencyRecord(key: "k-\(index)", now: Self.origin) == nil)
            }
        }
        let listed = try await store.listMessages(app: app.id, filter: MessageFilter(), PageRequest(limit: 250))
        #expect(listed.items.count == 181)
        let claimed = try await store.claimDueDeliveries(now: Self.origin.addingTimeInterval(1000), limit: 1000,
                                                         leaseUntil: Self.origin.addingTimeInterval(2000))
        #expect(claimed.count == 181 * 3)
    }

    @Test("one failing request in a batch does not affect the others")
    func batchIsolation() async throws {
        let store = try SQLiteStore(path: ":memory:")
        let app = Application(name: "A")
        try await store.createApplication(app)
        let endpoint = Endpoint(appID: app.id, url: "https://e", secrets: [EndpointSecret(key: [1])])
        try await store.createEndpoint(endpoint)
        let requests = [
            PublishRequest(message: message(app: app.id, eventID: "one", second: 1)),
            PublishRequest(message: message(app: app.id, eventID: "one", second: 2)),
            PublishRequest(message: message(app: app.id, eventID: "two", second: 3)),
            PublishRequest(message: message(app: .generate(), second: 4)),
            PublishRequest(message: message(app: app.id, eventID: "three", second: 5),
                           applicationToCreate: Application(name: "unused")),
        ]
        let results = try await store.publishBatch(requests)
        #expect(results.count == 5)
        #expect((try? results[0].get()) != nil)
        #expect(results[1].errorCode == .conflict)
        #expect((try? results[2].get()) != nil)
        #expect(results[3].errorCode == .notFound)
        #expect((try? results[4].get())?.message.appID == app.id)
        #expect(try await store.message(app: app.id, ref: requests[1].message.id.rawValue) == nil)
        #expect(try await store.delivery(message: requests[1].message.id, endpoint: endpoint.id) == nil)
        for index in [0, 2, 4] {
            #expect(try await store.message(app: app.id, ref: requests[index].message.id.rawValue) != nil)
            #expect(try await store.delivery(message: requests[index].message.id, endpoint: endpoint.id) != nil)
        }
        #expect(try await store.listApplications(PageRequest()).items.count == 1)
    }

    @Test("requests that arrive during a commit are committed together, each with its own result")
    func batcherGroupsWaitingRequests() async throws {
        let gate = Gate()
        let recorder = BatchRecorder()
        let batcher = PublishBatcher(maxBatch: 100, mapError: SQLiteErrorMapping.storeError) { requests in
            let call = await recorder.record(requests.count)
            if call == 1 { await gate.wait() }
            if requests.contains(where: { $0.message.eventID == "fail-all" }) { throw StoreError(.unavailable, "boom") }
            return requests.map { request in
                request.message.eventID == "bad" ? .failure(.conflict("bad")) : .success(PublishResult(message: request.message, deliveries: []))
            }
        }
        let app = ApplicationID.generate()
        async let first = batcher.publish(PublishRequest(message: message(app: app, eventID: "first")))
        try await waitUntil { await gate.isWaiting }
        let outcomes = Task {
            await withTaskGroup(of: (String, StoreError.Code?).self) { group in
                for index in 0..<10 {
                    let eventID = index == 3 ? "bad" : "e\(index)"
                    let request = PublishRequest(message: message(app: app, eventID: eventID))
                    group.addTask {
                        do {
                            let result = try await batcher.publish(request)
                            return (result.message.eventID ?? "", nil)
                        } catch {
                            return (eventID, (error as? StoreError)?.code)
                        }
                    }
                }
                var outcomes: [String: StoreError.Code?] = [:]
                for await (eventID, code) in group { outcomes[eventID] = code }
                return outcomes
            }
        }
        try await waitUntil { batcher.waitingCount == 10 }
        await gate.open()
        #expect(try await first.message.eventID == "first")
        let results = await outcomes.value
        #expect(results.count == 10)
        #expect(results["bad"] == .some(.conflict))
        #expect(results.filter { $0.value == nil }.count == 9)
        #expect(await recorder.sizes == [1, 10], "the 10 waiting requests went in one batch")

        // A transaction that fails as a whole fails every request in it.
        await #expect(throws: StoreError.self) {
            _ = try await batcher.publish(PublishRequest(message: message(app: app, eventID: "fail-all")))
        }
    }
}

extension Result where Failure == StoreError {
    var errorCode: StoreError.Code? {
        if case .failure(let error) = self { return error.code }
        return nil
    }
}

/// Blocks the first batch until the test opens it.
actor Gate {
    private var continuation: CheckedContinuation<Void, Never>?
    private var opened = false
    var isWaiting: Bool { continuation != nil }

    func wait() async {
        if opened { return }
        await withCheckedContinuation { continuation = $0 }
    }

    func open() {
        opened = true
        continuation?.resume()
        continuation = nil
    }
}

/// Records the size of each batch.
actor BatchRecorder {
    private(set) var sizes: [Int] = []
    func record(_ size: Int) -> Int {
        sizes.append(size)
        return sizes.count
    }
}

struct ConditionTimeout: Error {}

/// Waits for `condition` with a deadline (no fixed sleep).
func waitUntil(timeout: Duration = .seconds(10), _ condition: @Sendable () async -> Bool) async throws {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while !(await condition()) {
        guard ContinuousClock.now < deadline else { throw ConditionTimeout() }
        await Task.yield()
    }
}
