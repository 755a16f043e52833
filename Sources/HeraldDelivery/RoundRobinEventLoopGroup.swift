import Dispatch
import NIOCore

/// Another group's event loops, handed out in turn by `next()` and `any()` alike.
///
/// `MultiThreadedEventLoopGroup.any()` prefers the calling thread's loop, which keeps a chain of
/// work on one thread; a client that should spread its connections over every loop gets this
/// instead. It does not own the loops: shutting it down is refused, the base group's owner does it.
public final class RoundRobinEventLoopGroup: EventLoopGroup {
    private let base: any EventLoopGroup

    public init(_ base: any EventLoopGroup) {
        self.base = base
    }

    public func next() -> any EventLoop { base.next() }

    public func any() -> any EventLoop { base.next() }

    public func makeIterator() -> EventLoopIterator { base.makeIterator() }

    public func shutdownGracefully(queue: DispatchQueue, _ callback: @escaping @Sendable ((any Error)?) -> Void) {
        queue.async { callback(EventLoopError.unsupportedOperation) }
    }

    public func syncShutdownGracefully() throws {
        throw EventLoopError.unsupportedOperation
    }
}
