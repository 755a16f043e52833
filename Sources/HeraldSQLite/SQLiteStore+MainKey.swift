import Foundation
import GRDB
import HeraldCore

extension SQLiteStore: MainKeyRotating {
    static let mainKeyCheckName = "main_key_check"

    /// Refuses a key that does not open the stored check value, reading only (a database migrated
    /// before the check existed has no `herald_meta` yet: `establishMainKeyCheck` decides then).
    ///
    /// A file is read through a read-only connection of its own, before the pool opens: opening
    /// a pool writes to the file (GRDB makes sure the WAL is not empty).
    static func checkMainKeyBeforeOpening(path: String, sealer: any SecretSealer) throws {
        var readOnly = GRDB.Configuration()
        readOnly.readonly = true
        // The read-only connection leaves an empty -wal and an -shm behind when there were none
        // (no other process has the file open): they go again, and the directory is as it was.
        let manager = FileManager.default
        let leftovers = [path + "-wal", path + "-shm"].filter { !manager.fileExists(atPath: $0) }
        let reader = try DatabaseQueue(path: path, configuration: readOnly)
        defer {
            try? reader.close()
            let walSize = (try? manager.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
            if leftovers.count == 2, walSize == 0 { leftovers.forEach { try? manager.removeItem(atPath: $0) } }
        }
        let stored: [UInt8]? = try reader.read { db in
            guard try db.tableExists("herald_meta") else { return nil }
            return try Data.fetchOne(db, sql: "SELECT value FROM herald_meta WHERE name = ?", arguments: [mainKeyCheckName]).map { [UInt8]($0) }
        }
        if let stored, !MainKeyCheck.matches(stored, sealer: sealer) { throw MainKeyCheck.mismatch }
    }

    /// Stores the key's check value when there is none. A database with sealed secrets but no
    /// check value (made before it existed) takes the key only if it opens them.
    static func establishMainKeyCheck(_ writer: any DatabaseWriter, sealer: any SecretSealer) throws {
        try writer.write { db in
            if let stored = try Data.fetchOne(db, sql: "SELECT value FROM herald_meta WHERE name = ?", arguments: [mainKeyCheckName]) {
                guard MainKeyCheck.matches([UInt8](stored), sealer: sealer) else { throw MainKeyCheck.mismatch }
                return
            }
            let samples = try Data.fetchAll(db, sql: "SELECT secrets FROM endpoints WHERE secrets_sealed = 1 LIMIT 16")
            if !samples.isEmpty, !samples.contains(where: { (try? sealer.open([UInt8]($0))) != nil }) {
                throw MainKeyCheck.mismatch
            }
            try db.execute(sql: "INSERT INTO herald_meta (name, value) VALUES (?, ?)",
                           arguments: [mainKeyCheckName, Data(try MainKeyCheck.value(for: sealer))])
        }
    }

    public func rotateMainKey(to newSealer: any SecretSealer) async throws -> MainKeyRotation {
        let old = secrets
        let new = EndpointSecretsCodec(sealer: newSealer)
        return try await write { db in
            var rotation = MainKeyRotation(endpoints: 0, unreadableEndpoints: 0, idempotencyRecords: 0)
            for row in try Row.fetchAll(db, sql: "SELECT id, secrets, secrets_sealed, headers FROM endpoints") {
                let id: String = row["id"]
                guard let stored = SQLiteCoding.bytes(row, "secrets"),
                      let opened = try? old.open(stored, sealed: row["secrets_sealed"] ?? false),
                      let headers = try? old.openText(row["headers"]) else {
                    rotation.unreadableEndpoints += 1
                    continue
                }
                let sealed = try new.seal(opened)
                try db.execute(sql: "UPDATE endpoints SET secrets = ?, secrets_sealed = ?, headers = ?, version = version + 1 WHERE id = ?",
                               arguments: [Data(sealed.bytes), sealed.sealed, try new.sealText(headers), id])
                rotation.endpoints += 1
            }
            for row in try Row.fetchAll(db, sql: "SELECT key, body, body_sealed FROM idempotency_records") {
                let key: String = row["key"]
                // A record that cannot be opened is only a cached answer: it goes.
                guard let opened = try? old.openBytes(SQLiteCoding.bytes(row, "body") ?? [], sealed: row["body_sealed"] ?? false) else {
                    try db.execute(sql: "DELETE FROM idempotency_records WHERE key = ?", arguments: [key])
                    continue
                }
                let sealed = try new.sealBytes(opened)
                try db.execute(sql: "UPDATE idempotency_records SET body = ?, body_sealed = ? WHERE key = ?",
                               arguments: [Data(sealed.bytes), sealed.sealed, key])
                rotation.idempotencyRecords += 1
            }
            try db.execute(sql: "INSERT OR REPLACE INTO herald_meta (name, value) VALUES (?, ?)",
                           arguments: [Self.mainKeyCheckName, Data(try MainKeyCheck.value(for: newSealer))])
            return rotation
        }
    }
}
