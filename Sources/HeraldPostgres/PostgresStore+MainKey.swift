import Foundation
import HeraldCore
import Logging
import PostgresNIO

extension PostgresStore: MainKeyRotating {
    static let mainKeyCheckName = "main_key_check"

    /// Refuses a key that does not open the stored check value, reading only (a schema migrated
    /// before the check existed has no `herald_meta` yet: `establishMainKeyCheck` decides then).
    func checkMainKeyBeforeMigrating(sealer: any SecretSealer) async throws {
        guard try await rows("SELECT to_regclass('herald_meta') IS NOT NULL AS present").first?.value("present", as: Bool.self) == true else { return }
        let stored = try await rows("SELECT value FROM herald_meta WHERE name = \(Self.mainKeyCheckName)").first?.bytes("value")
        if let stored, !MainKeyCheck.matches(stored, sealer: sealer) { throw MainKeyCheck.mismatch }
    }

    /// Stores the key's check value when there is none (the first node to start wins; every node
    /// then checks the stored value). A schema with sealed secrets but no check value (made before
    /// it existed) takes the key only if it opens them.
    func establishMainKeyCheck(sealer: any SecretSealer) async throws {
        if try await rows("SELECT value FROM herald_meta WHERE name = \(Self.mainKeyCheckName)").isEmpty {
            let samples = try await rows("SELECT secrets FROM endpoints WHERE secrets_sealed LIMIT 16").compactMap { try $0.bytes("secrets") }
            if !samples.isEmpty, !samples.contains(where: { (try? sealer.open($0)) != nil }) { throw MainKeyCheck.mismatch }
            let value = Data(try MainKeyCheck.value(for: sealer))
            try await rows("INSERT INTO herald_meta (name, value) VALUES (\(Self.mainKeyCheckName), \(value)) ON CONFLICT (name) DO NOTHING")
        }
        guard let stored = try await rows("SELECT value FROM herald_meta WHERE name = \(Self.mainKeyCheckName)").first?.bytes("value"),
              MainKeyCheck.matches(stored, sealer: sealer) else { throw MainKeyCheck.mismatch }
    }

    public func rotateMainKey(to newSealer: any SecretSealer) async throws -> MainKeyRotation {
        let old = secrets
        let new = EndpointSecretsCodec(sealer: newSealer)
        let client = self.client
        let logger = self.logger
        let check = Data(try MainKeyCheck.value(for: newSealer))
        do {
            // One transaction for the whole database, however long it takes: the key changes for
            // everything at once or for nothing.
            return try await withDeadline(.seconds(3600)) {
                try await client.withTransaction(logger: logger) { connection in
                    var rotation = MainKeyRotation(endpoints: 0, unreadableEndpoints: 0, idempotencyRecords: 0)
                    for row in try await connection.rows("SELECT id, secrets, secrets_sealed, headers FROM endpoints FOR UPDATE", logger: logger) {
                        let id: String = try row.value("id")
                        guard let stored = try row.bytes("secrets"),
                              let opened = try? old.open(stored, sealed: try row.value("secrets_sealed")),
                              let headers = try? old.openText(try row.value("headers")) else {
                            rotation.unreadableEndpoints += 1
                            continue
                        }
                        let sealed = try new.seal(opened)
                        let sealedHeaders = try new.sealText(headers)
                        try await connection.rows("""
                            UPDATE endpoints SET secrets = \(Data(sealed.bytes)), secrets_sealed = \(sealed.sealed),
                                headers = \(sealedHeaders), version = version + 1
                            WHERE id = \(id)
                            """, logger: logger)
                        rotation.endpoints += 1
                    }
                    for row in try await connection.rows("SELECT key, body, body_sealed FROM idempotency_records FOR UPDATE", logger: logger) {
                        let key: String = try row.value("key")
                        // A record that cannot be opened is only a cached answer: it goes.
                        guard let opened = try? old.openBytes(try row.bytes("body") ?? [], sealed: try row.value("body_sealed")) else {
                            try await connection.rows("DELETE FROM idempotency_records WHERE key = \(key)", logger: logger)
                            continue
                        }
                        let sealed = try new.sealBytes(opened)
                        try await connection.rows("""
                            UPDATE idempotency_records SET body = \(Data(sealed.bytes)), body_sealed = \(sealed.sealed) WHERE key = \(key)
                            """, logger: logger)
                        rotation.idempotencyRecords += 1
                    }
                    try await connection.rows("""
                        INSERT INTO herald_meta (name, value) VALUES (\(Self.mainKeyCheckName), \(check))
                        ON CONFLICT (name) DO UPDATE SET value = excluded.value
                        """, logger: logger)
                    return rotation
                }
            }
        } catch {
            throw PostgresErrorMapping.storeError(error)
        }
    }
}
