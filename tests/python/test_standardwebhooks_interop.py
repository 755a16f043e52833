"""Herald's signatures against the official Python `standardwebhooks` package, both ways."""
import base64
import datetime
import os
import random
import string

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from conftest import herald

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def parse_headers(text: str) -> dict:
    headers = {}
    for line in text.strip().splitlines():
        name, value = line.split(": ", 1)
        headers[name] = value
    return headers


def random_payload(rng: random.Random) -> str:
    words = ["".join(rng.choices(string.ascii_letters + string.digits + " éü\"\\/", k=rng.randint(0, 12))) for _ in range(rng.randint(0, 6))]
    import json
    return json.dumps({"type": "test.event", "n": rng.randint(-10**12, 10**12), "words": words}, ensure_ascii=False)


@pytest.mark.parametrize("seed", range(8))
def test_standardwebhooks_verifies_what_herald_signs(seed):
    rng = random.Random(seed)
    secret = "whsec_" + base64.b64encode(os.urandom(rng.randint(16, 48))).decode()
    payload = random_payload(rng)
    result = herald("sign", "--secret", secret, "--data", payload)
    assert result.returncode == 0, result.stderr
    headers = parse_headers(result.stdout)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    Webhook(secret).verify(payload.encode(), headers)  # raises if invalid
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify((payload + " ").encode(), headers)


def test_published_vector_signed_by_herald_matches_the_package():
    ts = 1614265330
    result = herald("sign", "--secret", SECRET, "--id", "msg_p5jXN8AQM9LWM0D4loKWxJek", "--timestamp", str(ts), "--data", '{"test": 2432232314}')
    assert result.returncode == 0, result.stderr
    headers = parse_headers(result.stdout)
    expected = Webhook(SECRET).sign("msg_p5jXN8AQM9LWM0D4loKWxJek", datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc), '{"test": 2432232314}')
    assert headers["webhook-signature"] == expected == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize("seed", range(8))
def test_herald_verifies_what_standardwebhooks_signs(seed):
    rng = random.Random(1000 + seed)
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    payload = random_payload(rng)
    msg_id = "msg_" + "".join(rng.choices(string.ascii_letters, k=20))
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    signature = Webhook(secret).sign(msg_id, now, payload)
    header_args = ["-H", f"webhook-id: {msg_id}", "-H", f"webhook-timestamp: {int(now.timestamp())}", "-H", f"webhook-signature: {signature}"]
    ok = herald("verify", "--secret", secret, *header_args, "--data", payload)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("valid")
    bad = herald("verify", "--secret", secret, *header_args, "--data", payload + "x")
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("invalid: no signature matched")
    assert secret not in bad.stderr and signature not in bad.stderr


def test_herald_verify_reads_the_payload_from_stdin_and_svix_header_names():
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    payload = '{"hello": "stdin"}'
    signature = Webhook(SECRET).sign("msg_stdin", now, payload)
    result = herald("verify", "--secret", SECRET, "-H", "Svix-Id: msg_stdin", "-H", f"Svix-Timestamp: {int(now.timestamp())}",
                    "-H", f"Svix-Signature: {signature}", input=payload)
    assert result.returncode == 0, result.stderr


def test_herald_verify_rejects_an_old_timestamp_with_the_reason():
    old = datetime.datetime.now(tz=datetime.timezone.utc) - datetime.timedelta(seconds=400)
    signature = Webhook(SECRET).sign("msg_old", old, "{}")
    result = herald("verify", "--secret", SECRET, "-H", "webhook-id: msg_old", "-H", f"webhook-timestamp: {int(old.timestamp())}",
                    "-H", f"webhook-signature: {signature}", "--data", "{}")
    assert result.returncode == 1
    assert "outside the tolerance" in result.stderr
    # The same request checked against the time it was received passes.
    at = herald("verify", "--secret", SECRET, "--at", str(int(old.timestamp()) + 5), "-H", "webhook-id: msg_old",
                "-H", f"webhook-timestamp: {int(old.timestamp())}", "-H", f"webhook-signature: {signature}", "--data", "{}")
    assert at.returncode == 0, at.stderr
