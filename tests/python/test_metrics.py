"""`GET /metrics` (Prometheus text format) after real deliveries to `herald listen`."""
import re
import subprocess
import tempfile
import time

import requests

from conftest import HERALD, Listener

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOKEN = "metrics-admin-token"


def metric(text, name, labels=None):
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:]+)(\{[^}]*\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if labels is None or all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


def test_metrics_count_publishes_attempts_and_latency():
    listener = Listener("--secret", SECRET, "--fail-first", "1")
    with tempfile.TemporaryDirectory() as directory:
        proc = subprocess.Popen([HERALD, "serve", "--port", "0", "--database", f"sqlite:{directory}/h.sqlite", "--token", TOKEN,
                                 "--allow-network", "127.0.0.0/8", "--retry-schedule", "1,1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            assert line.startswith("Herald listening on "), line + proc.stderr.read()
            url = line.split()[-1]
            headers = {"Authorization": f"Bearer {TOKEN}"}
            requests.post(f"{url}/api/v1/app", json={"name": "M", "uid": "m"}, headers=headers, timeout=10).raise_for_status()
            requests.post(f"{url}/api/v1/app/m/endpoint", json={"url": listener.url, "secret": SECRET}, headers=headers, timeout=10).raise_for_status()
            for index in range(3):
                assert requests.post(f"{url}/api/v1/app/m/msg", json={"eventType": "e", "payload": {"i": index}}, headers=headers, timeout=10).status_code == 202
            seen = [listener.next_request(timeout=20) for _ in range(4)]  # one 500, then three 200s
            assert sorted(r["status"] for r in seen) == [200, 200, 200, 500]
            deadline = time.monotonic() + 20
            while True:
                text = requests.get(f"{url}/metrics", timeout=10).text
                if (metric(text, "herald_attempts_total", {"outcome": "success", "status_class": "2xx"}) or 0) >= 3 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert metric(text, "herald_messages_published_total") == 3
            assert metric(text, "herald_attempts_total", {"outcome": "success", "status_class": "2xx"}) == 3
            assert metric(text, "herald_attempts_total", {"outcome": "failure", "status_class": "5xx"}) == 1
            assert metric(text, "herald_attempt_duration_seconds_count") == 4
            assert metric(text, "herald_publish_to_delivery_seconds_count") >= 2
            assert "herald_deliveries_in_flight" in text
            assert SECRET not in text and TOKEN not in text
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            listener.stop()
