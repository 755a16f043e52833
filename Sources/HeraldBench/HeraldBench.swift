import ArgumentParser
import Foundation
import HeraldCLI

/// `herald-bench`: load generators and benchmark scenarios for Herald. Not part of the shipped
/// `herald` binary. Performance is measured here, never by a timed assertion in a test.
///
/// ```sh
/// herald-bench publish --url http://127.0.0.1:8071 --token "$TOKEN" -n 5000 -c 16   # a running server
/// herald-bench noisy-neighbour                                                  # starts its own server
/// ```
@main
struct HeraldBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "herald-bench",
        abstract: "Benchmark Herald: load a running server, or run a scenario that starts its own.",
        discussion: """
        publish and deliver load a running `herald serve`. The scenarios (noisy-neighbour, \
        slow-receivers, many-hosts, backlog, retention) start `herald serve` themselves (the herald binary next \
        to herald-bench unless --herald is given), run their receivers in this process on 127.0.0.1, \
        and print `name: value` lines including the goal and whether it was met. A scenario exits \
        non-zero when it misses its deadline or cannot run; a goal not met is reported, not an error.
        """,
        subcommands: [
            BenchPublishCommand.self, BenchDeliverCommand.self,
            NoisyNeighbourCommand.self, SlowReceiversCommand.self, ManyHostsCommand.self, BacklogCommand.self, RetentionCommand.self,
        ]
    )

    /// Runs the command line, printing any error as one line on stderr with a non-zero exit.
    static func main() async {
        await runAsRoot(toolName: "herald-bench")
    }
}
