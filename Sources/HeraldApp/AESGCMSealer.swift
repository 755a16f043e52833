import Crypto
import Foundation
import HeraldCore
import HeraldSQLite

/// Seals endpoint secrets at rest with AES-256-GCM under the main key.
struct AESGCMSealer: SecretSealer {
    let key: SymmetricKey

    func seal(_ plaintext: [UInt8]) throws -> [UInt8] {
        guard let combined = try AES.GCM.seal(plaintext, using: key).combined else {
            throw HeraldStartupError("could not seal a secret")
        }
        return [UInt8](combined)
    }

    func open(_ sealed: [UInt8]) throws -> [UInt8] {
        [UInt8](try AES.GCM.open(AES.GCM.SealedBox(combined: sealed), using: key))
    }
}
