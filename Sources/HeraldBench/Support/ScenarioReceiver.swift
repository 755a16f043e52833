import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The scenarios' webhook receiver: one NIO server in this process listening on any number of
/// ports on 127.0.0.1. Each request is timestamped when its body has fully arrived, handed to
/// `onArrival` with the port it came to and the index its payload starts with (`{"i":N…`), and
/// answered `200` after `delay(port)` (asked per request): a timer on the connection's event loop, so a slow answer
/// blocks nothing else.
final class ScenarioReceiver: Sendable {
    typealias Arrival = @Sendable (_ port: Int, _ index: Int?, _ at: ContinuousClock.Instant) -> Void

    let delay: @Sendable (Int) -> Duration
    let onArrival: Arrival
    private let channels = NIOLockedValueBox<[any Channel]>([])

    init(delay: @escaping @Sendable (Int) -> Duration, onArrival: @escaping Arrival) {
        self.delay = delay
        self.onArrival = onArrival
    }

    /// Opens `count` listening sockets on free ports; returns their port numbers.
    func listen(count: Int, deadline: ContinuousClock.Instant) async throws -> [Int] {
        var ports: [Int] = []
        ports.reserveCapacity(count)
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let port = channel.localAddress?.port ?? 0
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(Handler(receiver: self, port: port))
                }
            }
        for _ in 0..<count {
            guard ContinuousClock.now < deadline else { throw BenchError("deadline: the receiver's \(count) ports were not open in time (\(ports.count) were)") }
            let channel: any Channel
            do {
                channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
            } catch {
                throw BenchError("the receiver could not open port \(ports.count + 1) of \(count): \(error) (file descriptor limit \(FileDescriptorLimit.current))")
            }
            channels.withLockedValue { $0.append(channel) }
            ports.append(channel.localAddress?.port ?? 0)
        }
        return ports
    }

    /// Closes every listening socket (connections already open finish on their own).
    func close() async {
        let all = channels.withLockedValue { channels in
            defer { channels = [] }
            return channels
        }
        for channel in all { try? await channel.close() }
    }

    /// The integer after a leading `{"i":`, or nil when the body does not start so.
    static func index(in buffer: ByteBuffer) -> Int? {
        let prefix = Array(#"{"i":"#.utf8)
        guard let bytes = buffer.getBytes(at: buffer.readerIndex, length: min(buffer.readableBytes, 32)),
              bytes.starts(with: prefix) else { return nil }
        var value = 0
        var digits = 0
        for byte in bytes.dropFirst(prefix.count) {
            guard byte >= 48 && byte <= 57 else { break }
            value = value * 10 + Int(byte - 48)
            digits += 1
        }
        return digits > 0 ? value : nil
    }

    final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        private let receiver: ScenarioReceiver
        private let port: Int
        private var head: HTTPRequestHead?
        private var body: ByteBuffer?

        init(receiver: ScenarioReceiver, port: Int) {
            self.receiver = receiver
            self.port = port
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                self.head = head
                body = nil
            case .body(var chunk):
                // Only the first bytes matter (the index); keep at most 64.
                if body == nil {
                    body = chunk.readSlice(length: min(chunk.readableBytes, 64))
                } else if var kept = body, kept.readableBytes < 64 {
                    if let more = chunk.readSlice(length: min(chunk.readableBytes, 64 - kept.readableBytes)) {
                        kept.writeImmutableBuffer(more)
                    }
                    body = kept
                }
            case .end:
                let now = ContinuousClock.now
                receiver.onArrival(port, body.flatMap { ScenarioReceiver.index(in: $0) }, now)
                let version = head?.version ?? .http1_1
                let delay = receiver.delay(port)
                if delay <= .zero {
                    respond(context: context, version: version)
                } else {
                    let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                    let (seconds, attoseconds) = delay.components
                    context.eventLoop.scheduleTask(in: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)) {
                        let (handler, context) = loopBound.value
                        handler.respond(context: context, version: version)
                    }
                }
            }
        }

        private func respond(context: ChannelHandlerContext, version: HTTPVersion) {
            guard context.channel.isActive else { return }
            var headers = HTTPHeaders()
            headers.add(name: "content-length", value: "0")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: .ok, headers: headers))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

/// The process's open-file limit (`RLIMIT_NOFILE`).
enum FileDescriptorLimit {
    static var current: String {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return "?" }
        return "\(limit.rlim_cur) (hard \(limit.rlim_max))"
    }

    /// Raises the soft limit to `wanted` (or the hard limit, if lower); returns the soft limit after.
    @discardableResult
    static func raise(to wanted: Int) -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        let target = min(rlim_t(wanted), limit.rlim_max)
        if limit.rlim_cur < target {
            limit.rlim_cur = target
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return Int(limit.rlim_cur)
    }
}

/// Two receiver ports: one that answers after `slowDelay` (application A's endpoint) and one that
/// answers at once (B's), each counting its own arrivals.
struct SlowAndFastReceivers {
    let receiver: ScenarioReceiver
    let slow: ArrivalCounter
    let fast: ArrivalCounter
    let slowPort: Int
    let fastPort: Int

    static func listen(slowDelay: Duration, deadline: ContinuousClock.Instant) async throws -> SlowAndFastReceivers {
        let slow = ArrivalCounter()
        let fast = ArrivalCounter()
        let slowPort = NIOLockedValueBox(0)
        let receiver = ScenarioReceiver(
            delay: { port in port == slowPort.withLockedValue({ $0 }) ? slowDelay : .zero },
            onArrival: { port, index, now in (port == slowPort.withLockedValue({ $0 }) ? slow : fast).arrived(index, at: now) })
        let listening = try await receiver.listen(count: 2, deadline: deadline)
        slowPort.withLockedValue { $0 = listening[0] }
        return SlowAndFastReceivers(receiver: receiver, slow: slow, fast: fast, slowPort: listening[0], fastPort: listening[1])
    }
}
