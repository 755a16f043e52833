/// A problem with Herald's settings or environment at start-up: one line naming what is wrong.
public struct HeraldStartupError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
