"""The main key and secrets at rest: a start with the wrong key (or without the key file) is refused
with one line and changes nothing on disk; `herald key rotate` re-seals every secret so every endpoint
still delivers with a valid signature; no secret or token is in clear in the database, its WAL or
the key file, and all of them are created 0600.
"""
import base64
import hashlib
import json
import os
import secrets
import stat
import subprocess

import pytest
import requests

from conftest import HERALD
from herald_server import HeraldServer, new_token
from test_delivery_e2e import Receiver, check_delivery, new_secret, wait_until
from test_postgres_nodes import clean_env, new_main_key, pg_url, with_schema  # noqa: F401 (fixture)

DISPATCH = ["--retry-schedule", "1,1,1", "--request-timeout", "5", "--allow-network", "127.0.0.0/8"]


def herald_run(*args, env=None, timeout=60):
    return subprocess.run([HERALD, *args], env=clean_env(**(env or {})), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def serve_refused(database, env=None):
    """Runs `herald serve` expecting it to refuse to start; returns its stderr."""
    result = herald_run("serve", "--database", database, "--port", "0", "--token", new_token(), env=env, timeout=60)
    assert result.returncode != 0, f"herald serve started: {result.stdout!r} {result.stderr!r}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {result.stderr!r}"
    return lines[0]


def snapshot(directory):
    """Every file in the directory with its bytes' hash."""
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in sorted(os.listdir(directory))}


def post(server, path, body, key=None):
    headers = {"Idempotency-Key": key or secrets.token_hex(8)}
    # Compact JSON, as the SDKs send it (`check_delivery` compares the bytes delivered).
    response = server.request("POST", path, data=json.dumps(body, separators=(",", ":")), headers=headers)
    assert response.status_code in (200, 201, 202, 204), (path, response.status_code, response.text)
    return response.json() if response.content else None


def secret_of(server, app, endpoint):
    response = server.request("GET", f"/api/v1/app/{app}/endpoint/{endpoint}/secret")
    assert response.status_code == 200, response.text
    return response.json()["key"]


# A custom header that carries a credential of the receiver's: sealed at rest like the secrets.
AUTH_HEADER = {"Authorization": "Bearer hdr_" + secrets.token_hex(16)}


def make_endpoints(server, receiver):
    """Three endpoints: one with a given secret and a custom Authorization header, one whose secret
    was rotated (two secrets sign for a while), one with a generated secret. Returns {path: id}."""
    app = post(server, "/api/v1/app", {"name": "keys", "uid": "keys"})["id"]
    made = {}
    for path, secret in (("/given", new_secret()), ("/rotated", new_secret()), ("/generated", None)):
        body = {"url": receiver.url(path)}
        if secret:
            body["secret"] = secret
        if path == "/given":
            body["headers"] = AUTH_HEADER
        made[path] = post(server, f"/api/v1/app/{app}/endpoint", body)["id"]
    post(server, f"/api/v1/app/{app}/endpoint/{made['/rotated']}/secret/rotate", {"key": new_secret()})
    return app, made


def check_all_deliver(server, receiver, app, endpoints, secrets_by_path):
    """Publishes once; every endpoint gets it, signed with its secret (checked by standardwebhooks)."""
    payload = {"type": "key.check", "n": secrets.token_hex(4)}
    message = post(server, f"/api/v1/app/{app}/msg", {"eventType": "key.check", "payload": payload})
    for path in endpoints:
        got = wait_until(lambda: [d for d in receiver.at(path) if d.webhook_id == message["id"]],
                         f"a delivery of {message['id']} to {path}")
        check_delivery(got[0], secrets_by_path[path], message["id"], payload,
                       custom_headers=AUTH_HEADER if path == "/given" else None)


def check_after_rotation(database, receiver, app, endpoints, secrets_by_path, env=None):
    """Starts Herald on the rotated database: every endpoint has the secrets it had, and delivers."""
    server = HeraldServer.start(database, extra_args=DISPATCH, role=None, env=env)
    try:
        assert {path: secret_of(server, app, ep) for path, ep in endpoints.items()} == secrets_by_path
        check_all_deliver(server, receiver, app, endpoints, secrets_by_path)
    finally:
        server.stop()


def test_wrong_or_missing_main_key_is_refused_and_changes_nothing(tmp_path):
    database = f"sqlite:{tmp_path / 'herald.sqlite'}"
    server = HeraldServer.start(database)
    receiver = Receiver()
    try:
        make_endpoints(server, receiver)
    finally:
        server.stop()
        receiver.stop()
    before = snapshot(tmp_path)
    assert "herald.sqlite.key" in before

    line = serve_refused(database, env={"HERALD_MAIN_KEY": new_main_key()})
    assert "HERALD_MAIN_KEY is not the key" in line, line
    assert snapshot(tmp_path) == before

    os.rename(tmp_path / "herald.sqlite.key", tmp_path / "kept.key")
    line = serve_refused(database)
    assert "main key file" in line and "missing" in line, line
    assert not (tmp_path / "herald.sqlite.key").exists(), "a new key file was left beside the database"
    os.rename(tmp_path / "kept.key", tmp_path / "herald.sqlite.key")
    assert snapshot(tmp_path) == before

    # With its own key it starts, and nothing was lost.
    server = HeraldServer.start(database)
    try:
        assert len(server.request("GET", "/api/v1/app/keys/endpoint").json()["data"]) == 3
    finally:
        server.stop()


def test_key_rotation_with_the_key_file_keeps_every_endpoint_delivering(tmp_path):
    database = f"sqlite:{tmp_path / 'herald.sqlite'}"
    key_file = tmp_path / "herald.sqlite.key"
    receiver = Receiver()
    try:
        server = HeraldServer.start(database, extra_args=DISPATCH, role=None)
        try:
            app, endpoints = make_endpoints(server, receiver)
            secrets_by_path = {path: secret_of(server, app, ep) for path, ep in endpoints.items()}
            check_all_deliver(server, receiver, app, endpoints, secrets_by_path)
        finally:
            server.stop()
        old_key = key_file.read_text().strip()

        result = herald_run("key", "rotate", "--database", database)
        assert result.returncode == 0, result.stderr
        assert "3 endpoint(s)" in result.stdout, result.stdout
        new_key = key_file.read_text().strip()
        assert new_key != old_key and len(base64.b64decode(new_key)) == 32
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        assert not (tmp_path / "herald.sqlite.key.new").exists()

        line = serve_refused(database, env={"HERALD_MAIN_KEY": old_key})
        assert "HERALD_MAIN_KEY is not the key" in line, line

        check_after_rotation(database, receiver, app, endpoints, secrets_by_path)
    finally:
        receiver.stop()


def test_key_rotation_on_postgres_with_herald_main_key(pg_url):  # noqa: F811 (fixture)
    database = with_schema(pg_url)
    old_key, new_key = new_main_key(), new_main_key()
    receiver = Receiver()
    try:
        server = HeraldServer.start(database, extra_args=DISPATCH, role=None, env={"HERALD_MAIN_KEY": old_key})
        try:
            app, endpoints = make_endpoints(server, receiver)
            secrets_by_path = {path: secret_of(server, app, ep) for path, ep in endpoints.items()}
        finally:
            server.stop()

        refused = herald_run("key", "rotate", "--database", database, env={"HERALD_MAIN_KEY": old_key})
        assert refused.returncode != 0 and "--new-key is required" in refused.stderr, refused.stderr
        wrong = herald_run("key", "rotate", "--database", database, "--new-key", new_key,
                           env={"HERALD_MAIN_KEY": new_main_key()})
        assert wrong.returncode != 0 and "HERALD_MAIN_KEY is not the key" in wrong.stderr, wrong.stderr

        result = herald_run("key", "rotate", "--database", database, "--new-key", new_key, env={"HERALD_MAIN_KEY": old_key})
        assert result.returncode == 0, result.stderr
        assert "3 endpoint(s)" in result.stdout and "HERALD_MAIN_KEY" in result.stdout, result.stdout

        line = serve_refused(database, env={"HERALD_MAIN_KEY": old_key})
        assert "HERALD_MAIN_KEY is not the key" in line, line
        check_after_rotation(database, receiver, app, endpoints, secrets_by_path, env={"HERALD_MAIN_KEY": new_key})
    finally:
        receiver.stop()


def needles_of_secret(secret):
    """The forms in which a whsec_ secret could sit in a file: its text, its base64 part, its bytes."""
    body = secret.split("_", 1)[1]
    return [secret.encode(), body.encode(), base64.b64decode(body)]


def test_no_secret_or_token_in_clear_and_files_are_private(tmp_path):
    path = tmp_path / "herald.sqlite"
    admin = new_token()
    server = HeraldServer.start(f"sqlite:{path}", token=admin)
    receiver = Receiver()
    needles = {"admin token": [admin.encode()], "custom Authorization header": [AUTH_HEADER["Authorization"].encode()]}
    try:
        app, endpoints = make_endpoints(server, receiver)
        for endpoint in endpoints.values():
            # A rotation the server generates, then one the caller gives: every secret seen is a needle.
            post(server, f"/api/v1/app/{app}/endpoint/{endpoint}/secret/rotate", {})
            post(server, f"/api/v1/app/{app}/endpoint/{endpoint}/secret/rotate", {"key": new_secret()})
            needles[f"secret of {endpoint}"] = needles_of_secret(secret_of(server, app, endpoint))
        for n in range(3):
            access = post(server, f"/api/v1/auth/app-portal-access/{app}", {})
            needles[f"portal token {n}"] = [access["token"].encode()]
            # The portal token works, so it is a real one.
            assert server.request("GET", f"/api/v1/app/{app}/endpoint", token=access["token"]).status_code == 200
        # The replayed answer still carries the token: the sealed record opens.
        key = secrets.token_hex(8)
        first = post(server, f"/api/v1/auth/app-portal-access/{app}", {}, key=key)
        replay = server.request("POST", f"/api/v1/auth/app-portal-access/{app}", json={}, headers={"Idempotency-Key": key})
        assert replay.headers.get("idempotent-replayed") == "true" and replay.json()["token"] == first["token"]
        needles["replayed portal token"] = [first["token"].encode()]

        def files():
            return {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("herald.sqlite")}

        running = files()
        assert {"herald.sqlite", "herald.sqlite-wal", "herald.sqlite.key"} <= set(running), sorted(running)
        for name in running:
            assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600, (name, oct(os.stat(tmp_path / name).st_mode))
    finally:
        server.stop()
        receiver.stop()
    stopped = files()
    for state, contents in (("while running", running), ("after stop", stopped)):
        for name, data in contents.items():
            for what, forms in needles.items():
                for form in forms:
                    assert form not in data, f"{what} is in clear in {name} ({state})"


def test_key_rotate_bad_input_gets_one_line_and_changes_nothing(tmp_path):
    missing = herald_run("key", "rotate", "--database", f"sqlite:{tmp_path / 'none.sqlite'}")
    assert missing.returncode != 0 and "does not exist" in missing.stderr, missing.stderr
    assert not (tmp_path / "none.sqlite").exists() and not (tmp_path / "none.sqlite.key").exists()
    memory = herald_run("key", "rotate", "--database", "sqlite::memory:")
    assert memory.returncode != 0 and "in-memory" in memory.stderr, memory.stderr

    database = f"sqlite:{tmp_path / 'herald.sqlite'}"
    HeraldServer.start(database).stop()
    before = snapshot(tmp_path)
    malformed = herald_run("key", "rotate", "--database", database, "--new-key", "not-a-key")
    assert malformed.returncode != 0 and "--new-key" in malformed.stderr, malformed.stderr
    for result in (missing, memory, malformed):
        assert len([l for l in result.stderr.splitlines() if l.strip()]) == 1, result.stderr
    assert snapshot(tmp_path) == before
