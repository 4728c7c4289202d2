"""Small tools for talking to the sandbox with plain HTTP in these tests."""

from __future__ import annotations

import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import requests


def task_path(inventory_id: str, product: str = "adbreaks", version: str = "1.0") -> str:
    return (
        f"/tasks/catalog-item/{quote(inventory_id, safe='')}/product/{quote(product, safe='')}"
        f"/version/{quote(version, safe='')}"
    )


def item_path(inventory_id: str) -> str:
    return f"/tasks/catalog-item/{quote(inventory_id, safe='')}"


def call(sandbox, method: str, path: str, *, key: str | None = "default", **kwargs) -> requests.Response:
    """One request to the sandbox with its key (pass key=None to send none)."""
    params = dict(kwargs.pop("params", {}))
    if key is not None:
        params["key"] = sandbox.api_key if key == "default" else key
    timeout = kwargs.pop("timeout", 10)
    return requests.request(method, sandbox.url + path, params=params, timeout=timeout, **kwargs)


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Poll until predicate() is truthy; returns its value, or fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class FakeClock:
    """A clock a test moves by hand, so life-cycle tests assert exact states without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class WebhookReceiver:
    """A tiny HTTP server on a free port that records every POST it gets (header names lower-cased)."""

    def __init__(self, status: int = 204) -> None:
        received: queue.Queue = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.put(
                    ({name.lower(): value for name, value in self.headers.items()}, json.loads(body))
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format, *args) -> None:
                pass

        self.received = received
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhooks/vionlabs/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def next(self, timeout: float = 5.0):
        return self.received.get(timeout=timeout)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
