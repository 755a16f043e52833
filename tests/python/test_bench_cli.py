"""`herald bench deliver` against a real server: every publish answered 202, every delivery counted,
with either publishing client; a wrong token or URL is one line on stderr and a non-zero exit."""
import re

import pytest

from conftest import herald
from herald_server import server_factory  # noqa: F401 (fixture)


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
    result = herald("bench", "deliver", "--url", server.url, "--token", server.token, "-n", "40", "-m", "3", "-c", "4",
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
    result = herald("bench", "deliver", "--url", server.url, "--token", server.token, "-n", "4", "-m", "1", "-c", "2",
                    "--payload-bytes", str(1_100_000), "--publisher", publisher, "--deadline", "5", timeout=60)
    assert result.returncode == 0, result.stderr
    report = figures(result.stdout)
    assert report["messages × endpoints"] == "4 × 1 = 4 deliveries; publish errors 4", result.stdout
    assert report["all delivered"] == "yes (0 arrived)", result.stdout


def test_a_node_that_cannot_be_reached_stops_the_bench_with_one_line(server_factory):
    # The application is made on the first --url; the NIO publisher's connections alternate between the two,
    # and nothing listens on the second.
    server = server_factory(role=None, extra_args=["--allow-network", "127.0.0.0/8"])
    result = herald("bench", "deliver", "--url", server.url, "--url", "http://127.0.0.1:1", "--token", server.token,
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
    result = herald("bench", "deliver", *flat, "-n", "5", "-m", "1", "-c", "1", "--deadline", "5", timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "wrong-token-0123456789" not in result.stderr
