"""`herald backup PATH`: a consistent copy of a live SQLite database under publishing load, with its main
key file; `herald serve --database sqlite:PATH` opens it, every message acknowledged (202) before the
backup began is there, and the endpoints deliver with valid signatures (the key came along)."""
import base64
import os
import stat
import threading
import time

import pytest
import requests
from standardwebhooks import Webhook

from conftest import herald
from herald_server import HeraldServer
from test_delivery_e2e import new_secret, receiver, wait_until  # noqa: F401 (receiver is a fixture)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_backup_under_load_restores_every_acknowledged_message(tmp_path, receiver):
    source = tmp_path / "live.sqlite"
    copy = tmp_path / "backup.sqlite"
    # The API only: deliveries stay pending, so the restored copy's dispatcher sends every one.
    server = HeraldServer.start(f"sqlite:{source}")
    secret = new_secret()
    app = server.request("POST", "/api/v1/app", json={"name": "backup"}).json()["id"]
    assert server.request("POST", f"/api/v1/app/{app}/endpoint", json={"url": receiver.url("/restored"), "secret": secret}).status_code == 201

    acknowledged = []          # (monotonic time the 202 arrived, message id)
    failures = []
    stop = threading.Event()

    def publish(worker):
        session = requests.Session()
        index = 0
        while not stop.is_set():
            response = session.post(server.api(f"/api/v1/app/{app}/msg"), headers=server.headers(), timeout=15,
                                    json={"eventType": "backup.tick", "payload": {"worker": worker, "i": index, "pad": "x" * 500}})
            if response.status_code == 202:
                acknowledged.append((time.monotonic(), response.json()["id"]))
            else:
                failures.append((response.status_code, response.text))
            index += 1

    threads = [threading.Thread(target=publish, args=(n,), daemon=True) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(acknowledged) >= 200, "200 publishes acknowledged before the backup")
        began = time.monotonic()
        result = herald("backup", str(copy), "--database", f"sqlite:{source}", timeout=60)
        assert result.returncode == 0, result.stderr
        assert "Backed up" in result.stdout and str(copy) + ".key" in result.stdout
        wait_until(lambda: len(acknowledged) >= len([a for a in acknowledged if a[0] < began]) + 50,
                   "publishing went on during and after the backup")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        server.stop()
    assert not failures, failures[:3]
    before = {msg for at, msg in acknowledged if at < began}
    assert len(before) >= 200

    assert mode(copy) == 0o600
    assert mode(str(copy) + ".key") == 0o600
    assert open(str(copy) + ".key", "rb").read() == open(str(source) + ".key", "rb").read()

    restored = HeraldServer.start(f"sqlite:{copy}", token=server.token, role=None,
                                  extra_args=["--allow-network", "127.0.0.0/8", "--retry-schedule", "1,1,2"])
    try:
        missing = [msg for msg in before if restored.request("GET", f"/api/v1/app/{app}/msg/{msg}").status_code != 200]
        assert not missing, f"{len(missing)} of {len(before)} acknowledged messages are not in the backup"
        # Every endpoint delivers with a valid signature: the key file came along.
        wait_until(lambda: before <= {d.webhook_id for d in receiver.at("/restored")},
                   lambda: f"deliveries of the {len(before)} acknowledged messages; got {len(receiver.at('/restored'))}", timeout=60)
        verifier = Webhook(secret)
        for delivery in receiver.at("/restored"):
            verifier.verify(delivery.body, delivery.headers)
        assert restored.proc.poll() is None
    finally:
        restored.stop()


def test_backup_refuses_to_overwrite_without_force_and_other_errors(tmp_path):
    source = tmp_path / "live.sqlite"
    server = HeraldServer.start(f"sqlite:{source}")
    try:
        app = server.request("POST", "/api/v1/app", json={"name": "one"}).json()["id"]
        copy = tmp_path / "copy.sqlite"
        assert herald("backup", str(copy), "--database", f"sqlite:{source}").returncode == 0

        refused = herald("backup", str(copy), "--database", f"sqlite:{source}")
        assert refused.returncode != 0
        assert len(refused.stderr.strip().splitlines()) == 1 and "--force" in refused.stderr, refused.stderr

        server.request("POST", "/api/v1/app", json={"name": "two"})
        forced = herald("backup", str(copy), "--database", f"sqlite:{source}", "--force")
        assert forced.returncode == 0, forced.stderr

        # HERALD_DATABASE picks the source, as for serve.
        env_copy = tmp_path / "env.sqlite"
        assert herald("backup", str(env_copy), env={"HERALD_DATABASE": f"sqlite:{source}"}).returncode == 0
        assert os.path.exists(env_copy)
    finally:
        server.stop()
    restored = HeraldServer.start(f"sqlite:{copy}", token=server.token)
    try:
        names = {a["name"] for a in restored.request("GET", "/api/v1/app").json()["data"]}
        assert names == {"one", "two"} and app
    finally:
        restored.stop()

    # With HERALD_MAIN_KEY the key is not a file: nothing to copy, and the copy says so.
    keyed = herald("backup", str(tmp_path / "keyed.sqlite"), "--database", f"sqlite:{source}",
                   env={"HERALD_MAIN_KEY": base64.b64encode(b"k" * 32).decode()})
    assert keyed.returncode == 0 and "HERALD_MAIN_KEY" in keyed.stdout
    assert not os.path.exists(tmp_path / "keyed.sqlite.key")

    for args, words in [
        (["--database", "postgres://herald@127.0.0.1:5432/herald"], "pg_dump"),
        (["--database", f"sqlite:{tmp_path / 'missing.sqlite'}"], "does not exist"),
        (["--database", "sqlite::memory:"], "in-memory"),
        (["--database", "mysql://x"], "--database"),
    ]:
        result = herald("backup", str(tmp_path / "out.sqlite"), *args)
        assert result.returncode != 0, (args, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (args, result.stderr)
    assert not os.path.exists(tmp_path / "missing.sqlite"), "a missing source is not created"
    assert not os.path.exists(tmp_path / "out.sqlite")
