"""Log lines: a request id in and out, carried into jobs; JSON on demand; the key redacted in both formats."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from django.test import override_settings
from django_tasks_db.models import DBTaskResult

from dashboard.catalog.client import reset_clients
from dashboard.catalog.jobs import enqueue_on_commit, refresh_item, run_operation
from dashboard.catalog.models import CatalogItem
from dashboard.logs import ContextFilter, log_context
from dashboard.vionlabs.client import redact_key
from tests.vionlabs.fakes import closed_port_url
from tests.vionlabs.test_redaction import CANARY

ROOT = Path(__file__).resolve().parent.parent

# Logs a line with context, one with the key in its arguments and one with the key in an exception.
SCRIPT = f"""
import logging, django
django.setup()
from dashboard.logs import log_context
log = logging.getLogger("dashboard.test")
with log_context(request_id="req-42", user="alice", operation_id=7):
    log.warning("hello %s", "world")
    log.warning("calling %s", "https://vionlabs.test/tasks?key=" + {CANARY!r})
    try:
        raise ValueError("failed with " + {CANARY!r})
    except ValueError:
        log.exception("it broke")
"""


def run_logging(log_format: str) -> str:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "LOG_FORMAT": log_format,
        "VIONLABS_API_KEY": CANARY,
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_json_format_writes_one_object_per_line_with_the_context():
    lines = run_logging("json").strip().splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) == 3
    first = entries[0]
    assert first["message"] == "hello world"
    assert (first["level"], first["logger"]) == ("WARNING", "dashboard.test")
    assert (first["request_id"], first["user"], first["operation_id"]) == ("req-42", "alice", 7)
    assert first["ts"].endswith("+00:00")
    assert "ValueError" in entries[2]["exc"]


def test_default_format_stays_human_readable():
    output = run_logging("plain")
    first = output.splitlines()[0]
    assert "WARNING dashboard.test [req-42]: hello world" in first
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_the_key_is_redacted_in_both_formats(log_format):
    output = run_logging(log_format)
    for form in {CANARY, quote(CANARY, safe=""), quote_plus(CANARY), json.dumps(CANARY)[1:-1]}:
        assert form not in output
    assert "[redacted]" in output
    assert "it broke" in output  # the records were written, only the key is gone


def test_an_unknown_log_format_is_refused():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "LOG_FORMAT": "xml"}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "LOG_FORMAT must be 'plain' or 'json'" in done.stderr


@pytest.mark.django_db
def test_every_response_carries_a_new_request_id(client):
    first, second = client.get("/healthz"), client.get("/login/")
    assert len(first["X-Request-ID"]) == 32
    assert first["X-Request-ID"] != second["X-Request-ID"]


@pytest.mark.django_db
def test_a_sane_incoming_request_id_is_kept(client):
    response = client.get("/login/", headers={"X-Request-ID": "lb-7f3a.19:2"})
    assert response["X-Request-ID"] == "lb-7f3a.19:2"


@pytest.mark.django_db
@pytest.mark.parametrize("incoming", ["two words", 'quote"d', "x" * 200, "tab\there", ""])
def test_an_odd_incoming_request_id_is_replaced(client, incoming):
    response = client.get("/login/", headers={"X-Request-ID": incoming})
    assert response["X-Request-ID"] != incoming
    assert len(response["X-Request-ID"]) == 32


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.addFilter(ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected():
    handler = Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler.records
    root.removeHandler(handler)


def test_a_requests_log_lines_carry_its_id_and_user(viewer_client, viewer, collected):
    response = viewer_client.get("/items/999999/", headers={"X-Request-ID": "req-404"})
    assert response.status_code == 404
    (record,) = [r for r in collected if r.name == "django.request"]
    assert (record.request_id, record.user) == ("req-404", viewer.username)


@pytest.mark.django_db
def test_a_job_enqueued_under_a_request_id_receives_it(django_capture_on_commit_callbacks):
    with log_context(request_id="req-9"), django_capture_on_commit_callbacks(execute=True):
        enqueue_on_commit(refresh_item, 5, "webhook")
    job = DBTaskResult.objects.get()
    assert job.args_kwargs == {"args": [5, "webhook"], "kwargs": {"request_id": "req-9"}}


@pytest.mark.django_db
def test_a_job_outside_any_request_gets_no_request_id(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        enqueue_on_commit(refresh_item, 5, "sync")
    assert DBTaskResult.objects.get().args_kwargs == {"args": [5, "sync"], "kwargs": {}}


@pytest.mark.django_db
def test_a_jobs_log_lines_carry_the_request_id_it_was_given(collected):
    item = CatalogItem.objects.create(inventory_id="tt-log", title="Log")
    with override_settings(VIONLABS_API_URL=closed_port_url(), VIONLABS_MAX_RETRIES=0):
        reset_clients()
        try:
            refresh_item.call(item.pk, "sync", request_id="req-77")
        finally:
            reset_clients()
    failures = [r for r in collected if r.getMessage().startswith("Refreshing item")]
    assert [r.request_id for r in failures] == ["req-77"]


def test_a_key_value_already_masked_is_left_as_written():
    assert redact_key('"GET /tasks?key=*** HTTP/1.1" 200') == '"GET /tasks?key=*** HTTP/1.1" 200'
    assert redact_key("/tasks?key=***abc") == "/tasks?key=[redacted]"
    assert redact_key("/tasks?key=real-key&x=1") == "/tasks?key=[redacted]&x=1"


@pytest.mark.django_db
def test_an_operation_jobs_log_lines_carry_the_operation_id(collected):
    run_operation.call(424242, request_id="req-op")
    (record,) = [r for r in collected if "no longer exists" in r.getMessage()]
    assert (record.request_id, record.operation_id) == ("req-op", 424242)
