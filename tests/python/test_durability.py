"""Crash durability of `herald serve`: every 202 survives a `kill -9`, and Idempotency-Key still holds.

Publishes from several threads as fast as it can, SIGKILLs the server mid-stream, restarts it on the
same SQLite file (new port) and checks every accepted message, its two pending deliveries, and that
retrying requests with their original Idempotency-Key never creates a second message.
"""
import threading
import time

import requests

from herald_server import HeraldServer, list_all, new_token

THREADS = 8
KILL_AFTER = 500          # accepted messages before the kill
PUBLISH_DEADLINE = 120.0  # seconds to reach KILL_AFTER
HOOK = "http://127.0.0.1:9/hook"


class Publisher:
    """Publishes until told to stop or the server goes away; records what it knows of each request."""

    def __init__(self, server, app_id, index, stop):
        self.session = requests.Session()
        self.url = server.api(f"/api/v1/app/{app_id}/msg")
        self.headers = server.headers()
        self.index = index
        self.stop = stop
        self.accepted = []   # (key, body, message id) that got a 202
        self.unknown = []    # (key, body) whose outcome we never learned (the server died mid-request)
        self.rejected = []   # (key, status, text): any other answer is a failure of the test
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        i = 0
        while not self.stop.is_set():
            key = f"durable-{self.index}-{i}"
            body = {"eventType": "order.created", "payload": {"key": key, "n": i}}
            try:
                response = self.session.post(self.url, json=body, headers={**self.headers, "Idempotency-Key": key}, timeout=15)
            except requests.RequestException:
                self.unknown.append((key, body))
                return
            if response.status_code == 202:
                self.accepted.append((key, body, response.json()["id"]))
            else:
                self.rejected.append((key, response.status_code, response.text[:200]))
                return
            i += 1




def test_every_accepted_message_survives_kill_9(tmp_path):
    database = f"sqlite:{tmp_path / 'durable.sqlite'}"
    token = new_token()
    first = HeraldServer.start(database, token)
    second = None
    try:
        app = first.request("POST", "/api/v1/app", json={"name": "Durable", "uid": "durable"})
        assert app.status_code == 201, app.text
        app_id = app.json()["id"]
        endpoint_ids = []
        for i in range(2):
            ep = first.request("POST", f"/api/v1/app/{app_id}/endpoint", json={"url": f"{HOOK}/{i}"})
            assert ep.status_code == 201, ep.text
            endpoint_ids.append(ep.json()["id"])

        stop = threading.Event()
        publishers = [Publisher(first, app_id, n, stop) for n in range(THREADS)]
        for p in publishers:
            p.thread.start()
        deadline = time.monotonic() + PUBLISH_DEADLINE
        while sum(len(p.accepted) for p in publishers) < KILL_AFTER:
            assert time.monotonic() < deadline, f"only {sum(len(p.accepted) for p in publishers)} messages accepted in {PUBLISH_DEADLINE}s"
            assert not any(p.rejected for p in publishers), [p.rejected for p in publishers if p.rejected]
            time.sleep(0.01)
        first.kill9()  # while the publishers are still sending
        stop.set()
        for p in publishers:
            p.thread.join(timeout=30)
            assert not p.thread.is_alive(), "a publisher did not stop"

        accepted = [a for p in publishers for a in p.accepted]
        unknown = [u for p in publishers for u in p.unknown]
        rejected = [r for p in publishers for r in p.rejected]
        assert not rejected, rejected[:5]
        assert len(accepted) >= KILL_AFTER
        print(f"kill -9 after {len(accepted)} accepted messages, {len(unknown)} requests cut off")
        assert len({msg_id for _, _, msg_id in accepted}) == len(accepted), "two 202s carried the same message id"

        second = HeraldServer.start(database, token)

        session = requests.Session()
        headers = second.headers()
        lost, wrong, undelivered = [], [], []
        for key, body, msg_id in accepted:
            got = session.get(second.api(f"/api/v1/app/{app_id}/msg/{msg_id}"), params={"with_content": "true"}, headers=headers, timeout=15)
            if got.status_code != 200:
                lost.append((key, msg_id, got.status_code))
                continue
            message = got.json()
            if message["payload"] != body["payload"] or message["eventType"] != body["eventType"]:
                wrong.append((key, msg_id, message))
            dest = session.get(second.api(f"/api/v1/app/{app_id}/msg/{msg_id}/endpoint"), headers=headers, timeout=15)
            statuses = sorted((d["id"], d["status"]) for d in dest.json()["data"]) if dest.status_code == 200 else dest.status_code
            if statuses != sorted((e, 1) for e in endpoint_ids):
                undelivered.append((key, msg_id, statuses))
        assert not lost, f"{len(lost)} of {len(accepted)} accepted messages are gone after kill -9: {lost[:5]}"
        assert not wrong, wrong[:5]
        assert not undelivered, f"{len(undelivered)} messages lack their 2 pending deliveries: {undelivered[:5]}"

        # Retrying an accepted request with its Idempotency-Key returns the original message.
        for key, body, msg_id in [accepted[0], accepted[len(accepted) // 2], accepted[-1]]:
            again = second.request("POST", f"/api/v1/app/{app_id}/msg", json=body, headers={"Idempotency-Key": key})
            assert again.status_code == 202, again.text
            assert again.json()["id"] == msg_id, (key, msg_id, again.json())

        # Requests cut off by the kill: retried with their key they are stored exactly once, whether or
        # not the first attempt committed.
        retried = {}
        for key, body in unknown:
            again = second.request("POST", f"/api/v1/app/{app_id}/msg", json=body, headers={"Idempotency-Key": key})
            assert again.status_code == 202, again.text
            retried[key] = again.json()["id"]
            replay = second.request("POST", f"/api/v1/app/{app_id}/msg", json=body, headers={"Idempotency-Key": key})
            assert replay.json()["id"] == retried[key]

        messages = list_all(second, f"/api/v1/app/{app_id}/msg")
        ids = [m["id"] for m in messages]
        assert len(ids) == len(set(ids)), "the message list repeats an id"
        expected = {msg_id for _, _, msg_id in accepted} | set(retried.values())
        assert set(ids) == expected, (
            f"{len(set(ids) - expected)} messages stored that no request owns (a key was applied twice), "
            f"{len(expected - set(ids))} missing")

        stop_code = second.stop()
        assert stop_code == 0, second.stderr
    finally:
        first.kill9()
        if second is not None:
            second.kill9()
