"""The herald CLI end to end on 127.0.0.1: send to listen, retries, duplicates, errors."""
import json
import os
import shlex
import subprocess
import tempfile

import pytest

from conftest import herald

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"


def test_send_to_listen_with_the_same_secret_is_valid(listener_factory):
    listener = listener_factory("--secret", SECRET)
    sent = herald("send", listener.url, "--secret", SECRET, "--event", "user.created", "--data", '{"id": 42}', "--id", "msg_e2e_1")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("200 OK in ")
    seen = listener.next_request()
    assert seen["valid"] is True and seen["status"] == 200
    assert seen["duplicate"] is False and seen["id"] == "msg_e2e_1"
    assert seen["body"]["type"] == "user.created" and seen["body"]["data"] == {"id": 42}
    assert seen["headers"]["user-agent"].startswith("Herald/")
    # The signature header is shown redacted, never in full.
    assert seen["headers"]["webhook-signature"].startswith("<redacted")


def test_another_secret_is_reported_invalid_and_gets_401(listener_factory):
    listener = listener_factory("--secret", SECRET)
    sent = herald("send", listener.url, "--secret", OTHER, "--event", "user.created", "--data", "{}")
    assert sent.returncode == 1
    assert sent.stdout.startswith("401 ")
    assert "401" in sent.stderr and len(sent.stderr.strip().splitlines()) == 1
    seen = listener.next_request()
    assert seen["valid"] is False and seen["status"] == 401
    assert "no signature matched" in seen["reason"]


def test_a_resent_id_is_shown_as_a_duplicate(listener_factory):
    listener = listener_factory("--secret", SECRET)
    for attempt in range(2):
        sent = herald("send", listener.url, "--secret", SECRET, "--event", "order.paid", "--data", "[1,2]", "--id", "msg_dup")
        assert sent.returncode == 0, sent.stderr
    first, second = listener.next_request(), listener.next_request()
    assert first["duplicate"] is False
    assert second["duplicate"] is True and second["deliveries"] == 2


def test_fail_first_answers_errors_then_succeeds(listener_factory):
    listener = listener_factory("--secret", SECRET, "--fail-first", "2", "--fail-status", "503")
    codes = []
    for _ in range(3):
        sent = herald("send", listener.url, "--secret", SECRET, "--event", "e", "--data", "{}", "--id", "msg_retry")
        codes.append((sent.returncode, sent.stdout.split(" ")[0]))
    assert codes == [(1, "503"), (1, "503"), (0, "200")]
    statuses = [listener.next_request()["status"] for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_status_flag_and_other_paths(listener_factory):
    listener = listener_factory("--secret", SECRET, "--status", "202", "--path", "/hooks/in")
    sent = herald("send", listener.url, "--secret", SECRET, "--event", "e", "--data", "{}")
    assert sent.returncode == 0 and sent.stdout.startswith("202")
    wrong = herald("send", listener.url.replace("/hooks/in", "/elsewhere"), "--secret", SECRET, "--event", "e", "--data", "{}")
    assert wrong.returncode == 1 and wrong.stdout.startswith("404")


@pytest.mark.parametrize("scheme", ["standard", "github", "stripe", "slack", "shopify"])
def test_every_scheme_round_trips_through_send_and_listen(listener_factory, scheme):
    secret = SECRET if scheme == "standard" else "plain text secret"
    listener = listener_factory("--secret", secret, "--scheme", scheme)
    sent = herald("send", listener.url, "--scheme", scheme, "--secret", secret, "--event", "e", "--data", '{"k": "v"}')
    assert sent.returncode == 0, sent.stderr
    assert listener.next_request()["valid"] is True
    bad = herald("send", listener.url, "--scheme", scheme, "--secret", "another secret" if scheme != "standard" else OTHER, "--event", "e", "--data", "{}")
    assert bad.returncode == 1
    assert listener.next_request()["valid"] is False


def test_ed25519_keys_sign_and_verify(listener_factory):
    signing = "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg=="
    public = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4="
    listener = listener_factory("--secret", public)
    sent = herald("send", listener.url, "--secret", signing, "--event", "e", "--data", "{}")
    assert sent.returncode == 0, sent.stderr
    assert listener.next_request()["valid"] is True


def test_sign_curl_command_is_accepted_by_the_listener(listener_factory):
    listener = listener_factory("--secret", SECRET)
    payload = "{\"quote\": \"it's\"}"
    result = herald("sign", "--secret", SECRET, "--data", payload, "--curl", listener.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("curl ")
    ran = subprocess.run(["sh", "-c", result.stdout], capture_output=True, text=True, timeout=30)
    assert ran.returncode == 0, ran.stderr
    seen = listener.next_request()
    assert seen["valid"] is True and seen["body"] == {"quote": "it's"}


def test_secrets_from_a_file_and_from_the_environment(listener_factory):
    listener = listener_factory("--secret", SECRET)
    with tempfile.NamedTemporaryFile("w", suffix=".secret", delete=False) as handle:
        handle.write(SECRET + "\n")
    try:
        from_file = herald("send", listener.url, "--secret-file", handle.name, "--event", "e", "--data", "{}")
        assert from_file.returncode == 0, from_file.stderr
    finally:
        os.unlink(handle.name)
    from_env = herald("send", listener.url, "--event", "e", "--data", "{}", env={"HERALD_WEBHOOK_SECRET": SECRET})
    assert from_env.returncode == 0, from_env.stderr
    assert listener.next_request()["valid"] and listener.next_request()["valid"]


def test_human_output_shows_the_verdict_and_hides_the_signature():
    proc = subprocess.Popen([__import__("conftest").HERALD, "listen", "--port", "0", "--secret", SECRET],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("Listening on http://127.0.0.1:")
        url = first.split()[2]
        signed = herald("sign", "--secret", SECRET, "--data", '{"a": 1}')
        signature = [l for l in signed.stdout.splitlines() if l.startswith("webhook-signature")][0].split(": ")[1]
        sent = herald("send", url, "--secret", SECRET, "--event", "shown", "--data", '{"a": 1}')
        assert sent.returncode == 0
        lines = []
        while not any(l.startswith("  duplicate:") for l in lines):
            lines.append(proc.stdout.readline())
        text = "".join(lines)
        assert "POST /webhook" in text and "signature: valid (standard)" in text
        assert '"type" : "shown"' in text or '"type": "shown"' in text
        assert "v1," not in text and signature not in text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("args, message", [
    (["verify", "--data", "{}"], "no secret"),
    (["sign", "--secret", "whsec_", "--data", "x"], "malformed secret"),
    (["sign", "--secret", "whsec_!!!", "--data", "x"], "malformed secret"),
    (["send", "not a url", "--secret", SECRET, "--event", "e", "--data", "{}"], "is not an http(s) URL"),
    (["send", "http://127.0.0.1:9/", "--secret", SECRET, "--event", "e", "--data", "{not json"], "not valid JSON"),
    (["send", "http://127.0.0.1:9/", "--secret", SECRET, "--event", "e", "--data", "@/nonexistent.json"], "cannot read data file"),
    (["verify", "--secret", SECRET, "-H", "no colon here", "--data", "{}"], "not in the form"),
    (["sign", "--scheme", "bogus", "--secret", SECRET, "--data", "x"], "bogus"),
    (["sign", "--scheme", "hmac", "--secret", "s", "--data", "x"], "--signature-header"),
    (["listen", "--port", "70000"], "--port"),
    (["sign", "--secret-file", "/nonexistent", "--data", "x"], "cannot read secret file"),
])
def test_errors_are_one_line_on_stderr_with_a_nonzero_exit(args, message):
    result = herald(*args, input="")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "MfKQ9r8G" not in result.stderr


def test_send_to_a_closed_port_fails_clearly():
    result = herald("send", "http://127.0.0.1:9/webhook", "--secret", SECRET, "--event", "e", "--data", "{}", "--timeout", "5")
    assert result.returncode == 1
    assert result.stderr.startswith("herald: error: could not deliver")
    assert len(result.stderr.strip().splitlines()) == 1
