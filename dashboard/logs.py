"""Log context and formats: a request id per request (carried into the jobs it enqueues), the user, the
operation id, one JSON object per line with LOG_FORMAT=json, and the Vionlabs key redacted in both formats.

The context lives in a ContextVar holding a small dict: the middleware starts a fresh one per request, a job
starts one from its `request_id` argument, and `ContextFilter` copies it onto every record a handler sees.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse

from dashboard.vionlabs.client import redact_key

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept when it looks like an id (a proxy's or a caller's), else replaced: it goes into
# every log line, so it must not carry newlines, quotes or a novel.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_context: ContextVar[dict[str, Any] | None] = ContextVar("log_context", default=None)


def current(name: str) -> Any:
    """A value of the current log context (request_id, user, operation_id), or None."""
    values = _context.get()
    return values.get(name) if values else None


def new_request_id() -> str:
    return uuid.uuid4().hex


@contextmanager
def log_context(**values: Any) -> Iterator[dict[str, Any]]:
    """Within this block, log records carry these values (on top of any outer context)."""
    token = _context.set({**(_context.get() or {}), **values})
    try:
        yield _context.get() or {}
    finally:
        _context.reset(token)


def set_context_value(name: str, value: Any) -> None:
    """Add a value to the current context (for example the operation id once a job knows it)."""
    values = _context.get()
    if values is not None:
        values[name] = value


class RequestIdMiddleware:
    """Gives each request an id (a sane incoming X-Request-ID, else a new one), logs with it, returns it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _SANE_ID.fullmatch(incoming) else new_request_id()
        request.request_id = request_id  # type: ignore[attr-defined]
        # Not reset on the way out: Django logs a 4xx/5xx ("Not Found: …") after the middleware has returned.
        # `request_finished` clears it once the response is closed.
        _context.set({"request_id": request_id})
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    def process_view(self, request: HttpRequest, *args: object) -> None:
        # Authentication has run by now; the user is read once here (LoginRequiredMiddleware reads it anyway).
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            set_context_value("user", user.get_username())


def _forget_request_context(**kwargs: object) -> None:
    _context.set(None)


request_finished.connect(_forget_request_context, dispatch_uid="dashboard.logs.forget_request_context")


class ContextFilter(logging.Filter):
    """Puts request_id, user and operation_id on every record ("-" for the plain format when unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        values = _context.get() or {}
        for name in ("request_id", "user", "operation_id"):
            if not hasattr(record, name):
                setattr(record, name, values.get(name))
        if record.request_id is None:  # type: ignore[attr-defined]
            record.request_id = "-"
        return True


class RedactKeyFilter(logging.Filter):
    """The client's key redaction, for every record a handler writes (message, traceback and stack)."""

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(getattr(settings, "VIONLABS_API_KEY", "") or "")
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not break logging; redact what there is
            message = str(record.msg)
        record.msg, record.args = redact_key(message, key), None
        if record.exc_info:
            record.exc_text = redact_key(logging.Formatter().formatException(record.exc_info), key)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact_key(record.exc_text, key)
        if record.stack_info:
            record.stack_info = redact_key(record.stack_info, key)
        return True


#: Jobs that run once per item (hundreds a minute while tasks are in flight): their lines are DEBUG.
PER_ITEM_JOBS = frozenset({"dashboard.catalog.jobs.refresh_item"})


class JobLineFilter(logging.Filter):
    """For the `django.tasks` logger: it writes a line when a job starts and another when it ends. Keep one
    line per job outcome, and for per-item jobs (PER_ITEM_JOBS) only the failures; the rest only when the
    root logger is at DEBUG (LOG_LEVEL=DEBUG). Lines are shown as DEBUG then."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        path = str(args[1]) if len(args) > 1 else ""
        status = str(getattr(args[2], "value", args[2])) if len(args) > 2 else ""
        if status.upper() != "RUNNING" and path not in PER_ITEM_JOBS:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, user, operation_id, exc."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": None if request_id == "-" else request_id,
            "user": getattr(record, "user", None),
            "operation_id": getattr(record, "operation_id", None),
        }
        exc = record.exc_text
        if record.exc_info and not exc:
            exc = self.formatException(record.exc_info)
        if exc:
            entry["exc"] = exc
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)
