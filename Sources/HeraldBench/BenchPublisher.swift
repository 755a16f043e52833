import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The load generator of `herald-bench deliver` and the scenarios: publishes through the real API over plain
/// keep-alive HTTP/1.1 connections on NIO, the way `wrk` would, so that the bench's own client costs
/// the shared cores as little as possible. Each connection sends its next publish as soon as the
/// previous one was answered; every answer is read and its status checked.
///
/// It is not the client being compared: the raw rate is measured with Herald's delivery client
/// (AsyncHTTPClient with the transport's settings).
struct BenchPublisher: Sendable {
    /// Where to publish: a base URL's host and port, and the request path.
    struct Target: Sendable {
        let host: String
        let port: Int
        let path: String
    }

    let targets: [Target]
    let token: String
    let count: Int
    let connections: Int
    /// Paced mode: message `i` is sent no earlier than `begin + interval × i`.
    let interval: Duration?
    let begin: ContinuousClock.Instant
    let body: @Sendable (Int) -> [UInt8]
    /// Called just before message `i` is written, with the time its latency counts from: when it
    /// was due in paced mode (a publish sent late, because every connection was busy, counts its
    /// wait too), or now.
    let willSend: @Sendable (Int, ContinuousClock.Instant) -> Void
    /// The request path of message `i`, when it is not the target's (messages to several applications).
    var path: (@Sendable (Int) -> String)? = nil
    /// No message is sent at or after this instant (a publish run bounded in time rather than count).
    var stopAt: ContinuousClock.Instant? = nil
    /// Called with message `i`'s answer status once it was read.
    var answered: (@Sendable (Int, UInt) -> Void)? = nil

    /// How many messages were sent, and how many of them were not answered `202 Accepted`.
    struct Outcome: Sendable {
        let sent: Int
        let errors: Int
    }

    /// Publishes every message; returns how many were not answered `202 Accepted`.
    func run() async throws -> Int {
        try await publish().errors
    }

    /// Publishes every message (or until `stopAt`); returns how many were sent and refused.
    func publish() async throws -> Outcome {
        let group = MultiThreadedEventLoopGroup.singleton
        let state = NIOLockedValueBox(Shared())
        var done: [EventLoopFuture<Void>] = []
        for connection in 0..<max(1, min(connections, count)) {
            let target = targets[connection % targets.count]
            let promise = group.any().makePromise(of: Void.self)
            let bootstrap = ClientBootstrap(group: group)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(ConnectionHandler(publisher: self, target: target, shared: state, done: promise))
                    }
                }
            bootstrap.connect(host: target.host, port: target.port).whenFailure { promise.fail($0) }
            done.append(promise.futureResult)
        }
        // Cancelled (a scenario's deadline passed): close every connection, which fails its promise.
        try await withTaskCancellationHandler {
            for future in done { try await future.get() }
        } onCancel: {
            for channel in state.withLockedValue({ $0.channels }) { channel.close(promise: nil) }
        }
        return state.withLockedValue { Outcome(sent: $0.sent, errors: $0.errors) }
    }

    struct Shared {
        var next = 0
        var sent = 0
        var errors = 0
        var channels: [any Channel] = []
    }

    /// One connection: send, read the whole answer, send the next, until every index is taken.
    final class ConnectionHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        typealias OutboundOut = HTTPClientRequestPart

        private let publisher: BenchPublisher
        private let target: Target
        private let shared: NIOLockedValueBox<Shared>
        private let done: EventLoopPromise<Void>
        private var status: UInt = 0
        private var current = 0
        private var finished = false

        init(publisher: BenchPublisher, target: Target, shared: NIOLockedValueBox<Shared>, done: EventLoopPromise<Void>) {
            self.publisher = publisher
            self.target = target
            self.shared = shared
            self.done = done
        }

        func channelActive(context: ChannelHandlerContext) {
            let channel = context.channel
            shared.withLockedValue { $0.channels.append(channel) }
            sendNext(context: context)
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                status = head.status.code
            case .body:
                break
            case .end:
                if status != 202 { shared.withLockedValue { $0.errors += 1 } }
                publisher.answered?(current, status)
                sendNext(context: context)
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            finish(context: context, .failure(error))
        }

        func channelInactive(context: ChannelHandlerContext) {
            if !finished {
                finished = true
                done.fail(ChannelError.inputClosed)
            }
            context.fireChannelInactive()
        }

        private func finish(context: ChannelHandlerContext, _ result: Result<Void, any Error>) {
            guard !finished else { return }
            finished = true
            done.completeWith(result)
            context.close(promise: nil)
        }

        private func sendNext(context: ChannelHandlerContext) {
            // Past `stopAt` no index is taken, so the indices sent are always 0..<sent.
            let index = shared.withLockedValue { shared -> Int? in
                if let stopAt = publisher.stopAt, ContinuousClock.now >= stopAt { return nil }
                defer { shared.next += 1 }
                return shared.next
            }
            guard let index, index < publisher.count else { return finish(context: context, .success(())) }
            if let interval = publisher.interval {
                let wait = publisher.begin + interval * index - .now
                if wait > .zero {
                    let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                    context.eventLoop.scheduleTask(in: .nanoseconds(Int64(wait.components.seconds) * 1_000_000_000 + wait.components.attoseconds / 1_000_000_000)) {
                        let (handler, context) = loopBound.value
                        handler.send(index, context: context)
                    }
                    return
                }
            }
            send(index, context: context)
        }

        private func send(_ index: Int, context: ChannelHandlerContext) {
            current = index
            shared.withLockedValue { $0.sent += 1 }
            let bytes = publisher.body(index)
            var headers = HTTPHeaders()
            headers.add(name: "host", value: "\(target.host):\(target.port)")
            headers.add(name: "authorization", value: "Bearer \(publisher.token)")
            headers.add(name: "content-type", value: "application/json")
            headers.add(name: "content-length", value: String(bytes.count))
            let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: publisher.path?(index) ?? target.path, headers: headers)
            publisher.willSend(index, publisher.interval.map { publisher.begin + $0 * index } ?? .now)
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: bytes)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
