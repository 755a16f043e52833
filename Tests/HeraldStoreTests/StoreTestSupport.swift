import Foundation
import HeraldCore
import HeraldSQLite

/// A trivial sealer for tests: XOR with a fixed pad (not encryption, but the sealed bytes never
/// contain the plaintext).
struct XORSealer: SecretSealer {
    var pad: UInt8 = 0x5A
    func seal(_ plaintext: [UInt8]) throws -> [UInt8] { [0x01] + plaintext.map { $0 ^ pad } }
    func open(_ sealed: [UInt8]) throws -> [UInt8] {
        guard sealed.first == 0x01 else { throw SealerFailure() }
        return sealed.dropFirst().map { $0 ^ pad }
    }
    struct SealerFailure: Error {}
}

/// A directory under the system's temporary directory, removed by `remove()`.
struct TemporaryDirectory: Sendable {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("herald-store-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// The bytes of every file in the directory (the database, its WAL and shared memory).
    func allBytes() throws -> [UInt8] {
        try FileManager.default.contentsOfDirectory(atPath: url.path).flatMap { name in
            [UInt8](try Data(contentsOf: url.appendingPathComponent(name)))
        }
    }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// The stores the conformance suite runs on.
enum StoreBackend: String, CaseIterable, Sendable, CustomStringConvertible {
    case inMemory
    case sqliteFile
    case sqliteMemory

    var description: String { rawValue }

    func makeStore(in directory: TemporaryDirectory) throws -> any HeraldStore {
        switch self {
        case .inMemory: InMemoryStore()
        case .sqliteFile: try SQLiteStore(path: directory.path("\(UUID().uuidString).sqlite"), sealer: XORSealer())
        case .sqliteMemory: try SQLiteStore(path: ":memory:")
        }
    }
}

extension [UInt8] {
    func contains(subsequence needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        return (0...(count - needle.count)).contains { start in self[start..<(start + needle.count)].elementsEqual(needle) }
    }
}
