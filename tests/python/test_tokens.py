"""Admin tokens (issue 13, item 7): `herald token list|create|revoke` on the database, the
`/api/v1/token` API, what `--token` does to earlier tokens, and `/metrics` behind `--metrics-token`."""
import json

import requests

from conftest import herald
from test_delivery_e2e import wait_until
from herald_server import HeraldServer, new_token



def token_cli(*args, database):
    result = herald("token", *args, "--database", database, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def status(server, token, path="/api/v1/app"):
    return requests.get(server.api(path), headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


def test_the_cli_creates_lists_and_revokes_tokens_that_a_running_server_honours(tmp_path):
    database = f"sqlite:{tmp_path / 'h.sqlite'}"
    server = HeraldServer.start(database)
    try:
        created = token_cli("create", "--name", "deploy-bot", "--expires-in", "30d", database=database)
        assert created["name"] == "deploy-bot" and created["scope"] == "admin" and created["expired"] is False
        assert created["token"].startswith("sk_herald_") and created["id"].startswith("tok_")
        assert created["expiresAt"] is not None

        listed = token_cli("list", database=database)
        mine = [t for t in listed if t["id"] == created["id"]]
        assert len(mine) == 1 and mine[0]["name"] == "deploy-bot" and mine[0]["expiresAt"] == created["expiresAt"]
        assert all("token" not in t and "hash" not in t for t in listed)
        assert created["token"] not in herald("token", "list", "--database", database).stdout
        assert {t["name"] for t in listed} == {"deploy-bot", "--token"}

        # The running server accepts the new token, and refuses it once revoked (within its 5 s cache).
        assert status(server, created["token"]) == 200
        assert token_cli("revoke", created["id"], database=database) == {"revoked": [created["id"]]}
        wait_until(lambda: status(server, created["token"]) == 401, "the revoked token is refused")
        assert status(server, server.token) == 200
        assert created["id"] not in {t["id"] for t in token_cli("list", database=database)}

        again = herald("token", "revoke", created["id"], "--database", database)
        assert again.returncode != 0 and "no admin token with id" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    finally:
        server.stop()


def test_revoke_all_except_keeps_one_and_recovers_access_without_a_token(tmp_path):
    database = f"sqlite:{tmp_path / 'h.sqlite'}"
    first = HeraldServer.start(database)
    first.stop()
    # A second start with another --token: the earlier one stays valid until revoked.
    second = HeraldServer.start(database)
    try:
        assert status(second, first.token) == 200, "--token adds a token; earlier ones stay valid"
        kept = token_cli("create", "--name", "operator", database=database)
        revoked = token_cli("revoke", "--all-except", kept["id"], database=database)["revoked"]
        assert len(revoked) == 2
        wait_until(lambda: status(second, first.token) == 401 and status(second, second.token) == 401,
                   "every other admin token is refused")
        assert status(second, kept["token"]) == 200
    finally:
        second.stop()


def test_the_cli_refuses_bad_input_with_one_line(tmp_path):
    missing = herald("token", "list", "--database", f"sqlite:{tmp_path / 'none.sqlite'}")
    assert missing.returncode != 0 and "no database at" in missing.stderr
    assert not (tmp_path / "none.sqlite").exists() and not (tmp_path / "none.sqlite.key").exists()
    database = f"sqlite:{tmp_path / 'h.sqlite'}"
    HeraldServer.start(database).stop()
    for args, needle in [(["create", "--name", "x", "--expires-in", "soon"], "--expires-in"),
                         (["create", "--name", ""], "--name"),
                         (["revoke"], "--all-except")]:
        result = herald("token", *args, "--database", database)
        assert result.returncode != 0 and needle in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_an_expired_token_is_refused(tmp_path):
    database = f"sqlite:{tmp_path / 'h.sqlite'}"
    server = HeraldServer.start(database)
    try:
        short = token_cli("create", "--name", "short", "--expires-in", "2s", database=database)
        assert status(server, short["token"]) == 200
        wait_until(lambda: status(server, short["token"]) == 401, "the token is refused once expired")
        listed = {t["id"]: t for t in token_cli("list", database=database)}
        assert listed[short["id"]]["expired"] is True
    finally:
        server.stop()


def test_the_token_api_and_the_cli_see_the_same_tokens(tmp_path):
    database = f"sqlite:{tmp_path / 'h.sqlite'}"
    server = HeraldServer.start(database)
    try:
        created = server.request("POST", "/api/v1/token", json={"name": "from-api"})
        assert created.status_code == 201, created.text
        body = created.json()
        assert {t["id"] for t in token_cli("list", database=database)} >= {body["id"]}
        assert server.request("DELETE", f"/api/v1/token/{body['id']}").status_code == 204
        assert status(server, body["token"]) == 401
    finally:
        server.stop()


def test_metrics_can_require_a_token(tmp_path):
    metrics_token = new_token()
    server = HeraldServer.start(f"sqlite:{tmp_path / 'h.sqlite'}", extra_args=["--metrics-token", metrics_token])
    try:
        bare = requests.get(server.api("/metrics"), timeout=10)
        assert bare.status_code == 401
        assert bare.headers["content-type"].startswith("application/json")
        assert bare.json()["code"] == "authentication_failed" and "--metrics-token" in bare.json()["detail"]
        assert status(server, "wrong-" + metrics_token, "/metrics") == 401
        assert status(server, server.token, "/metrics") == 401, "an admin token is not the metrics token"
        allowed = requests.get(server.api("/metrics"), headers={"Authorization": f"Bearer {metrics_token}"}, timeout=10)
        assert allowed.status_code == 200 and "herald_" in allowed.text
    finally:
        server.stop()
    # Without the setting /metrics stays open (Prometheus' usual scrape).
    open_server = HeraldServer.start(f"sqlite:{tmp_path / 'open.sqlite'}")
    try:
        assert requests.get(open_server.api("/metrics"), timeout=10).status_code == 200
    finally:
        open_server.stop()
