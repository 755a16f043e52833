"""`herald serve` driven by the official Svix Python SDK (and raw HTTP where the SDK hides the wire).

One server per module (temp SQLite file, random admin token, port 0); each test works in applications
of its own, and tests that look at global lists (applications, event types) start a fresh server.
The servers run with `--role api` (no dispatcher), so messages keep their pending deliveries and attempt
lists stay empty, deterministically.
"""
import base64
import concurrent.futures
import json
import secrets
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from svix.api import (
    ApplicationIn,
    ApplicationListOptions,
    ApplicationPatch,
    AppPortalAccessIn,
    EndpointHeadersIn,
    EndpointHeadersPatchIn,
    EndpointIn,
    EndpointListOptions,
    EndpointPatch,
    EndpointSecretRotateIn,
    EndpointUpsertIn,
    EventExampleIn,
    EventTypeDeleteOptions,
    EventTypeIn,
    EventTypeListOptions,
    EventTypePatch,
    EventTypeUpsertIn,
    MessageAttemptListAttemptedDestinationsOptions,
    MessageAttemptListAttemptedMessagesOptions,
    MessageAttemptListByEndpointOptions,
    MessageAttemptListByMsgOptions,
    MessageCreateOptions,
    MessageGetOptions,
    MessageIn,
    MessageListOptions,
    MessageStatus,
    Ordering,
    RecoverIn,
)
from svix.exceptions import HttpError, HTTPValidationError

from conftest import HERALD
from herald_server import HeraldServer, new_token, server_factory, shared_server  # noqa: F401 (fixtures)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HOOK = "http://127.0.0.1:9/hook"  # nothing is delivered in this issue


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


@pytest.fixture
def server(shared_server):
    return shared_server


@pytest.fixture
def svix(server):
    return server.client()


@pytest.fixture
def app(svix):
    return svix.application.create(ApplicationIn(name="Test app", uid=uid("app")))


def endpoint(svix, app_id, **fields):
    fields.setdefault("url", HOOK)
    return svix.endpoint.create(app_id, EndpointIn(**fields))


def collect(fetch, limit, max_pages=100):
    """Follows `iterator` until `done`; returns (items, pages). Asserts each page respects the limit."""
    items, iterator, pages = [], None, []
    while True:
        page = fetch(limit, iterator)
        assert len(page.data) <= limit, f"page of {len(page.data)} items for limit {limit}"
        items.extend(page.data)
        pages.append(page)
        if page.done:
            return items, pages
        assert page.iterator, "a page that is not done must carry an iterator"
        iterator = page.iterator
        assert len(pages) < max_pages, "pagination does not terminate"


def expect_http_error(status, call, *args, **kwargs):
    with pytest.raises(HttpError) as info:
        call(*args, **kwargs)
    assert info.value.status_code == status, (info.value.status_code, info.value.code, info.value.detail)
    assert isinstance(info.value.code, str) and info.value.code, "an error must carry a code"
    assert isinstance(info.value.detail, str) and info.value.detail, "an error must carry a detail"
    return info.value


def expect_validation_error(call, *args, **kwargs):
    with pytest.raises(HTTPValidationError) as info:
        call(*args, **kwargs)
    error = info.value
    assert error.status_code == 422
    assert error.detail, "422 must list what is wrong"
    for item in error.detail:
        assert isinstance(item.loc, list) and item.loc and isinstance(item.msg, str) and isinstance(item.type, str)
    return error


def aware(moment: datetime) -> bool:
    return moment.tzinfo is not None and moment.utcoffset() is not None


def wait_until(condition, timeout=10.0, interval=0.005, what="condition"):
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def spaced(create, count):
    """Creates `count` items one after another, each at least 2 ms after the previous one, so that
    creation order is unambiguous for list-order assertions (ids and timestamps are millisecond-sortable)."""
    items = []
    for i in range(count):
        if items:
            last = items[-1]
            moment = getattr(last, "created_at", None) or getattr(last, "timestamp")
            wait_until(lambda: datetime.now(timezone.utc) > moment + timedelta(milliseconds=2), what="the clock to move on")
        items.append(create(i))
    return items


# --- health ------------------------------------------------------------------------------------


def test_health(svix, server):
    svix.health.get()  # raises on a non-2xx
    response = requests.get(server.api("/api/v1/health"), timeout=10)  # no token needed
    assert response.status_code == 204


# --- applications ------------------------------------------------------------------------------


def test_application_create_and_get_by_id_and_uid(svix):
    app_uid = uid("app")
    created = svix.application.create(ApplicationIn(name="Acme", uid=app_uid, metadata={"tier": "gold"}, throttle_rate=5))
    assert created.id.startswith("app_")
    assert (created.name, created.uid, created.metadata, created.throttle_rate) == ("Acme", app_uid, {"tier": "gold"}, 5)
    assert aware(created.created_at) and aware(created.updated_at)
    assert abs((created.created_at - datetime.now(timezone.utc)).total_seconds()) < 60
    by_id = svix.application.get(created.id)
    by_uid = svix.application.get(app_uid)
    assert by_id == created and by_uid == created


def test_application_without_uid_or_metadata(svix):
    created = svix.application.create(ApplicationIn(name="Plain"))
    assert created.uid is None and created.metadata == {}
    assert svix.application.get(created.id).name == "Plain"


def test_application_duplicate_uid_is_409(svix, app):
    expect_http_error(409, svix.application.create, ApplicationIn(name="Again", uid=app.uid))


def test_application_get_unknown_is_404(svix):
    expect_http_error(404, svix.application.get, "app_doesnotexist000000000000")
    expect_http_error(404, svix.application.get, uid("nobody"))


def test_application_get_or_create(svix, server):
    app_uid = uid("goc")
    first = svix.application.get_or_create(ApplicationIn(name="Get or create", uid=app_uid))
    second = svix.application.get_or_create(ApplicationIn(name="Another name", uid=app_uid))
    assert first.id == second.id and second.name == "Get or create"
    # On the wire: 201 when created, 200 when it already existed.
    body = {"name": "Raw", "uid": uid("goc")}
    created = server.request("POST", "/api/v1/app?get_if_exists=true", json=body)
    existing = server.request("POST", "/api/v1/app?get_if_exists=true", json=body)
    assert (created.status_code, existing.status_code) == (201, 200)
    assert created.json()["id"] == existing.json()["id"]


def test_application_update_replaces_and_upsert_creates(svix, app):
    updated = svix.application.upsert(app.id, ApplicationIn(name="Renamed", uid=app.uid, metadata={"a": "b"}))
    assert (updated.id, updated.name, updated.metadata) == (app.id, "Renamed", {"a": "b"})
    assert updated.updated_at >= app.updated_at
    assert svix.application.get(app.uid).name == "Renamed"
    # PUT on an unknown uid creates the application with that uid.
    new_uid = uid("upsert")
    created = svix.application.upsert(new_uid, ApplicationIn(name="Upserted"))
    assert created.uid == new_uid and created.id.startswith("app_")
    assert svix.application.get(new_uid).id == created.id


def test_application_patch_changes_only_given_fields(svix):
    created = svix.application.create(ApplicationIn(name="Before", uid=uid("patch"), metadata={"k": "v"}))
    patched = svix.application.patch(created.id, ApplicationPatch(name="After"))
    assert (patched.name, patched.uid, patched.metadata) == ("After", created.uid, {"k": "v"})
    patched = svix.application.patch(created.uid, ApplicationPatch(metadata={"k2": "v2"}))
    assert (patched.name, patched.metadata) == ("After", {"k2": "v2"})
    assert svix.application.get(created.id) == patched


def test_application_delete(svix):
    created = svix.application.create(ApplicationIn(name="Doomed", uid=uid("del")))
    endpoint(svix, created.id)
    svix.application.delete(created.uid)
    expect_http_error(404, svix.application.get, created.id)
    expect_http_error(404, svix.application.delete, created.id)
    expect_http_error(404, svix.endpoint.list, created.id)


def test_application_validation_is_422(svix):
    expect_validation_error(svix.application.create, ApplicationIn(name=""))
    expect_validation_error(svix.application.create, ApplicationIn(name="Bad uid", uid="not a valid uid!"))
    expect_validation_error(svix.application.list, ApplicationListOptions(limit=251))


def test_application_list_paginates_in_both_orders(server_factory):
    svix = server_factory().client()
    created = spaced(lambda i: svix.application.create(ApplicationIn(name=f"App {i}", uid=f"list-{i}")), 5)
    ids = [a.id for a in created]

    def fetch(order):
        return lambda limit, it: svix.application.list(ApplicationListOptions(limit=limit, iterator=it, order=order))

    ascending, pages = collect(fetch(Ordering.ASCENDING), 2)
    assert [a.id for a in ascending] == ids
    assert len(pages[0].data) == 2 and pages[0].done is False
    descending, _ = collect(fetch(Ordering.DESCENDING), 2)
    assert [a.id for a in descending] == ids[::-1]
    everything = svix.application.list()
    assert everything.done is True and sorted(a.id for a in everything.data) == sorted(ids)
    one = svix.application.list(ApplicationListOptions(limit=1))
    assert len(one.data) == 1 and one.done is False and one.iterator


# --- endpoints ---------------------------------------------------------------------------------


def test_endpoint_create_get_list(svix, app):
    event = f"user.created.{secrets.token_hex(3)}"
    svix.event_type.create(EventTypeIn(name=event, description="A user was created"))
    ep_uid = uid("ep")
    created = endpoint(svix, app.id, url="http://127.0.0.1:9/users", description="Users", uid=ep_uid,
                       event_types=[event], channels=["project-1"], metadata={"team": "core"}, secret=SECRET, throttle_rate=7)
    assert created.id.startswith("ep_")
    assert (created.url, created.description, created.uid) == ("http://127.0.0.1:9/users", "Users", ep_uid)
    assert created.event_types == [event] and created.channels == ["project-1"]
    assert created.metadata == {"team": "core"} and not created.disabled and created.throttle_rate == 7
    assert aware(created.created_at)
    assert svix.endpoint.get(app.id, created.id) == created
    assert svix.endpoint.get(app.uid, ep_uid) == created
    listed = svix.endpoint.list(app.id)
    assert [e.id for e in listed.data] == [created.id] and listed.done is True
    assert svix.endpoint.get_secret(app.id, ep_uid).key == SECRET


def test_endpoint_list_paginates(svix, app):
    ids = [e.id for e in spaced(lambda i: endpoint(svix, app.id, description=f"ep {i}"), 5)]

    def fetch(order):
        return lambda limit, it: svix.endpoint.list(app.id, EndpointListOptions(limit=limit, iterator=it, order=order))

    ascending, pages = collect(fetch(Ordering.ASCENDING), 2)
    assert [e.id for e in ascending] == ids and pages[0].done is False
    descending, _ = collect(fetch(Ordering.DESCENDING), 2)
    assert [e.id for e in descending] == ids[::-1]


def test_endpoint_generated_secret(svix, app):
    created = endpoint(svix, app.id)
    key = svix.endpoint.get_secret(app.id, created.id).key
    assert key.startswith("whsec_")
    assert 24 <= len(base64.b64decode(key[len("whsec_"):] + "==")) <= 64
    other = svix.endpoint.get_secret(app.id, endpoint(svix, app.id).id).key
    assert other != key


def test_endpoint_errors(svix, app):
    ep_uid = uid("ep")
    endpoint(svix, app.id, uid=ep_uid)
    expect_http_error(409, endpoint, svix, app.id, uid=ep_uid)
    expect_http_error(404, svix.endpoint.get, app.id, "ep_doesnotexist000000000000")
    expect_http_error(404, svix.endpoint.get, app.id, uid("nobody"))
    expect_http_error(404, svix.endpoint.list, uid("noapp"))
    expect_validation_error(endpoint, svix, app.id, url="not a url")
    expect_validation_error(endpoint, svix, app.id, secret="whsec_tooshort")
    # An endpoint of one application is not reachable through another.
    other = svix.application.create(ApplicationIn(name="Other"))
    theirs = endpoint(svix, other.id)
    expect_http_error(404, svix.endpoint.get, app.id, theirs.id)


def test_endpoint_update_patch_delete(svix, app):
    created = endpoint(svix, app.id, description="first", uid=uid("ep"), metadata={"a": "1"})
    updated = svix.endpoint.upsert(app.id, created.id, EndpointUpsertIn(url="http://127.0.0.1:9/v2", description="second", uid=created.uid))
    assert (updated.id, updated.url, updated.description) == (created.id, "http://127.0.0.1:9/v2", "second")
    patched = svix.endpoint.patch(app.id, created.uid, EndpointPatch(disabled=True))
    assert patched.disabled is True and (patched.url, patched.description) == ("http://127.0.0.1:9/v2", "second")
    patched = svix.endpoint.patch(app.id, created.id, EndpointPatch(description="third", metadata={"b": "2"}))
    assert (patched.description, patched.metadata, patched.disabled) == ("third", {"b": "2"}, True)
    assert svix.endpoint.get(app.id, created.id) == patched
    svix.endpoint.delete(app.id, created.uid)
    expect_http_error(404, svix.endpoint.get, app.id, created.id)
    expect_http_error(404, svix.endpoint.delete, app.id, created.id)


def test_endpoint_rotate_secret(svix, app):
    created = endpoint(svix, app.id, secret=SECRET)
    new_key = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    rotated = svix.endpoint.rotate_secret(app.id, created.id, EndpointSecretRotateIn(key=new_key))
    assert rotated.key == new_key
    assert svix.endpoint.get_secret(app.id, created.id).key == new_key
    generated = svix.endpoint.rotate_secret(app.id, created.id, EndpointSecretRotateIn())
    assert generated.key.startswith("whsec_") and generated.key not in (SECRET, new_key)
    assert svix.endpoint.get_secret(app.id, created.id).key == generated.key


def test_endpoint_headers_set_get_patch(svix, server, app):
    created = endpoint(svix, app.id)
    assert svix.endpoint.get_headers(app.id, created.id).headers == {}
    svix.endpoint.set_headers(app.id, created.id, EndpointHeadersIn(headers={"X-Tenant": "acme", "X-Other": "1"}))
    got = svix.endpoint.get_headers(app.id, created.id)
    assert got.headers == {"X-Tenant": "acme", "X-Other": "1"} and got.sensitive == []
    svix.endpoint.patch_headers(app.id, created.id, EndpointHeadersPatchIn(headers={"X-New": "2"}, delete_headers=["X-Other"]))
    assert svix.endpoint.get_headers(app.id, created.id).headers == {"X-Tenant": "acme", "X-New": "2"}
    # The OpenAPI document's way to delete in a PATCH: a null value.
    assert server.request("PATCH", f"/api/v1/app/{app.id}/endpoint/{created.id}/headers",
                          json={"headers": {"X-New": None, "X-Third": "3"}}).status_code == 204
    assert svix.endpoint.get_headers(app.id, created.id).headers == {"X-Tenant": "acme", "X-Third": "3"}
    # PUT replaces the whole set.
    svix.endpoint.set_headers(app.id, created.id, EndpointHeadersIn(headers={"X-Only": "3"}))
    assert svix.endpoint.get_headers(app.id, created.id).headers == {"X-Only": "3"}
    # A sensitive header is stored but reported as sensitive, never echoed back.
    svix.endpoint.set_headers(app.id, created.id, EndpointHeadersIn(headers={"X-Only": "3", "Authorization": "Bearer s3cret"}))
    got = svix.endpoint.get_headers(app.id, created.id)
    assert [h.lower() for h in got.sensitive] == ["authorization"]
    assert "Bearer s3cret" not in got.headers.values() and got.headers.get("X-Only") == "3"
    expect_http_error(404, svix.endpoint.get_headers, app.id, "ep_doesnotexist000000000000")


def test_endpoint_stats_count_pending_deliveries(svix, app):
    created = endpoint(svix, app.id, uid=uid("ep"))
    stats = svix.endpoint.get_stats(app.id, created.id)
    assert (stats.success, stats.pending, stats.sending, stats.fail, stats.canceled) == (0, 0, 0, 0, 0)
    for i in range(2):
        svix.message.create(app.id, MessageIn(event_type="thing.happened", payload={"i": i}))
    stats = svix.endpoint.get_stats(app.id, created.uid)
    assert (stats.success, stats.pending, stats.fail) == (0, 2, 0)


def test_endpoint_send_example(svix, app):
    event = f"invoice.paid.{secrets.token_hex(3)}"
    example = {"invoiceId": "inv_1", "amount": 42}
    svix.event_type.create(EventTypeIn(name=event, description="Invoice paid",
                                       schemas={"1": {"type": "object", "title": "Invoice paid", "examples": [example]}}))
    target = endpoint(svix, app.id)
    bystander = endpoint(svix, app.id)
    sent = svix.endpoint.send_example(app.id, target.id, EventExampleIn(event_type=event))
    assert sent.id.startswith("msg_") and sent.event_type == event
    stored = svix.message.get(app.id, sent.id, MessageGetOptions(with_content=True))
    assert stored.payload == example
    destinations = svix.message_attempt.list_attempted_destinations(app.id, sent.id)
    assert [d.id for d in destinations.data] == [target.id], "an example goes to the one endpoint only"
    assert bystander.id not in [d.id for d in destinations.data]


def test_endpoint_recover(svix, app):
    created = endpoint(svix, app.id)
    out = svix.endpoint.recover(app.id, created.id, RecoverIn(since=datetime.now(timezone.utc) - timedelta(hours=1)))
    assert out.id and out.task.value == "endpoint.recover"
    assert out.status.value in ("running", "finished") and aware(out.updated_at)
    expect_http_error(404, svix.endpoint.recover, app.id, "ep_doesnotexist000000000000",
                      RecoverIn(since=datetime.now(timezone.utc) - timedelta(hours=1)))


# --- messages ----------------------------------------------------------------------------------


def test_message_create_and_get_by_id_and_event_id(svix, app):
    event_id = uid("evt")
    payload = {"user": {"id": 42, "email": "a@example.com"}, "tags": ["x", "y"], "ok": True, "n": 1.5, "none": None}
    created = svix.message.create(app.id, MessageIn(event_type="user.created", payload=payload, event_id=event_id,
                                                    channels=["project-1"], tags=["t1"]),
                                  MessageCreateOptions(with_content=True))
    assert created.id.startswith("msg_")
    assert (created.event_type, created.event_id, created.channels) == ("user.created", event_id, ["project-1"])
    assert created.payload == payload and aware(created.timestamp)
    by_id = svix.message.get(app.id, created.id, MessageGetOptions(with_content=True))
    by_event_id = svix.message.get(app.uid, event_id, MessageGetOptions(with_content=True))
    assert by_id.id == by_event_id.id == created.id
    assert by_id.payload == by_event_id.payload == payload
    # The SDK's default (with_content=false) still answers a valid MessageOut.
    assert svix.message.get(app.id, created.id).event_type == "user.created"


def test_message_create_answers_202_on_the_wire(server, app):
    response = server.request("POST", f"/api/v1/app/{app.id}/msg", json={"eventType": "a.b", "payload": {"x": 1}})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["id"].startswith("msg_") and body["eventType"] == "a.b" and body["payload"] == {"x": 1}
    assert "timestamp" in body


def test_message_duplicate_event_id_is_409(svix, app):
    event_id = uid("evt")
    first = svix.message.create(app.id, MessageIn(event_type="a.b", payload={}, event_id=event_id))
    expect_http_error(409, svix.message.create, app.id, MessageIn(event_type="a.b", payload={"other": 1}, event_id=event_id))
    # The same eventId in another application is fine.
    other = svix.application.create(ApplicationIn(name="Other"))
    assert svix.message.create(other.id, MessageIn(event_type="a.b", payload={}, event_id=event_id)).id != first.id


def test_message_application_is_created_on_the_fly(svix):
    app_uid = uid("auto")
    created = svix.message.create(app_uid, MessageIn(event_type="a.b", payload={"k": 1},
                                                     application=ApplicationIn(name="Auto app", uid=app_uid)))
    app = svix.application.get(app_uid)
    assert app.name == "Auto app" and app.uid == app_uid
    assert svix.message.get(app.id, created.id).id == created.id
    # Without `application`, an unknown application is a 404.
    expect_http_error(404, svix.message.create, uid("missing"), MessageIn(event_type="a.b", payload={}))


def test_message_list_paginates_newest_first(svix, app):
    ids = [m.id for m in spaced(lambda i: svix.message.create(app.id, MessageIn(event_type="a.b", payload={"i": i})), 5)]
    items, pages = collect(lambda limit, it: svix.message.list(app.id, MessageListOptions(limit=limit, iterator=it)), 2)
    assert [m.id for m in items] == ids[::-1]
    assert len(pages[0].data) == 2 and pages[0].done is False
    full = svix.message.list(app.id, MessageListOptions(with_content=True))
    assert [m.payload for m in full.data] == [{"i": i} for i in reversed(range(5))]


def test_message_list_filters(svix, app):
    first = svix.message.create(app.id, MessageIn(event_type="order.created", payload={}, channels=["eu"]))
    wait_until(lambda: datetime.now(timezone.utc) > first.timestamp + timedelta(milliseconds=30), what="the clock to move on")
    second = svix.message.create(app.id, MessageIn(event_type="order.paid", payload={}, channels=["us", "eu"]))
    wait_until(lambda: datetime.now(timezone.utc) > second.timestamp + timedelta(milliseconds=2), what="the clock to move on")
    third = svix.message.create(app.id, MessageIn(event_type="user.created", payload={}))

    def ids(**options):
        return [m.id for m in svix.message.list(app.id, MessageListOptions(**options)).data]

    assert ids(channel="eu") == [second.id, first.id]
    assert ids(channel="us") == [second.id]
    assert ids(event_types=["order.paid"]) == [second.id]
    assert ids(event_types=["order.created", "user.created"]) == [third.id, first.id]
    middle = first.timestamp + timedelta(milliseconds=15)
    assert ids(before=middle) == [first.id]
    assert ids(after=middle) == [third.id, second.id]
    assert ids(after=datetime.now(timezone.utc) + timedelta(days=1)) == []


def test_message_expunge_content(svix, app):
    created = svix.message.create(app.id, MessageIn(event_type="a.b", payload={"secret": "s3cret"}))
    svix.message.expunge_content(app.id, created.id)
    after = svix.message.get(app.id, created.id, MessageGetOptions(with_content=True))
    assert after.id == created.id and "secret" not in after.payload
    expect_http_error(404, svix.message.expunge_content, app.id, "msg_doesnotexist000000000000")


def test_message_errors(svix, app):
    expect_http_error(404, svix.message.get, app.id, "msg_doesnotexist000000000000")
    expect_http_error(404, svix.message.get, app.id, uid("no-such-event"))
    expect_validation_error(svix.message.create, app.id, MessageIn(event_type="not valid!", payload={}))
    expect_validation_error(svix.message.create, app.id,
                            MessageIn(event_type="a.b", payload={}, channels=[f"c{i}" for i in range(11)]))
    # A message of another application is not reachable through this one.
    other = svix.application.create(ApplicationIn(name="Other"))
    theirs = svix.message.create(other.id, MessageIn(event_type="a.b", payload={}))
    expect_http_error(404, svix.message.get, app.id, theirs.id)


# --- deliveries and attempts ------------------------------------------------------------------


def test_endpoint_filtering_decides_the_pending_deliveries(svix, app):
    suffix = secrets.token_hex(3)
    paid, created_type = f"invoice.paid.{suffix}", f"user.created.{suffix}"
    for name in (paid, created_type):
        svix.event_type.create(EventTypeIn(name=name, description=name))
    ep_all = endpoint(svix, app.id, description="all")
    ep_types = endpoint(svix, app.id, description="types", event_types=[paid])
    ep_chan = endpoint(svix, app.id, description="channel", channels=["project-1"])
    ep_off = endpoint(svix, app.id, description="disabled", disabled=True)

    m1 = svix.message.create(app.id, MessageIn(event_type=paid, payload={}))
    m2 = svix.message.create(app.id, MessageIn(event_type=created_type, payload={}, channels=["project-1"]))
    m3 = svix.message.create(app.id, MessageIn(event_type=paid, payload={}, channels=["project-2"]))

    def destinations(msg):
        page = svix.message_attempt.list_attempted_destinations(app.id, msg.id)
        for d in page.data:
            assert d.status == MessageStatus.PENDING and d.status_text.value == "pending", d
        return sorted(d.id for d in page.data)

    assert destinations(m1) == sorted([ep_all.id, ep_types.id])
    assert destinations(m2) == sorted([ep_all.id, ep_chan.id])
    assert destinations(m3) == sorted([ep_all.id, ep_types.id])

    def messages(ep):
        page = svix.message_attempt.list_attempted_messages(app.id, ep.id)
        for m in page.data:
            assert m.status == MessageStatus.PENDING and m.status_text.value == "pending", m
        return sorted(m.id for m in page.data)

    assert messages(ep_all) == sorted([m1.id, m2.id, m3.id])
    assert messages(ep_types) == sorted([m1.id, m3.id])
    assert messages(ep_chan) == [m2.id]
    assert messages(ep_off) == []


def test_attempted_destinations_show_endpoint_fields_and_paginate(svix, app):
    eps = [endpoint(svix, app.id, description=f"ep {i}", uid=uid("ep")) for i in range(3)]
    msg = svix.message.create(app.id, MessageIn(event_type="a.b", payload={}))
    items, _ = collect(lambda limit, it: svix.message_attempt.list_attempted_destinations(
        app.id, msg.id, MessageAttemptListAttemptedDestinationsOptions(limit=limit, iterator=it)), 2)
    assert sorted(d.id for d in items) == sorted(e.id for e in eps)
    by_id = {e.id: e for e in eps}
    for d in items:
        assert (d.url, d.description, d.uid) == (by_id[d.id].url, by_id[d.id].description, by_id[d.id].uid)
    # Through the message's eventId too.
    event_id = uid("evt")
    svix.message.create(app.id, MessageIn(event_type="a.b", payload={}, event_id=event_id))
    assert len(svix.message_attempt.list_attempted_destinations(app.id, event_id).data) == 3


def test_attempted_messages_filters_and_pagination(svix, app):
    ep = endpoint(svix, app.id)
    ids = [svix.message.create(app.id, MessageIn(event_type="a.b", payload={"i": i}, channels=["c1"] if i % 2 else None)).id
           for i in range(5)]
    items, _ = collect(lambda limit, it: svix.message_attempt.list_attempted_messages(
        app.id, ep.id, MessageAttemptListAttemptedMessagesOptions(limit=limit, iterator=it)), 2)
    assert sorted(m.id for m in items) == sorted(ids) and len(items) == 5
    pending = svix.message_attempt.list_attempted_messages(
        app.id, ep.id, MessageAttemptListAttemptedMessagesOptions(status=MessageStatus.PENDING))
    assert len(pending.data) == 5
    succeeded = svix.message_attempt.list_attempted_messages(
        app.id, ep.id, MessageAttemptListAttemptedMessagesOptions(status=MessageStatus.SUCCESS))
    assert succeeded.data == []
    in_channel = svix.message_attempt.list_attempted_messages(
        app.id, ep.id, MessageAttemptListAttemptedMessagesOptions(channel="c1"))
    assert sorted(m.id for m in in_channel.data) == sorted(ids[1::2])


def test_attempt_lists_are_empty_without_a_delivery_engine(svix, app):
    ep = endpoint(svix, app.id)
    msg = svix.message.create(app.id, MessageIn(event_type="a.b", payload={}))
    by_endpoint = svix.message_attempt.list_by_endpoint(app.id, ep.id)
    assert by_endpoint.data == [] and by_endpoint.done is True
    by_msg = svix.message_attempt.list_by_msg(app.id, msg.id)
    assert by_msg.data == [] and by_msg.done is True
    filtered = svix.message_attempt.list_by_msg(app.id, msg.id, MessageAttemptListByMsgOptions(endpoint_id=ep.id, status=MessageStatus.SUCCESS))
    assert filtered.data == []
    filtered = svix.message_attempt.list_by_endpoint(app.id, ep.id, MessageAttemptListByEndpointOptions(with_msg=True, limit=10))
    assert filtered.data == []
    expect_http_error(404, svix.message_attempt.list_by_endpoint, app.id, "ep_doesnotexist000000000000")
    expect_http_error(404, svix.message_attempt.list_by_msg, app.id, "msg_doesnotexist000000000000")


def test_attempt_get_and_expunge_unknown_are_404(svix, app):
    msg = svix.message.create(app.id, MessageIn(event_type="a.b", payload={}))
    expect_http_error(404, svix.message_attempt.get, app.id, msg.id, "atmpt_doesnotexist000000000000")
    expect_http_error(404, svix.message_attempt.expunge_content, app.id, msg.id, "atmpt_doesnotexist000000000000")


def test_resend(svix, server, app):
    ep = endpoint(svix, app.id)
    msg = svix.message.create(app.id, MessageIn(event_type="a.b", payload={}))
    svix.message_attempt.resend(app.id, msg.id, ep.id)  # validates an EmptyResponse body
    response = server.request("POST", f"/api/v1/app/{app.id}/msg/{msg.id}/endpoint/{ep.id}/resend")
    assert response.status_code == 202 and response.json() == {}
    expect_http_error(404, svix.message_attempt.resend, app.id, msg.id, "ep_doesnotexist000000000000")
    expect_http_error(404, svix.message_attempt.resend, app.id, "msg_doesnotexist000000000000", ep.id)


# --- event types -------------------------------------------------------------------------------


def test_event_type_create_get_update_patch(svix):
    name = f"invoice.paid.{secrets.token_hex(4)}"
    schema = {"1": {"type": "object", "title": "Invoice paid", "properties": {"id": {"type": "string"}}}}
    created = svix.event_type.create(EventTypeIn(name=name, description="Paid", schemas=schema))
    assert (created.name, created.description, created.schemas, created.deprecated) == (name, "Paid", schema, False)
    assert not created.archived and aware(created.created_at)
    assert svix.event_type.get(name) == created
    expect_http_error(409, svix.event_type.create, EventTypeIn(name=name, description="Again"))
    upserted = svix.event_type.upsert(name, EventTypeUpsertIn(description="Paid v2", deprecated=True))
    assert (upserted.name, upserted.description, upserted.deprecated) == (name, "Paid v2", True)
    patched = svix.event_type.patch(name, EventTypePatch(description="Paid v3"))
    assert (patched.description, patched.deprecated) == ("Paid v3", True)
    assert svix.event_type.get(name) == patched
    fresh = f"user.deleted.{secrets.token_hex(4)}"
    assert svix.event_type.upsert(fresh, EventTypeUpsertIn(description="Upserted")).name == fresh


def test_event_type_delete_archives_then_expunges(svix):
    name = f"temp.event.{secrets.token_hex(4)}"
    svix.event_type.create(EventTypeIn(name=name, description="Temp"))
    svix.event_type.delete(name)
    assert svix.event_type.get(name).archived is True
    listed = [e.name for e in svix.event_type.list(EventTypeListOptions(limit=250)).data]
    assert name not in listed
    with_archived = [e.name for e in svix.event_type.list(EventTypeListOptions(limit=250, include_archived=True)).data]
    assert name in with_archived
    svix.event_type.delete(name, EventTypeDeleteOptions(expunge=True))
    expect_http_error(404, svix.event_type.get, name)
    expect_http_error(404, svix.event_type.delete, name)


def test_event_type_validation_and_404(svix):
    expect_validation_error(svix.event_type.create, EventTypeIn(name="bad name!", description="x"))
    expect_http_error(404, svix.event_type.get, "no.such.event." + secrets.token_hex(4))


def test_event_type_list_paginates(server_factory):
    svix = server_factory().client()
    names = [f"evt.{i}" for i in range(5)]
    for name in names:
        svix.event_type.create(EventTypeIn(name=name, description=name))
    items, pages = collect(lambda limit, it: svix.event_type.list(EventTypeListOptions(limit=limit, iterator=it)), 2)
    assert sorted(e.name for e in items) == names and len(items) == 5
    assert pages[0].done is False
    with_content = svix.event_type.list(EventTypeListOptions(with_content=True))
    assert sorted(e.name for e in with_content.data) == names


# --- authentication ----------------------------------------------------------------------------


def test_wrong_token_is_401(server):
    expect_http_error(401, server.client(token=new_token()).application.list)


def test_app_portal_access_token_is_scoped_to_its_application(svix, server, app):
    ep = endpoint(svix, app.id)
    msg = svix.message.create(app.id, MessageIn(event_type="a.b", payload={}))
    other = svix.application.create(ApplicationIn(name="Other", uid=uid("other")))
    other_ep = endpoint(svix, other.id)

    access = svix.authentication.app_portal_access(app.id, AppPortalAccessIn())
    assert access.token and access.url and access.token != server.token
    portal = server.client(token=access.token)
    assert [e.id for e in portal.endpoint.list(app.id).data] == [ep.id]
    assert portal.endpoint.get(app.uid, ep.id).id == ep.id
    assert portal.message.get(app.id, msg.id).id == msg.id
    assert [m.id for m in portal.message.list(app.id).data] == [msg.id]

    def refused(call, *args):
        with pytest.raises(HttpError) as info:
            call(*args)
        assert info.value.status_code in (401, 403, 404), info.value.status_code

    refused(portal.endpoint.list, other.id)
    refused(portal.endpoint.get, other.id, other_ep.id)
    refused(portal.message.list, other.uid)
    refused(portal.application.get, other.id)
    refused(portal.application.list)
    refused(portal.application.create, ApplicationIn(name="Nope"))
    refused(portal.event_type.create, EventTypeIn(name=f"nope.{secrets.token_hex(3)}", description="x"))
    refused(portal.authentication.app_portal_access, other.id, AppPortalAccessIn())


def test_app_portal_access_can_create_the_application(svix, server):
    app_uid = uid("portal")
    access = svix.authentication.app_portal_access(app_uid, AppPortalAccessIn(application=ApplicationIn(name="Portal app", uid=app_uid)))
    assert svix.application.get(app_uid).name == "Portal app"
    assert server.client(token=access.token).endpoint.list(app_uid).data == []
    expect_http_error(404, svix.authentication.app_portal_access, uid("missing"), AppPortalAccessIn())


def test_logout_revokes_an_app_portal_token(svix, server, app):
    access = svix.authentication.app_portal_access(app.id, AppPortalAccessIn())
    portal = server.client(token=access.token)
    portal.endpoint.list(app.id)
    portal.authentication.logout()
    expect_http_error(401, portal.endpoint.list, app.id)
    svix.application.get(app.id)  # the admin token is untouched


# --- raw HTTP ----------------------------------------------------------------------------------


def assert_json_error(response, status):
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body.get("code"), str) and isinstance(body.get("detail"), str), body
    return body


def test_status_codes_on_the_wire(server):
    app = server.request("POST", "/api/v1/app", json={"name": "Wire"})
    assert app.status_code == 201
    app_id = app.json()["id"]
    ep = server.request("POST", f"/api/v1/app/{app_id}/endpoint", json={"url": HOOK})
    assert ep.status_code == 201
    ep_id = ep.json()["id"]
    event = server.request("POST", "/api/v1/event-type", json={"name": f"wire.{secrets.token_hex(3)}", "description": "x"})
    assert event.status_code == 201
    msg = server.request("POST", f"/api/v1/app/{app_id}/msg", json={"eventType": "a.b", "payload": {}})
    assert msg.status_code == 202
    headers = server.request("PUT", f"/api/v1/app/{app_id}/endpoint/{ep_id}/headers", json={"headers": {"X-A": "1"}})
    assert headers.status_code == 204 and headers.content == b""
    listed = server.request("GET", f"/api/v1/app/{app_id}/endpoint")
    assert listed.status_code == 200 and set(listed.json()) >= {"data", "iterator", "prevIterator", "done"}
    deleted = server.request("DELETE", f"/api/v1/app/{app_id}/endpoint/{ep_id}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert server.request("DELETE", f"/api/v1/app/{app_id}").status_code == 204


def test_unknown_fields_and_query_parameters_are_ignored(server):
    response = server.request("POST", "/api/v1/app?some_future_flag=1", json={"name": "Lenient", "futureField": {"x": 1}})
    assert response.status_code == 201, response.text


def test_malformed_json_is_400_json(server):
    response = server.request("POST", "/api/v1/app", data=b'{"name": "unterminated')
    assert_json_error(response, 400)
    response = server.request("POST", "/api/v1/app", data=b"[1, 2")
    assert_json_error(response, 400)


def test_missing_or_wrong_token_is_401_json(server):
    assert_json_error(requests.get(server.api("/api/v1/app"), timeout=10), 401)
    assert_json_error(requests.get(server.api("/api/v1/app"), headers={"Authorization": "Bearer " + new_token()}, timeout=10), 401)
    assert_json_error(requests.get(server.api("/api/v1/app"), headers={"Authorization": server.token}, timeout=10), 401)
    assert_json_error(requests.post(server.api("/api/v1/app"), json={"name": "x"}, timeout=10), 401)


def test_unknown_route_is_404_json(server):
    assert_json_error(server.request("GET", "/api/v1/no-such-thing"), 404)


def test_payload_over_one_mebibyte_is_413_json(server, app):
    big = {"eventType": "a.b", "payload": {"blob": "x" * (1024 * 1024 + 16)}}
    assert_json_error(server.request("POST", f"/api/v1/app/{app.id}/msg", data=json.dumps(big).encode()), 413)
    # Just under the limit is accepted.
    small = {"eventType": "a.b", "payload": {"blob": "x" * (1024 * 1024 - 1024)}}
    assert server.request("POST", f"/api/v1/app/{app.id}/msg", data=json.dumps(small).encode()).status_code == 202


def test_validation_error_shape_on_the_wire(server, app):
    response = server.request("POST", f"/api/v1/app/{app.id}/msg", json={"payload": {}})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    assert all(set(item) >= {"loc", "msg", "type"} for item in detail), detail
    assert any("eventType" in item["loc"] for item in detail), detail


def test_idempotency_key_replays_the_first_response(server, app):
    key = "idem-" + secrets.token_hex(8)
    body = {"eventType": "a.b", "payload": {"n": 1}}
    first = server.request("POST", f"/api/v1/app/{app.id}/msg", json=body, headers={"Idempotency-Key": key})
    again = server.request("POST", f"/api/v1/app/{app.id}/msg", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 202 and again.status_code == 202
    assert again.json() == first.json()
    listed = server.request("GET", f"/api/v1/app/{app.id}/msg").json()["data"]
    assert [m["id"] for m in listed] == [first.json()["id"]]
    # Another key is another message.
    third = server.request("POST", f"/api/v1/app/{app.id}/msg", json=body, headers={"Idempotency-Key": key + "-2"})
    assert third.status_code == 202 and third.json()["id"] != first.json()["id"]
    # Application creation replays too (201 and the same id), rather than a 409 on the uid.
    app_body = {"name": "Idem", "uid": uid("idem")}
    app_key = "idem-app-" + secrets.token_hex(8)
    a1 = server.request("POST", "/api/v1/app", json=app_body, headers={"Idempotency-Key": app_key})
    a2 = server.request("POST", "/api/v1/app", json=app_body, headers={"Idempotency-Key": app_key})
    assert (a1.status_code, a2.status_code) == (201, 201) and a1.json() == a2.json()


def test_concurrent_requests_with_one_idempotency_key_create_one_message(server, app):
    key = "idem-" + secrets.token_hex(8)
    body = {"eventType": "a.b", "payload": {"concurrent": True}}
    url = server.api(f"/api/v1/app/{app.id}/msg")
    headers = server.headers(**{"Idempotency-Key": key})
    barrier = threading.Barrier(10)

    def post(_):
        barrier.wait(timeout=10)
        return requests.post(url, json=body, headers=headers, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(post, range(10)))
    assert [r.status_code for r in responses] == [202] * 10, [(r.status_code, r.text[:200]) for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    listed = server.request("GET", f"/api/v1/app/{app.id}/msg").json()["data"]
    assert len(listed) == 1 and listed[0]["id"] == responses[0].json()["id"]


def test_idempotency_key_does_not_replay_a_failed_request(server, app):
    key = "idem-" + secrets.token_hex(8)
    invalid = server.request("POST", f"/api/v1/app/{app.id}/msg", json={"payload": {}}, headers={"Idempotency-Key": key})
    assert invalid.status_code == 422
    valid = server.request("POST", f"/api/v1/app/{app.id}/msg", json={"eventType": "a.b", "payload": {}}, headers={"Idempotency-Key": key})
    assert valid.status_code == 202, valid.text


def concurrently(count, call):
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait(timeout=10)
        return call(i)

    with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_concurrent_messages_with_one_event_id_store_one(server, app):
    event_id = uid("race")
    url = server.api(f"/api/v1/app/{app.id}/msg")
    responses = concurrently(10, lambda i: requests.post(url, json={"eventType": "a.b", "payload": {"i": i}, "eventId": event_id},
                                                         headers=server.headers(), timeout=30))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] + [409] * 9, [(r.status_code, r.text[:120]) for r in responses]
    listed = server.request("GET", f"/api/v1/app/{app.id}/msg").json()["data"]
    assert len(listed) == 1 and listed[0]["eventId"] == event_id


def test_concurrent_applications_with_one_uid_create_one(server):
    app_uid = uid("race")
    url = server.api("/api/v1/app")
    responses = concurrently(10, lambda i: requests.post(url, json={"name": f"Racer {i}", "uid": app_uid},
                                                         headers=server.headers(), timeout=30))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 9, [(r.status_code, r.text[:120]) for r in responses]
    winner = next(r.json() for r in responses if r.status_code == 201)
    assert server.request("GET", f"/api/v1/app/{app_uid}").json()["id"] == winner["id"]


def test_a_message_to_an_application_without_endpoints_has_no_destinations(svix, app):
    msg = svix.message.create(app.id, MessageIn(event_type="a.b", payload={}))
    assert svix.message_attempt.list_attempted_destinations(app.id, msg.id).data == []
    # An endpoint created later does not inherit earlier messages.
    ep = endpoint(svix, app.id)
    assert svix.message_attempt.list_attempted_messages(app.id, ep.id).data == []


# --- the process -------------------------------------------------------------------------------


def test_sigterm_exits_cleanly_and_data_survives_a_restart(server_factory, tmp_path):
    database = f"sqlite:{tmp_path / 'restart.sqlite'}"
    token = new_token()
    first = server_factory(database=database, token=token, role=None)  # the default role: API and dispatcher
    app = first.client().application.create(ApplicationIn(name="Persistent", uid="persistent"))
    endpoint(first.client(), app.id)
    first.client().message.create(app.id, MessageIn(event_type="a.b", payload={}))
    assert first.stop() == 0, first.stderr
    second = server_factory(database=database, token=token)
    assert second.client().application.get("persistent").id == app.id


def test_first_start_without_a_token_prints_one(tmp_path):
    database = f"sqlite:{tmp_path / 'fresh.sqlite'}"
    server = HeraldServer.start(database, without_token=True)
    try:
        prefix = "Admin token (shown once, store it now): "
        token_lines = [l for l in server.stdout_lines if l.startswith(prefix)]
        assert len(token_lines) == 1 and len(server.stdout_lines) == 2, server.stdout_lines
        token = token_lines[0][len(prefix):].strip()
        assert token
        assert server.request("GET", "/api/v1/app", token=token).status_code == 200
        assert server.request("GET", "/api/v1/app", token=new_token()).status_code == 401
    finally:
        server.stop()
    # The second start finds the admin token in the database and prints none.
    again = HeraldServer.start(database, without_token=True)
    try:
        assert len(again.stdout_lines) == 1, again.stdout_lines
        assert again.request("GET", "/api/v1/app", token=token).status_code == 200
    finally:
        again.stop()


def test_in_memory_database(server_factory):
    server = server_factory(database="sqlite::memory:")
    svix = server.client()
    app = svix.application.create(ApplicationIn(name="Ephemeral"))
    assert svix.application.get(app.id).name == "Ephemeral"


@pytest.mark.parametrize("database", ["postgrs://nowhere", "sqlite:/nonexistent-dir/x/y.sqlite"])
def test_a_bad_setting_is_one_line_on_stderr(database):
    done = subprocess.run([HERALD, "serve", "--database", database, "--host", "127.0.0.1", "--port", "0", "--token", new_token()],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Herald listening" not in done.stdout
