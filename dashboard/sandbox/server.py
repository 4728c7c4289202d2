"""A local stand-in for the Vionlabs Tasks API (and the Catalog API listing), for the demo, tests and benchmarks.

Pure standard library, nothing from Django. `Sandbox` binds its port at construction (port 0 picks a free one,
read back from `.url`), then either `start()`s in a background thread (tests) or `serve_forever()`s in the
calling thread (`manage.py run_sandbox`). Its behaviour is described in docs/sandbox.md.
"""

from __future__ import annotations

import heapq
import hmac
import json
import logging
import queue
import random
import re
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from . import results
from .state import (
    ITEM_TYPES,
    PRIORITIES,
    PRODUCTS,
    SandboxOptions,
    SandboxState,
    Stats,
    Task,
    TaskKey,
)

logger = logging.getLogger("dashboard.sandbox")

MAX_BODY_BYTES = 1_000_000
WEBHOOK_TIMEOUT = 5.0
WEBHOOK_SENDERS = 4
JSON = dict[str, Any] | list[Any]


class Route(NamedTuple):
    """What a request path addresses: `kind` is task, item, catalog, results, internal or unknown.

    For results, `product` names the Results API and `name` the variant (`millisec` or `frame` for ad breaks)."""

    kind: str
    key: TaskKey | None = None
    item: str | None = None
    name: str = ""
    product: str = ""


#: The Results APIs with a documented path of their own; every other product is served at
#: /results/<product>/v1/{inventory_id} (the client's assumption, see docs/results.md).
TYPED_RESULTS = ("adbreaks", "contextual_adbreak", "markers")


class Answer(NamedTuple):
    status: int
    body: JSON
    headers: tuple[tuple[str, str], ...] = ()


class BadPath(ValueError):
    """A path segment that is not UTF-8 after percent-decoding."""


def parse_route(raw_path: str) -> Route:
    """Split the raw path on `/` first and only then percent-decode each segment, so `%2F` stays in an id."""
    parts = raw_path.split("/")
    if parts[0] != "":
        return Route("unknown")
    segments = parts[1:]

    def decode(segment: str) -> str:
        try:
            return unquote(segment, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise BadPath(segment) from None

    if segments[:2] == ["tasks", "catalog-item"] and len(segments) >= 3 and segments[2]:
        inventory_id = decode(segments[2])
        if len(segments) == 3:
            return Route("item", item=inventory_id)
        if len(segments) == 7 and segments[3] == "product" and segments[5] == "version":
            return Route("task", key=(inventory_id, decode(segments[4]), decode(segments[6])))
        return Route("unknown")
    if segments == ["catalog", "v1", "item"]:
        return Route("catalog")
    if segments[:1] == ["results"]:
        return _results_route(segments[1:], decode)
    if (
        len(segments) == 2
        and segments[0] == "_sandbox"
        and segments[1] in ("stats", "reset", "config", "tasks")
    ):
        return Route("internal", name=segments[1])
    return Route("unknown")


def _results_route(segments: list[str], decode: Callable[[str], str]) -> Route:
    """The vendor's results paths (the segments after `/results/`)."""
    if (
        len(segments) == 5
        and segments[:3] == ["adbreaks", "v3", "filter"]
        and segments[3] in ("millisec", "frame")
        and segments[4]
    ):
        return Route("results", item=decode(segments[4]), product="adbreaks", name=segments[3])
    if len(segments) == 3 and segments[:2] == ["contextual_adbreak", "v2"] and segments[2]:
        return Route("results", item=decode(segments[2]), product="contextual_adbreak")
    if len(segments) == 4 and segments[:3] == ["markers", "v1", "asset"] and segments[3]:
        return Route("results", item=decode(segments[3]), product="markers")
    if (
        len(segments) == 3
        and segments[0] in PRODUCTS
        and segments[0] not in TYPED_RESULTS
        and segments[1] == "v1"
        and segments[2]
    ):
        return Route("results", item=decode(segments[2]), product=segments[0])
    return Route("unknown")


def results_path(inventory_id: str, product: str) -> str:
    """Where the sandbox serves a product's result (the vendor's path shapes)."""
    ident = quote(inventory_id, safe="")
    if product == "adbreaks":
        return f"/results/adbreaks/v3/filter/millisec/{ident}"
    if product == "contextual_adbreak":
        return f"/results/contextual_adbreak/v2/{ident}"
    if product == "markers":
        return f"/results/markers/v1/asset/{ident}"
    return f"/results/{quote(product, safe='')}/v1/{ident}"


def task_path(key: TaskKey) -> str:
    inventory_id, product, version = key
    return (
        f"/tasks/catalog-item/{quote(inventory_id, safe='')}/product/{quote(product, safe='')}"
        f"/version/{quote(version, safe='')}"
    )


def _enum_text(values: Iterable[str]) -> str:
    quoted = [f"'{value}'" for value in values]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


def _field_error(
    kind: str, loc: list[Any], msg: str, value: Any, ctx: Mapping[str, Any] | None = None
) -> dict:
    # The shape FastAPI (pydantic 2) gives to each validation error.
    error: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg, "input": value}
    if ctx is not None:
        error["ctx"] = dict(ctx)
    return error


def _enum_error(loc: list[Any], value: Any, allowed: Iterable[str]) -> dict:
    expected = _enum_text(allowed)
    return _field_error("enum", loc, f"Input should be {expected}", value, {"expected": expected})


def _int_param(name: str, raw: str | None, default: int, low: int, high: int) -> tuple[int, dict | None]:
    if raw is None:
        return default, None
    loc = ["query", name]
    try:
        value = int(raw.strip())
    except ValueError:
        msg = "Input should be a valid integer, unable to parse string as an integer"
        return default, _field_error("int_parsing", loc, msg, raw)
    if value < low:
        return default, _field_error(
            "greater_than_equal", loc, f"Input should be greater than or equal to {low}", raw, {"ge": low}
        )
    if value > high:
        return default, _field_error(
            "less_than_equal", loc, f"Input should be less than or equal to {high}", raw, {"le": high}
        )
    return value, None


def _minutes_param(name: str, raw: str | None, default: float) -> tuple[float, dict | None]:
    """A number of minutes >= 0 in the query (the separation and skip parameters), FastAPI's 422 otherwise."""
    if raw is None:
        return default, None
    loc = ["query", name]
    try:
        value = float(raw.strip())
    except ValueError:
        return default, _field_error(
            "float_parsing", loc, "Input should be a valid number, unable to parse string as a number", raw
        )
    if not value >= 0 or value == float("inf"):
        return default, _field_error(
            "greater_than_equal", loc, "Input should be greater than or equal to 0", raw, {"ge": 0}
        )
    return value, None


def _json_body(body: bytes) -> tuple[Any, dict | None]:
    """The decoded JSON body (None when empty) or a FastAPI-style error. Only a body of no bytes is absent, as
    in FastAPI: whitespace JSON does not allow (a lone form feed, say) is a decode error at position 0."""
    if not body:
        return None, None
    try:
        return json.loads(body.decode("utf-8")), None
    except UnicodeDecodeError:
        return None, _field_error("json_invalid", ["body"], "JSON decode error", {}, {"error": "not UTF-8"})
    except json.JSONDecodeError as exc:
        return None, _field_error(
            "json_invalid", ["body", exc.pos], "JSON decode error", {}, {"error": exc.msg}
        )


def _object_error(value: Any) -> dict:
    msg = "Input should be a valid dictionary or object to extract fields from"
    return _field_error("model_attributes_type", ["body"], msg, value)


class Sandbox:
    """The sandbox server: construct (binds the port), then `start()` in a thread or `serve_forever()`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        options: SandboxOptions | None = None,
        catalog: Iterable[Mapping[str, Any]] = (),
        clock: Callable[[], float] = time.monotonic,
        **option_values: Any,
    ) -> None:
        self._base_options = (options or SandboxOptions()).replace(**option_values)
        self._options = self._base_options
        self._rng_lock = threading.Lock()
        self._rng = random.Random(self._options.seed)
        self._release = threading.Event()
        self.clock = clock
        self.state = SandboxState(clock=clock, catalog=catalog)
        self.counters = Stats()
        self._webhooks = _WebhookDispatcher(self)
        # Fixed once, so that a result's `updated` (its task's end, on the monotonic clock) never jitters.
        self._wall_offset = time.time() - clock()
        self._httpd = _HTTPServer((host, port), _Handler, self)
        self._thread: threading.Thread | None = None
        bound_host, bound_port = self._httpd.server_address[:2]
        self.host = str(bound_host)
        self.port = int(bound_port)

    # -- the interface tests and the command use ----------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_key(self) -> str:
        return self._options.api_key

    @property
    def options(self) -> SandboxOptions:
        return self._options

    def start(self) -> Sandbox:
        """Serve in a daemon thread and return at once."""
        self._webhooks.start()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="sandbox-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until stop() or KeyboardInterrupt."""
        self._webhooks.start()
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._shutdown_rest()

    def stop(self) -> None:
        """Stop serving, release hanging responses and close the socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._shutdown_rest()

    def _shutdown_rest(self) -> None:
        self._release.set()
        self._webhooks.stop()
        self._httpd.server_close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def configure(self, **changes: Any) -> SandboxOptions:
        """Change options at run time (TypeError for an unknown name, ValueError for a bad value)."""
        self._options = self._options.replace(**changes)
        if "seed" in changes:
            with self._rng_lock:
                self._rng = random.Random(self._options.seed)
        return self._options

    def reset(self) -> None:
        """Forget tasks and counts, reload the preloaded catalog, restore the options given at construction."""
        released, self._release = self._release, threading.Event()
        released.set()  # hanging responses of earlier tests end now instead of holding a thread
        self._options = self._base_options
        with self._rng_lock:
            self._rng = random.Random(self._options.seed)
        self.state.reset()
        self.counters.reset()
        self._webhooks.clear()

    def stats(self) -> dict[str, Any]:
        """Request counts (same JSON as GET /_sandbox/stats)."""
        return self.counters.snapshot()

    def task_requests(self, inventory_id: str, product: str, version: str, method: str | None = None) -> int:
        """How many requests addressed this task (of one method, or all)."""
        return self.counters.task_count((inventory_id, product, version), method)

    def applied_requests(
        self, inventory_id: str, product: str, version: str, method: str | None = None
    ) -> int:
        """How many requests on this task got past the injected faults and were handled (could change it)."""
        return self.counters.applied_count((inventory_id, product, version), method)

    def item_requests(self, inventory_id: str) -> int:
        """How many item-level GETs addressed this inventory id."""
        return self.counters.item_count(inventory_id)

    # -- answering -----------------------------------------------------------------------------------------

    def draw_fault(self) -> str | None:
        """One draw per request, so a seeded run repeats the same faults for the same request order."""
        options = self._options
        if not (options.error_rate or options.rate_limit_rate or options.hang_rate or options.reset_rate):
            return None
        with self._rng_lock:
            draw = self._rng.random()
        if draw < options.error_rate:
            return "503"
        if draw < options.error_rate + options.rate_limit_rate:
            return "429"
        if draw < options.error_rate + options.rate_limit_rate + options.hang_rate:
            return "hang"
        if draw < options.error_rate + options.rate_limit_rate + options.hang_rate + options.reset_rate:
            return "reset"
        return None

    def authorised(self, query: list[tuple[str, str]], header_key: str | None) -> bool:
        keys = [value for name, value in query if name == "key"]
        # The deprecated X-API-Key header counts only when the query carries no key.
        given = keys[0] if keys else header_key
        if given is None:
            return False
        return hmac.compare_digest(given.encode("utf-8"), self._options.api_key.encode("utf-8"))

    def answer(self, method: str, route: Route, query: list[tuple[str, str]], body: bytes) -> Answer:
        """The answer of the API proper (after faults and auth)."""
        if route.kind == "task":
            assert route.key is not None
            allowed = ("GET", "POST", "DELETE")
            if method not in allowed:
                return _not_allowed(allowed)
            return self._answer_task(method, route.key, body)
        if route.kind == "item":
            if method != "GET":
                return _not_allowed(("GET",))
            tasks = self.state.tasks_of_item(route.item or "")
            now = self.clock()
            return Answer(
                200,
                [
                    {
                        "task_status": {"status": task.status(now), "error": task.error(now)},
                        "product": task.product,
                        "version": task.version,
                    }
                    for task in tasks
                ],
            )
        if route.kind == "results":
            if method != "GET":
                return _not_allowed(("GET",))
            return self._answer_results(route, query)
        if route.kind == "catalog":
            if method == "GET":
                return self._catalog_list(query)
            if method == "PUT":
                return self._catalog_put(body)
            return _not_allowed(("GET", "PUT"))
        return Answer(404, {"detail": "Not Found"})

    def _answer_results(self, route: Route, query: list[tuple[str, str]]) -> Answer:
        """A done task's result, made up from its inventory id; 404 until the task is done (markers: a known
        item answers `not_yet_available: true` instead)."""
        inventory_id, product = route.item or "", route.product
        params = dict(query)
        version = params.get("version") or None
        separation = results.Separation()
        if product in ("adbreaks", "contextual_adbreak"):
            defaults = results.Separation()
            values, errors = {}, []
            for name, default in (
                ("minimum_separation", defaults.minimum),
                ("maximum_separation", defaults.maximum),
                ("skip_first", defaults.skip_first),
                ("skip_last", defaults.skip_last),
            ):
                values[name], error = _minutes_param(name, params.get(name), default)
                if error is not None:
                    errors.append(error)
            if errors:
                return Answer(422, {"detail": errors})
            separation = results.Separation(
                minimum=values["minimum_separation"],
                maximum=values["maximum_separation"],
                skip_first=values["skip_first"],
                skip_last=values["skip_last"],
            )
        now = self.clock()
        done = [
            task
            for task in self.state.tasks_of_item(inventory_id)
            if task.product == product
            and task.status(now) == "done"
            and (version is None or task.version == version)
        ]
        if not done:
            if product == "markers" and self.state.knows(inventory_id):
                return Answer(200, {"ident": inventory_id, "not_yet_available": True})
            return Answer(404, {"detail": "Result not found"})
        task = max(done, key=lambda candidate: candidate.finishes_at)
        updated = datetime.fromtimestamp(self._wall_offset + task.finishes_at, tz=UTC)
        stamp = updated.replace(microsecond=0).isoformat().replace("+00:00", "Z")
        if product == "adbreaks":
            body = results.adbreaks_v3(
                inventory_id, task.version, separation, stamp, frames=route.name == "frame"
            )
        elif product == "contextual_adbreak":
            body = results.contextual_adbreaks(inventory_id, task.version, separation, stamp)
        elif product == "markers":
            body = results.markers(inventory_id)
        else:
            body = results.generic(inventory_id, product, task.version, stamp)
        return Answer(200, body)

    def _answer_task(self, method: str, key: TaskKey, body: bytes) -> Answer:
        _, product, version = key
        errors = []
        if product not in PRODUCTS:
            errors.append(_enum_error(["path", "product"], product, PRODUCTS))
        if not version:  # min_length=1 on the value as given: a blank version is a version
            errors.append(
                _field_error(
                    "string_too_short", ["path", "version"], "String should have at least 1 character", version,
                    {"min_length": 1},
                )
            )  # fmt: skip
        priority = "low"
        if method == "POST":
            data, error = _json_body(body)
            if error is not None:
                errors.append(error)
            elif data is not None and not isinstance(data, dict):
                errors.append(_object_error(data))
            elif data is not None and "priority" in data:
                priority = data["priority"]
                if priority not in PRIORITIES:
                    errors.append(_enum_error(["body", "priority"], priority, PRIORITIES))
        if errors:
            return Answer(422, {"detail": errors})
        if method == "GET":
            task = self.state.get(key)
        elif method == "DELETE":
            task = self.state.deactivate(key)
        else:
            options = self._options
            task, started = self.state.create(
                key,
                priority=priority,
                pending_seconds=options.pending_seconds,
                processing_seconds=options.processing_seconds,
            )
            if started:
                self._webhooks.schedule(task)
        if task is None:
            return Answer(404, {"detail": "Task not found"})
        return Answer(200, self.task_status(task))

    def task_status(self, task: Task) -> dict[str, Any]:
        """The TaskStatus body: status, error and `_links` that depend on the status."""
        now = self.clock()
        status = task.status(now)
        href = self.url + task_path(task.key)
        links: dict[str, dict[str, str]] = {"self": {"href": href, "method": "GET"}}
        if status in ("pending", "processing"):
            links["deactivate"] = {"href": href, "method": "DELETE"}
        elif status == "done":
            where = results_path(task.inventory_id, task.product) + "?" + urlencode({"version": task.version})
            links["results"] = {"href": self.url + where, "method": "GET"}
            links["deactivate"] = {"href": href, "method": "DELETE"}
        else:
            links["create"] = {"href": href, "method": "POST"}
        return {"status": status, "error": task.error(now), "_links": links}

    def _catalog_list(self, query: list[tuple[str, str]]) -> Answer:
        params = dict(query)
        page_num, num_error = _int_param("page_num", params.get("page_num"), 0, 0, 10**9)
        page_size, size_error = _int_param("page_size", params.get("page_size"), 500, 1, 1000)
        errors = [error for error in (num_error, size_error) if error]
        if errors:
            return Answer(422, {"detail": errors})
        return Answer(200, self.state.catalog_page(page_num, page_size))

    def _catalog_put(self, body: bytes) -> Answer:
        data, error = _json_body(body)
        if error is not None:
            return Answer(422, {"detail": [error]})
        if not isinstance(data, dict):
            return Answer(422, {"detail": [_object_error(data)]})
        errors = []
        item_id = data.get("id")
        if item_id is None:
            errors.append(_field_error("missing", ["body", "id"], "Field required", data))
        elif not isinstance(item_id, str) or not item_id.strip():
            errors.append(_field_error("string_too_short", ["body", "id"], "id must not be blank", item_id))
        item_type = data.get("type", "standalone")
        if item_type not in ITEM_TYPES:
            errors.append(_enum_error(["body", "type"], item_type, ITEM_TYPES))
        if errors or not isinstance(item_id, str):  # the second test only narrows the type: errors says it
            return Answer(422, {"detail": errors})
        return Answer(200, self.state.catalog_put(item_id, item_type))

    def answer_internal(self, method: str, name: str, body: bytes) -> Answer:
        """/_sandbox/stats, /_sandbox/reset, /_sandbox/config and /_sandbox/tasks."""
        if name == "stats":
            return self.stats_answer(method)
        if name == "tasks":
            return self.load_answer(method, body)
        if name == "reset":
            if method != "POST":
                return _not_allowed(("POST",))
            self.reset()
            return Answer(200, {"detail": "reset", "options": self._options.public()})
        if method == "GET":
            return Answer(200, self._options.public())
        if method != "POST":
            return _not_allowed(("GET", "POST"))
        data, error = _json_body(body)
        if error is None and not isinstance(data, dict):
            error = _object_error(data)
        if error is not None:
            return Answer(422, {"detail": [error]})
        try:
            options = self.configure(**data)
        except (TypeError, ValueError) as exc:
            return Answer(422, {"detail": [_field_error("value_error", ["body"], str(exc), data)]})
        return Answer(200, options.public())

    def load_answer(self, method: str, body: bytes) -> Answer:
        """POST /_sandbox/tasks {"tasks": [{"inventory_id", "product", "version", "status", "error"?,
        "priority"?}]}: tasks that exist elsewhere already (the dashboard's, after a restart). All or nothing."""
        if method != "POST":
            return _not_allowed(("POST",))
        data, error = _json_body(body)
        if error is not None:
            return Answer(422, {"detail": [error]})
        rows = data.get("tasks") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            return Answer(
                422,
                {
                    "detail": [
                        _field_error("list_type", ["body", "tasks"], "Input should be a valid list", rows)
                    ]
                },
            )
        errors, loads = [], []
        for index, row in enumerate(rows):
            where = ["body", "tasks", index]
            if not isinstance(row, dict):
                errors.append(_object_error(row))
                continue
            for field in ("inventory_id", "product", "version", "status"):
                value = row.get(field)
                if not isinstance(value, str) or not value.strip():
                    errors.append(_field_error("string_type", [*where, field], "Field required", value))
            if row.get("product") not in PRODUCTS:
                errors.append(_enum_error([*where, "product"], row.get("product"), PRODUCTS))
            priority = row.get("priority", "low")
            if priority not in PRIORITIES:
                errors.append(_enum_error([*where, "priority"], priority, PRIORITIES))
            error_text = row.get("error")
            if error_text is not None and not isinstance(error_text, str):
                errors.append(
                    _field_error("string_type", [*where, "error"], "Input should be a string", error_text)
                )
            loads.append(row)
        if errors:
            return Answer(422, {"detail": errors})
        options = self._options
        for row in loads:
            task = self.state.load(
                (row["inventory_id"], row["product"], row["version"]),
                status=row["status"],
                error=row.get("error"),
                priority=row.get("priority", "low"),
                pending_seconds=options.pending_seconds,
                processing_seconds=options.processing_seconds,
            )
            if row["status"] in ("pending", "processing"):
                self._webhooks.schedule(task)
        return Answer(200, {"loaded": len(loads)})

    def stats_answer(self, method: str) -> Answer:
        if method != "GET":
            return _not_allowed(("GET",))
        return Answer(200, self.stats())

    @property
    def release(self) -> threading.Event:
        """Set when hanging responses should end early (reset or stop)."""
        return self._release


def _not_allowed(allowed: Iterable[str]) -> Answer:
    return Answer(405, {"detail": "Method Not Allowed"}, (("Allow", ", ".join(allowed)),))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # A benchmark opens many connections at once; a short listen queue would refuse some before accept().
    request_queue_size = 256

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], sandbox: Sandbox
    ) -> None:
        self.sandbox = sandbox
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


_KEY_IN_TEXT = re.compile(r"((?:^|[?&;\s])key=)[^&;\s'\"]*", re.IGNORECASE)


def _redacted_target(raw_path: str, query: str) -> str:
    """The request target for the log: the key's value replaced, everything else kept."""
    if not query:
        return raw_path
    pairs = [
        (name, "***" if name == "key" else value) for name, value in parse_qsl(query, keep_blank_values=True)
    ]
    return f"{raw_path}?{urlencode(pairs, safe='*')}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "VionlabsSandbox/1.0"
    sys_version = ""
    # An idle keep-alive connection gives its thread back after this long.
    timeout = 120
    # Headers and body leave in one buffered write, and with Nagle off: otherwise the body waits for the
    # client's delayed ACK of the headers, ~40 ms on every answer.
    wbufsize = -1
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, HEAD, PROPFIND...) reaches the routes too, to get the framework's 405 with
        # `Allow` (or 404 for an unknown path), where BaseHTTPRequestHandler would answer 501.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Logged by _serve() with a redacted target instead: the default line holds the query, key included.
        pass

    def log_message(self, format: str, *args: Any) -> None:
        # The base class logs e.g. "Bad request syntax ('GET /x?key=... junk')": mask the key there too.
        logger.debug("%s %s", self.client_address[0], _KEY_IN_TEXT.sub(r"\1***", format % args))

    def _serve(self) -> None:
        started = time.perf_counter()
        sandbox = self.server.sandbox
        raw_path, _, query_string = self.path.partition("?")
        target = _redacted_target(raw_path, query_string)
        query = parse_qsl(query_string, keep_blank_values=True)
        outcome = "-"
        try:
            try:
                body = self._read_body()
            except ValueError:
                outcome = self._send(Answer(400, {"detail": "Malformed request body framing"}), close=True)
                return
            if body is None:
                outcome = self._send(Answer(413, {"detail": "Request body too large"}), close=True)
                return
            try:
                route = parse_route(raw_path)
            except BadPath:
                outcome = self._send(
                    Answer(400, {"detail": "Path segment is not valid UTF-8 after decoding"})
                )
                return
            if route.kind == "internal":
                if not sandbox.authorised(query, self.headers.get("X-API-Key")):
                    outcome = self._send(Answer(401, {"detail": "Invalid or missing API key"}))
                else:
                    outcome = self._send(sandbox.answer_internal(self.command, route.name, body))
                return
            outcome = self._serve_api(sandbox, route, query, body)
        except (BrokenPipeError, ConnectionResetError):
            outcome = "client-gone"
            self.close_connection = True
        except Exception:
            # A bug in the sandbox: answer 500 like a real server would, keep serving, leave the traceback.
            logger.exception("sandbox failed on %s %s", self.command, target)
            outcome = "500"
            try:
                self._send(Answer(500, {"detail": "Internal Server Error"}), close=True)
            except OSError:
                self.close_connection = True
        finally:
            logger.info(
                '%s "%s %s" %s %.1fms',
                self.client_address[0],
                self.command,
                target,
                outcome,
                (time.perf_counter() - started) * 1000,
            )

    def _serve_api(self, sandbox: Sandbox, route: Route, query: list[tuple[str, str]], body: bytes) -> str:
        counters = sandbox.counters
        token = counters.enter(
            self.command, route.kind, route.key, route.item if route.kind == "item" else None
        )
        try:
            options = sandbox.options
            release = sandbox.release
            if options.latency:
                release.wait(options.latency)
            fault = sandbox.draw_fault()
            if fault == "503":
                counters.fault("503")
                return self._counted(Answer(503, {"detail": "Service temporarily unavailable"}))
            if fault == "429":
                counters.fault("429")
                answer = Answer(
                    429, {"detail": "Too many requests"}, (("Retry-After", str(options.retry_after)),)
                )
                return self._counted(answer)
            if fault == "reset":
                # Nothing changes and nothing is answered: the connection is torn down (RST, not FIN).
                counters.fault("reset")
                counters.answered("reset")
                self._reset()
                return "reset"
            if not sandbox.authorised(query, self.headers.get("X-API-Key")):
                answer = Answer(401, {"detail": "Invalid or missing API key"})
            elif route.kind == "results" and route.product == options.no_access_product:
                # Access is granted per API: this key works for tasks but not for this product's results.
                answer = Answer(403, {"detail": "Not authorized to access this API"})
            else:
                if route.kind == "task" and route.key is not None:
                    counters.applied(self.command, route.key)
                answer = sandbox.answer(self.command, route, query, body)
            if fault == "hang":
                # The request took effect; only its answer is withheld, as when a real server times out.
                counters.fault("hang")
                counters.answered("hang")
                self._hang(answer, options.hang_mode, options.hang_seconds, release)
                return f"hang-{options.hang_mode}"
            return self._counted(answer)
        finally:
            counters.leave(token)

    def _counted(self, answer: Answer) -> str:
        self.server.sandbox.counters.answered(str(answer.status))
        return self._send(answer)

    def _read_body(self) -> bytes | None:
        """The whole request body (read even when unused, to keep the connection in step); None if too big."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)  # ValueError: answered 400 by the caller
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _head(self, answer: Answer, length: int, close: bool) -> None:
        self.send_response_only(answer.status)
        self.send_header("Server", self.server_version)
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        for name, value in answer.headers:
            self.send_header(name, value)
        if close:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()

    def _send(self, answer: Answer, close: bool = False) -> str:
        payload = json.dumps(answer.body).encode("utf-8")
        self._head(answer, len(payload), close)
        if self.command != "HEAD":  # a HEAD answer has the headers of the GET and no body
            self.wfile.write(payload)
        self.wfile.flush()
        return str(answer.status)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST: the client sees "connection reset by peer".
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _hang(self, answer: Answer, mode: str, seconds: float, release: threading.Event) -> None:
        self.close_connection = True
        if mode == "close":
            release.wait(seconds)
            return  # the connection closes without an answer
        payload = json.dumps(answer.body).encode("utf-8")
        self._head(answer, len(payload), close=True)
        self.wfile.flush()
        interval = seconds / max(len(payload), 1)
        for index in range(len(payload)):
            if release.wait(interval):
                return
            self.wfile.write(payload[index : index + 1])
            self.wfile.flush()


class _WebhookDispatcher:
    """One thread that notices tasks reaching done/failed (from their scheduled end time) and a few senders."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, TaskKey]] = []
        self._outbox: queue.Queue[tuple[str, str | None, dict[str, Any]] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def start(self) -> None:
        if self._threads:
            return
        self._stopping = False
        self._threads.append(threading.Thread(target=self._watch, name="sandbox-webhook-watch", daemon=True))
        for number in range(WEBHOOK_SENDERS):
            self._threads.append(
                threading.Thread(target=self._send, name=f"sandbox-webhook-{number}", daemon=True)
            )
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for _ in range(WEBHOOK_SENDERS):
            self._outbox.put(None)
        self._threads = []

    def clear(self) -> None:
        with self._cond:
            self._due.clear()

    def schedule(self, task: Task) -> None:
        with self._cond:
            heapq.heappush(self._due, (task.finishes_at, task.generation, task.key))
            self._cond.notify()

    def _watch(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = self._sandbox.clock()
                due = []
                while self._due and self._due[0][0] <= now:
                    due.append(heapq.heappop(self._due))
                if not due:
                    # Bounded wait: the clock may be a test's fake clock that moves without notifying us.
                    wait = min(self._due[0][0] - now, 0.2) if self._due else 0.2
                    self._cond.wait(wait)
                    continue
            for finishes_at, generation, key in due:
                self._enqueue(finishes_at, generation, key)

    def _enqueue(self, finishes_at: float, generation: int, key: TaskKey) -> None:
        options = self._sandbox.options
        task = self._sandbox.state.finished(key, generation)
        if task is None or not options.webhook_url:
            return  # deactivated, restarted or wiped since, or webhooks are off
        completed = time.time() - max(self._sandbox.clock() - finishes_at, 0.0)
        payload = {
            "inventory_id": task.inventory_id,
            "product": task.product,
            "version": task.version,
            "type": "task.completed",
            "timestamp": datetime.fromtimestamp(completed, tz=UTC).isoformat(),
        }
        self._outbox.put((options.webhook_url, options.webhook_secret, payload))

    def _send(self) -> None:
        # No proxies from the environment and no redirects: the call goes exactly where it was configured.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        while True:
            job = self._outbox.get()
            if job is None:
                return
            url, secret, payload = job
            headers = {"Content-Type": "application/json"}
            if secret:
                headers["x-api-key"] = secret
            # The scheme was checked when the option was set (http/https only).
            request = urllib.request.Request(  # noqa: S310
                url, data=json.dumps(payload).encode(), headers=headers, method="POST"
            )
            shown = urlsplit(url)._replace(query="", fragment="").geturl()
            try:
                with opener.open(request, timeout=WEBHOOK_TIMEOUT) as response:
                    response.read()
                self._sandbox.counters.webhook("sent")
                logger.info("webhook %s for %r %s %s: delivered", shown, *payload_key(payload))
            except urllib.error.HTTPError as exc:
                self._sandbox.counters.webhook("failed")
                logger.warning("webhook %s for %r %s %s: answered %s", shown, *payload_key(payload), exc.code)
            except Exception as exc:  # a webhook failure must never take the server down
                self._sandbox.counters.webhook("failed")
                logger.warning(
                    "webhook %s for %r %s %s: %s", shown, *payload_key(payload), type(exc).__name__
                )


def payload_key(payload: Mapping[str, Any]) -> tuple[str, str, str]:
    return payload["inventory_id"], payload["product"], payload["version"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a redirect as the failure it is instead of following it (urllib would turn the POST into a GET)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
