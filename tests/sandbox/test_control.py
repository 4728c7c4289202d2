"""Introspection (/_sandbox/*), run-time options, webhooks, logging and the run_sandbox command."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests
from django.core.management import CommandError, call_command

from .helpers import WebhookReceiver, call, item_path, task_path, wait_until

ROOT = Path(__file__).resolve().parents[2]


# -- counts -----------------------------------------------------------------------------------------------


def test_stats_count_requests_where_they_were_addressed(sandbox):
    call(sandbox, "POST", task_path("a/b"))
    call(sandbox, "GET", task_path("a/b"))
    call(sandbox, "GET", task_path("a/b"))
    call(sandbox, "DELETE", task_path("a/b", version="2"))
    call(sandbox, "GET", item_path("a/b"))
    call(sandbox, "GET", item_path("c"), key="wrong")
    call(sandbox, "GET", "/catalog/v1/item")
    stats = sandbox.stats()
    assert stats["requests"] == 7
    assert stats["endpoints"] == {
        "POST task": 1,
        "GET task": 2,
        "DELETE task": 1,
        "GET item": 2,
        "GET catalog": 1,
    }
    assert stats["tasks"] == {"a/b": {"adbreaks": {"1.0": {"POST": 1, "GET": 2}, "2": {"DELETE": 1}}}}
    assert stats["items"] == {"a/b": 1, "c": 1}
    assert stats["statuses"] == {"200": 5, "404": 1, "401": 1}
    assert stats["max_concurrent"] >= 1
    # A request leaves the in-flight count just after its answer is written, so the client can read the
    # answer a moment before that: wait (bounded) for the count to settle rather than race it.
    deadline = time.monotonic() + 5
    while sandbox.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sandbox.stats()["in_flight"] == 0
    assert sandbox.task_requests("a/b", "adbreaks", "1.0") == 3
    assert sandbox.task_requests("a/b", "adbreaks", "1.0", "GET") == 2
    assert sandbox.item_requests("a/b") == 1
    assert sandbox.item_requests("never") == 0


def test_stats_over_http_match_the_object_and_need_the_key(sandbox):
    call(sandbox, "GET", item_path("x"))
    over_http = call(sandbox, "GET", "/_sandbox/stats")
    assert over_http.status_code == 200
    assert over_http.json() == sandbox.stats()
    assert call(sandbox, "GET", "/_sandbox/stats", key=None).status_code == 401
    assert sandbox.stats()["requests"] == 1  # introspection is not counted


def test_reset_forgets_tasks_counts_and_run_time_options(sandbox):
    call(sandbox, "POST", task_path("tt1"))
    sandbox.configure(error_rate=1.0)
    answer = call(sandbox, "POST", "/_sandbox/reset")
    assert answer.status_code == 200
    assert sandbox.options.error_rate == 0
    assert sandbox.stats()["requests"] == 0
    assert call(sandbox, "GET", task_path("tt1")).status_code == 404
    assert call(sandbox, "POST", "/_sandbox/reset", key="wrong").status_code == 401


# -- options ----------------------------------------------------------------------------------------------


def test_config_over_http_changes_behaviour(sandbox):
    answer = call(sandbox, "POST", "/_sandbox/config", json={"error_rate": 1, "retry_after": 3})
    assert answer.status_code == 200
    assert answer.json()["error_rate"] == 1.0
    assert answer.json()["api_key"] == "***"
    assert call(sandbox, "GET", item_path("x")).status_code == 503
    assert call(sandbox, "GET", "/_sandbox/config").json()["retry_after"] == 3


@pytest.mark.parametrize(
    "body",
    [
        {"error_rate": 2},
        {"latency": -1},
        {"no_such_option": 1},
        {"error_rate": 0.6, "rate_limit_rate": 0.6},
        [1],
    ],
)
def test_bad_config_over_http_is_422_and_changes_nothing(sandbox, body):
    answer = call(sandbox, "POST", "/_sandbox/config", json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["msg"]
    assert sandbox.options.error_rate == 0


def test_config_over_http_needs_the_key(sandbox):
    assert call(sandbox, "POST", "/_sandbox/config", key=None, json={"error_rate": 1}).status_code == 401
    assert sandbox.options.error_rate == 0


def test_configure_rejects_unknown_names_and_bad_values(sandbox):
    with pytest.raises(TypeError, match="no_such"):
        sandbox.configure(no_such=1)
    with pytest.raises(ValueError, match="hang_mode"):
        sandbox.configure(hang_mode="sometimes")
    with pytest.raises(ValueError, match="webhook_url"):
        sandbox.configure(webhook_url="file:///etc/passwd")
    with pytest.raises(ValueError, match="latency"):
        sandbox.configure(latency=True)


# -- webhooks ---------------------------------------------------------------------------------------------


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


def test_webhook_announces_done_and_failed_tasks_with_the_secret(sandbox, receiver):
    sandbox.configure(webhook_url=receiver.url, webhook_secret="hook-secret")
    call(sandbox, "POST", task_path("ok-1", "markers", "2"))
    call(sandbox, "POST", task_path("will-FAIL", "adbreaks", "1.0"))
    deliveries = [receiver.next(), receiver.next()]
    payloads = sorted((payload for _, payload in deliveries), key=lambda payload: payload["inventory_id"])
    assert [(p["inventory_id"], p["product"], p["version"], p["type"]) for p in payloads] == [
        ("ok-1", "markers", "2", "task.completed"),
        ("will-FAIL", "adbreaks", "1.0", "task.completed"),
    ]
    assert all(datetime.fromisoformat(payload["timestamp"]).tzinfo for payload in payloads)
    assert all(headers["x-api-key"] == "hook-secret" for headers, _ in deliveries)
    assert all(headers["content-type"] == "application/json" for headers, _ in deliveries)
    wait_until(lambda: sandbox.stats()["webhooks"]["sent"] == 2)


def test_deactivated_task_sends_no_webhook(sandbox, receiver):
    sandbox.configure(webhook_url=receiver.url, webhook_secret="s")
    call(sandbox, "POST", task_path("stopped"))
    call(sandbox, "DELETE", task_path("stopped"))
    call(sandbox, "POST", task_path("finished"))
    _, payload = receiver.next()
    # "stopped" was due first; had it been announced, it would have come before "finished".
    assert payload["inventory_id"] == "finished"
    assert receiver.received.empty()


def test_restarted_task_is_announced_once_for_its_new_run(sandbox, receiver):
    sandbox.configure(webhook_url=receiver.url, pending_seconds=1.0, processing_seconds=0)
    call(sandbox, "POST", task_path("again"))  # first run due after 1.0 s
    call(sandbox, "DELETE", task_path("again"))
    sandbox.configure(pending_seconds=0.1)
    call(sandbox, "POST", task_path("again"))  # second run due after 0.1 s, before the first run's time
    sandbox.configure(pending_seconds=1.5)
    call(sandbox, "POST", task_path("marker"))  # due after 1.5 s, after the first run's time
    (first_headers, first), (_, second) = receiver.next(), receiver.next()
    # Had the first run's schedule been honoured, "again" would have come a second time before "marker".
    assert [first["inventory_id"], second["inventory_id"]] == ["again", "marker"]
    assert "x-api-key" not in first_headers  # no secret configured, none sent


def test_unreachable_webhook_is_counted_logged_and_harmless(sandbox, caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    sandbox.configure(
        webhook_url=f"http://127.0.0.1:{closed_port}/hook?token=abc", webhook_secret="top-secret"
    )
    with caplog.at_level(logging.INFO, logger="dashboard.sandbox"):
        call(sandbox, "POST", task_path("lonely"))
        wait_until(lambda: sandbox.stats()["webhooks"]["failed"] == 1)
    assert call(sandbox, "GET", task_path("lonely")).json()["status"] == "done"
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("lonely" in message for message in warnings)
    assert "top-secret" not in caplog.text
    assert "token=abc" not in caplog.text


def test_webhook_refused_by_the_receiver_is_counted_as_failed(sandbox):
    refusing = WebhookReceiver(status=403)
    try:
        sandbox.configure(webhook_url=refusing.url, webhook_secret="wrong")
        call(sandbox, "POST", task_path("refused"))
        refusing.next()
        wait_until(lambda: sandbox.stats()["webhooks"]["failed"] == 1)
    finally:
        refusing.close()


# -- logging ----------------------------------------------------------------------------------------------

CANARY = "canary K3y&<>\"'%2F+é"


def test_log_lines_never_hold_the_key(sandbox, caplog):
    sandbox.configure(api_key=CANARY)
    with caplog.at_level(logging.DEBUG):
        call(sandbox, "POST", task_path("tt1"))
        call(sandbox, "GET", item_path("tt1"), key=None, headers={"X-API-Key": CANARY})
        call(sandbox, "GET", item_path("tt1"), key=CANARY + "-wrong")
        call(sandbox, "GET", "/_sandbox/stats")
        call(sandbox, "GET", "/_sandbox/config")
    assert (
        len([r for r in caplog.records if r.name == "dashboard.sandbox" and "/tasks/" in r.getMessage()]) == 3
    )
    text = caplog.text + json.dumps(call(sandbox, "GET", "/_sandbox/config").json())
    for form in (CANARY, requests.utils.quote(CANARY, safe=""), "K3y"):
        assert form not in text
    assert "key=***" in caplog.text


# -- the command ------------------------------------------------------------------------------------------


def test_run_sandbox_serves_until_interrupted(tmp_path):
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text('{"id": "film-1"}\n{"id": "series-1", "type": "series"}\n', encoding="utf-8")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_sandbox", "--port", "0", "--key", "cmd-key-123",
         "--pending-seconds", "0", "--processing-seconds", "0", "--catalog-file", str(catalog), "--seed", "4"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first_line = process.stdout.readline()
        assert "Vionlabs sandbox on http://127.0.0.1:" in first_line
        url = first_line.split(" on ")[1].split()[0]
        created = requests.post(url + task_path("x/y"), params={"key": "cmd-key-123"}, timeout=5)
        assert created.json()["status"] == "done"
        listed = requests.get(url + "/catalog/v1/item", params={"key": "cmd-key-123"}, timeout=5).json()
        assert [entry["id"] for entry in listed] == ["film-1", "series-1", "x/y"]
        assert requests.get(url + item_path("x"), params={"key": "sandbox-key"}, timeout=5).status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "Sandbox stopped." in out
    assert "POST /tasks/catalog-item/x%2Fy/product/adbreaks/version/1.0?key=*** 200" in err.replace('"', "")
    assert "cmd-key-123" not in out + err


def test_run_sandbox_refuses_a_bad_catalog_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n", encoding="utf-8")
    with pytest.raises(CommandError, match="line 1"):
        call_command("run_sandbox", "--port", "0", "--catalog-file", str(bad))


def test_run_sandbox_refuses_bad_options():
    with pytest.raises(CommandError, match="must not exceed 1"):
        call_command("run_sandbox", "--port", "0", "--error-rate", "0.7", "--rate-limit-rate", "0.7")


def test_malformed_request_line_is_logged_without_the_key(sandbox, caplog):
    with caplog.at_level(logging.DEBUG, logger="dashboard.sandbox"):
        host, port = sandbox.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"GET /tasks/catalog-item/x?key=Secret-123&b=1 junk HTTP/1.1\r\n\r\n")
            answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400")
    assert "Bad request syntax" in caplog.text
    assert "Secret-123" not in caplog.text


def test_the_server_imports_nothing_from_django():
    code = (
        "import sys, dashboard.sandbox, dashboard.sandbox.bench;"
        "loaded = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'));"
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
