import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A raw HTTP/1.1 receiver on 127.0.0.1 (port 0) whose behaviour is chosen by path, for live
/// transport tests: answers, timeouts, closed connections, trickled bytes, redirects, huge bodies.
final class ScriptedReceiver: Sendable {
    let channel: any Channel
    let hits = NIOLockedValueBox<[String: Int]>([:])
    /// `/held` answers 200 once this is open.
    let gate = NIOLockedValueBox(false)
    var port: Int { channel.localAddress!.port! }

    func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }
    func hitCount(_ path: String) -> Int { hits.withLockedValue { $0[path, default: 0] } }
    /// Lets every `/held` request (waiting or to come) have its answer.
    func openGate() { gate.withLockedValue { $0 = true } }

    init() async throws {
        let hits = self.hits
        let gate = self.gate
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.addHandler(ScriptedHandler(hits: hits, gate: gate))
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }

    func stop() async { try? await channel.close() }
}

private final class ScriptedHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: only touched on its channel's event loop.
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let hits: NIOLockedValueBox<[String: Int]>
    let gate: NIOLockedValueBox<Bool>
    var received = ByteBuffer()

    init(hits: NIOLockedValueBox<[String: Int]>, gate: NIOLockedValueBox<Bool>) {
        self.hits = hits
        self.gate = gate
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        received.writeBuffer(&chunk)
        let text = String(buffer: received)
        guard let headerEnd = text.range(of: "\r\n\r\n") else { return }
        let head = text[..<headerEnd.lowerBound]
        let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
        guard text.utf8.count - text.utf8.distance(from: text.startIndex, to: headerEnd.upperBound) >= length else { return }
        // One request at a time per connection (keep-alive): forget this one's bytes.
        received.clear()
        let path = String(head.split(separator: " ")[1])
        let count = hits.withLockedValue { hits -> Int in
            hits[path, default: 0] += 1
            return hits[path]!
        }
        respond(path: path, count: count, context: context)
    }

    func write(_ text: String, _ context: ChannelHandlerContext, close: Bool = false) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text))).whenComplete { _ in
            if close { context.close(promise: nil) }
        }
    }

    func respond(path: String, count: Int, context: ChannelHandlerContext) {
        switch path {
        case "/ok":
            write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", context)
        case "/fail-once":
            write(count == 1 ? "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nboom" : "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", context)
        case "/gone":
            write("HTTP/1.1 410 Gone\r\ncontent-length: 0\r\n\r\n", context)
        case "/redirect":
            write("HTTP/1.1 302 Found\r\nlocation: /target\r\ncontent-length: 0\r\n\r\n", context)
        case "/held":
            answerWhenTheGateOpens(context: context)
        case "/retry-after-huge":
            write("HTTP/1.1 503 Service Unavailable\r\nretry-after: \(String(repeating: "9", count: 4000))\r\ncontent-length: 0\r\n\r\n", context)
        case "/hang":
            break  // never answers
        case "/close":
            write("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial", context, close: true)
        case "/trickle":
            write("HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n", context)
            trickle(context: context, remaining: 1000)
        case "/big":
            let size = 5 * 1024 * 1024
            write("HTTP/1.1 200 OK\r\ncontent-length: \(size)\r\n\r\n", context)
            let chunk = String(repeating: "x", count: 64 * 1024)
            for _ in 0..<(size / chunk.utf8.count) { context.write(wrapOutboundOut(ByteBuffer(string: chunk)), promise: nil) }
            context.flush()
        default:
            write("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", context)
        }
    }

    func answerWhenTheGateOpens(context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        if gate.withLockedValue({ $0 }) {
            write("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nheld", context)
            return
        }
        context.eventLoop.scheduleTask(in: .milliseconds(10)) { self.answerWhenTheGateOpens(context: context) }
    }

    func trickle(context: ChannelHandlerContext, remaining: Int) {
        guard remaining > 0, context.channel.isActive else { return }
        context.eventLoop.scheduleTask(in: .milliseconds(100)) {
            guard context.channel.isActive else { return }
            context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: "."))).whenComplete { _ in
                self.trickle(context: context, remaining: remaining - 1)
            }
        }
    }
}
