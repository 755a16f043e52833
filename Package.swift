// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

var products: [Product] = [
    .library(name: "WebhookSignature", targets: ["WebhookSignature"]),
    .library(name: "WebhookSignatureHummingbird", targets: ["WebhookSignatureHummingbird"]),
    .library(name: "WebhookSignaturePostgres", targets: ["WebhookSignaturePostgres"]),
    .executable(name: "herald", targets: ["herald"]),
    .executable(name: "herald-bench", targets: ["HeraldBench"]),
]

var targets: [Target] = [
    // Receiving side: signing and verification. Depends on swift-crypto only.
    .target(
        name: "WebhookSignature",
        dependencies: [
            .product(name: "Crypto", package: "swift-crypto"),
        ],
        swiftSettings: swiftSettings
    ),
    .target(
        name: "WebhookSignatureHummingbird",
        dependencies: [
            "WebhookSignature",
            .product(name: "Hummingbird", package: "hummingbird"),
        ],
        swiftSettings: swiftSettings
    ),
    // A deduplicator shared by several receiver processes, in a PostgreSQL table.
    .target(
        name: "WebhookSignaturePostgres",
        dependencies: [
            "WebhookSignature",
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "Logging", package: "swift-log"),
        ],
        swiftSettings: swiftSettings
    ),
    // Domain types, the store protocol, the in-memory store. Nothing heavy.
    .target(
        name: "HeraldCore",
        dependencies: [
            .product(name: "Logging", package: "swift-log"),
        ],
        swiftSettings: swiftSettings
    ),
    // The default store: SQLite through GRDB.
    .target(
        name: "HeraldSQLite",
        dependencies: [
            "HeraldCore",
            .product(name: "GRDB", package: "GRDB.swift"),
        ],
        swiftSettings: swiftSettings
    ),
    // The multi-node store: PostgreSQL through PostgresNIO.
    .target(
        name: "HeraldPostgres",
        dependencies: [
            "HeraldCore",
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ],
        swiftSettings: swiftSettings
    ),
    // The store conformance suite every backend runs, and test helpers.
    .target(
        name: "HeraldTesting",
        dependencies: ["HeraldCore"],
        swiftSettings: swiftSettings
    ),
    // The dispatcher: claims due deliveries, signs, POSTs, records attempts, reschedules.
    .target(
        name: "HeraldDelivery",
        dependencies: [
            "HeraldCore",
            "WebhookSignature",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ],
        swiftSettings: swiftSettings
    ),
    // The Svix-compatible REST API.
    .target(
        name: "HeraldAPI",
        dependencies: [
            "HeraldCore",
            "WebhookSignature",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ],
        swiftSettings: swiftSettings
    ),
    // The composition root: picks the store, runs migrations, builds the app.
    .target(
        name: "HeraldApp",
        dependencies: [
            "HeraldCore",
            "HeraldSQLite",
            "HeraldPostgres",
            "HeraldAPI",
            "HeraldDelivery",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ],
        swiftSettings: swiftSettings
    ),
    // The CLI's commands, as a library so tests can drive them.
    .target(
        name: "HeraldCLI",
        dependencies: [
            "WebhookSignature",
            "WebhookSignatureHummingbird",
            "HeraldApp",
            "HeraldCore",
            "HeraldDelivery",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ],
        swiftSettings: swiftSettings
    ),
    .executableTarget(
        name: "herald",
        dependencies: ["HeraldCLI"],
        swiftSettings: swiftSettings
    ),
    // The benchmark scenarios: start `herald serve` as a subprocess, load it, report figures.
    // Not part of the shipped `herald` binary.
    .executableTarget(
        name: "HeraldBench",
        dependencies: [
            "HeraldCLI",
            "HeraldCore",
            "HeraldDelivery",
            "HeraldPostgres",
            "WebhookSignature",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ],
        swiftSettings: swiftSettings
    ),
    .testTarget(
        name: "WebhookSignatureTests",
        dependencies: ["WebhookSignature"],
        swiftSettings: swiftSettings
    ),
    .testTarget(
        name: "HeraldStoreTests",
        dependencies: ["HeraldCore", "HeraldSQLite", "HeraldPostgres", "HeraldTesting",
                       .product(name: "Logging", package: "swift-log"),
                       .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                       .product(name: "PostgresNIO", package: "postgres-nio")],
        swiftSettings: swiftSettings
    ),
    .testTarget(
        name: "HeraldDeliveryTests",
        dependencies: [
            "HeraldCore",
            "HeraldDelivery",
            "WebhookSignature",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ],
        swiftSettings: swiftSettings
    ),
    .testTarget(
        name: "HeraldAPITests",
        dependencies: [
            "HeraldAPI",
            "HeraldApp",
            "HeraldCore",
            "HeraldSQLite",
            "HeraldPostgres",
            "HeraldTesting",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ],
        swiftSettings: swiftSettings
    ),
    .testTarget(
        name: "WebhookSignatureHummingbirdTests",
        dependencies: [
            "WebhookSignatureHummingbird",
            "WebhookSignaturePostgres",
            "HeraldTesting",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ],
        swiftSettings: swiftSettings
    ),
]

// libFuzzer target for the header and secret parsers. Only declared when
// HERALD_FUZZ is set (scripts/fuzz does that), because it must be linked with
// -sanitize=fuzzer, which supplies `main`.
if Context.environment["HERALD_FUZZ"] != nil {
    targets.append(
        .executableTarget(
            name: "WebhookSignatureFuzz",
            dependencies: ["WebhookSignature"],
            path: "Fuzz/WebhookSignatureFuzz",
            swiftSettings: swiftSettings + [.unsafeFlags(["-sanitize=fuzzer,address"])],
            linkerSettings: [.unsafeFlags(["-sanitize=fuzzer,address", "-use-ld=lld"])]
        )
    )
    products.append(.executable(name: "WebhookSignatureFuzz", targets: ["WebhookSignatureFuzz"]))
}

let package = Package(
    name: "herald",
    platforms: [.macOS(.v14)],
    products: products,
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.1.0"),
    ],
    targets: targets
)
