"""Shared fixtures: the herald binary and a running `herald listen`."""
import json
import os
import queue
import threading
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def herald_bin() -> str:
    path = os.environ.get("HERALD_BIN")
    if not path:
        bin_dir = subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        path = os.path.join(bin_dir, "herald")
    if not os.path.exists(path):
        pytest.fail(f"herald binary not found at {path}: run `swift build` first (scripts/test does)")
    return path


HERALD = herald_bin()


def herald(*args, input=None, env=None, timeout=30):
    """Runs `herald ARGS…` and returns the CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    full_env.pop("HERALD_WEBHOOK_SECRET", None)
    if env:
        full_env.update(env)
    return subprocess.run([HERALD, *args], input=input, capture_output=True, text=True, env=full_env, timeout=timeout)


class Listener:
    """`herald listen --json` on 127.0.0.1, a free port; reads one JSON line per request."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([HERALD, "listen", "--port", "0", "--json", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        first = self.next_request()
        assert first["event"] == "listening", first
        self.url = first["url"]

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_request(self, timeout=10):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no line from the listener within %ss" % timeout)
        if line is None:
            raise AssertionError("listener exited: " + self.proc.stderr.read())
        return json.loads(line)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def listener_factory():
    started = []

    def start(*args):
        listener = Listener(*args)
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.stop()
