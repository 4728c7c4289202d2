"""The typed client of the Vionlabs Tasks API (plus the Catalog API's listing and the Results APIs): one class
over one Session.

Why it looks the way it does:
- One retry layer (ours): urllib3's retries are off, so a POST is never silently sent twice.
- The key travels as the `key` query parameter, set once on the session. requests and urllib3 put full URLs
  into exception messages and DEBUG logs, so their exceptions never leave this module (ours are raised
  outside the `except` block, with no chained cause) and a log filter redacts the key on urllib3's loggers.
- A read timeout only bounds the gap between two bytes; a per-attempt wall-clock deadline bounds the body.
"""

from __future__ import annotations

import copy
import email.utils
import http
import http.client
import json
import logging
import math
import os
import random
import string
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Protocol, cast
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ReadTimeoutError
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util.retry import Retry

from .errors import (
    FieldError,
    NotYetAvailable,
    VionlabsBadResponse,
    VionlabsError,
    VionlabsNoAccess,
    VionlabsNoResult,
    VionlabsNotFound,
    VionlabsOutOfTime,
    VionlabsRateLimited,
    VionlabsRejected,
    VionlabsUnauthorized,
    VionlabsUnavailable,
)
from .errors import ShapeError as _ShapeError
from .redaction import key_forms, redact_forms
from .results import (
    DEFAULT_RESULT_PATHS,
    GENERIC_RESULT_PATH,
    AdBreaksResult,
    ContextualAdBreaksResult,
    GenericResult,
    MarkersResult,
    parse_adbreaks,
    parse_contextual_adbreaks,
    parse_generic,
    parse_markers,
)
from .types import STATUS_MAX_LENGTH, CatalogEntry, ItemTask, Link, TaskState

log = logging.getLogger(__name__)

TASK_PATH = "/tasks/catalog-item/{inventory_id}/product/{product}/version/{version}"
ITEM_TASKS_PATH = "/tasks/catalog-item/{inventory_id}"
CATALOG_PATH = "/catalog/v1/item"

# What an `on_call` observer is told instead of a path: a fixed name per endpoint (no ids, no key).
ENDPOINT_NAMES = {
    ("GET", TASK_PATH): "task.get",
    ("POST", TASK_PATH): "task.create",
    ("DELETE", TASK_PATH): "task.deactivate",
    ("GET", ITEM_TASKS_PATH): "item_tasks.list",
    ("GET", CATALOG_PATH): "catalog.list",
}

#: on_call(method, endpoint name, outcome, seconds); outcome is "2xx", "3xx", "4xx", "429", "5xx",
#: "timeout" or "connection_error".
CallObserver = Callable[[str, str, str, float], None]

_CHUNK = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024  # far above any real answer; stops a runaway body from eating memory
_DETAIL_CHARS = 300  # how much of a server's own explanation goes into a message


class ThrottleLike(Protocol):
    """What the client needs of a shared throttle (see `Throttle`)."""

    def wait(self) -> None: ...

    def pause(self, seconds: float) -> None: ...

    def remaining(self) -> float: ...  # needed only by clients given max_retry_wait


@dataclass(frozen=True, slots=True)
class _Call:
    """One logical call, for messages and the retry policy (never holds the URL or the key)."""

    method: str
    template: str
    params: Mapping[str, object] = field(default_factory=dict)
    # The product whose Results API this call reads (None for the Tasks and Catalog APIs): its 401/403 and
    # 404 mean "no access to this API" and "no result yet", not a bad key or an unknown task.
    results_of: str | None = None

    @property
    def endpoint(self) -> str:
        if self.results_of is not None:
            # One label per product's Results API: a bounded set, never the path with its ids.
            return f"results.{self.results_of}"
        return ENDPOINT_NAMES.get((self.method, self.template), "other")

    @property
    def idempotent(self) -> bool:
        return self.method in ("GET", "DELETE")

    @property
    def mutating(self) -> bool:
        return self.method != "GET"

    def context(self, message: str) -> str:
        """The message, then what was asked: method, path template and parameter values (never the URL)."""
        values = "".join(f", {name} {str(value)!r}" for name, value in self.params.items())
        return f"{message} [{self.method} {self.template}{values}]"


@dataclass(frozen=True, slots=True)
class _Done:
    data: Any


@dataclass(frozen=True, slots=True)
class _Failure:
    error: VionlabsError
    retryable: bool
    retry_after: float | None = None
    label: str = "failed"


class _KeyRedactor(logging.Filter):
    """Rewrites log records so that neither `key=` query values nor a known key (in any encoding) survive."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._forms: frozenset[str] = frozenset()

    def add(self, secret: str) -> None:
        """Remember a key and the forms it takes in URLs, JSON, HTML and reprs."""
        with self._lock:
            self._forms = self._forms | key_forms(secret)

    def redact(self, text: str) -> str:
        """Return `text` with every known key form and every `key=` value replaced."""
        return redact_forms(text, self._forms)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not break logging; redact what there is
            message = str(record.msg)
        record.msg, record.args = self.redact(message), None
        if record.exc_info:
            # Tracebacks of requests' errors hold the URL: format now, redact, and drop the live exception.
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_REDACTOR = _KeyRedactor()


def redact_key(text: str, key: str = "") -> str:
    """`text` with `key` (in any encoding), every key a client was given and any `key=` value replaced."""
    _REDACTOR.add(key)
    return _REDACTOR.redact(text)


_PROTECTED_LOGGERS = (
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
    "urllib3.contrib.pyopenssl",
    "urllib3.http2.connection",
    "requests",
    __name__,
)


def _protect_logs(secret: str) -> None:
    """Install (idempotently) the key redactor on urllib3's and our loggers (a filter does not inherit)."""
    _REDACTOR.add(secret)
    names = set(_PROTECTED_LOGGERS)
    names.update(name for name in list(logging.Logger.manager.loggerDict) if name.startswith("urllib3."))
    for name in names:
        logging.getLogger(name).addFilter(_REDACTOR)  # addFilter ignores a filter already installed


def _build_path(template: str, params: Mapping[str, str]) -> str:
    """Fill `template` with percent-encoded segments; refuse segments that would address another path."""
    encoded = {}
    for name, value in params.items():
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, not {type(value).__name__}")
        if value in ("", ".", ".."):
            # urllib3 removes dot segments and an empty one collapses: the request would hit another endpoint.
            raise VionlabsRejected(
                f"The {name} {value!r} cannot be sent to Vionlabs: an empty, '.' or '..' path segment "
                f"would address another endpoint; correct the {name}.",
                status_code=None,
                details=(FieldError(loc=f"path.{name}", msg="must not be empty, '.' or '..'"),),
            )
        if _unencodable(value):
            # quote() would raise UnicodeEncodeError: say what is wrong in the client's own terms instead.
            raise VionlabsRejected(
                f"The {name} cannot be sent to Vionlabs: it holds an unpaired surrogate, which is not text "
                f"any URL can carry; correct the {name}.",
                status_code=None,
                details=(FieldError(loc=f"path.{name}", msg="must be valid Unicode text"),),
            )
        encoded[name] = quote(value, safe="")
    return template.format_map(encoded)


def _parse_retry_after(value: str | None, *, cap: float, now: float) -> float | None:
    """Seconds from a Retry-After value (seconds or HTTP-date), clamped to [0, cap]; None when unusable."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def _may_have_been_sent(exc: Exception) -> bool:
    """False only when the connection failed before the request left (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    # NameResolutionError is a NewConnectionError; both happen before the request is written.
    return not isinstance(reason, NewConnectionError | ConnectTimeoutError)


def _read_body(response: requests.Response, deadline: float) -> tuple[bytes, str | None]:
    """Read the body in chunks until EOF; return (body, problem) where problem is timeout/broken/too_large."""
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := response.raw.read1(_CHUNK, decode_content=True):
            size += len(chunk)
            if size > _MAX_BODY:
                return b"", "too_large"
            chunks.append(chunk)
            # read1 returns as soon as any bytes arrive, so a dripping server is caught here.
            if time.monotonic() > deadline:
                return b"", "timeout"
    except (ReadTimeoutError, TimeoutError):
        return b"", "timeout"
    except (Urllib3Error, OSError, http.client.HTTPException):
        return b"", "broken"
    return b"".join(chunks), None


def _decode_json(body: bytes) -> tuple[Any, bool]:
    """Parse JSON; (data, True) on success, (None, False) otherwise."""
    try:
        return json.loads(body), True
    except (ValueError, RecursionError):
        return None, False


def _details(data: Any) -> tuple[FieldError, ...]:
    """FastAPI's `detail`: a list of {loc, msg} items, or a plain string; anything else gives no details."""
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, str) and detail.strip():
        return (FieldError(loc="", msg=_REDACTOR.redact(detail.strip()[:_DETAIL_CHARS])),)
    if not isinstance(detail, list):
        return ()
    items = []
    for item in detail:
        if not isinstance(item, dict):
            continue
        loc = item.get("loc")
        loc_text = ".".join(str(part) for part in loc) if isinstance(loc, list) else str(loc or "")
        msg = str(item.get("msg") or item.get("type") or "invalid")
        items.append(FieldError(loc=_REDACTOR.redact(loc_text), msg=_REDACTOR.redact(msg[:_DETAIL_CHARS])))
    return tuple(items)


def _error_text(value: Any) -> str | None:
    """A task's `error`: None or a string; anything else is kept as compact JSON rather than refused."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _text(value: Any, what: str, *, optional: bool = False) -> str | None:
    """A string field (numbers tolerated, as versions and ids may be numeric); raise _ShapeError otherwise."""
    if value is None and optional:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _ShapeError(f"{what} is missing or not a string")


def _status(value: Any, what: str) -> str:
    """A task status: any string (kept as given) a database can store whole; raise _ShapeError otherwise."""
    if not isinstance(value, str):
        raise _ShapeError(f"{what} is missing or not a string")
    if len(value) > STATUS_MAX_LENGTH:
        raise _ShapeError(
            f"{what} is {len(value)} characters long (at most {STATUS_MAX_LENGTH} are accepted)"
        )
    if "\x00" in value or _unencodable(value):
        raise _ShapeError(f"{what} holds a NUL or an unpaired surrogate")
    return value


def _unencodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _parse_task_state(data: Any) -> TaskState:
    """A TaskStatus object: status (kept as given), error, and `_links` as Link tuples."""
    if not isinstance(data, dict):
        raise _ShapeError("expected an object")
    status = _status(data.get("status"), "'status'")
    raw_links = data.get("_links")
    if raw_links is None:
        raw_links = {}
    if not isinstance(raw_links, dict):
        raise _ShapeError("'_links' is not an object")
    links = []
    for name, entry in raw_links.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("href"), str):
            raise _ShapeError(f"link {name!r} has no 'href' string")
        method = entry.get("method")
        links.append(
            Link(
                name=name, method=method if isinstance(method, str) and method else "GET", href=entry["href"]
            )
        )
    return TaskState(status=status, error=_error_text(data.get("error")), links=tuple(links))


def _parse_item_tasks(data: Any) -> list[ItemTask]:
    """The item-level list: [{"task_status": {"status", "error"}, "product", "version"}]."""
    if not isinstance(data, list):
        raise _ShapeError("expected a list")
    tasks = []
    for entry in data:
        if not isinstance(entry, dict) or not isinstance(entry.get("task_status"), dict):
            raise _ShapeError("an entry has no 'task_status' object")
        task_status = entry["task_status"]
        status = _status(task_status.get("status"), "a 'task_status' 'status'")
        tasks.append(
            ItemTask(
                product=_text(entry.get("product"), "'product'") or "",
                version=_text(entry.get("version"), "'version'") or "",
                status=status,
                error=_error_text(task_status.get("error")),
            )
        )
    return tasks


def _parse_catalog_page(data: Any) -> list[CatalogEntry]:
    """One page of the catalog listing: [{"id", "vionlabs_id", "type"}]."""
    if not isinstance(data, list):
        raise _ShapeError("expected a list")
    entries = []
    for entry in data:
        if not isinstance(entry, dict):
            raise _ShapeError("an entry is not an object")
        entries.append(
            CatalogEntry(
                id=_text(entry.get("id"), "'id'") or "",
                vionlabs_id=_text(entry.get("vionlabs_id"), "'vionlabs_id'", optional=True),
                type=_text(entry.get("type"), "'type'", optional=True) or "",
            )
        )
    return entries


class VionlabsClient:
    """Client of the Vionlabs Tasks API; thread-safe, one connection pool; raises only VionlabsError kinds."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        backoff_cap: float = 30.0,
        retry_after_cap: float = 120.0,
        max_retry_wait: float | None = None,
        pool_size: int = 16,
        throttle: ThrottleLike | None = None,
        sleep: Callable[[float], None] = time.sleep,
        result_paths: Mapping[str, str] | None = None,
        on_call: CallObserver | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("base_url must be an http(s) URL such as https://apis.prod.vionlabs.com")
        if parts.query or parts.fragment:
            raise ValueError("base_url must not carry a query string or fragment; pass the key as api_key")
        if not timeout > 0 or max_retries < 0 or pool_size < 1:
            raise ValueError("timeout must be > 0, max_retries >= 0 and pool_size >= 1")
        paths = {**DEFAULT_RESULT_PATHS, **(result_paths or {})}
        for product, template in paths.items():
            _result_placeholder(product, template)  # ValueError now rather than at the first fetch
        self._result_paths = paths
        _protect_logs(api_key)
        self._base_url = base_url.rstrip("/")
        self._timeout = float(timeout)
        self._deadline: float | None = None  # time.monotonic(); set on the copies `until()` makes
        self._gate: threading.Semaphore | None = None  # set on the copies `gated()` makes
        self._max_retries = max_retries
        self._backoff = backoff
        self._backoff_cap = backoff_cap
        self._retry_after_cap = retry_after_cap
        # A person waiting on a page would rather read "try again in 30 s" than watch a spinner for 30 s.
        self._max_retry_wait = max_retry_wait
        self._throttle = throttle
        self._sleep = sleep
        self._on_call = on_call
        self._has_key = bool(api_key)
        self._session = requests.Session()
        # The one place the key is added: requests merges session params into every request's query.
        self._session.params = {"key": api_key}
        self._session.headers.update({"Accept": "application/json", "User-Agent": "vionlabs-dashboard"})
        self._session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # no state between calls
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=Retry(0, read=False))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        # Proxy and CA settings come from the environment once, here: with trust_env on, requests reads the
        # environment (and walks no_proxy) on every call, a measurable part of a bulk run's CPU per item.
        self._session.proxies.update(requests.utils.get_environ_proxies(self._base_url))
        if ca_bundle := os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"):
            self._session.verify = ca_bundle
        self._session.trust_env = False

    def __repr__(self) -> str:
        key = "'***'" if self._has_key else "''"
        return (
            f"VionlabsClient(base_url={self._base_url!r}, api_key={key}, timeout={self._timeout:g}, "
            f"max_retries={self._max_retries})"
        )

    def __enter__(self) -> VionlabsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def until(self, deadline: float) -> VionlabsClient:
        """This client bounded by a `time.monotonic()` deadline, sharing its connection pool: each attempt's
        timeout is cut to the time left, no retry waits past it, and once it has passed no attempt starts
        (VionlabsOutOfTime). For a caller that must answer a person within a fixed time."""
        bounded = copy.copy(self)
        bounded._deadline = deadline if self._deadline is None else min(deadline, self._deadline)
        return bounded

    def gated(self, gate: threading.Semaphore) -> VionlabsClient:
        """This client with each HTTP exchange made while holding `gate`, sharing its connection pool: a
        caller with more threads than calls it may have in flight (a bulk run, whose threads also record
        answers in the database) shares one semaphore among them. Waits (backoff, 429) do not hold it."""
        gated = copy.copy(self)
        gated._gate = gate
        return gated

    def _time_left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def get_task(self, inventory_id: str, product: str, version: str) -> TaskState:
        """Read one task's status; raises a VionlabsError kind (NotFound when there is no such task)."""
        params = {"inventory_id": inventory_id, "product": product, "version": version}
        return self._call("GET", TASK_PATH, params, parse=_parse_task_state)

    def create_task(self, inventory_id: str, product: str, version: str, priority: str = "low") -> TaskState:
        """Create a task (POST, never retried once sent: on outcome_unknown re-read it with get_task)."""
        params = {"inventory_id": inventory_id, "product": product, "version": version}
        return self._call(
            "POST", TASK_PATH, params, body={"priority": str(priority)}, parse=_parse_task_state
        )

    def deactivate_task(self, inventory_id: str, product: str, version: str) -> TaskState:
        """Deactivate a task (DELETE); raises a VionlabsError kind."""
        params = {"inventory_id": inventory_id, "product": product, "version": version}
        return self._call("DELETE", TASK_PATH, params, parse=_parse_task_state)

    def list_item_tasks(self, inventory_id: str) -> list[ItemTask]:
        """List every task of one item; raises a VionlabsError kind."""
        return self._call("GET", ITEM_TASKS_PATH, {"inventory_id": inventory_id}, parse=_parse_item_tasks)

    def list_catalog_items(self, *, page_num: int, page_size: int = 500) -> list[CatalogEntry]:
        """Read one page of the Vionlabs catalog (Catalog API); raises a VionlabsError kind."""
        if page_num < 0 or page_size < 1:
            raise ValueError("page_num must be >= 0 and page_size >= 1")
        query = {"page_num": page_num, "page_size": page_size}
        return self._call("GET", CATALOG_PATH, {}, query=query, parse=_parse_catalog_page)

    def iter_catalog_items(self, *, page_size: int = 500) -> Iterator[CatalogEntry]:
        """Yield the whole Vionlabs catalog page by page, stopping after the first short page."""
        previous: list[CatalogEntry] | None = None
        page_num = 0
        while True:
            page = self.list_catalog_items(page_num=page_num, page_size=page_size)
            if page and page == previous:
                # A server that ignores page_num would otherwise keep us looping forever.
                raise VionlabsBadResponse(
                    f"Vionlabs returned the same catalog page for page_num {page_num - 1} and {page_num}; "
                    "the listing cannot be trusted, report this to Vionlabs."
                )
            yield from page
            if len(page) < page_size:
                return
            previous, page_num = page, page_num + 1

    # -- Results APIs (one per product; access is granted per API) ----------------------------------------

    def get_adbreaks(
        self,
        inventory_id: str,
        *,
        version: str | None = None,
        minimum_separation: float | None = None,
        maximum_separation: float | None = None,
        skip_first: float | None = None,
        skip_last: float | None = None,
    ) -> AdBreaksResult:
        """Read ad-break candidates in seconds (v3); the minute parameters are passed through when given.

        Raises VionlabsNoResult (no result yet), VionlabsNoAccess (the key lacks this API) or another kind."""
        query = _result_query(
            version=version,
            minimum_separation=minimum_separation,
            maximum_separation=maximum_separation,
            skip_first=skip_first,
            skip_last=skip_last,
        )
        return self._fetch_result(
            "adbreaks", inventory_id, query, lambda data: parse_adbreaks(data, inventory_id=inventory_id)
        )

    def get_contextual_adbreaks(
        self,
        inventory_id: str,
        *,
        version: str | None = None,
        minimum_separation: float | None = None,
        maximum_separation: float | None = None,
        skip_first: float | None = None,
        skip_last: float | None = None,
    ) -> ContextualAdBreaksResult:
        """Read contextual ad breaks (v2: keywords, moods, IAB tiers, nudity/profanity flags per break).

        Raises VionlabsNoResult, VionlabsNoAccess or another VionlabsError kind."""
        query = _result_query(
            version=version,
            minimum_separation=minimum_separation,
            maximum_separation=maximum_separation,
            skip_first=skip_first,
            skip_last=skip_last,
        )

        def parse(data: Any) -> ContextualAdBreaksResult:
            return parse_contextual_adbreaks(data, inventory_id=inventory_id)

        return self._fetch_result("contextual_adbreak", inventory_id, query, parse)

    def get_markers(self, ident: str, *, version: str | None = None) -> MarkersResult:
        """Read intro, recap and end-credit markers; `not_yet_available: true` raises VionlabsNoResult."""
        query = _result_query(version=version)
        return self._fetch_result("markers", ident, query, lambda data: parse_markers(data, ident=ident))

    def get_result(
        self,
        inventory_id: str,
        product: str,
        *,
        version: str | None = None,
        query: Mapping[str, str | int | float] | None = None,
    ) -> GenericResult:
        """Read any product's result as plain JSON (extra query parameters are passed through).

        The path is `result_paths[product]`, by default `/results/<product>/v1/{inventory_id}` (an assumption
        for products whose reference is not known). Raises VionlabsNoResult, VionlabsNoAccess or another kind."""
        product = str(product)
        extra = dict(query or {})
        if any(name.lower() == "key" for name in extra):
            raise ValueError("the key is set by the client; do not pass 'key' in query")
        full = {**extra, **_result_query(version=version)}

        def parse(data: Any) -> GenericResult:
            return parse_generic(data, product=product, inventory_id=inventory_id)

        return self._fetch_result(product, inventory_id, full, parse)

    def _fetch_result[T](
        self, product: str, inventory_id: str, query: Mapping[str, object], parse: Callable[[Any], T]
    ) -> T:
        """One GET of a Results API, through the same retries, throttle, deadline and redaction as tasks."""
        if product in ("", ".", "..") or "/" in product:
            raise ValueError(f"not a product name: {product!r}")
        template = self._result_paths.get(product) or GENERIC_RESULT_PATH.format(
            product=quote(product, safe="")
        )
        placeholder = _result_placeholder(product, template)
        return self._call(
            "GET", template, {placeholder: inventory_id}, parse=parse, query=query or None, results_of=product
        )

    def _call[T](
        self,
        method: str,
        template: str,
        params: Mapping[str, str],
        *,
        parse: Callable[[Any], T],
        body: dict[str, Any] | None = None,
        query: Mapping[str, object] | None = None,
        results_of: str | None = None,
    ) -> T:
        """Send with bounded retries; return the parsed answer or raise a VionlabsError (never chained)."""
        url = self._base_url + _build_path(template, params)
        call = _Call(method, template, {**params, **(query or {})}, results_of)
        attempts = self._max_retries + 1
        for attempt in range(1, attempts + 1):
            if self._throttle is not None:
                if self._max_retry_wait is not None:
                    self._check_throttle(call)
                self._throttle.wait()
            timeout = self._timeout
            left = self._time_left()
            if left is not None:
                if left < _MIN_ATTEMPT_SECONDS:
                    raise self._out_of_time(call) from None
                timeout = min(timeout, left)
            started = time.monotonic()
            outcome = self._attempt(call, url, body, query, parse, timeout=timeout)
            elapsed = time.monotonic() - started
            if isinstance(outcome, _Done):
                log.debug("%s %s -> ok in %.3f s (attempt %d)", method, template, elapsed, attempt)
                return cast(T, outcome.data)
            retrying = outcome.retryable and attempt < attempts
            rate_limited = isinstance(outcome.error, VionlabsRateLimited) and self._throttle is not None
            delay = outcome.retry_after
            if delay is None and (retrying or rate_limited):
                delay = self._backoff_delay(attempt - 1)
            if rate_limited and delay is not None and self._throttle is not None:
                self._throttle.pause(delay)  # slow every thread sharing the throttle, not just this one
            too_long = self._max_retry_wait is not None and delay is not None and delay > self._max_retry_wait
            left = self._time_left()
            if left is not None and delay is not None and delay + _MIN_ATTEMPT_SECONDS > left:
                too_long = True  # the wait would end past the deadline: say what happened now instead
            if not retrying or delay is None or too_long:
                log.info(
                    "%s %s -> %s in %.3f s (attempt %d, giving up)",
                    method, template, outcome.label, elapsed, attempt,
                )  # fmt: skip
                raise outcome.error from None
            log.warning(
                "%s %s -> %s in %.3f s (attempt %d of %d); retrying in %.2f s",
                method, template, outcome.label, elapsed, attempt, attempts, delay,
            )  # fmt: skip
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_throttle(self, call: _Call) -> None:
        """A fail-fast client does not queue behind a long shared pause: it says when to try again."""
        left = self._throttle.remaining() if self._throttle is not None else 0.0
        if self._max_retry_wait is not None and left > self._max_retry_wait:
            message = f"Vionlabs asked us to slow down; try again in {max(1, math.ceil(left))} s."
            raise VionlabsRateLimited(call.context(message), retry_after=left)

    def _backoff_delay(self, retry: int) -> float:
        """Capped exponential backoff with full jitter."""
        return random.uniform(0, min(self._backoff_cap, self._backoff * 2 ** min(retry, 60)))  # noqa: S311

    def _attempt(
        self,
        call: _Call,
        url: str,
        body: dict[str, Any] | None,
        query: Mapping[str, object] | None,
        parse: Callable[[Any], Any],
        *,
        timeout: float,
    ) -> _Done | _Failure:
        """One HTTP exchange, turned into a result or a classified failure; never raises requests' errors."""
        if self._gate is None:
            started = time.monotonic()
            result, observed = self._exchange(
                call, url, body, query, parse, timeout=timeout, deadline=started + timeout
            )
        else:
            with self._gate:
                started = time.monotonic()
                result, observed = self._exchange(
                    call, url, body, query, parse, timeout=timeout, deadline=started + timeout
                )
        if self._on_call is not None:
            try:
                self._on_call(call.method, call.endpoint, observed, time.monotonic() - started)
            except Exception:  # metrics must never break a call
                log.exception("The on_call observer failed")
        return result

    def _exchange(
        self,
        call: _Call,
        url: str,
        body: dict[str, Any] | None,
        query: Mapping[str, object] | None,
        parse: Callable[[Any], Any],
        *,
        timeout: float,
        deadline: float,
    ) -> tuple[_Done | _Failure, str]:
        """One HTTP exchange and the outcome class an observer is told."""
        failure = None
        timed_out = False
        try:
            response = self._session.request(
                call.method,
                url,
                params=None if query is None else {name: str(value) for name, value in query.items()},
                json=body,
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
            )
        except (requests.RequestException, Urllib3Error) as exc:
            timed_out = _is_timeout(exc)
            failure = self._transport_failure(
                call, sent=_may_have_been_sent(exc), timeout=timed_out, seconds=timeout
            )
        if failure is not None:
            return failure, "timeout" if timed_out else "connection_error"
        status = response.status_code
        observed = "429" if status == 429 else f"{status // 100}xx"
        with response:
            content, problem = _read_body(response, deadline)
        if problem == "too_large":
            return self._bad_response(call, f"the answer is larger than {_MAX_BODY // 2**20} MB"), observed
        if problem is not None:
            timed_out = problem == "timeout"
            failure = self._transport_failure(call, sent=True, timeout=timed_out, seconds=timeout)
            return failure, "timeout" if timed_out else "connection_error"
        return self._interpret(call, status, response.headers, content, parse), observed

    def _interpret(
        self,
        call: _Call,
        status: int,
        headers: Mapping[str, str],
        content: bytes,
        parse: Callable[[Any], Any],
    ) -> _Done | _Failure:
        """Map an HTTP answer to a parsed result or a failure of the right kind."""
        data, is_json = _decode_json(content)
        if 200 <= status < 300:
            if not is_json:
                return self._bad_response(call, "the answer is not JSON")
            try:
                return _Done(parse(data))
            except _ShapeError as exc:
                reason = str(exc)
            except NotYetAvailable as exc:
                return self._no_result(call, status, str(exc))
            return self._bad_response(call, reason)
        if 300 <= status < 400:
            reason = f"it redirects (HTTP {status}), which the client does not follow; check VIONLABS_API_URL"
            return self._bad_response(call, reason)
        label = f"HTTP {status}"
        retry_after = _parse_retry_after(
            headers.get("Retry-After"), cap=self._retry_after_cap, now=time.time()
        )
        if status in (401, 403) and call.results_of is not None:
            message = (
                f"Vionlabs refused the API key (HTTP {status}): no access to the {call.results_of} results API. "
                "Access is granted per API: ask Vionlabs to enable it for this key (tasks may still work), "
                "or check VIONLABS_API_KEY."
            )
            no_access = VionlabsNoAccess(call.context(message), status_code=status, product=call.results_of)
            return _Failure(no_access, False, label=label)
        if status == 404 and call.results_of is not None:
            return self._no_result(call, status, "Vionlabs answered HTTP 404")
        if status in (401, 403):
            message = (
                f"Vionlabs refused the API key (HTTP {status}): it is missing or invalid, or has no access "
                "to the Tasks API; check VIONLABS_API_KEY."
            )
            return _Failure(
                VionlabsUnauthorized(call.context(message), status_code=status), False, label=label
            )
        if status == 404:
            message = (
                "Vionlabs has no such item or task (HTTP 404); check the inventory id, product and version, "
                "and that the item is in the Vionlabs catalog (a new item can take a while to appear)."
            )
            return _Failure(VionlabsNotFound(call.context(message), status_code=404), False, label=label)
        if status == 429:
            when = f"in {max(1, math.ceil(retry_after))} s" if retry_after is not None else "in a minute"
            error: VionlabsError = VionlabsRateLimited(
                call.context(f"Vionlabs asks us to slow down; try again {when}."), retry_after=retry_after
            )
            # A POST is the caller's to repeat: it may want to re-read the task first.
            return _Failure(error, call.idempotent, retry_after, label)
        if 400 <= status < 500:
            details = _details(data)
            because = "; ".join(str(detail) for detail in details) or _phrase(status)
            message = f"Vionlabs rejected the request (HTTP {status}): {because}. Correct it and try again."
            error = VionlabsRejected(call.context(message), status_code=status, details=details)
            return _Failure(error, False, label=label)
        if status >= 500:
            message = f"Vionlabs failed with HTTP {status} ({_phrase(status)}); try again in a minute."
            if call.mutating:
                message += _OUTCOME_UNKNOWN
            error = VionlabsUnavailable(
                call.context(message), status_code=status, outcome_unknown=call.mutating
            )
            return _Failure(error, call.idempotent, retry_after, label)
        return self._bad_response(call, f"unexpected HTTP status {status}")

    def _transport_failure(self, call: _Call, *, sent: bool, timeout: bool, seconds: float) -> _Failure:
        """A connection-level failure; retryable when nothing was sent or the method is idempotent. A timeout
        cut short by the caller's deadline is VionlabsOutOfTime."""
        cut = timeout and seconds < self._timeout
        if not sent:
            within = f" within {seconds:g} s" if timeout else ""
            message = (
                f"Could not connect to Vionlabs{within}; check the network and VIONLABS_API_URL, "
                "or try again in a minute."
            )
            label = "connect timeout" if timeout else "connection failed"
        elif timeout:
            message = f"Vionlabs did not answer in {seconds:.3g} s; try again in a minute."
            label = "timeout"
        else:
            message = "The connection to Vionlabs broke before it answered; try again in a minute."
            label = "connection broke"
        unknown = sent and call.mutating
        if unknown:
            message += _OUTCOME_UNKNOWN
        kind = VionlabsOutOfTime if cut else VionlabsUnavailable
        error = kind(call.context(message), outcome_unknown=unknown)
        return _Failure(error, not sent or call.idempotent, label=label)

    def _out_of_time(self, call: _Call) -> VionlabsOutOfTime:
        """No time is left before the caller's deadline to start an attempt: nothing is sent."""
        message = "Vionlabs did not answer in the time this action may take; nothing more was sent."
        return VionlabsOutOfTime(call.context(message))

    def _no_result(self, call: _Call, status: int, reason: str) -> _Failure:
        """A results API has nothing for this item (yet); not retried, not an outage."""
        product = call.results_of or "requested"
        message = (
            f"Vionlabs has no {product} result for this item yet ({_REDACTOR.redact(reason[:_DETAIL_CHARS])}): "
            "the task may not be done, or the item was not processed at this version."
        )
        error = VionlabsNoResult(call.context(message), status_code=status, product=product)
        return _Failure(error, False, label="no result")

    def _bad_response(self, call: _Call, reason: str) -> _Failure:
        """An answer the client cannot use; never retried (asking again would give the same)."""
        message = (
            f"Vionlabs answered in an unexpected way: {reason}. If this persists, the API may have changed; "
            "report it to the developers."
        )
        return _Failure(VionlabsBadResponse(call.context(message)), False, label="bad response")


#: An attempt needs at least this long to mean anything; with less left before the deadline none starts.
_MIN_ATTEMPT_SECONDS = 0.05

_OUTCOME_UNKNOWN = (
    " The change may or may not have reached Vionlabs: refresh the task to see its state before acting again."
)


def _result_query(*, version: str | None, **minutes: float | None) -> dict[str, object]:
    """The query of a results GET: the version and the minute parameters that were given, as given."""
    query: dict[str, object] = {}
    if version is not None:
        query["version"] = str(version)
    for name, value in minutes.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{name} must be a number of minutes, got {value!r}")
        query[name] = value
    return query


def _result_placeholder(product: str, template: str) -> str:
    """The one placeholder (`inventory_id` or `ident`) of a results path template; ValueError otherwise."""
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    if not template.startswith("/") or len(names) != 1 or names[0] not in ("inventory_id", "ident"):
        raise ValueError(
            f"the results path of {product!r} must start with '/' and hold exactly one placeholder, "
            f"{{inventory_id}} or {{ident}}: {template!r}"
        )
    return names[0]


def _phrase(status: int) -> str:
    """The standard reason phrase of an HTTP status, or a generic one."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "no reason given"


def _is_timeout(exc: Exception) -> bool:
    """Whether a requests/urllib3 error was a timeout (connect or read)."""
    if isinstance(exc, requests.Timeout | ReadTimeoutError):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, ConnectTimeoutError | ReadTimeoutError) and not isinstance(
        reason, NewConnectionError
    )
