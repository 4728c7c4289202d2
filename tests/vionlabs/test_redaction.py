"""The API key must appear in no exception text, repr, traceback or log record, whatever goes wrong."""

from __future__ import annotations

import html
import json
import logging
import re
import traceback
from urllib.parse import quote, quote_plus

import pytest
import responses

from dashboard.vionlabs import VionlabsError, redaction
from dashboard.vionlabs.client import _REDACTOR
from tests.vionlabs.fakes import (
    FAILURES,
    TASK_URL,
    closed_port_url,
    key_forms,
    local_server,
    make_client,
)

# Changes under URL, HTML and JSON encoding, and under repr().
CANARY = "Ca&na\"ry<key>/+ %é#?\\'x"

HTTP_FAILURES = {
    "500": {"status": 500, "body": f"Internal error for key={CANARY}"},
    "502": {"status": 502, "body": "<html>Bad gateway</html>"},
    "503": {"status": 503, "headers": {"Retry-After": "garbage"}},
    "504": {"status": 504},
    "429": {"status": 429, "headers": {"Retry-After": "2"}},
    "400": {"status": 400, "json": {"detail": f"bad key {CANARY}"}},
    "401": {"status": 401, "json": {"detail": "Not authenticated"}},
    "403": {"status": 403, "json": {"detail": f"key {CANARY} has no access"}},
    "404": {"status": 404, "json": {"detail": "Not Found"}},
    "409": {"status": 409, "json": {"detail": "exists"}},
    "422": {
        "status": 422,
        "json": {"detail": [{"loc": ["query", "key"], "msg": f"invalid key {CANARY}", "input": CANARY}]},
    },
    "302": {"status": 302, "headers": {"Location": f"https://vionlabs.test/x?key={quote_plus(CANARY)}"}},
    "not json": {"status": 200, "body": f"<p>{CANARY}</p>"},
    "wrong shape": {"status": 200, "json": {"state": CANARY}},
}
METHODS = ("GET", "POST", "DELETE")


@pytest.fixture
def debug_logs(caplog, monkeypatch):
    """Capture every record of every logger at DEBUG, urllib3's included."""
    for name in ("urllib3", "urllib3.connectionpool", "urllib3.connection", "urllib3.response", "requests"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")  # the project's settings hold it at WARNING
    return caplog


def _call(client, method: str):
    if method == "GET":
        return client.get_task("tt1", "adbreaks", "1.0.1")
    if method == "POST":
        return client.create_task("tt1", "adbreaks", "1.0.1")
    return client.deactivate_task("tt1", "adbreaks", "1.0.1")


def _all_log_text(caplog) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    parts = [caplog.text]
    for record in caplog.records:
        parts += [formatter.format(record), record.getMessage(), str(record.exc_text or "")]
    return "\n".join(parts)


def assert_key_absent(client, error: BaseException, caplog) -> None:
    texts = {
        "str": str(error),
        "repr": repr(error),
        "args": repr(error.args),
        "traceback": "".join(traceback.format_exception(error)),
        "client repr": repr(client),
        "logs": _all_log_text(caplog),
    }
    for where, text in texts.items():
        for form in key_forms(CANARY):
            assert form not in text, f"key leaked into {where} as {form!r}"
    # Raised outside requests' except block: nothing of theirs is chained to ours.
    assert error.__cause__ is None
    assert error.__context__ is None


def test_canary_forms_are_all_different():
    # The test is only worth something if the encodings really change the key.
    assert len(key_forms(CANARY)) >= 6


def test_the_simulated_failures_really_carry_the_key():
    # Proof that the forms checked below would be found if requests' own exceptions got through.
    for name, build in FAILURES.items():
        exc = build("GET", TASK_URL, CANARY)
        text = str(exc) + repr(exc.args) + str(getattr(exc, "request", None) and exc.request.url)
        assert any(form in text for form in key_forms(CANARY)), name


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("failure", list(FAILURES))
def test_transport_failures_do_not_leak_the_key(debug_logs, method, failure):
    client, _ = make_client(api_key=CANARY, max_retries=1)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.add(method, TASK_URL, body=FAILURES[failure](method, TASK_URL, CANARY))
        with pytest.raises(VionlabsError) as caught:
            _call(client, method)
    assert_key_absent(client, caught.value, debug_logs)
    assert any(r.name == "dashboard.vionlabs.client" for r in debug_logs.records)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("failure", list(HTTP_FAILURES))
def test_http_failures_do_not_leak_the_key(debug_logs, method, failure):
    client, _ = make_client(api_key=CANARY, max_retries=1)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.add(method, TASK_URL, **HTTP_FAILURES[failure])
        with pytest.raises(VionlabsError) as caught:
            _call(client, method)
    assert_key_absent(client, caught.value, debug_logs)


def test_refused_path_segment_does_not_leak_the_key(debug_logs):
    client, _ = make_client(api_key=CANARY)
    with pytest.raises(VionlabsError) as caught:
        client.get_task("..", "adbreaks", "1")
    assert_key_absent(client, caught.value, debug_logs)


def test_client_repr_hides_the_key():
    client, _ = make_client(api_key=CANARY)
    assert "***" in repr(client)
    assert all(form not in repr(client) for form in key_forms(CANARY))


def _answer_500(handler):
    body = b'{"detail": "boom"}'
    handler.send_response(500)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _hang_up(handler):
    handler.close_connection = True  # read the request, answer nothing: the client sees the connection drop


def _redirect(handler):
    handler.send_response(302)
    handler.send_header("Location", handler.path)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("handler", "answered"),
    [(_answer_500, True), (_hang_up, False), (_redirect, True)],
    ids=["500", "hang up", "redirect"],
)
def test_real_urllib3_debug_logs_do_not_leak_the_key(debug_logs, method, handler, answered):
    with local_server(handler) as (base_url, paths):
        client, _ = make_client(api_key=CANARY, base_url=base_url, max_retries=1, timeout=5)
        with pytest.raises(VionlabsError) as caught:
            _call(client, method)
        client.close()
    assert paths, "the request did not reach the local server"
    assert_key_absent(client, caught.value, debug_logs)
    # The real urllib3 path ran; when it logged the request line, its URL was redacted, not merely absent.
    urllib3_lines = [r.getMessage() for r in debug_logs.records if r.name.startswith("urllib3")]
    assert urllib3_lines
    if answered:
        assert any("key=[redacted]" in line for line in urllib3_lines), urllib3_lines


def test_real_connection_refused_does_not_leak_the_key(debug_logs):
    client, _ = make_client(api_key=CANARY, base_url=closed_port_url(), max_retries=1, timeout=2)
    with pytest.raises(VionlabsError) as caught:
        client.create_task("tt1", "adbreaks", "1.0.1")
    assert_key_absent(client, caught.value, debug_logs)
    assert caught.value.outcome_unknown is False


def test_exceptions_logged_on_urllib3_loggers_are_redacted(debug_logs):
    make_client(api_key=CANARY)
    exc = FAILURES["read timeout"]("GET", TASK_URL, CANARY)
    try:
        raise exc
    except Exception:
        logging.getLogger("urllib3.connectionpool").debug("failed %s", exc.request.url, exc_info=True)
    text = _all_log_text(debug_logs)
    assert "failed" in text
    assert "ReadTimeout" in text
    assert all(form not in text for form in key_forms(CANARY))


def test_the_redacting_filter_is_installed_once():
    make_client(api_key="first-key")
    make_client(api_key="second-key")
    for name in ("urllib3", "urllib3.connectionpool", "dashboard.vionlabs.client"):
        assert logging.getLogger(name).filters.count(_REDACTOR) == 1


def test_redaction_covers_every_client_key_and_bare_key_parameters():
    make_client(api_key="alpha-key-1")
    make_client(api_key="beta-key-2")
    text = _REDACTOR.redact("alpha-key-1 beta-key-2 /x?page=1&key=someone-elses&b=2 ?KEY=y")
    assert text == "[redacted] [redacted] /x?page=1&key=[redacted]&b=2 ?KEY=[redacted]"


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(lambda k: k, id="raw"),
        pytest.param(lambda k: quote(k, safe=""), id="quote"),
        pytest.param(quote, id="quote-keeping-slash"),
        pytest.param(quote_plus, id="quote_plus"),
        pytest.param(
            lambda k: re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(k, safe="")),
            id="lowercase-hex",
        ),
        pytest.param(lambda k: repr(k)[1:-1], id="repr"),
        pytest.param(lambda k: json.dumps(k)[1:-1], id="json"),
        pytest.param(html.escape, id="html"),
    ],
)
def test_redact_removes_every_form_of_the_key(form):
    text = redaction.redact(f"before {form(CANARY)} after", CANARY)
    assert text == "before [redacted] after"


def test_redact_leaves_text_alone_without_a_key():
    assert redaction.redact("nothing secret here", "") == "nothing secret here"
