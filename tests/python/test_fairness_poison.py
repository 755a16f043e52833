"""No endpoint can hold back another, and no stored endpoint or delivery can stall or crash the server.

Against the real `herald serve` (default delivery settings) on SQLite and on PostgreSQL, with receivers
on 127.0.0.1 in this process:
- an endpoint that answers after 10 s with 1,000 deliveries due does not delay another application's
  endpoint: each of its messages arrives within a second of its publish;
- an endpoint stored with an impossible URL (port 65536), or whose stored secrets cannot be read,
  fails its own deliveries with the reason while the server stays up (also after kill -9 and a
  restart) and keeps delivering to healthy endpoints; the API can still read, replace and delete it;
- a delivery in flight when the process was killed three times in a row is failed with that reason
  instead of claimed forever.
"""
import base64
import http.server
import json
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from herald_server import HeraldServer, new_token
from test_delivery_e2e import wait_until
from test_postgres_nodes import pg_url, with_schema  # noqa: F401 (fixture)

ALLOW_LOOPBACK = ["--allow-network", "127.0.0.0/8"]


class SlowAndFastReceiver:
    """One HTTP/1.1 server on 127.0.0.1:0: paths under /slow answer after `slow_seconds`, /hang never
    answers (until stopped), anything else at once. Records (path, body, arrival time)."""

    def __init__(self, slow_seconds=10.0):
        self.slow_seconds = slow_seconds
        self.arrivals = []
        self.hosts = []
        self.lock = threading.Condition()
        self.stopping = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                arrived = time.time()
                with receiver.lock:
                    receiver.arrivals.append((self.path, body, arrived))
                    receiver.hosts.append(self.headers.get("host"))
                    receiver.lock.notify_all()
                try:
                    if self.path.startswith("/slow"):
                        receiver.stopping.wait(receiver.slow_seconds)
                    elif self.path.startswith("/hang"):
                        receiver.stopping.wait(120)
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def at(self, prefix):
        with self.lock:
            return [a for a in self.arrivals if a[0].startswith(prefix)]

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = SlowAndFastReceiver()
    yield r
    r.stop()


class API:
    def __init__(self, server):
        self.server = server
        self.session = requests.Session()
        self.session.headers.update(server.headers())

    def post(self, path, body, expect=(200, 201, 202)):
        response = self.session.post(self.server.url + path, data=json.dumps(body), timeout=15)
        assert response.status_code in expect, (path, response.status_code, response.text)
        return response.json() if response.content else None

    def get(self, path):
        return self.session.get(self.server.url + path, timeout=15)


def databases(tmp_path, request):
    if request.param.startswith("sqlite"):
        return f"sqlite:{tmp_path / 'herald.sqlite'}"
    return with_schema(request.getfixturevalue("pg_url"))


@pytest.fixture(params=["sqlite", "postgres", "postgres-2-nodes"])
def database(tmp_path, request):
    return databases(tmp_path, request), 2 if request.param.endswith("2-nodes") else 1


def start(database, env=None, token=None):
    # Default delivery settings (concurrency, per-endpoint cap): only loopback is allowed.
    return HeraldServer.start(database, token or new_token(), extra_args=ALLOW_LOOPBACK + ["--retry-schedule", "1,1,1"],
                              role=None, env=env or {"HERALD_MAIN_KEY": base64.b64encode(b"k" * 32).decode()})


def test_a_slow_endpoint_with_a_backlog_does_not_delay_another_application(database, receiver):
    database, nodes = database
    server = start(database)
    # With two nodes on one PostgreSQL schema, both deliver; the noisy application's messages are
    # published through the second one, the quiet one's through the first.
    others = [start(database, token=server.token) for _ in range(nodes - 1)]
    try:
        api = API(server)
        noisy_api = API(others[0]) if others else api
        api.post("/api/v1/app", {"name": "noisy", "uid": "noisy"})
        api.post("/api/v1/app/noisy/endpoint", {"url": receiver.base + "/slow"})
        api.post("/api/v1/app", {"name": "quiet", "uid": "quiet"})
        api.post("/api/v1/app/quiet/endpoint", {"url": receiver.base + "/fast"})

        # 1,000 deliveries due on the endpoint that takes 10 s per request.
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: noisy_api.post("/api/v1/app/noisy/msg", {"eventType": "noise", "payload": {"i": i}}), range(1000)))
        wait_until(lambda: len(receiver.at("/slow")) >= 10, "the slow endpoint is busy")

        # Meanwhile: 20 messages to the other application, at about 10 a second.
        published = {}
        for i in range(20):
            published[i] = time.time()
            api.post("/api/v1/app/quiet/msg", {"eventType": "signal", "payload": {"n": i}})
            time.sleep(0.1)
        wait_until(lambda: len(receiver.at("/fast")) >= 20, lambda: f"20 fast deliveries, got {len(receiver.at('/fast'))}")
        delays = sorted(arrived - published[json.loads(body)["n"]] for _, body, arrived in receiver.at("/fast"))
        assert len(delays) == 20
        assert delays[-1] < 1.0, f"every message within a second of its publish; delays {delays}"
        authority = receiver.base.split("://", 1)[1]
        assert set(receiver.hosts) == {authority}, f"the Host header is the endpoint URL's authority: {set(receiver.hosts)}"
        slow_in_flight = len(receiver.at("/slow"))
        assert slow_in_flight <= 16 * 2, f"the slow endpoint is held to its cap (over every node), got {slow_in_flight} requests"
    finally:
        for node in [server, *others]:
            node.kill9()


def test_an_impossible_port_stored_by_an_older_version_fails_alone_and_survives_restarts(tmp_path, receiver):
    path = tmp_path / "herald.sqlite"
    server = start(f"sqlite:{path}")
    try:
        api = API(server)
        api.post("/api/v1/app", {"name": "a", "uid": "a"})
        bad = api.post("/api/v1/app/a/endpoint", {"url": receiver.base + "/bad", "uid": "bad"})
        api.post("/api/v1/app/a/endpoint", {"url": receiver.base + "/good", "uid": "good"})
        # The API refuses it today: 422 naming the url field.
        response = api.session.post(server.url + "/api/v1/app/a/endpoint", data=json.dumps({"url": "http://127.0.0.1:65536/"}))
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"][-1] == "url"
    finally:
        server.stop()
    # An older version stored it anyway.
    with sqlite3.connect(path) as db:
        db.execute("UPDATE endpoints SET url = ? WHERE id = ?", ("http://127.0.0.1:65536/", bad["id"]))
    server = start(f"sqlite:{path}")
    try:
        api = API(server)
        api.post("/api/v1/app/a/msg", {"eventType": "e", "payload": {"n": 1}})
        wait_until(lambda: len(receiver.at("/good")) >= 1, "the healthy endpoint gets its message")

        def bad_attempts():
            attempts = api.get("/api/v1/app/a/attempt/endpoint/bad").json()["data"]
            return attempts if attempts else None
        attempts = wait_until(bad_attempts, "an attempt recorded for the bad endpoint")
        assert attempts[0]["responseStatusCode"] == 0
        assert "port" in attempts[0]["response"], attempts[0]
        server.kill9()
        server = start(f"sqlite:{path}")
        api = API(server)
        api.post("/api/v1/app/a/msg", {"eventType": "e", "payload": {"n": 2}})
        wait_until(lambda: len(receiver.at("/good")) >= 2, "still delivering after kill -9 and a restart")
        assert server.proc.poll() is None
    finally:
        server.kill9()


def test_an_endpoint_whose_secrets_cannot_be_read_fails_alone_and_can_be_fixed(tmp_path, receiver):
    path = tmp_path / "herald.sqlite"
    server = start(f"sqlite:{path}")
    try:
        api = API(server)
        api.post("/api/v1/app", {"name": "a", "uid": "a"})
        broken = api.post("/api/v1/app/a/endpoint", {"url": receiver.base + "/broken", "uid": "broken"})
        api.post("/api/v1/app/a/endpoint", {"url": receiver.base + "/good", "uid": "good"})
    finally:
        server.stop()
    with sqlite3.connect(path) as db:  # as after a restore with another key: the sealed bytes do not open
        db.execute("UPDATE endpoints SET secrets = ? WHERE id = ?", (b"\x01not sealed with this key", broken["id"]))
    server = start(f"sqlite:{path}")
    try:
        api = API(server)
        for n in range(3):
            api.post("/api/v1/app/a/msg", {"eventType": "e", "payload": {"n": n}})
        wait_until(lambda: len(receiver.at("/good")) >= 3, "the healthy endpoint keeps flowing")

        def broken_attempts():
            attempts = api.get("/api/v1/app/a/attempt/endpoint/broken").json()["data"]
            return attempts if len(attempts) >= 3 else None
        attempts = wait_until(broken_attempts, "the broken endpoint's attempts are recorded")
        assert all("could not be read" in a["response"] or "unsealed" in a["response"] for a in attempts), attempts
        assert receiver.at("/broken") == [], "nothing is sent unsigned"
        server.kill9()
        server = start(f"sqlite:{path}")
        api = API(server)
        api.post("/api/v1/app/a/msg", {"eventType": "e", "payload": {"n": 3}})
        wait_until(lambda: len(receiver.at("/good")) >= 4, "still delivering after kill -9 and a restart")
        # The API still reads it, refuses to show the secret with a reason, and replaces it.
        assert api.get("/api/v1/app/a/endpoint/broken").status_code == 200
        assert api.get("/api/v1/app/a/endpoint").status_code == 200
        secret = api.get("/api/v1/app/a/endpoint/broken/secret")
        assert secret.status_code == 409 and secret.json()["code"] == "secret_unreadable", secret.text
        api.post("/api/v1/app/a/endpoint/broken/secret/rotate", {}, expect=(200, 204))
        assert api.get("/api/v1/app/a/endpoint/broken/secret").status_code == 200
        api.post("/api/v1/app/a/msg", {"eventType": "e", "payload": {"n": 99}})
        wait_until(lambda: any(json.loads(body)["n"] == 99 for _, body, _ in receiver.at("/broken")),
                   "a rotated secret heals it")
        assert api.session.delete(server.url + "/api/v1/app/a/endpoint/broken").status_code == 204
        assert server.proc.poll() is None
    finally:
        server.kill9()


def test_a_delivery_in_flight_at_three_kills_in_a_row_is_failed_with_the_reason(tmp_path, receiver):
    path = tmp_path / "herald.sqlite"
    server = start(f"sqlite:{path}")
    try:
        api = API(server)
        api.post("/api/v1/app", {"name": "a", "uid": "a"})
        api.post("/api/v1/app/a/endpoint", {"url": receiver.base + "/hang", "uid": "hang"})
        message = api.post("/api/v1/app/a/msg", {"eventType": "e", "payload": {"n": 1}})
        for kill in range(1, 4):
            wait_until(lambda: len(receiver.at("/hang")) >= kill, f"attempt {kill} in flight")
            server.kill9()  # the process dies with the delivery in flight
            server = start(f"sqlite:{path}")
        api = API(server)

        def failed():
            attempts = api.get(f"/api/v1/app/a/attempt/endpoint/hang").json()["data"]
            return attempts if attempts else None
        attempts = wait_until(failed, "the delivery is failed after the third interruption")
        assert "3 times in a row" in attempts[0]["response"], attempts[0]
        assert attempts[0]["status"] == 2  # fail
        msg = api.get(f"/api/v1/app/a/msg/{message['id']}/endpoint").json()["data"]
        assert msg[0]["status"] == 2, msg
        assert len(receiver.at("/hang")) == 3, "not sent a fourth time"
        # Recovering it tries again.
        api.post("/api/v1/app/a/endpoint/hang/recover", {"since": "2000-01-01T00:00:00Z"}, expect=(200, 202))
        wait_until(lambda: len(receiver.at("/hang")) >= 4, "recovered")
    finally:
        server.kill9()
