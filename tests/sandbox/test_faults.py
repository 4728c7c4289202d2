"""Fault injection, concurrency and connection handling of the sandbox."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from urllib.parse import urlsplit

import pytest
import requests

from .helpers import call, item_path, task_path


def _connection(sandbox, timeout: float = 10) -> http.client.HTTPConnection:
    parts = urlsplit(sandbox.url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def test_error_rate_one_answers_503_and_changes_nothing(sandbox):
    sandbox.configure(error_rate=1.0)
    answer = call(sandbox, "POST", task_path("tt1"))
    assert answer.status_code == 503
    assert answer.json() == {"detail": "Service temporarily unavailable"}
    sandbox.configure(error_rate=0.0)
    assert call(sandbox, "GET", task_path("tt1")).status_code == 404
    assert sandbox.stats()["faults"]["503"] == 1


def test_rate_limit_answers_429_with_retry_after(sandbox):
    sandbox.configure(rate_limit_rate=1.0, retry_after=7)
    answer = call(sandbox, "GET", item_path("tt1"))
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "7"
    assert answer.json()["detail"]


def test_a_seed_repeats_the_same_faults(sandbox):
    def run() -> list[int]:
        sandbox.reset()
        sandbox.configure(seed=11, error_rate=0.3, rate_limit_rate=0.3)
        return [call(sandbox, "GET", item_path("tt1")).status_code for _ in range(30)]

    first, second = run(), run()
    assert first == second
    assert {200, 429, 503} <= set(first)


def test_shares_split_the_requests(sandbox):
    sandbox.configure(seed=5, error_rate=0.25, rate_limit_rate=0.25)
    codes = [call(sandbox, "GET", item_path("tt1")).status_code for _ in range(200)]
    assert 25 <= codes.count(503) <= 75
    assert 25 <= codes.count(429) <= 75
    assert 60 <= codes.count(200) <= 140
    assert sandbox.stats()["statuses"] == {str(code): codes.count(code) for code in set(codes)}


def test_a_hanging_post_takes_effect_but_its_answer_never_comes(sandbox):
    sandbox.configure(hang_rate=1.0, hang_seconds=0.3, pending_seconds=60)
    connection = _connection(sandbox)
    connection.request("POST", task_path("tt1") + f"?key={sandbox.api_key}")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        connection.getresponse()
    connection.close()
    sandbox.configure(hang_rate=0.0)
    # As with a real timeout, the outcome is unknown to the caller: the task was in fact created.
    assert call(sandbox, "GET", task_path("tt1")).json()["status"] == "pending"
    assert sandbox.stats()["faults"]["hang"] == 1


def test_a_hang_outlasting_the_client_times_it_out_and_reset_releases_it(sandbox):
    sandbox.configure(hang_rate=1.0, hang_seconds=60)
    with pytest.raises(requests.ReadTimeout):
        call(sandbox, "GET", item_path("tt1"), timeout=0.3)
    assert sandbox.stats()["in_flight"] == 1
    sandbox.reset()
    assert call(sandbox, "GET", item_path("tt1")).status_code == 200


def test_drip_sends_the_body_one_byte_at_a_time(sandbox):
    sandbox.configure(hang_rate=1.0, hang_mode="drip", hang_seconds=1.0)
    host, port = urlsplit(sandbox.url).hostname, urlsplit(sandbox.url).port
    with socket.create_connection((host, port), timeout=5) as sock:
        request = f"GET {item_path('tt1')}?key={sandbox.api_key} HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(request.encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head, body = received.split(b"\r\n\r\n", 1)
        length = int(
            next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(
                b":"
            )[1]
        )
        body_chunks = [body] if body else []
        while sum(len(chunk) for chunk in body_chunks) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body_chunks.append(chunk)
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(b"".join(body_chunks)) == []
    assert length == 2
    assert len(body_chunks) == 2  # "[" then "]", never together


def test_drip_of_a_longer_body_arrives_in_pieces(sandbox):
    sandbox.configure(hang_rate=1.0, hang_mode="drip", hang_seconds=0.6)
    connection = _connection(sandbox)
    connection.request("GET", task_path("tt1") + f"?key={sandbox.api_key}")
    response = connection.getresponse()
    pieces = []
    while piece := response.read1(65536):
        pieces.append(piece)
    connection.close()
    assert response.status == 404
    assert json.loads(b"".join(pieces)) == {"detail": "Task not found"}
    # The reader keeps up with one byte every ~20 ms, so the body cannot come in a handful of reads.
    assert len(pieces) > 10


def test_64_slow_requests_are_all_in_flight_at_once(sandbox):
    sandbox.configure(latency=1.5)
    barrier = threading.Barrier(64)
    codes = []

    def one() -> None:
        connection = _connection(sandbox, timeout=30)
        barrier.wait()
        connection.request("GET", item_path("tt1") + f"?key={sandbox.api_key}")
        codes.append(connection.getresponse().status)
        connection.close()

    threads = [threading.Thread(target=one) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 64
    assert sandbox.stats()["max_concurrent"] >= 64


def test_one_connection_serves_many_answers_each_with_content_length(sandbox):
    sandbox.configure(rate_limit_rate=0.0)
    connection = _connection(sandbox)
    key = f"?key={sandbox.api_key}"
    requests_to_send = [
        ("POST", task_path("tt1") + key, b'{"priority": "medium"}', 200),
        ("GET", task_path("tt1") + key, None, 200),
        ("GET", task_path("tt9") + key, None, 404),
        ("GET", task_path("tt1"), None, 401),
        ("GET", task_path("tt1", product="x") + key, None, 422),
        ("GET", "/nowhere" + key, None, 404),
        ("PUT", task_path("tt1") + key, b"{}", 405),
    ]
    sockets = set()
    for method, path, body, expected in requests_to_send:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        assert response.status == expected
        assert int(response.getheader("Content-Length")) == len(payload)
        assert response.getheader("Connection") != "close"
        json.loads(payload)
        sockets.add(id(connection.sock))
    connection.close()
    assert len(sockets) == 1


def test_faults_apply_to_answers_with_content_length(sandbox):
    connection = _connection(sandbox)
    for option in ("error_rate", "rate_limit_rate"):
        sandbox.reset()
        sandbox.configure(**{option: 1.0})
        connection.request("GET", item_path("tt1") + f"?key={sandbox.api_key}")
        response = connection.getresponse()
        assert int(response.getheader("Content-Length")) == len(response.read())
    connection.close()


def test_chunked_request_body_is_read(sandbox):
    answer = requests.post(
        sandbox.url + task_path("tt1"),
        params={"key": sandbox.api_key},
        data=iter([b'{"priority":', b' "high"}']),
        timeout=5,
    )
    assert answer.status_code == 200
    assert answer.json()["status"] == "pending"


def test_oversized_body_is_413(sandbox):
    answer = call(sandbox, "POST", task_path("tt1"), data=b" " * 1_000_001)
    assert answer.status_code == 413


def test_a_reset_tears_the_connection_down_and_changes_nothing(sandbox):
    sandbox.configure(reset_rate=1.0)
    connection = _connection(sandbox)
    connection.request("POST", task_path("tt1") + f"?key={sandbox.api_key}")
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        connection.getresponse()
    connection.close()
    sandbox.configure(reset_rate=0.0)
    assert call(sandbox, "GET", task_path("tt1")).status_code == 404
    stats = sandbox.stats()
    assert stats["faults"]["reset"] == 1
    assert stats["statuses"]["reset"] == 1
    assert sandbox.applied_requests("tt1", "adbreaks", "1.0", "POST") == 0


def test_applied_counts_only_requests_that_got_past_the_faults(sandbox):
    sandbox.configure(seed=3, error_rate=0.3, rate_limit_rate=0.2, reset_rate=0.2)
    outcomes = []
    for _ in range(40):
        try:
            outcomes.append(call(sandbox, "POST", task_path("tt1"), timeout=5).status_code)
        except requests.ConnectionError:
            outcomes.append("reset")
    stats = sandbox.stats()
    assert sandbox.task_requests("tt1", "adbreaks", "1.0", "POST") == 40
    assert sandbox.applied_requests("tt1", "adbreaks", "1.0", "POST") == outcomes.count(200)
    assert stats["applied"]["tt1"]["adbreaks"]["1.0"] == {"POST": outcomes.count(200)}
    assert stats["faults"]["reset"] == outcomes.count("reset") > 0
