"""Delivery survives a crash: `herald serve` (API + dispatcher) is SIGKILLed while deliveries are in flight
to a slow receiver, restarted on the same SQLite file (new port), and must then deliver every accepted
message at least once and leave every delivery succeeded: nothing stays `sending` or pending.

At-least-once: a delivery the receiver had already read when the server died is sent again after the
restart; those duplicates are allowed and reported (counted by webhook-id).
"""
import json
import random
import threading
import time

import requests
from standardwebhooks import Webhook

from herald_server import HeraldServer, list_all, new_token
from test_delivery_e2e import DISPATCH_ARGS, ALLOW_LOOPBACK, Receiver, new_secret, wait_until

MESSAGES = 200
THREADS = 4
KILL_WHEN_RECEIVED = 40    # kill once the receiver has read this many requests ...
KILL_WHEN_IN_FLIGHT = 5    # ... and is holding at least this many unanswered (the sender opens ~8 per host)
PUBLISH_DEADLINE = 30.0
DRAIN_DEADLINE = 40.0      # after the restart


class Publisher(threading.Thread):
    """Publishes its share of messages through the raw API; records what each request got."""

    def __init__(self, server, app_id, numbers):
        super().__init__(daemon=True)
        self.url = server.api(f"/api/v1/app/{app_id}/msg")
        self.headers = server.headers()
        self.numbers = numbers
        self.accepted = {}   # msg id -> payload (202)
        self.unknown = []    # payloads whose outcome we never learned (the server died mid-request)
        self.rejected = []   # (n, status, text): any other answer fails the test

    def run(self):
        session = requests.Session()
        for n in self.numbers:
            payload = {"n": n, "kind": "crash-test", "pad": "x" * (n % 17)}
            try:
                # Not compact on purpose: the payload is delivered as the exact bytes it was published with.
                body = json.dumps({"eventType": "order.created", "payload": payload})
                response = session.post(self.url, data=body.encode(), headers=self.headers, timeout=15)
            except requests.RequestException:
                self.unknown.append(payload)
                return  # the server is gone: stop publishing
            if response.status_code == 202:
                self.accepted[response.json()["id"]] = payload
            else:
                self.rejected.append((n, response.status_code, response.text[:200]))
                return




def test_deliveries_in_flight_survive_kill_9(tmp_path):
    database = f"sqlite:{tmp_path / 'crash.sqlite'}"
    token = new_token()
    secret = new_secret()
    rng = random.Random(20261130)
    rng_lock = threading.Lock()

    def slow(_index):
        with rng_lock:
            return rng.uniform(0.3, 1.0)

    receiver = Receiver(delay=slow)
    servers = []
    try:
        first = HeraldServer.start(database, token, extra_args=DISPATCH_ARGS + ALLOW_LOOPBACK, role=None)
        servers.append(first)
        app = first.request("POST", "/api/v1/app", json={"name": "Crash", "uid": "crash"})
        assert app.status_code == 201, app.text
        app_id = app.json()["id"]
        ep = first.request("POST", f"/api/v1/app/{app_id}/endpoint", json={"url": receiver.url("/slow"), "secret": secret})
        assert ep.status_code == 201, ep.text
        endpoint_id = ep.json()["id"]

        publishers = [Publisher(first, app_id, range(i, MESSAGES, THREADS)) for i in range(THREADS)]
        for p in publishers:
            p.start()

        def ready_to_kill():
            with receiver.lock:
                received, in_flight = len(receiver.deliveries), receiver.in_flight
            return received >= KILL_WHEN_RECEIVED and in_flight >= KILL_WHEN_IN_FLIGHT

        wait_until(ready_to_kill, lambda: (f"{KILL_WHEN_RECEIVED} received with {KILL_WHEN_IN_FLIGHT} in flight; "
                                           f"received {len(receiver.all())}, in flight {receiver.in_flight}, "
                                           f"accepted {sum(len(p.accepted) for p in publishers)}"),
                   timeout=PUBLISH_DEADLINE, interval=0.01)
        with receiver.lock:
            received_at_kill, in_flight_at_kill = len(receiver.deliveries), receiver.in_flight
        first.kill9()
        killed_at = time.monotonic()
        for p in publishers:
            p.join(timeout=30)
            assert not p.is_alive(), "a publisher did not stop"

        accepted = {msg_id: payload for p in publishers for msg_id, payload in p.accepted.items()}
        unknown = [u for p in publishers for u in p.unknown]
        rejected = [r for p in publishers for r in p.rejected]
        assert not rejected, rejected[:5]
        assert sum(len(p.accepted) for p in publishers) == len(accepted), "two 202s carried the same message id"
        assert accepted, "no message was accepted before the kill"

        second = HeraldServer.start(database, token, extra_args=DISPATCH_ARGS + ALLOW_LOOPBACK, role=None)
        servers.append(second)
        restarted_at = time.monotonic()
        second_up_wall = time.time()

        def counts():
            per_id = {}
            for d in receiver.all():
                per_id[d.webhook_id] = per_id.get(d.webhook_id, 0) + 1
            return per_id

        def all_received():
            per_id = counts()
            return all(msg_id in per_id for msg_id in accepted)

        wait_until(all_received, lambda: (f"every accepted message received; missing "
                                          f"{len([m for m in accepted if m not in counts()])} of {len(accepted)}"),
                   timeout=DRAIN_DEADLINE, interval=0.05)
        received_all_at = time.monotonic()

        def stats():
            response = second.request("GET", f"/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats")
            assert response.status_code == 200, response.text
            return response.json()

        def drained():
            s = stats()
            return s if s["pending"] == 0 and s["sending"] == 0 else None

        remaining = max(1.0, DRAIN_DEADLINE - (time.monotonic() - restarted_at))
        final_stats = wait_until(drained, lambda: f"no pending or sending delivery; stats now {stats()}",
                                 timeout=remaining, interval=0.1)
        drained_at = time.monotonic()

        # Every accepted message: its one destination succeeded (status 0), nothing pending/sending/failed.
        session = requests.Session()
        headers = second.headers()
        not_success = []
        for msg_id in accepted:
            dest = session.get(second.api(f"/api/v1/app/{app_id}/msg/{msg_id}/endpoint"), headers=headers, timeout=15)
            assert dest.status_code == 200, (msg_id, dest.status_code, dest.text)
            statuses = [(d["id"], d["status"]) for d in dest.json()["data"]]
            if statuses != [(endpoint_id, 0)]:
                not_success.append((msg_id, statuses))
        assert not not_success, f"{len(not_success)} of {len(accepted)} accepted messages not delivered: {not_success[:5]}"
        # The endpoint's message list agrees (this also covers requests cut off by the kill that did commit).
        listed = list_all(second, f"/api/v1/app/{app_id}/endpoint/{endpoint_id}/msg")
        assert set(accepted) <= {m["id"] for m in listed}
        bad = [(m["id"], m["status"]) for m in listed if m["status"] != 0]
        assert not bad, f"messages listed for the endpoint not in status success: {bad[:10]}"
        assert final_stats["fail"] == 0 and final_stats["success"] == len(listed), final_stats

        # Every request the receiver got is a genuine, correctly signed delivery of a stored message.
        per_id = counts()
        stored = {m["id"] for m in listed}
        strangers = [msg_id for msg_id in per_id if msg_id not in stored]
        assert not strangers, f"deliveries with ids that are not stored messages: {strangers[:5]}"
        # A request the killed node was still writing arrives cut off (fewer bytes than its Content-Length):
        # that is not a delivery, the receiver drops it, and its message was delivered whole above. Only
        # the killed node can leave one, so each was read before the second node was up.
        with receiver.lock:
            cut_off = list(receiver.cut_off)
        late = [(d.webhook_id, d.received_at - second_up_wall) for d in cut_off if d.received_at > second_up_wall]
        assert not late, f"requests cut off after the restart (the second node's?): {late[:5]}"
        assert all(d.webhook_id in stored for d in cut_off), [d.webhook_id for d in cut_off]
        for delivery in receiver.all():
            Webhook(secret).verify(delivery.body, delivery.headers)
            if delivery.webhook_id in accepted:
                assert delivery.body == json.dumps(accepted[delivery.webhook_id]).encode(), (delivery.webhook_id, delivery.body)

        duplicates = {msg_id: n for msg_id, n in per_id.items() if n > 1}
        print(f"\ncrash test: {len(accepted)} accepted (+{len(unknown)} requests cut off by the kill, "
              f"{len(stored) - len(accepted)} of which committed); kill -9 with {received_at_kill} received and "
              f"{in_flight_at_kill} in flight at the receiver ({len(cut_off)} arrived cut off); after restart: {len(per_id)} distinct ids delivered, "
              f"{sum(per_id.values())} requests, {sum(n - 1 for n in duplicates.values())} duplicate deliveries "
              f"over {len(duplicates)} messages; restart took {restarted_at - killed_at:.2f}s, every accepted message "
              f"received {received_all_at - restarted_at:.2f}s after restart, drained (no pending/sending) "
              f"{drained_at - restarted_at:.2f}s after restart; endpoint stats {final_stats}")
    finally:
        for server in servers:
            server.kill9()
        receiver.stop()
