"""A full disk: with the SQLite file capped (`--sqlite-max-pages`, PRAGMA max_page_count), publishes get
503 `storage_full` naming the cause once it is full; everything stored before stays readable, the
process keeps running, the dispatcher keeps its deliveries, and once space is freed (an application
deleted through the API) publishes succeed again and deliveries go on, without a restart."""
import secrets

from standardwebhooks import Webhook

from herald_server import HeraldServer
from test_delivery_e2e import new_secret, receiver, wait_until  # noqa: F401 (receiver is a fixture)

MAX_PAGES = 400  # 1.6 MB of 4 KiB pages


def test_full_database_answers_503_keeps_everything_and_recovers(tmp_path, receiver):
    server = HeraldServer.start(f"sqlite:{tmp_path / 'full.sqlite'}", role=None,
                                extra_args=["--sqlite-max-pages", str(MAX_PAGES), "--allow-network", "127.0.0.0/8",
                                            "--retry-schedule", "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1"])
    try:
        secret = new_secret()
        live = server.request("POST", "/api/v1/app", json={"name": "live", "uid": "live"}).json()["id"]
        assert server.request("POST", f"/api/v1/app/{live}/endpoint",
                              json={"url": receiver.url("/live"), "secret": secret}).status_code == 201
        bulk = server.request("POST", "/api/v1/app", json={"name": "bulk", "uid": "bulk"}).json()["id"]

        # A live message whose receiver fails until the end: its retries run through the full period.
        receiver.script("/live", [500] * 10_000)
        pending = server.request("POST", f"/api/v1/app/{live}/msg", json={"eventType": "live.event", "payload": {"n": "pending"}})
        assert pending.status_code == 202
        pending_id = pending.json()["id"]
        receiver.wait_for("/live", 1)

        stored = {}
        refusal = None
        for index in range(2000):
            payload = {"i": index, "pad": secrets.token_hex(4000)}
            response = server.request("POST", f"/api/v1/app/{bulk}/msg", json={"eventType": "bulk.event", "payload": payload})
            if response.status_code == 202:
                stored[response.json()["id"]] = payload
                continue
            refusal = response
            break
        assert refusal is not None, "the capped database never filled"
        assert refusal.status_code == 503, refusal.text
        body = refusal.json()
        assert body["code"] == "storage_full" and "full" in body["detail"], body
        assert refusal.headers.get("retry-after")
        assert len(stored) >= 20, "the cap left room for some messages first"

        # Full: more publishes are refused the same way, reads all work, the process is alive.
        again = server.request("POST", f"/api/v1/app/{live}/msg", json={"eventType": "live.event", "payload": {"pad": "y" * 40000}})
        assert again.status_code == 503 and again.json()["code"] == "storage_full"
        for msg, payload in stored.items():
            got = server.request("GET", f"/api/v1/app/{bulk}/msg/{msg}")
            assert got.status_code == 200 and got.json()["payload"] == payload
        assert server.request("GET", f"/api/v1/app/{live}/msg/{pending_id}").status_code == 200
        assert server.proc.poll() is None

        # Space returns: the bulk application is deleted (its pages are free for reuse).
        deleted = server.request("DELETE", f"/api/v1/app/{bulk}")
        assert deleted.status_code == 204, deleted.text
        receiver.script("/live", [])  # the receiver recovers too
        fresh = server.request("POST", f"/api/v1/app/{live}/msg", json={"eventType": "live.event", "payload": {"n": "fresh"}})
        assert fresh.status_code == 202, fresh.text
        fresh_id = fresh.json()["id"]

        verifier = Webhook(secret)
        for msg in (pending_id, fresh_id):
            delivery = wait_until(lambda: next((d for d in receiver.at("/live") if d.webhook_id == msg and d.status == 200), None),
                                  f"a successful delivery of {msg}", timeout=30)
            verifier.verify(delivery.body, delivery.headers)
        # The pending message's success is recorded (its attempts were not lost with the full disk).
        wait_until(lambda: any(a["status"] == 0 for a in server.request("GET", f"/api/v1/app/{live}/attempt/msg/{pending_id}").json()["data"]),
                   "the successful attempt recorded", timeout=30)
        assert server.proc.poll() is None
    finally:
        server.stop()
