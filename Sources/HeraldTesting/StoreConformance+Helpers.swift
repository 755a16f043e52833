import Foundation
import HeraldCore
import Testing

/// A fixed origin for the suite's times, so ids and orders are deterministic.
let conformanceOrigin = Date(timeIntervalSince1970: 1_750_000_000)

/// The time `seconds` after the suite's origin.
func at(_ seconds: Double) -> Date { conformanceOrigin.addingTimeInterval(seconds) }

extension StoreConformance {
    func makeApplication(_ store: any HeraldStore, uid: String? = nil) async throws -> Application {
        let application = Application(uid: uid, name: uid ?? "App", createdAt: at(0))
        try await store.createApplication(application)
        return application
    }

    func makeEndpoint(_ store: any HeraldStore, app: ApplicationID, uid: String? = nil, second: Double = 0,
                      types: [String]? = nil) async throws -> Endpoint {
        let endpoint = Endpoint(id: .generate(at: at(second)), appID: app, uid: uid, url: "https://example.com/\(second)",
                                eventTypes: types, secrets: [EndpointSecret(key: Array(repeating: 7, count: 24))],
                                createdAt: at(second))
        try await store.createEndpoint(endpoint)
        return endpoint
    }

    @discardableResult
    func publish(_ store: any HeraldStore, app: ApplicationID, type: String = "user.created", channels: [String]? = nil,
                 eventID: String? = nil, at seconds: Double) async throws -> PublishResult {
        let created = at(seconds)
        let message = Message(id: .generate(at: created), appID: app, eventID: eventID, eventType: type,
                              payload: Array(#"{"n":1}"#.utf8), channels: channels, createdAt: created)
        return try await store.publish(PublishRequest(message: message))
    }

    func makeAttempt(for delivery: Delivery, code: Int, status: DeliveryStatus, at seconds: Double) -> Attempt {
        Attempt(id: .generate(at: at(seconds)), messageID: delivery.messageID, endpointID: delivery.endpointID,
                appID: delivery.appID, url: "https://example.com", responseStatusCode: code, response: "ok",
                responseDurationMs: 12, status: status, triggerType: delivery.trigger, eventType: delivery.eventType,
                channels: delivery.channels, createdAt: at(seconds))
    }

    /// Expects `body` to throw a `StoreError` with `code`.
    func expectError(_ code: StoreError.Code, _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
                     _ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("\(what): expected a \(code) error, but it succeeded", sourceLocation: sourceLocation)
        } catch let error as StoreError {
            #expect(error.code == code, "\(what): expected \(code), got \(error.code) (\(error.message))", sourceLocation: sourceLocation)
        } catch {
            Issue.record("\(what): expected a StoreError \(code), got \(type(of: error))", sourceLocation: sourceLocation)
        }
    }

    /// Checks that the store's pages equal `PageRequest.paginate` over `all` for both orders, several
    /// limits, every forward iterator, every prevIterator and some odd iterators.
    func checkPaging<Item>(_ label: String, all: [Item], key: (Item) -> String,
                           sourceLocation: SourceLocation = #_sourceLocation,
                           fetch: (PageRequest) async throws -> Page<Item>) async throws {
        func compare(_ request: PageRequest) async throws -> Page<Item> {
            let got = try await fetch(request)
            let want = request.paginate(all, key: key)
            let context = "\(label): limit \(request.limit), \(request.order), iterator \(request.iterator ?? "nil")"
            #expect(got.items.map(key) == want.items.map(key), "\(context): items", sourceLocation: sourceLocation)
            #expect(got.iterator == want.iterator, "\(context): iterator", sourceLocation: sourceLocation)
            #expect(got.prevIterator == want.prevIterator, "\(context): prevIterator", sourceLocation: sourceLocation)
            #expect(got.done == want.done, "\(context): done", sourceLocation: sourceLocation)
            return got
        }
        for order in [ListOrder.ascending, .descending] {
            for limit in [1, 2, 3, 250] {
                var request = PageRequest(limit: limit, order: order)
                var seen = 0
                for _ in 0...(all.count + 1) {
                    let page = try await compare(request)
                    seen += page.items.count
                    if let previous = page.prevIterator {
                        _ = try await compare(PageRequest(limit: limit, iterator: previous, order: order))
                    }
                    if page.done { break }
                    request.iterator = page.iterator
                }
                #expect(seen == all.count, "\(label): walking every page sees every item once", sourceLocation: sourceLocation)
            }
            for odd in ["", "-", "0", "-0", "zzzzzzzz", "-zzzzzzzz"] {
                _ = try await compare(PageRequest(limit: 2, iterator: odd, order: order))
            }
            if all.count > 2 {
                let middle = all.map(key).sorted()[all.count / 2]
                _ = try await compare(PageRequest(limit: 2, iterator: middle, order: order))
                _ = try await compare(PageRequest(limit: 2, iterator: "-" + middle, order: order))
            }
        }
    }
}
