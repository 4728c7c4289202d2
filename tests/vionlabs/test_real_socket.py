"""The client against a tiny local HTTP server on a real socket: encoding on the wire, deadlines, timeouts."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from dashboard.vionlabs import VionlabsBadResponse, VionlabsOutOfTime, VionlabsUnavailable
from tests.vionlabs.fakes import KEY, closed_port_url, local_server, make_client

TASK_JSON = json.dumps({"status": "pending", "error": None, "_links": {}}).encode()


def _answer(handler, status=200, body=TASK_JSON, headers=()):
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers:
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def _drip(handler, *, chunked=False, gap=0.02, limit=10.0):
    """Send headers at once, then one byte per `gap` seconds (for at most `limit` seconds)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    if chunked:
        handler.send_header("Transfer-Encoding", "chunked")
    else:
        handler.send_header("Content-Length", "100000")
    handler.end_headers()
    stop = time.monotonic() + limit
    try:
        while time.monotonic() < stop:
            handler.wfile.write(b"1\r\n \r\n" if chunked else b" ")
            handler.wfile.flush()
            time.sleep(gap)
    except OSError:
        pass  # the client gave up and closed the connection: what we want
    handler.close_connection = True


@pytest.mark.parametrize(
    "inventory_id", ["a/b", "a b", "é✓", "x?key=evil", "x#frag", "%2F", "tt0111161/4k", "..a", "a;b", "+"]
)
def test_awkward_ids_reach_a_real_server_intact(inventory_id):
    with local_server(_answer) as (base_url, paths):
        client, _ = make_client(base_url=base_url)
        client.get_task(inventory_id, "adbreaks", "op-adbreak v6/1")
        client.close()
    url = urlsplit(paths[0])
    segments = [unquote(segment) for segment in url.path.split("/")]
    assert segments == [
        "",
        "tasks",
        "catalog-item",
        inventory_id,
        "product",
        "adbreaks",
        "version",
        "op-adbreak v6/1",
    ]
    assert parse_qs(url.query) == {"key": [KEY]}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_dripping_server_cannot_hold_a_call_past_the_deadline(chunked):
    with local_server(lambda handler: _drip(handler, chunked=chunked)) as (base_url, paths):
        client, _ = make_client(base_url=base_url, timeout=0.3, max_retries=0)
        started = time.monotonic()
        with pytest.raises(VionlabsUnavailable, match=r"did not answer in 0\.3 s") as caught:
            client.get_task("tt1", "adbreaks", "1")
        elapsed = time.monotonic() - started
        client.close()
    # Every byte arrives well within the read timeout, so only the deadline can stop this; without it the
    # call would last the server's full 10 s.
    assert elapsed < 5, f"the call took {elapsed:.1f} s"
    assert caught.value.outcome_unknown is False
    assert len(paths) == 1


def test_a_get_past_its_deadline_is_retried():
    with local_server(_drip) as (base_url, paths):
        client, sleeps = make_client(base_url=base_url, timeout=0.2, max_retries=1)
        with pytest.raises(VionlabsUnavailable):
            client.get_task("tt1", "adbreaks", "1")
        client.close()
    assert len(paths) == 2
    assert len(sleeps) == 1


def test_a_post_past_its_deadline_is_not_retried_and_its_outcome_is_unknown():
    with local_server(_drip) as (base_url, paths):
        client, sleeps = make_client(base_url=base_url, timeout=0.2, max_retries=3)
        with pytest.raises(VionlabsUnavailable) as caught:
            client.create_task("tt1", "adbreaks", "1")
        client.close()
    assert len(paths) == 1
    assert sleeps == []
    assert caught.value.outcome_unknown is True
    assert "refresh the task" in str(caught.value)


def test_a_silent_server_hits_the_read_timeout():
    def silent(handler):
        time.sleep(3)
        _answer(handler)

    with local_server(silent) as (base_url, paths):
        client, _ = make_client(base_url=base_url, timeout=0.2, max_retries=0)
        started = time.monotonic()
        with pytest.raises(VionlabsUnavailable, match="did not answer"):
            client.get_task("tt1", "adbreaks", "1")
        elapsed = time.monotonic() - started
        client.close()
    assert elapsed < 2.5, f"the call took {elapsed:.1f} s"
    assert len(paths) == 1


def test_a_refused_connection_is_retried_for_a_post():
    client, sleeps = make_client(base_url=closed_port_url(), max_retries=2, timeout=2)
    with pytest.raises(VionlabsUnavailable, match="Could not connect") as caught:
        client.create_task("tt1", "adbreaks", "1")
    assert len(sleeps) == 2
    assert caught.value.outcome_unknown is False


def test_a_real_redirect_is_not_followed():
    def redirect(handler):
        if handler.path.startswith("/elsewhere"):
            _answer(handler)
        else:
            _answer(handler, status=307, body=b"", headers=[("Location", "/elsewhere")])

    with local_server(redirect) as (base_url, paths):
        client, _ = make_client(base_url=base_url)
        with pytest.raises(VionlabsBadResponse, match="redirects"):
            client.create_task("tt1", "adbreaks", "1")
        client.close()
    assert len(paths) == 1


def test_connections_are_reused_across_calls():
    peers = []

    def answer_and_note_peer(handler):
        peers.append(handler.client_address)
        _answer(handler)

    with local_server(answer_and_note_peer) as (base_url, paths):
        client, _ = make_client(base_url=base_url)
        for _ in range(5):
            client.get_task("tt1", "adbreaks", "1")
        client.close()
    assert len(paths) == 5
    assert len(set(peers)) == 1  # one pooled keep-alive connection served all five calls


def test_a_client_bounded_by_a_deadline_cuts_the_attempt_short_and_says_so():
    with local_server(lambda handler: _drip(handler, limit=5.0)) as (base_url, paths):
        client, sleeps = make_client(base_url=base_url, timeout=10, max_retries=3)
        bounded = client.until(time.monotonic() + 0.4)
        with pytest.raises(VionlabsOutOfTime) as caught:
            bounded.get_task("tt1", "adbreaks", "1")
        client.close()
    assert len(paths) == 1  # the retries would end past the deadline: none is tried
    assert sleeps == []
    assert caught.value.outcome_unknown is False


def test_a_client_past_its_deadline_sends_nothing():
    with local_server(_answer) as (base_url, paths):
        client, _ = make_client(base_url=base_url)
        with pytest.raises(VionlabsOutOfTime) as caught:
            client.until(time.monotonic() - 1).create_task("tt1", "adbreaks", "1")
        assert client.get_task("tt1", "adbreaks", "1").status == "pending"  # the original is not bounded
        client.close()
    assert len(paths) == 1
    assert caught.value.outcome_unknown is False
