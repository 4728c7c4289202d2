"""The one way Django code gets a Vionlabs client.

Settings are read when `get_client()` is called, not at import, so `override_settings` (and the test sandbox
on a random port) take effect. One client per settings tuple per process: its `requests.Session` pools
connections for every thread, and all clients share one `Throttle`, so a 429 slows the whole process down.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings

from dashboard.metrics import observe_vionlabs_call
from dashboard.vionlabs import Throttle, VionlabsClient

# A few tuples at most in production (one); tests point settings at a fresh sandbox now and then.
_MAX_CLIENTS = 8

# Calls made while a person waits on a page: one retry at most, and no sleeping through a long Retry-After
# (the operator reads "try again in 30 s" instead). Workers and commands keep the full retry policy.
INTERACTIVE_MAX_RETRIES = 1
INTERACTIVE_MAX_RETRY_WAIT = 2.0

_lock = threading.Lock()
_clients: OrderedDict[tuple[str, str, float, int, bool], VionlabsClient] = OrderedDict()
_throttle = Throttle()
_interactive: ContextVar[bool] = ContextVar("vionlabs_interactive", default=False)
#: The time.monotonic() by which Vionlabs calls in the current context must be done (None: no limit).
_deadline: ContextVar[float | None] = ContextVar("vionlabs_deadline", default=None)
#: Held during each HTTP exchange of the calls in the current context (see `calls_in_flight`).
_gate: ContextVar[threading.Semaphore | None] = ContextVar("vionlabs_gate", default=None)


@contextmanager
def interactive_calls() -> Iterator[None]:
    """Within this block, get_client() returns a client that fails fast instead of waiting to retry."""
    token = _interactive.set(True)
    try:
        yield
    finally:
        _interactive.reset(token)


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Vionlabs calls made in this block share `seconds` in all: get_client() returns a client bounded by the
    deadline (VionlabsClient.until), so one click cannot hold a web worker for several full timeouts."""
    deadline = time.monotonic() + seconds
    current = _deadline.get()
    token = _deadline.set(deadline if current is None else min(deadline, current))
    try:
        yield
    finally:
        _deadline.reset(token)


@contextmanager
def calls_in_flight(gate: threading.Semaphore) -> Iterator[None]:
    """Within this block (and the contexts copied from it), each HTTP exchange holds `gate`: threads that
    share one semaphore of n have at most n calls in flight, whatever else they do meanwhile."""
    token = _gate.set(gate)
    try:
        yield
    finally:
        _gate.reset(token)


@contextmanager
def keep_for_settling(share: float) -> Iterator[None]:
    """Within a time budget, calls in this block may spend only `share` of the time left, keeping the rest
    for the reads that settle their outcome should they time out. Without a budget, nothing changes."""
    current = _deadline.get()
    if current is None:
        yield
        return
    token = _deadline.set(time.monotonic() + max(0.0, current - time.monotonic()) * share)
    try:
        yield
    finally:
        _deadline.reset(token)


def get_client(*, max_timeout: float | None = None) -> VionlabsClient:
    """Return the process-wide client for the current VIONLABS_* settings (created on first use), bounded by
    the current time budget if there is one.

    `max_timeout` caps VIONLABS_TIMEOUT for callers with a shorter deadline (a result fetched while a person
    waits on a page)."""
    client = _shared_client(max_timeout)
    deadline = _deadline.get()
    if deadline is not None:
        client = client.until(deadline)
    gate = _gate.get()
    return client if gate is None else client.gated(gate)


def _shared_client(max_timeout: float | None) -> VionlabsClient:
    timeout = float(settings.VIONLABS_TIMEOUT)
    if max_timeout is not None:
        timeout = min(timeout, max_timeout)
    key = (
        str(settings.VIONLABS_API_URL),
        str(settings.VIONLABS_API_KEY),
        timeout,
        int(settings.VIONLABS_MAX_RETRIES),
        _interactive.get(),
    )
    with _lock:
        client = _clients.get(key)
        if client is not None:
            _clients.move_to_end(key)
            return client
        url, api_key, timeout, retries, interactive = key
        client = VionlabsClient(
            base_url=url,
            api_key=api_key,
            timeout=timeout,
            max_retries=min(retries, INTERACTIVE_MAX_RETRIES) if interactive else retries,
            max_retry_wait=INTERACTIVE_MAX_RETRY_WAIT if interactive else None,
            throttle=_throttle,
            on_call=observe_vionlabs_call,
        )
        _clients[key] = client
        evicted = []
        while len(_clients) > _MAX_CLIENTS:
            evicted.append(_clients.popitem(last=False)[1])
    # Closing only releases pooled sockets; a thread still holding an evicted client can finish its call.
    for old in evicted:
        old.close()
    return client


def throttle_remaining() -> float:
    """Seconds left in the process-wide pause that a 429 set (0 when there is none)."""
    return _throttle.remaining()


def reset_clients() -> None:
    """Close and forget every cached client and the shared pause (tests, and after a settings change in a
    long-lived process)."""
    global _throttle
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
        _throttle = Throttle()
    for client in clients:
        client.close()
