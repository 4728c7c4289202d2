"""Client test helpers: failures built the way requests really raises them, and a tiny local server."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode, urlsplit

import requests
from urllib3 import HTTPSConnectionPool
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from dashboard.vionlabs import VionlabsClient

BASE = "https://vionlabs.test"
KEY = "test-key-123"
TASK_URL = BASE + "/tasks/catalog-item/tt1/product/adbreaks/version/1.0.1"


def make_client(*, api_key: str = KEY, base_url: str = BASE, **options) -> tuple[VionlabsClient, list[float]]:
    """A client whose sleeps are recorded instead of slept."""
    sleeps: list[float] = []
    options.setdefault("sleep", sleeps.append)
    return VionlabsClient(base_url=base_url, api_key=api_key, **options), sleeps


def _prepared(method: str, url: str, key: str) -> requests.PreparedRequest:
    return requests.Request(method, url, params={"key": key}).prepare()


def _pool_and_conn(url: str) -> tuple[HTTPSConnectionPool, HTTPSConnection]:
    host = urlsplit(url).hostname or "vionlabs.test"
    return HTTPSConnectionPool(host, 443), HTTPSConnection(host, 443)


def refused(method: str, url: str, key: str) -> Exception:
    """What requests raises when the TCP connection is refused (nothing was sent)."""
    request = _prepared(method, url, key)
    pool, conn = _pool_and_conn(url)
    reason = NewConnectionError(conn, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.ConnectionError(MaxRetryError(pool, request.path_url, reason), request=request)


def dns_failure(method: str, url: str, key: str) -> Exception:
    """What requests raises when the host name does not resolve (nothing was sent)."""
    request = _prepared(method, url, key)
    pool, conn = _pool_and_conn(url)
    reason = NameResolutionError(pool.host, conn, socket.gaierror(-2, "Name or service not known"))
    return requests.ConnectionError(MaxRetryError(pool, request.path_url, reason), request=request)


def connect_timeout(method: str, url: str, key: str) -> Exception:
    """What requests raises when connecting times out (nothing was sent)."""
    request = _prepared(method, url, key)
    pool, conn = _pool_and_conn(url)
    reason = ConnectTimeoutError(conn, f"Connection to {pool.host} timed out. (connect timeout=10.0)")
    return requests.ConnectTimeout(MaxRetryError(pool, request.path_url, reason), request=request)


def reset_after_send(method: str, url: str, key: str) -> Exception:
    """What requests raises when the server drops the connection after the request was written."""
    request = _prepared(method, url, key)
    error = ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))
    return requests.ConnectionError(error, request=request)


def read_timeout(method: str, url: str, key: str) -> Exception:
    """What requests raises when the answer does not come within the read timeout."""
    request = _prepared(method, url, key)
    pool, _ = _pool_and_conn(url)
    error = ReadTimeoutError(pool, request.url, "Read timed out. (read timeout=10.0)")
    return requests.ReadTimeout(error, request=request)


FAILURES: dict[str, Callable[[str, str, str], Exception]] = {
    "connection refused": refused,
    "dns failure": dns_failure,
    "connect timeout": connect_timeout,
    "reset after sending": reset_after_send,
    "read timeout": read_timeout,
}


def key_forms(key: str) -> set[str]:
    """The forms a key takes in URLs, JSON, HTML and reprs: none may appear anywhere."""
    import html
    import json
    from urllib.parse import quote, quote_plus

    return {
        key,
        quote(key, safe=""),
        quote(key),
        quote_plus(key),
        urlencode({"key": key}).split("=", 1)[1],
        json.dumps(key)[1:-1],
        json.dumps(key, ensure_ascii=False)[1:-1],
        html.escape(key),
        repr(key)[1:-1],
    }


Handler = Callable[[BaseHTTPRequestHandler], None]


@contextlib.contextmanager
def local_server(handle: Handler) -> Iterator[tuple[str, list[str]]]:
    """Serve each request with `handle` on 127.0.0.1 (free port); yield (base_url, raw paths seen)."""
    paths: list[str] = []

    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            paths.append(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            handle(self)

        do_GET = do_POST = do_DELETE = _any

        def log_message(self, format, *args):  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", paths
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A URL on a port nobody listens on (bound, then released), for a real 'connection refused'."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
