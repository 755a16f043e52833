import Hummingbird
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// Slow and many clients: a request head must arrive within `headerTimeout` (counted from the
/// connection's accept, or from the first byte of a kept-alive connection's next request), its
/// body within `bodyTimeout` of the head, and at most `maxConnections` API connections are open at
/// once; one over that is answered `503` and closed at once, so it holds its descriptor for
/// microseconds. A kept-alive connection with no request in progress is closed after the idle
/// timeout (Hummingbird's `HTTP1Channel.Configuration.idleTimeout`).
///
/// ```swift
/// let limiter = ConnectionLimiter(maximum: 10_000)
/// let server = ConnectionGuard.http1(configuration: .init(), limiter: limiter)
/// let app = Application(router: router, server: server)
/// ```
public enum ConnectionGuard {
    public struct Configuration: Sendable {
        public var headerTimeout: Duration = .seconds(10)
        public var bodyTimeout: Duration = .seconds(30)
        public var idleTimeout: Duration = .seconds(60)
        public init() {}
    }

    /// An HTTP/1 server whose connections are guarded.
    public static func http1(configuration: Configuration, limiter: ConnectionLimiter) -> HTTPServerBuilder {
        let http = HTTP1Channel.Configuration(idleTimeout: TimeAmount(configuration.idleTimeout))
        return HTTPServerBuilder { responder in
            GuardedHTTP1Channel(inner: HTTP1Channel(responder: responder, configuration: http), configuration: configuration, limiter: limiter)
        }
    }
}

/// Counts the open API connections of one server.
public final class ConnectionLimiter: Sendable {
    public let maximum: Int
    private let open = NIOLockedValueBox(0)

    public init(maximum: Int) { self.maximum = max(1, maximum) }

    /// Takes a place; false when all `maximum` are taken.
    func tryOpen() -> Bool {
        open.withLockedValue { count in
            guard count < maximum else { return false }
            count += 1
            return true
        }
    }

    func closed() { open.withLockedValue { $0 -= 1 } }

    /// Connections open now.
    public var count: Int { open.withLockedValue { $0 } }
}

/// `HTTP1Channel` with a `ConnectionGuardHandler` in front of its HTTP decoder.
struct GuardedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let inner: HTTP1Channel
    let configuration: ConnectionGuard.Configuration
    let limiter: ConnectionLimiter

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let admitted = limiter.tryOpen()
        if admitted {
            let limiter = self.limiter
            channel.closeFuture.whenComplete { _ in limiter.closed() }
        }
        do {
            try channel.pipeline.syncOperations.addHandler(ConnectionGuardHandler(configuration: configuration, admitted: admitted, logger: logger))
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        // Right after the HTTP/1 decoder, so it sees where each request begins and ends.
        return inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let decoder = try channel.pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try channel.pipeline.syncOperations.addHandler(RequestPhaseHandler(), position: .after(decoder))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

/// Sits next to the socket: sees every byte that arrives, so it can start the header clock at the
/// first byte of a request, and answers and closes what is over the limit or too slow.
final class ConnectionGuardHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Phase { case idle, head, body, handling }

    private let configuration: ConnectionGuard.Configuration
    private let admitted: Bool
    private let logger: Logger
    private var phase = Phase.head
    /// Request heads read, and responses ended (a handler may answer before the body is read).
    private var requestsStarted = 0
    private var responsesEnded = 0
    /// Bytes arrived while a response was pending and no request was being read (a pipelined head).
    private var bytesWhileHandling = false
    private var timer: Scheduled<Void>?

    init(configuration: ConnectionGuard.Configuration, admitted: Bool, logger: Logger) {
        self.configuration = configuration
        self.admitted = admitted
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        guard admitted else {
            logger.debug("connection refused: too many open connections")
            Self.answer(context, status: "503 Service Unavailable", code: "too_many_connections",
                        detail: "The server has too many open connections; try again shortly", extra: "retry-after: 1\r\n")
            return
        }
        startTimer(context, configuration.headerTimeout)  // a head is due from the accept on
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { cancelTimer() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard admitted else { return }
        switch phase {
        case .idle:
            phase = .head
            startTimer(context, configuration.headerTimeout)
        case .handling:
            bytesWhileHandling = true
        case .head, .body:
            break
        }
        context.fireChannelRead(data)
    }

    // Told by `RequestPhaseHandler`, after the HTTP decoder.

    func requestHeadReceived(_ context: ChannelHandlerContext) {
        phase = .body
        requestsStarted += 1
        bytesWhileHandling = false
        startTimer(context, configuration.bodyTimeout)
    }

    func requestEnded(_ context: ChannelHandlerContext) {
        cancelTimer()
        phase = .handling
        if responsesEnded >= requestsStarted { answered(context) }  // answered before its body was read
    }

    func responseEnded(_ context: ChannelHandlerContext) {
        responsesEnded += 1
        if phase == .handling, responsesEnded >= requestsStarted { answered(context) }
    }

    /// Every request read so far is answered.
    private func answered(_ context: ChannelHandlerContext) {
        if bytesWhileHandling {
            // The next request began while this one was answered: its head is due now.
            bytesWhileHandling = false
            phase = .head
            startTimer(context, configuration.headerTimeout)
        } else {
            phase = .idle  // the idle timeout applies until the next byte
        }
    }

    private func startTimer(_ context: ChannelHandlerContext, _ timeout: Duration) {
        cancelTimer()
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) { [self] in
            self.timer = nil
            self.timedOut(context)
        }
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
    }

    private func timedOut(_ context: ChannelHandlerContext) {
        switch phase {
        case .head where responsesEnded >= requestsStarted:
            logger.debug("connection closed: request head not complete in time")
            Self.answer(context, status: "408 Request Timeout", code: "request_timeout",
                        detail: "The request head was not complete within \(configuration.headerTimeout)")
        case .head, .body:
            logger.debug("connection closed: request not complete in time")
            context.close(promise: nil)
        case .idle, .handling:
            break
        }
    }

    /// Writes a small JSON error straight to the socket (nothing else is being written) and closes.
    private static func answer(_ context: ChannelHandlerContext, status: String, code: String, detail: String, extra: String = "") {
        let body = #"{"code":"\#(code)","detail":"\#(detail)"}"#
        let text = "HTTP/1.1 \(status)\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\nconnection: close\r\n\(extra)\r\n\(body)"
        var buffer = context.channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        context.writeAndFlush(NIOAny(buffer), promise: nil)
        context.close(promise: nil)
    }
}

/// Right after the HTTP/1 decoder: tells the connection's `ConnectionGuardHandler` where each request is.
final class RequestPhaseHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var guardHandler: ConnectionGuardHandler?
    private var guardContext: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        guardHandler = try? context.pipeline.syncOperations.handler(type: ConnectionGuardHandler.self)
        guardContext = try? context.pipeline.syncOperations.context(handlerType: ConnectionGuardHandler.self)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        guardHandler = nil
        guardContext = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let guardHandler, let guardContext {
            switch unwrapInboundIn(data) {
            case .head: guardHandler.requestHeadReceived(guardContext)
            case .end: guardHandler.requestEnded(guardContext)
            case .body: break
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), let guardHandler, let guardContext {
            guardHandler.responseEnded(guardContext)
        }
        context.write(data, promise: promise)
    }
}
