"""`herald serve` as a process: settings, first-start token, secrets at rest, clean shutdown."""
import os
import re
import signal
import stat
import subprocess
import tempfile

import pytest
import requests

from conftest import HERALD, herald


def start(*args, env=None):
    full_env = dict(os.environ)
    full_env.pop("HERALD_MAIN_KEY", None)
    if env:
        full_env.update(env)
    proc = subprocess.Popen([HERALD, "serve", "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    lines = []
    while True:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("serve exited: " + proc.stderr.read())
        lines.append(line.rstrip("\n"))
        if line.startswith("Herald listening on "):
            return proc, lines, line.split()[-1]


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "--port"),
    (["--database", "mysql://x"], "--database"),
    (["--database", "sqlite:/nonexistent-dir/h.sqlite"], "/nonexistent-dir"),
    (["--role", "boss"], "--role"),
    (["--retry-schedule", "5,abc"], "--retry-schedule"),
    (["--request-timeout", "-1"], "--request-timeout"),
    (["--lease", "soon"], "--lease"),
    (["--request-timeout", "30", "--lease", "50"], "twice the request timeout"),
    (["--database", "postgres:///no-host"], "no host"),
    (["--database", "postgres://db.internal/h?sslmode=sometimes"], "sslmode"),
    (["--allow-network", "10.0.0.0/99"], "--allow-network"),
    (["--token", "short"], "--token"),
    (["--delivery-concurrency", "0"], "--delivery-concurrency"),
    (["--endpoint-concurrency", "many"], "--endpoint-concurrency"),
])
def test_a_bad_setting_is_one_line_and_a_nonzero_exit(args, message):
    with tempfile.TemporaryDirectory() as directory:
        result = subprocess.run([HERALD, "serve", "--database", f"sqlite:{directory}/h.sqlite", *args], capture_output=True, text=True, timeout=30, cwd=directory)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert message in lines[0]


def test_environment_variables_are_used_when_no_flag_is_given():
    with tempfile.TemporaryDirectory() as directory:
        result = subprocess.run([HERALD, "serve"], capture_output=True, text=True, timeout=30, cwd=directory,
                                env={**os.environ, "HERALD_PORT": "notaport"})
        assert result.returncode != 0 and "HERALD_PORT" in result.stderr
        proc, _, url = start(env={"HERALD_DATABASE": f"sqlite:{directory}/env.sqlite", "HERALD_TOKEN": "env-token-123"})
        try:
            assert requests.get(url + "/api/v1/app", headers={"Authorization": "Bearer env-token-123"}, timeout=10).status_code == 200
            assert os.path.exists(f"{directory}/env.sqlite")
        finally:
            stop(proc)


def test_first_start_prints_an_admin_token_once_and_it_works():
    with tempfile.TemporaryDirectory() as directory:
        database = f"sqlite:{directory}/h.sqlite"
        proc, lines, url = start("--database", database)
        try:
            token_lines = [l for l in lines if l.startswith("Admin token")]
            assert len(token_lines) == 1
            token = token_lines[0].split()[-1]
            assert requests.get(url + "/api/v1/app", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
        finally:
            assert stop(proc) == 0
        proc, lines, url = start("--database", database)
        try:
            assert not any(l.startswith("Admin token") for l in lines)
            assert requests.get(url + "/api/v1/app", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
        finally:
            stop(proc)
        # The token is stored only as a hash.
        with open(f"{directory}/h.sqlite", "rb") as handle:
            data = handle.read()
        for name in os.listdir(directory):
            with open(os.path.join(directory, name), "rb") as handle:
                assert token.encode() not in handle.read()


def test_endpoint_secrets_are_encrypted_at_rest_with_a_0600_key_file():
    secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    raw_key = b"ABCDEFGHIJKLMNOPQRSTUVWX"
    with tempfile.TemporaryDirectory() as directory:
        proc, _, url = start("--database", f"sqlite:{directory}/h.sqlite", "--token", "admin-token-1")
        headers = {"Authorization": "Bearer admin-token-1"}
        try:
            app = requests.post(url + "/api/v1/app", json={"name": "A"}, headers=headers, timeout=10).json()
            created = requests.post(f"{url}/api/v1/app/{app['id']}/endpoint", json={"url": "https://example.com", "secret": secret}, headers=headers, timeout=10)
            assert created.status_code == 201
        finally:
            assert stop(proc) == 0
        key_file = f"{directory}/h.sqlite.key"
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        for name in os.listdir(directory):
            with open(os.path.join(directory, name), "rb") as handle:
                content = handle.read()
            assert raw_key not in content and secret.encode() not in content, name
        # Restarted with the key file, the secret reads back.
        proc, _, url = start("--database", f"sqlite:{directory}/h.sqlite", "--token", "admin-token-1")
        try:
            got = requests.get(f"{url}/api/v1/app/{app['id']}/endpoint/{created.json()['id']}/secret", headers=headers, timeout=10)
            assert got.json()["key"] == secret
        finally:
            stop(proc)


def test_main_key_from_the_environment_and_a_wrong_one_is_refused_clearly():
    with tempfile.TemporaryDirectory() as directory:
        bad = subprocess.run([HERALD, "serve", "--database", f"sqlite:{directory}/h.sqlite"], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "HERALD_MAIN_KEY": "not-a-key"})
        assert bad.returncode != 0 and "HERALD_MAIN_KEY" in bad.stderr
        key = "A" * 43 + "="
        proc, _, url = start("--database", f"sqlite:{directory}/h.sqlite", "--token", "admin-token-1", env={"HERALD_MAIN_KEY": key})
        try:
            assert requests.get(url + "/api/v1/health", timeout=10).status_code == 204
        finally:
            stop(proc)
        assert not os.path.exists(f"{directory}/h.sqlite.key")


def test_sigterm_shuts_down_cleanly():
    with tempfile.TemporaryDirectory() as directory:
        proc, _, url = start("--database", f"sqlite:{directory}/h.sqlite", "--token", "admin-token-1")
        assert requests.get(url + "/api/v1/health", timeout=10).status_code == 204
        assert stop(proc) == 0
