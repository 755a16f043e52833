import AsyncHTTPClient
import NIOCore
import NIOPosix

/// A benchmark error whose message is one line safe to print (never a token).
struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }

    /// A short description of an HTTP client or connection error.
    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout: return "timed out"
            case .remoteConnectionClosed: return "the receiver closed the connection"
            default: return "\(error)"
            }
        }
        if let error = error as? NIOConnectionError {
            return "connection failed (\(error.connectionErrors.first.map { "\($0.error)" } ?? "refused"))"
        }
        return "\(error)"
    }
}
