"""`herald-bench`: `deliver` against a real server (every publish answered 202, every delivery counted,
with either publishing client; a wrong token or URL is one line on stderr and a non-zero exit), and a
smoke run of each scenario at a tiny scale (each starts its own `herald serve`). Speed goals are never
asserted here: only that the report's lines exist and every expected delivery was counted."""
import os
import re
import subprocess

import pytest

from conftest import HERALD
from herald_server import server_factory  # noqa: F401 (fixture)

# herald-bench is built beside herald (`swift build` builds every product).
HERALD_BENCH = os.path.join(os.path.dirname(HERALD), "herald-bench")
POSTGRES_URL = os.environ.get("HERALD_TEST_POSTGRES_URL")


def bench(*args, timeout=60):
    """Runs `herald-bench ARGS…` and returns the CompletedProcess (text mode)."""
    if not os.path.exists(HERALD_BENCH):
        pytest.fail(f"herald-bench not found at {HERALD_BENCH}: run `swift build` first (scripts/test does)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    return subprocess.run([HERALD_BENCH, *args], capture_output=True, text=True, env=env, timeout=timeout)


def figures(stdout: str) -> dict:
    """The `name: value` lines of the bench's report."""
    return {name.strip(): value.strip() for name, value in re.findall(r"^([^:\n]+):\s+(.*)$", stdout, re.MULTILINE)}


@pytest.mark.parametrize("publisher, extra", [
    ("nio", []),
    ("client", []),
    ("nio", ["--rate", "200"]),
])
def test_bench_deliver_publishes_and_counts_every_delivery(server_factory, publisher, extra):
    server = server_factory(role=None, extra_args=["--allow-network", "127.0.0.0/8"])
    result = bench("deliver", "--url", server.url, "--token", server.token, "-n", "40", "-m", "3", "-c", "4",
                    "--publisher", publisher, "--server-pid", str(server.proc.pid), "--deadline", "60", *extra, timeout=120)
    assert result.returncode == 0, result.stderr
    report = figures(result.stdout)
    assert report["messages × endpoints"].startswith("40 × 3 = 120 deliveries; publish errors 0"), result.stdout
    assert report["all delivered"] == "yes (120 arrived)", result.stdout
    assert f"{publisher} publisher" in report["mode"]
    assert float(report["end-to-end rate"].split()[0]) > 0
    assert float(report["raw client rate"].split()[0]) > 0
    assert re.match(r"p50 [\d.]+ ms\s+p90 [\d.]+ ms\s+p99 [\d.]+ ms", report["publish→delivery"]), result.stdout


@pytest.mark.parametrize("publisher", ["nio", "client"])
def test_a_publish_the_server_refuses_is_counted_as_an_error(server_factory, publisher):
    # Payloads over the 1 MiB limit: every publish is answered 413 and must be counted, not taken for a success.
    server = server_factory(role=None, extra_args=["--allow-network", "127.0.0.0/8"])
    result = bench("deliver", "--url", server.url, "--token", server.token, "-n", "4", "-m", "1", "-c", "2",
                    "--payload-bytes", str(1_100_000), "--publisher", publisher, "--deadline", "5", timeout=60)
    assert result.returncode == 0, result.stderr
    report = figures(result.stdout)
    assert report["messages × endpoints"] == "4 × 1 = 4 deliveries; publish errors 4", result.stdout
    assert report["all delivered"] == "yes (0 arrived)", result.stdout


def test_a_node_that_cannot_be_reached_stops_the_bench_with_one_line(server_factory):
    # The application is made on the first --url; the NIO publisher's connections alternate between the two,
    # and nothing listens on the second.
    server = server_factory(role=None, extra_args=["--allow-network", "127.0.0.0/8"])
    result = bench("deliver", "--url", server.url, "--url", "http://127.0.0.1:1", "--token", server.token,
                    "-n", "10", "-m", "1", "-c", "2", "--deadline", "5", timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert server.token not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--token", "wrong-token-0123456789"], "401"),
    (["--url", "ftp://127.0.0.1:1"], ""),
    (["--publisher", "curl"], "--publisher"),
])
def test_bench_deliver_bad_input_is_one_line(server_factory, args, message):
    server = server_factory(role=None, extra_args=["--allow-network", "127.0.0.0/8"])
    base = {"--url": server.url, "--token": server.token}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    flat = [item for pair in base.items() for item in pair]
    result = bench("deliver", *flat, "-n", "5", "-m", "1", "-c", "1", "--deadline", "5", timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "wrong-token-0123456789" not in result.stderr


# --- Scenarios: tiny scale, each starts its own herald serve --------------------------------------

DATABASES = ["sqlite"] + ([POSTGRES_URL] if POSTGRES_URL else [])
DATABASE_IDS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])


def run_scenario(*args, timeout=60):
    result = bench(*args, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    report = figures(result.stdout)
    assert report["goal met"] in ("yes", "no"), result.stdout
    assert "goal" in report and "scenario" in report, result.stdout
    return report, result.stdout


@pytest.mark.parametrize("database", DATABASES, ids=DATABASE_IDS)
def test_noisy_neighbour_counts_every_healthy_delivery(database):
    report, out = run_scenario("noisy-neighbour", "--database", database, "--due", "20", "--delay", "1",
                               "--healthy", "10", "--rate", "10", "--deadline", "25")
    assert report["A published"].startswith("20 of 20 accepted"), out
    assert report["B published"].startswith("10 of 10 accepted, 0 refused"), out
    assert re.match(r"10 of 10 \(\d+ arrivals\)", report["B delivered"]), out
    assert re.match(r"p50 [\d.]+ ms\s+p90 [\d.]+ ms\s+p99 [\d.]+ ms\s+max [\d.]+ ms", report["B publish→delivery"]), out
    assert re.match(r"p50 [\d.]+ ms\s+p99 [\d.]+ ms\s+max [\d.]+ ms", report["B publish answered in"]), out
    arrived = int(report["A arrived in all"].split()[0])
    assert 0 <= arrived <= 40, out
    assert report["goal"] == "B's publish→delivery p99 < 250 ms"
    assert report["server RSS"].endswith("MB"), out


@pytest.mark.parametrize("database", DATABASES, ids=DATABASE_IDS)
def test_slow_receivers_counts_every_delivery(database):
    report, out = run_scenario("slow-receivers", "--database", database, "--endpoints", "5", "--ports", "2",
                               "--applications", "2", "--duration", "2", "--rate", "50", "--deadline", "25")
    assert report["published"].startswith("100 of 100 accepted, 0 refused"), out
    assert re.match(r"100 of 100 \(\d+ arrivals\)", report["delivered"]), out
    assert re.match(r"\d+ \(middle 80 % of arrivals\)", report["deliveries/s steady"]), out
    assert re.match(r"\d+ \(first publish", report["deliveries/s overall"]), out
    assert report["goal"] == "steady deliveries/s ≥ 1500 with the default settings"


def test_many_hosts_counts_every_delivery_and_reports_rss():
    report, out = run_scenario("many-hosts", "--hosts", "20", "--applications", "2", "--messages", "200",
                               "--first", "20", "--deadline", "25")
    assert report["endpoints created"].startswith("20 in"), out
    assert report["published"].startswith("200 of 200 accepted, 0 refused"), out
    assert re.match(r"200 of 200 \(\d+ arrivals\)", report["delivered"]), out
    assert re.match(r"[\d.]+ MB \(", report["server RSS at 20 deliveries"]), out
    assert report["server RSS at all deliveries"].endswith("MB"), out
    assert re.match(r"[\d.]+$", report["RSS all / RSS first"]), out


@pytest.mark.parametrize("database", DATABASES, ids=DATABASE_IDS)
def test_backlog_seeds_and_measures(database):
    # A's endpoint answers quickly here, so the probes to B arrive whatever the engine does with a backlog.
    report, out = run_scenario("backlog", "--database", database, "--backlog", "1000", "--delay", "0.05", "--probes", "3",
                               "--publish-seconds", "1", "--publishers", "4", "--settle", "0.5", "--deadline", "28")
    assert report["seeded"].startswith("1000 pending deliveries for A"), out
    assert report["server RSS after start-up, backlog"].endswith("MB"), out
    assert re.match(r"max [\d.]+ ms\s+median [\d.]+ ms \(3 probes\)", report["B publish→delivery, single"]), out
    assert re.match(r"\d+ msg/s", report["B publish rate, empty database"]), out
    assert re.match(r"\d+ msg/s", report["B publish rate, backlog"]), out
    delivered, of = re.match(r"(\d+) of (\d+)$", report["B delivered"]).groups()
    assert delivered == of and int(of) > 3, out
    assert len(re.findall(r"^goal met:", out, re.MULTILINE)) == 3, out


def test_a_scenario_past_its_deadline_reports_it_and_exits_non_zero():
    # Every answer takes 20 s and herald keeps at most a few attempts in flight to one endpoint, so
    # most of the 100 deliveries cannot arrive within the 6 s the whole scenario may take.
    result = bench("slow-receivers", "--endpoints", "1", "--ports", "1", "--duration", "1", "--rate", "100",
                   "--min-delay", "20000", "--max-delay", "20000", "--deadline", "6", timeout=40)
    assert result.returncode != 0
    report = figures(result.stdout)
    assert report["deadline"].startswith("missed"), result.stdout
    assert report["goal met"] == "no", result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "deadline" in lines[0], result.stderr


@pytest.mark.parametrize("args, message", [
    (["noisy-neighbour", "--due", "-1"], "--due"),
    (["slow-receivers", "--database", "mysql://127.0.0.1/x"], "--database"),
    (["many-hosts", "--hosts", "0"], "--hosts"),
    (["backlog", "--herald", "/nonexistent/herald"], "--herald"),
    (["backlog", "--deadline", "soon"], "deadline"),
    (["noisy-neighbour", "--bogus"], "--bogus"),
])
def test_a_bad_scenario_option_is_one_line(args, message):
    result = bench(*args, timeout=30)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0], lines[0]
    assert result.stdout == ""


def test_herald_no_longer_has_a_bench_subcommand():
    result = subprocess.run([HERALD, "bench", "deliver"], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    help_text = subprocess.run([HERALD, "--help"], capture_output=True, text=True, timeout=30).stdout
    assert "bench" not in help_text
