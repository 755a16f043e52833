"""Message retention: `herald serve --message-retention 4s --retention-interval 1s` deletes whole messages
(with their deliveries and attempts) once they are older than the retention; a freshly published message
is there and delivered. Bad retention settings stop the server with one line."""

import pytest
from standardwebhooks import Webhook

from conftest import herald
from herald_server import HeraldServer
from test_delivery_e2e import new_secret, receiver, wait_until  # noqa: F401 (receiver is a fixture)

RETENTION_ARGS = ["--message-retention", "4s", "--retention-interval", "1s", "--allow-network", "127.0.0.0/8",
                  "--retry-schedule", "1,1,2"]


def test_old_messages_disappear_fresh_ones_stay_and_are_delivered(tmp_path, receiver):
    server = HeraldServer.start(f"sqlite:{tmp_path / 'retention.sqlite'}", extra_args=RETENTION_ARGS, role=None)
    try:
        secret = new_secret()
        app = server.request("POST", "/api/v1/app", json={"name": "retention"}).json()["id"]
        endpoint = server.request("POST", f"/api/v1/app/{app}/endpoint",
                                  json={"url": receiver.url("/kept"), "secret": secret}).json()["id"]
        old = []
        for index in range(5):
            response = server.request("POST", f"/api/v1/app/{app}/msg",
                                      json={"eventType": "old.event", "eventId": f"old-{index}", "payload": {"i": index}})
            assert response.status_code == 202, response.text
            old.append(response.json()["id"])
        receiver.wait_for("/kept", 5)
        wait_until(lambda: len(server.request("GET", f"/api/v1/app/{app}/attempt/endpoint/{endpoint}").json()["data"]) == 5,
                   "five attempts recorded")

        def all_gone():
            return all(server.request("GET", f"/api/v1/app/{app}/msg/{msg}").status_code == 404 for msg in old)
        wait_until(all_gone, "the old messages answer 404", timeout=30)
        for msg in old:
            assert server.request("GET", f"/api/v1/app/{app}/msg/{msg}").json()["code"] == "not_found"
            assert server.request("GET", f"/api/v1/app/{app}/attempt/msg/{msg}").status_code == 404, "its attempts went with it"
        assert server.request("GET", f"/api/v1/app/{app}/msg/old-0").status_code == 404, "by eventId too"
        listed = server.request("GET", f"/api/v1/app/{app}/msg").json()["data"]
        assert not {m["id"] for m in listed} & set(old)
        assert server.request("GET", f"/api/v1/app/{app}/attempt/endpoint/{endpoint}").json()["data"] == []

        # A fresh message is stored, listed and delivered with a valid signature.
        response = server.request("POST", f"/api/v1/app/{app}/msg", json={"eventType": "new.event", "payload": {"fresh": True}})
        assert response.status_code == 202, response.text
        fresh = response.json()["id"]
        assert server.request("GET", f"/api/v1/app/{app}/msg/{fresh}").status_code == 200
        assert fresh in {m["id"] for m in server.request("GET", f"/api/v1/app/{app}/msg").json()["data"]}
        delivery = wait_until(lambda: next((d for d in receiver.at("/kept") if d.webhook_id == fresh), None), "the fresh delivery")
        Webhook(secret).verify(delivery.body, delivery.headers)
        # ...and, once past the retention, it goes too; the server keeps running throughout.
        wait_until(lambda: server.request("GET", f"/api/v1/app/{app}/msg/{fresh}").status_code == 404, "the fresh one expires", timeout=30)
        assert server.proc.poll() is None
    finally:
        server.stop()


@pytest.mark.parametrize("flag,value", [
    ("--message-retention", "3x"), ("--message-retention", "0"), ("--message-retention", "-5d"), ("--message-retention", "d"),
    ("--retention-interval", "0"), ("--retention-interval", "soon"),
])
def test_bad_retention_settings_are_refused_with_one_line(tmp_path, flag, value):
    result = herald("serve", "--database", f"sqlite:{tmp_path / 'x.sqlite'}", "--port", "0", flag, value, timeout=30)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], result.stderr
    assert not (tmp_path / "x.sqlite").exists(), "nothing is created on a bad setting"


def test_retention_from_the_environment(tmp_path):
    result = herald("serve", "--database", f"sqlite:{tmp_path / 'x.sqlite'}", "--port", "0",
                    env={"HERALD_MESSAGE_RETENTION": "ninety"}, timeout=30)
    assert result.returncode != 0 and "HERALD_MESSAGE_RETENTION" in result.stderr
