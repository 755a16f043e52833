/// A benchmark error whose message is one line safe to print (never a token).
struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
