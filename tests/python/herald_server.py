"""Runs `herald serve` for the API tests: a temp SQLite file, a random admin token, port 0.

Usage:
    server = HeraldServer.start(database=f"sqlite:{path}", token=token)
    client = server.client()          # an official svix.Svix pointed at the server
    server.kill9()                    # or server.stop() (SIGTERM, then waits)
"""
import os
import queue
import re
import secrets
import signal
import subprocess
import threading
import time

import pytest
import requests

from conftest import HERALD

LISTENING = re.compile(r"^Herald listening on (http://127\.0\.0\.1:(\d+))\s*$")
WORKER_STARTED = re.compile(r"^Herald worker started \(no API\)\s*$")  # `--role worker`: no socket, no URL
START_DEADLINE = 60.0  # seconds: migrations on a cold SQLite file are fast; this only bounds a hang


def new_token() -> str:
    return "herald_test_" + secrets.token_urlsafe(24)


class HeraldServer:
    """One `herald serve` process; its stdout is pumped into a queue, stderr kept for diagnostics."""

    def __init__(self, database: str, token: str, extra_args=(), role: str = "api", env=None):
        self.database = database
        self.role = role
        self.token = token
        self.stdout_lines = []
        self._lines = queue.Queue()
        self._stderr = []
        flags = ["--token", token] if token is not None else []
        if role:
            # `--role api`: the API without the dispatcher, so deliveries stay pending and attempt lists
            # stay empty however fast the machine is (the tests here are about the API and the store).
            flags += ["--role", role]
        self.proc = subprocess.Popen(
            [HERALD, "serve", "--database", database, "--host", "127.0.0.1", "--port", "0", *flags, *extra_args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            # No inherited HERALD_* setting leaks in; `env` (e.g. HERALD_MAIN_KEY) is added on top.
            env={**{k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}, **(env or {})},
        )
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        self.url = None
        self.port = None

    @classmethod
    def start(cls, database: str, token: str = None, extra_args=(), deadline: float = START_DEADLINE,
              without_token: bool = False, role: str = "api", env=None) -> "HeraldServer":
        """Starts and waits for the listening line. `without_token` passes no --token (self.token is then None);
        `role=None` passes no --role (the server's default: API and dispatcher); `role="worker"` waits for the
        worker's start line instead (url and port stay None). `env` adds environment variables (HERALD_MAIN_KEY)."""
        server = cls(database, None if without_token else (token or new_token()), extra_args, role, env)
        try:
            server._wait_listening(deadline)
        except BaseException:
            server.kill9()
            raise
        return server

    def _pump_stdout(self):
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self):
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def _wait_listening(self, deadline: float):
        end = time.monotonic() + deadline
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"herald serve did not print its listening line within {deadline}s; "
                                     f"stdout so far {self.stdout_lines!r}, stderr {self.stderr!r}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait(timeout=10)
                raise AssertionError(f"herald serve exited with {code} before listening; "
                                     f"stdout {self.stdout_lines!r}, stderr {self.stderr!r}")
            self.stdout_lines.append(line)
            match = LISTENING.match(line)
            if match:
                self.url = match.group(1)
                self.port = int(match.group(2))
                return
            if self.role == "worker" and WORKER_STARTED.match(line):
                return

    # Clients

    def client(self, token: str = None, timeout: float = 15.0):
        from svix.api import Svix, SvixOptions
        # No client-side retries: a 5xx must show up as the failure it is, not be papered over.
        return Svix(token or self.token, SvixOptions(server_url=self.url, retry_schedule=[], timeout=timeout))

    def api(self, path: str) -> str:
        return self.url + path

    def headers(self, token: str = None, **extra) -> dict:
        h = {"Authorization": f"Bearer {token or self.token}", "Content-Type": "application/json"}
        h.update(extra)
        return h

    def request(self, method: str, path: str, token: str = None, headers=None, timeout: float = 15.0, **kwargs):
        h = self.headers(token)
        if headers:
            h.update(headers)
        return requests.request(method, self.api(path), headers=h, timeout=timeout, **kwargs)

    # Lifecycle

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not stop in time (and report that)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"herald serve did not exit within {timeout}s of SIGTERM")

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def server_factory(tmp_path):
    """Starts servers on demand (each on its own SQLite file unless `database` is given); stops them all after."""
    started = []

    def start(database: str = None, token: str = None, extra_args=(), role: str = "api"):
        database = database or f"sqlite:{tmp_path / ('herald-%d.sqlite' % len(started))}"
        server = HeraldServer.start(database, token, extra_args, role=role)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            try:
                server.stop()
            except AssertionError:
                pass


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One server for a whole module; tests isolate themselves with fresh applications."""
    path = tmp_path_factory.mktemp("herald") / "herald.sqlite"
    server = HeraldServer.start(f"sqlite:{path}")
    yield server
    try:
        server.stop()  # a clean SIGTERM exit is asserted by a test of its own
    except AssertionError:
        pass


def list_all(server, path, limit=250):
    """Every item of a paged listing, following `iterator` until `done`."""
    items, iterator = [], None
    for _ in range(1000):
        params = {"limit": limit, **({"iterator": iterator} if iterator else {})}
        response = server.request("GET", path, params=params)
        assert response.status_code == 200, (path, response.status_code, response.text)
        page = response.json()
        items.extend(page["data"])
        if page["done"]:
            return items
        iterator = page["iterator"]
    raise AssertionError("pagination does not terminate")
