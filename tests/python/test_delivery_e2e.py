"""End to end delivery: `herald serve` (API + dispatcher) driven by the official Svix SDK, delivering to a
real HTTP receiver in this process, every delivery checked with the official `standardwebhooks` package.

The receiver listens on 127.0.0.1 port 0 and answers each request with a scripted status (per URL path,
so one receiver serves several endpoints). Servers run with `--retry-schedule 1,1,2` so a failed
delivery is retried within seconds; no test answers 429 or times out (those wait >= 60 s).

Waits poll a condition with a deadline. The only quiet periods are the ones a negative claim needs
("no retry follows"): they last longer than the largest scheduled retry delay (1 s + 20 % jitter).
"""
import base64
import http.server
import json
import secrets
import signal
import subprocess
import socket
import threading
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from svix.api import (
    ApplicationIn,
    EndpointHeadersIn,
    EndpointIn,
    EndpointPatch,
    EndpointSecretRotateIn,
    MessageAttemptListByEndpointOptions,
    MessageAttemptTriggerType,
    MessageIn,
    MessageStatus,
)

from herald_server import HeraldServer, new_token

RETRY_SCHEDULE = "1,1,2"
DISPATCH_ARGS = ["--retry-schedule", RETRY_SCHEDULE, "--request-timeout", "5"]
ALLOW_LOOPBACK = ["--allow-network", "127.0.0.0/8"]
QUIET = 3.0        # seconds: longer than the first retry delay (1 s + 20 % jitter) with a wide margin
DEADLINE = 20.0    # seconds for any awaited condition
FRESH = 10         # seconds: webhook-timestamp vs the receiver's clock


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def wait_until(condition, what, timeout=DEADLINE, interval=0.05):
    """Polls `condition()` until it returns something truthy (returned) or the deadline passes (fails with `what`)."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= end:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for: {detail}")
        time.sleep(interval)


# The receiver

class Delivery:
    """One request the receiver got: everything needed to verify it, and what it was answered."""

    def __init__(self, method, path, header_pairs, body, received_at, status, answer):
        self.method = method
        self.path = path
        self.header_pairs = header_pairs               # as on the wire, in order
        self.headers = {k.lower(): v for k, v in header_pairs}
        self.body = body                               # raw bytes
        self.received_at = received_at                 # time.time() when the body was read
        self.status = status                           # what the receiver answered
        self.answer = answer                           # the response body it sent

    @property
    def webhook_id(self):
        return self.headers.get("webhook-id")

    def __repr__(self):
        return f"<{self.method} {self.path} id={self.webhook_id} -> {self.status}>"


class Receiver:
    """An HTTP/1.1 server on 127.0.0.1:0 in a thread. Records every request; answers per path from a script
    (a list of statuses, one per request to that path, then `default`); `delay(path_index)` may slow answers."""

    def __init__(self, default=200, delay=None):
        self.default = default
        self.delay = delay
        self.scripts = {}
        self.deliveries = []
        self.cut_off = []                              # requests whose body never fully arrived
        self.in_flight = 0
        self.lock = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                receiver._handle(self)

            do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path):
        return self.base + path

    def script(self, path, statuses):
        with self.lock:
            self.scripts[path] = list(statuses)

    def _read_body(self, handler):
        """The body, and whether all of it arrived: a sender killed mid-request leaves it short."""
        if handler.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                line = handler.rfile.readline()
                if not line.strip():
                    return b"".join(chunks), False
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks), True
                chunk = handler.rfile.read(size)
                chunks.append(chunk)
                if len(chunk) < size:
                    return b"".join(chunks), False
                handler.rfile.readline()
        declared = int(handler.headers.get("content-length", "0"))
        body = handler.rfile.read(declared)
        return body, len(body) == declared

    def _handle(self, handler):
        try:
            body, complete = self._read_body(handler)
        except (ConnectionResetError, ValueError):
            body, complete = b"", False  # reset by the sender, or a chunk size line cut in two
        received_at = time.time()
        if not complete:
            # Not a delivery: the sender died before the whole body arrived (a real receiver's
            # framework would drop it too). Kept apart, for tests that kill the sender.
            with self.lock:
                self.cut_off.append(Delivery(handler.command, handler.path, list(handler.headers.items()), body,
                                             received_at, None, None))
                self.lock.notify_all()
            handler.close_connection = True
            return
        with self.lock:
            script = self.scripts.get(handler.path)
            status = script.pop(0) if script else self.default
            index = len(self.deliveries)
            answer = f"answer-{index}-{status}"
            delivery = Delivery(handler.command, handler.path, list(handler.headers.items()), body, received_at, status, answer)
            self.deliveries.append(delivery)
            self.in_flight += 1
            self.lock.notify_all()
        try:
            if self.delay:
                time.sleep(self.delay(index))
            data = answer.encode()
            handler.send_response(status)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the sender went away (killed) mid-answer
        finally:
            with self.lock:
                self.in_flight -= 1
                self.lock.notify_all()

    def at(self, path):
        with self.lock:
            return [d for d in self.deliveries if d.path == path]

    def all(self):
        with self.lock:
            return list(self.deliveries)

    def wait_for(self, path, count, timeout=DEADLINE):
        return wait_until(lambda: (lambda got: got if len(got) >= count else None)(self.at(path)),
                          lambda: f"{count} requests at {path}; got {self.at(path)}", timeout)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


# Fixtures

def start_server(database, allow_loopback=True):
    extra = DISPATCH_ARGS + (ALLOW_LOOPBACK if allow_loopback else [])
    return HeraldServer.start(database, new_token(), extra_args=extra, role=None)  # role None: API + dispatcher


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(f"sqlite:{tmp_path_factory.mktemp('delivery') / 'herald.sqlite'}")
    yield srv
    srv.kill9()  # a clean SIGTERM exit is checked by test_sigterm_with_dispatcher_exits_cleanly


@pytest.fixture
def svix(server):
    return server.client()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def app(svix):
    return svix.application.create(ApplicationIn(name="Delivery e2e", uid=f"app-{secrets.token_hex(6)}"))


# Checks shared by the tests

def expected_body(payload) -> bytes:
    """The bytes the SDK put on the wire for the payload (compact JSON, key order kept, UTF-8 unescaped)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def check_delivery(delivery, secret, msg_id, payload, custom_headers=None):
    """Everything a subscriber may rely on, for one request the receiver got."""
    assert delivery.method == "POST", delivery
    try:
        verified = Webhook(secret).verify(delivery.body, delivery.headers)
    except WebhookVerificationError as error:
        raise AssertionError(f"standardwebhooks rejects delivery {delivery}: {error}; headers {delivery.headers}")
    assert verified == payload
    assert delivery.body == expected_body(payload), (delivery.body, expected_body(payload))
    assert delivery.headers["webhook-id"] == msg_id
    timestamp = int(delivery.headers["webhook-timestamp"])
    assert abs(timestamp - delivery.received_at) <= FRESH, (timestamp, delivery.received_at)
    assert delivery.headers["content-type"].split(";")[0].strip().lower() == "application/json", delivery.headers
    assert delivery.headers["user-agent"].startswith("Herald/"), delivery.headers["user-agent"]
    for name, value in (custom_headers or {}).items():
        assert delivery.headers.get(name.lower()) == value, (name, delivery.headers)
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type"):
        assert sum(1 for k, _ in delivery.header_pairs if k.lower() == name) == 1, (name, delivery.header_pairs)
    for entry in delivery.headers["webhook-signature"].split(" "):
        assert entry.startswith("v1,"), delivery.headers["webhook-signature"]


def attempts_of(svix, app_id, msg_id):
    """The message's attempts, oldest first."""
    items = svix.message_attempt.list_by_msg(app_id, msg_id).data
    return sorted(items, key=lambda a: (a.timestamp, a.id))


def destination(svix, app_id, msg_id, endpoint_id):
    for d in svix.message_attempt.list_attempted_destinations(app_id, msg_id).data:
        if d.id == endpoint_id:
            return d
    return None


def wait_for_destination(svix, app_id, msg_id, endpoint_id, status):
    return wait_until(
        lambda: (lambda d: d if d is not None and d.status == status else None)(destination(svix, app_id, msg_id, endpoint_id)),
        lambda: f"destination {endpoint_id} of {msg_id} to reach status {status!r}; now {destination(svix, app_id, msg_id, endpoint_id)}")


def wait_for_attempts(svix, app_id, msg_id, count):
    return wait_until(lambda: (lambda a: a if len(a) >= count else None)(attempts_of(svix, app_id, msg_id)),
                      lambda: f"{count} attempts of {msg_id}; now {attempts_of(svix, app_id, msg_id)}")


def stays_quiet(receiver, path, count, seconds=QUIET):
    """Negative claim: the path gets no request beyond `count` for `seconds` (longer than any retry delay in play)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        got = receiver.at(path)
        assert len(got) <= count, f"{path} got {len(got)} requests, expected {count}: {got}"
        time.sleep(0.05)


# Tests

def test_retries_until_success_signed_logged_and_counted(svix, app, receiver):
    secret = new_secret()
    custom = {"X-Tenant": "acme", "X-Trace-Id": "trace-42"}
    receiver.script("/flaky", [500, 500, 200])
    receiver.script("/down", [500] * 10)
    flaky = svix.endpoint.create(app.id, EndpointIn(url=receiver.url("/flaky"), secret=secret, description="flaky"))
    down = svix.endpoint.create(app.id, EndpointIn(url=receiver.url("/down"), secret=secret, description="down"))
    svix.endpoint.set_headers(app.id, flaky.id, EndpointHeadersIn(headers=custom))
    assert svix.endpoint.get_headers(app.id, flaky.id).headers == custom

    payload = {"order": 1234, "customer": "Zoë / Ørsted", "amount": 19.95, "items": [{"sku": "a-1", "qty": 2}],
               "gift": None, "paid": True}
    msg = svix.message.create(app.id, MessageIn(event_type="order.created", payload=payload))
    assert msg.id.startswith("msg_")

    # Three requests: 500, 500, 200; each verifies, carries the same id, fresh timestamps, the custom headers.
    got = receiver.wait_for("/flaky", 3)
    assert [d.status for d in got] == [500, 500, 200]
    for delivery in got:
        check_delivery(delivery, secret, msg.id, payload, custom)
    assert len({d.webhook_id for d in got}) == 1
    stamps = [int(d.headers["webhook-timestamp"]) for d in got]
    assert stamps == sorted(stamps), f"webhook-timestamp goes backwards across retries: {stamps}"
    gaps = [b.received_at - a.received_at for a, b in zip(got, got[1:])]
    assert all(gap >= 0.7 for gap in gaps), f"retries came sooner than the 1 s (-20 %) schedule: {gaps}"

    # The attempt log says what the receiver answered.
    wait_for_destination(svix, app.id, msg.id, flaky.id, MessageStatus.SUCCESS)
    attempts = [a for a in wait_for_attempts(svix, app.id, msg.id, 3) if a.endpoint_id == flaky.id]
    assert [a.response_status_code for a in attempts] == [500, 500, 200], attempts
    assert [a.status for a in attempts] == [MessageStatus.FAIL, MessageStatus.FAIL, MessageStatus.SUCCESS], attempts
    assert all(a.trigger_type == MessageAttemptTriggerType.SCHEDULED for a in attempts), attempts
    assert all(a.msg_id == msg.id and a.url == receiver.url("/flaky") for a in attempts), attempts
    assert [a.response for a in attempts] == [d.answer for d in got], "attempt.response is not the receiver's body"
    assert len({a.id for a in attempts}) == 3 and all(a.id.startswith("atmpt_") for a in attempts)
    for attempt, delivery in zip(attempts, got):
        sent = int(delivery.headers["webhook-timestamp"])
        assert abs(attempt.timestamp.timestamp() - sent) <= 5, (attempt.timestamp, sent)
        assert attempt.response_duration_ms >= 0
    by_endpoint = svix.message_attempt.list_by_endpoint(app.id, flaky.id, MessageAttemptListByEndpointOptions(limit=50)).data
    assert sorted(a.id for a in by_endpoint) == sorted(a.id for a in attempts)

    stats = svix.endpoint.get_stats(app.id, flaky.id)
    assert (stats.success, stats.pending, stats.sending, stats.fail) == (1, 0, 0, 0), stats
    dest = destination(svix, app.id, msg.id, flaky.id)
    assert dest.status == MessageStatus.SUCCESS and dest.next_attempt is None, dest

    # An endpoint that never answers 2xx: 1 attempt + 3 retries, then failed for good.
    wait_for_destination(svix, app.id, msg.id, down.id, MessageStatus.FAIL)
    down_got = receiver.at("/down")
    assert len(down_got) == 4, f"expected 1 attempt + 3 retries ({RETRY_SCHEDULE}), got {down_got}"
    for delivery in down_got:
        check_delivery(delivery, secret, msg.id, payload)
    down_attempts = [a for a in attempts_of(svix, app.id, msg.id) if a.endpoint_id == down.id]
    assert [a.response_status_code for a in down_attempts] == [500] * 4, down_attempts
    assert all(a.status == MessageStatus.FAIL for a in down_attempts), down_attempts
    assert destination(svix, app.id, msg.id, down.id).next_attempt is None
    stats = svix.endpoint.get_stats(app.id, down.id)
    assert (stats.success, stats.pending, stats.sending, stats.fail) == (0, 0, 0, 1), stats
    stays_quiet(receiver, "/down", 4)


def test_filtering_event_types_channels_and_disabled(svix, app, receiver):
    secret = new_secret()
    ep = {}
    for name, fields in [("all", {}),
                         ("paid-only", {"event_types": ["order.paid"]}),
                         ("project-1", {"channels": ["project-1"]}),
                         ("disabled", {"disabled": True}),
                         ("disabled-later", {})]:
        ep[name] = svix.endpoint.create(app.id, EndpointIn(url=receiver.url(f"/{name}"), secret=secret, **fields))
    svix.endpoint.patch(app.id, ep["disabled-later"].id, EndpointPatch(disabled=True))
    assert svix.endpoint.get(app.id, ep["disabled-later"].id).disabled is True

    m1 = svix.message.create(app.id, MessageIn(event_type="order.created", payload={"m": 1}))
    m2 = svix.message.create(app.id, MessageIn(event_type="order.created", payload={"m": 2}, channels=["project-1", "x"]))
    m3 = svix.message.create(app.id, MessageIn(event_type="order.paid", payload={"m": 3}, channels=["project-2"]))
    expected = {m1.id: {"all"}, m2.id: {"all", "project-1"}, m3.id: {"all", "paid-only"}}
    names = {e.id: name for name, e in ep.items()}

    # Deliveries are decided at publish time: the destinations are exactly the matching endpoints ...
    for msg in (m1, m2, m3):
        got = {names[d.id] for d in svix.message_attempt.list_attempted_destinations(app.id, msg.id).data}
        assert got == expected[msg.id], (msg.id, got)
    # ... each of which succeeds ...
    for msg in (m1, m2, m3):
        for name in expected[msg.id]:
            wait_for_destination(svix, app.id, msg.id, ep[name].id, MessageStatus.SUCCESS)
    # ... and the receiver saw exactly those requests, nothing else.
    seen = {}
    for delivery in receiver.all():
        seen.setdefault(delivery.path, []).append(delivery.webhook_id)
    assert sorted(seen.get("/all", [])) == sorted([m1.id, m2.id, m3.id]), seen
    assert seen.get("/paid-only") == [m3.id], seen
    assert seen.get("/project-1") == [m2.id], seen
    assert "/disabled" not in seen and "/disabled-later" not in seen, seen
    for delivery in receiver.all():
        payload = {m1.id: {"m": 1}, m2.id: {"m": 2}, m3.id: {"m": 3}}[delivery.webhook_id]
        check_delivery(delivery, secret, delivery.webhook_id, payload)
    for name in ("paid-only", "project-1", "disabled", "disabled-later"):
        stats = svix.endpoint.get_stats(app.id, ep[name].id)
        assert (stats.pending, stats.sending, stats.fail) == (0, 0, 0), (name, stats)
    assert svix.endpoint.get_stats(app.id, ep["all"].id).success == 3


def lenient(sdk_errors, what, call):
    """Runs an SDK call whose side effect the test goes on to check. If the server's answer is not the JSON the
    SDK parses (resend: Svix answers 202 with an EmptyResponse `{}`; rotate_secret: this SDK parses an
    EndpointSecretOut), the SDK raises after the server has acted: record that (the test fails on it at
    the end) and go on checking the delivery semantics, so one report shows everything that is wrong."""
    try:
        return call()
    except json.JSONDecodeError as error:
        sdk_errors.append(f"{what}: the SDK cannot parse the server's answer as JSON: {error}")
        return None


def test_manual_resend(svix, app, receiver):
    sdk_errors = []
    secret = new_secret()
    receiver.script("/hook", [200, 200, 500])
    endpoint = svix.endpoint.create(app.id, EndpointIn(url=receiver.url("/hook"), secret=secret))
    payload = {"resend": True, "n": 7}
    msg = svix.message.create(app.id, MessageIn(event_type="invoice.paid", payload=payload))
    receiver.wait_for("/hook", 1)
    wait_for_destination(svix, app.id, msg.id, endpoint.id, MessageStatus.SUCCESS)

    # A resend: exactly one more request, same webhook-id, a new signature over a fresh timestamp.
    lenient(sdk_errors, "message_attempt.resend", lambda: svix.message_attempt.resend(app.id, msg.id, endpoint.id))
    got = receiver.wait_for("/hook", 2)
    for delivery in got:
        check_delivery(delivery, secret, msg.id, payload)
    assert got[0].webhook_id == got[1].webhook_id == msg.id
    attempts = wait_for_attempts(svix, app.id, msg.id, 2)
    assert [a.trigger_type for a in attempts] == [MessageAttemptTriggerType.SCHEDULED, MessageAttemptTriggerType.MANUAL], attempts
    assert [a.status for a in attempts] == [MessageStatus.SUCCESS, MessageStatus.SUCCESS], attempts
    assert [a.response_status_code for a in attempts] == [200, 200], attempts

    # A resend that fails is not retried.
    lenient(sdk_errors, "message_attempt.resend", lambda: svix.message_attempt.resend(app.id, msg.id, endpoint.id))
    got = receiver.wait_for("/hook", 3)
    assert got[2].status == 500
    check_delivery(got[2], secret, msg.id, payload)
    attempts = wait_for_attempts(svix, app.id, msg.id, 3)
    assert attempts[2].trigger_type == MessageAttemptTriggerType.MANUAL, attempts
    assert (attempts[2].status, attempts[2].response_status_code) == (MessageStatus.FAIL, 500), attempts
    stays_quiet(receiver, "/hook", 3)
    assert len(attempts_of(svix, app.id, msg.id)) == 3, attempts_of(svix, app.id, msg.id)
    assert not sdk_errors, sdk_errors


def test_410_gone_disables_the_endpoint_and_stops_retries(svix, app, receiver):
    secret = new_secret()
    receiver.script("/gone", [410])
    gone = svix.endpoint.create(app.id, EndpointIn(url=receiver.url("/gone"), secret=secret))
    msg = svix.message.create(app.id, MessageIn(event_type="user.deleted", payload={"user": 9}))
    got = receiver.wait_for("/gone", 1)
    check_delivery(got[0], secret, msg.id, {"user": 9})

    wait_until(lambda: svix.endpoint.get(app.id, gone.id).disabled is True,
               lambda: f"endpoint disabled after 410; now {svix.endpoint.get(app.id, gone.id)}")
    dest = wait_for_destination(svix, app.id, msg.id, gone.id, MessageStatus.FAIL)
    assert dest.next_attempt is None, dest
    attempts = wait_for_attempts(svix, app.id, msg.id, 1)
    assert [(a.status, a.response_status_code) for a in attempts] == [(MessageStatus.FAIL, 410)], attempts
    stays_quiet(receiver, "/gone", 1)
    assert len(attempts_of(svix, app.id, msg.id)) == 1

    # A disabled endpoint gets nothing new.
    later = svix.message.create(app.id, MessageIn(event_type="user.deleted", payload={"user": 10}))
    assert svix.message_attempt.list_attempted_destinations(app.id, later.id).data == []
    assert len(receiver.at("/gone")) == 1


def test_secret_rotation_signs_with_old_and_new(svix, app, receiver):
    sdk_errors = []
    old = new_secret()
    new = new_secret()
    endpoint = svix.endpoint.create(app.id, EndpointIn(url=receiver.url("/rot"), secret=old))
    before = svix.message.create(app.id, MessageIn(event_type="a.b", payload={"phase": "before"}))
    first = receiver.wait_for("/rot", 1)[0]
    check_delivery(first, old, before.id, {"phase": "before"})
    assert len(first.headers["webhook-signature"].split(" ")) == 1, first.headers["webhook-signature"]

    rotated = lenient(sdk_errors, "endpoint.rotate_secret",
                      lambda: svix.endpoint.rotate_secret(app.id, endpoint.id, EndpointSecretRotateIn(key=new)))
    assert rotated is None or rotated.key == new, rotated
    assert svix.endpoint.get_secret(app.id, endpoint.id).key == new

    after = svix.message.create(app.id, MessageIn(event_type="a.b", payload={"phase": "after"}))
    second = receiver.wait_for("/rot", 2)[1]
    check_delivery(second, new, after.id, {"phase": "after"})
    check_delivery(second, old, after.id, {"phase": "after"})
    entries = second.headers["webhook-signature"].split(" ")
    assert len(entries) == 2 and all(e.startswith("v1,") for e in entries), second.headers["webhook-signature"]
    # Each entry is the signature of exactly one of the two secrets.
    matches = []
    for entry in entries:
        single = {**second.headers, "webhook-signature": entry}
        ok = []
        for name, key in (("old", old), ("new", new)):
            try:
                Webhook(key).verify(second.body, single)
                ok.append(name)
            except WebhookVerificationError:
                pass
        matches.append(ok)
    assert sorted(m for ok in matches for m in ok) == ["new", "old"] and all(len(ok) == 1 for ok in matches), matches
    assert not sdk_errors, sdk_errors


def test_loopback_destination_refused_without_allow_network(tmp_path, receiver):
    server = start_server(f"sqlite:{tmp_path / 'guarded.sqlite'}", allow_loopback=False)
    try:
        svix = server.client()
        app = svix.application.create(ApplicationIn(name="Guarded"))
        endpoint = svix.endpoint.create(app.id, EndpointIn(url=receiver.url("/private"), secret=new_secret()))
        msg = svix.message.create(app.id, MessageIn(event_type="a.b", payload={"x": 1}))

        dest = wait_for_destination(svix, app.id, msg.id, endpoint.id, MessageStatus.FAIL)
        assert dest.next_attempt is None, dest
        attempts = attempts_of(svix, app.id, msg.id)
        assert attempts, "no attempt recorded for the refused destination"
        for attempt in attempts:
            assert attempt.response_status_code == 0, attempt
            assert attempt.status == MessageStatus.FAIL, attempt
            assert "loopback" in attempt.response.lower(), f"reason does not mention loopback: {attempt.response!r}"
        assert receiver.all() == [], f"a refused destination was contacted: {receiver.all()}"
    finally:
        server.kill9()


SIGTERM_ROUNDS = 5  # the crash seen on SIGTERM is a shutdown race (about half the runs): several rounds catch it


def test_sigterm_with_dispatcher_exits_cleanly(tmp_path, receiver, monkeypatch):
    """`herald serve` with its dispatcher (which has delivered something) stops on SIGTERM with status 0,
    every time: SIGTERM_ROUNDS start / deliver / SIGTERM rounds on one database."""
    monkeypatch.setenv("SWIFT_BACKTRACE", "enable=no")  # a crash then exits at once instead of symbolicating for ~10 s
    database = f"sqlite:{tmp_path / 'term.sqlite'}"
    for n in range(1, SIGTERM_ROUNDS + 1):
        server = start_server(database)
        try:
            svix = server.client()
            app = svix.application.create(ApplicationIn(name=f"Term {n}"))
            endpoint = svix.endpoint.create(app.id, EndpointIn(url=receiver.url(f"/t{n}"), secret=new_secret()))
            msg = svix.message.create(app.id, MessageIn(event_type="a.b", payload={"round": n}))
            receiver.wait_for(f"/t{n}", 1)
            wait_for_destination(svix, app.id, msg.id, endpoint.id, MessageStatus.SUCCESS)
            server.proc.send_signal(signal.SIGTERM)
            try:
                code = server.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"round {n}: herald serve did not exit within 30 s of SIGTERM")
            errors = [line for line in server.stderr.splitlines() if "Fatal error" in line or "crash" in line.lower()][:3]
            assert code == 0, f"round {n} of {SIGTERM_ROUNDS}: exit status {code} after SIGTERM; errors on stderr: {errors}"
        finally:
            server.kill9()


def test_receiver_drops_a_request_cut_off_mid_body():
    """The crash tests rely on it: a request whose sender died mid-body is not taken for a delivery."""
    r = Receiver()
    try:
        with socket.create_connection(("127.0.0.1", r.port), timeout=5) as s:
            s.sendall(b"POST /cut HTTP/1.1\r\nHost: x\r\nContent-Length: 56\r\nwebhook-id: msg_cut\r\n\r\n{\"half\":")
        with socket.create_connection(("127.0.0.1", r.port), timeout=5) as s:
            s.sendall(b"POST /whole HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            assert s.recv(100).startswith(b"HTTP/1.1 200")
        wait_until(lambda: r.cut_off and r.all(), lambda: f"both requests read; cut off {r.cut_off}, got {r.all()}")
        assert [d.path for d in r.all()] == ["/whole"]
        assert [(d.path, d.webhook_id, d.body) for d in r.cut_off] == [("/cut", "msg_cut", b'{"half":')]
    finally:
        r.stop()
