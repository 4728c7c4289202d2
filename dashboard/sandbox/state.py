"""The sandbox's memory: its options, tasks whose status follows from the clock, the catalog, request counts.

Nothing here knows about HTTP or Django. The product list is written out here rather than imported from the
client package on purpose: the sandbox stands in for the vendor, so a mistake in the client's enum must not be
mirrored by the server it is tested against.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

PRODUCTS: tuple[str, ...] = (
    "adbreaks",
    "contextual_adbreak",
    "emotions",
    "fingerprint",
    "fingerprintplus",
    "jitpreviews",
    "jitthumbnails",
    "markers",
    "nudity",
    "profanity",
    "semantic",
    "similar",
    "content_summary",
    "semantic_scenes",
    "vertical_conversion",
    "scene_tags",
)
PRIORITIES: tuple[str, ...] = ("low", "medium", "high")
ITEM_TYPES: tuple[str, ...] = ("standalone", "series", "season", "episode")
HANG_MODES: tuple[str, ...] = ("close", "drip")

#: Errors of the kinds the vendor's guide names (missing S3 assets, probe decoding errors, unsupported video
#: lengths). One is picked from the task's natural key, so a failing task always fails the same way.
FAILURE_ERRORS: tuple[str, ...] = (
    "source asset not found in storage (s3://vionlabs-ingest/assets/{inventory_id}/source.mp4)",
    "probe failed: could not decode video stream",
    "unsupported video length: 00:00:04 is shorter than the 00:00:30 minimum",
    "probe failed: no audio stream found in source asset",
)

TaskKey = tuple[str, str, str]


def _number(name: str, value: Any) -> float:
    # bool is an int subclass; `latency=True` is a mistake, not one second.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True, slots=True)
class SandboxOptions:
    """How the sandbox behaves; every field can be changed at run time with `Sandbox.configure()`."""

    api_key: str = "sandbox-key"
    pending_seconds: float = 5.0
    processing_seconds: float = 15.0
    latency: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: int = 1
    hang_rate: float = 0.0
    hang_seconds: float = 30.0
    hang_mode: str = "close"
    reset_rate: float = 0.0
    webhook_url: str | None = None
    webhook_secret: str | None = None
    seed: int | None = None
    # One product whose Results API answers 403 (the key has no access to it), to show that case.
    no_access_product: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.api_key, str) or not self.api_key:
            raise ValueError("api_key must be a non-empty string")
        for name in ("pending_seconds", "processing_seconds", "latency", "hang_seconds"):
            value = _number(name, getattr(self, name))
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
            object.__setattr__(self, name, value)
        for name in ("error_rate", "rate_limit_rate", "hang_rate", "reset_rate"):
            value = _number(name, getattr(self, name))
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
            object.__setattr__(self, name, value)
        if self.error_rate + self.rate_limit_rate + self.hang_rate + self.reset_rate > 1:
            raise ValueError("error_rate + rate_limit_rate + hang_rate + reset_rate must not exceed 1")
        if (
            isinstance(self.retry_after, bool)
            or not isinstance(self.retry_after, int)
            or self.retry_after < 0
        ):
            raise ValueError(f"retry_after must be a whole number of seconds >= 0, got {self.retry_after!r}")
        if self.hang_mode not in HANG_MODES:
            raise ValueError(f"hang_mode must be one of {', '.join(HANG_MODES)}, got {self.hang_mode!r}")
        if self.webhook_url is not None and (
            not isinstance(self.webhook_url, str) or not self.webhook_url.startswith(("http://", "https://"))
        ):
            raise ValueError("webhook_url must be an http:// or https:// URL")
        if self.webhook_secret is not None and not isinstance(self.webhook_secret, str):
            raise ValueError("webhook_secret must be a string")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.no_access_product is not None and self.no_access_product not in PRODUCTS:
            raise ValueError(
                f"no_access_product must be one of {', '.join(PRODUCTS)} or null, got {self.no_access_product!r}"
            )

    def replace(self, **changes: Any) -> SandboxOptions:
        """A copy with `changes` applied; an unknown option name raises TypeError, a bad value ValueError."""
        names = {field.name for field in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(
                f"unknown sandbox option(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        return dataclasses.replace(self, **changes)

    def public(self) -> dict[str, Any]:
        """The options as JSON, secrets masked (they are shown by /_sandbox/config and logged at start)."""
        data = dataclasses.asdict(self)
        data["api_key"] = "***"
        if data["webhook_secret"] is not None:
            data["webhook_secret"] = "***"  # noqa: S105 - a mask, not a secret
        return data


@dataclasses.dataclass(slots=True)
class Task:
    """One task. Its status is not stored: it follows from when it started and the durations fixed then."""

    inventory_id: str
    product: str
    version: str
    priority: str
    started_at: float
    pending_seconds: float
    processing_seconds: float
    generation: int
    deactivated: bool = False
    # A task loaded through /_sandbox/tasks keeps the status it was given (demo data with a history).
    fixed_status: str | None = None
    fixed_error: str | None = None

    @property
    def key(self) -> TaskKey:
        return (self.inventory_id, self.product, self.version)

    @property
    def fails(self) -> bool:
        return "fail" in self.inventory_id.lower()

    @property
    def finishes_at(self) -> float:
        return self.started_at + self.pending_seconds + self.processing_seconds

    def status(self, now: float) -> str:
        if self.deactivated:
            return "deactivated"
        if self.fixed_status is not None:
            return self.fixed_status
        elapsed = now - self.started_at
        if elapsed < self.pending_seconds:
            return "pending"
        if elapsed < self.pending_seconds + self.processing_seconds:
            return "processing"
        return "failed" if self.fails else "done"

    def error(self, now: float) -> str | None:
        if self.status(now) != "failed":
            return None
        if self.fixed_error:
            return self.fixed_error
        digest = zlib.crc32("\0".join(self.key).encode("utf-8"))
        return FAILURE_ERRORS[digest % len(FAILURE_ERRORS)].format(inventory_id=self.inventory_id)


def catalog_entry(item_id: str, item_type: str = "standalone") -> dict[str, Any]:
    """A Catalog API item; the vionlabs_id is derived from the id so that it is stable across restarts."""
    return {
        "id": item_id,
        "vionlabs_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"vionlabs:{item_id}")),
        "type": item_type,
    }


def read_catalog_file(path: str | Path) -> list[dict[str, Any]]:
    """Catalog items from a JSON Lines file (`{"id", "type"}`, or `inventory_id`/`kind` as import_catalog reads)."""
    entries = []
    with open(path, encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}, line {number}: expected a JSON object")
            item_id = row.get("id", row.get("inventory_id"))
            item_type = row.get("type", row.get("kind")) or "standalone"
            if not isinstance(item_id, str) or not item_id.strip():
                raise ValueError(f"{path}, line {number}: missing id")
            if item_type not in ITEM_TYPES:
                raise ValueError(f"{path}, line {number}: type must be one of {', '.join(ITEM_TYPES)}")
            entries.append(catalog_entry(item_id, item_type))
    return entries


class SandboxState:
    """Tasks and catalog items, behind one lock (every method is safe to call from any thread)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, catalog: Iterable[Mapping] = ()
    ) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self._preloaded = [dict(entry) for entry in catalog]
        # Generations never restart, not even on reset: a webhook scheduled for a task that has since been
        # deactivated, restarted or wiped must be recognisable as stale.
        self._generations = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.tasks: dict[TaskKey, Task] = {}
            self.item_tasks: dict[str, list[Task]] = {}
            self.catalog: dict[str, dict[str, Any]] = {entry["id"]: dict(entry) for entry in self._preloaded}

    def get(self, key: TaskKey) -> Task | None:
        with self.lock:
            return self.tasks.get(key)

    def create(
        self, key: TaskKey, *, priority: str, pending_seconds: float, processing_seconds: float
    ) -> tuple[Task, bool]:
        """Create the task, or start a failed/deactivated one again; returns (task, started)."""
        with self.lock:
            now = self.clock()
            task = self.tasks.get(key)
            if task is not None and task.status(now) not in ("failed", "deactivated"):
                return task, False
            if task is None:
                task = Task(*key, priority, now, pending_seconds, processing_seconds, next(self._generations))
                self.tasks[key] = task
                self.item_tasks.setdefault(key[0], []).append(task)
                self.catalog.setdefault(key[0], catalog_entry(key[0]))
            else:
                task.priority = priority
                task.started_at = now
                task.pending_seconds = pending_seconds
                task.processing_seconds = processing_seconds
                task.generation = next(self._generations)
                task.deactivated = False
                task.fixed_status = task.fixed_error = None
            return task, True

    def load(
        self,
        key: TaskKey,
        *,
        status: str,
        error: str | None,
        priority: str,
        pending_seconds: float,
        processing_seconds: float,
    ) -> Task:
        """Put a task in place as it is elsewhere: pending/processing ones go on from there with the durations
        given; any other status is kept until the task is deactivated or started again."""
        with self.lock:
            now = self.clock()
            started = now - pending_seconds if status == "processing" else now
            task = Task(*key, priority, started, pending_seconds, processing_seconds, next(self._generations))
            if status == "deactivated":
                task.deactivated = True
            elif status not in ("pending", "processing"):
                task.fixed_status, task.fixed_error = status, error
            if key not in self.tasks:
                self.item_tasks.setdefault(key[0], []).append(task)
            else:
                tasks = self.item_tasks[key[0]]
                tasks[tasks.index(self.tasks[key])] = task
            self.tasks[key] = task
            self.catalog.setdefault(key[0], catalog_entry(key[0]))
            return task

    def deactivate(self, key: TaskKey) -> Task | None:
        with self.lock:
            task = self.tasks.get(key)
            if task is not None:
                task.deactivated = True
            return task

    def knows(self, inventory_id: str) -> bool:
        """Whether the item is in the catalog or has tasks."""
        with self.lock:
            return inventory_id in self.catalog or inventory_id in self.item_tasks

    def tasks_of_item(self, inventory_id: str) -> list[Task]:
        with self.lock:
            return list(self.item_tasks.get(inventory_id, ()))

    def finished(self, key: TaskKey, generation: int) -> Task | None:
        """The task if it is still the run `generation` and has reached done or failed."""
        with self.lock:
            task = self.tasks.get(key)
            if task is None or task.generation != generation or task.deactivated:
                return None
            if task.status(self.clock()) not in ("done", "failed"):
                return None
            return task

    def catalog_page(self, page_num: int, page_size: int) -> list[dict[str, Any]]:
        with self.lock:
            start = page_num * page_size
            return [
                dict(entry) for entry in itertools.islice(self.catalog.values(), start, start + page_size)
            ]

    def catalog_put(self, item_id: str, item_type: str) -> dict[str, Any]:
        with self.lock:
            entry = self.catalog.get(item_id)
            if entry is None:
                entry = self.catalog[item_id] = catalog_entry(item_id, item_type)
            else:
                entry["type"] = item_type
            return dict(entry)


class Stats:
    """Request counts: where each request was addressed (whatever the answer), answers, faults, concurrency."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoch = 0
        self.reset()

    def reset(self) -> None:
        with self._lock:
            # Requests still running from before the reset must not touch the new counters (see leave()).
            self._epoch += 1
            self._requests = 0
            self._endpoints: dict[str, int] = {}
            self._tasks: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
            self._items: dict[str, int] = {}
            self._statuses: dict[str, int] = {}
            self._faults = {"503": 0, "429": 0, "hang": 0, "reset": 0}
            # Per task and method, the requests that reached the API proper (answered or hung), i.e. that
            # could change something: a POST counted here is one that may have created or restarted the task.
            self._applied: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
            self._webhooks = {"sent": 0, "failed": 0}
            self._in_flight = 0
            self._max_concurrent = 0

    def enter(self, method: str, kind: str, key: TaskKey | None, item: str | None) -> int:
        """Count a request as it arrives; returns a token for leave()."""
        with self._lock:
            self._requests += 1
            endpoint = f"{method} {kind}"
            self._endpoints[endpoint] = self._endpoints.get(endpoint, 0) + 1
            if key is not None:
                inventory_id, product, version = key
                methods = (
                    self._tasks.setdefault(inventory_id, {}).setdefault(product, {}).setdefault(version, {})
                )
                methods[method] = methods.get(method, 0) + 1
            if item is not None:
                self._items[item] = self._items.get(item, 0) + 1
            self._in_flight += 1
            self._max_concurrent = max(self._max_concurrent, self._in_flight)
            return self._epoch

    def leave(self, token: int) -> None:
        with self._lock:
            if token == self._epoch:
                self._in_flight -= 1

    def applied(self, method: str, key: TaskKey) -> None:
        """Count a task request that got past the injected faults and was handled by the API."""
        inventory_id, product, version = key
        with self._lock:
            methods = (
                self._applied.setdefault(inventory_id, {}).setdefault(product, {}).setdefault(version, {})
            )
            methods[method] = methods.get(method, 0) + 1

    def applied_count(self, key: TaskKey, method: str | None = None) -> int:
        inventory_id, product, version = key
        with self._lock:
            methods = self._applied.get(inventory_id, {}).get(product, {}).get(version, {})
            return methods.get(method, 0) if method else sum(methods.values())

    def answered(self, status: str) -> None:
        with self._lock:
            self._statuses[status] = self._statuses.get(status, 0) + 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def webhook(self, outcome: str) -> None:
        with self._lock:
            self._webhooks[outcome] += 1

    def task_count(self, key: TaskKey, method: str | None = None) -> int:
        # Read in place rather than through snapshot(): tests ask this for thousands of tasks in a row.
        inventory_id, product, version = key
        with self._lock:
            methods = self._tasks.get(inventory_id, {}).get(product, {}).get(version, {})
            return methods.get(method, 0) if method else sum(methods.values())

    def item_count(self, inventory_id: str) -> int:
        with self._lock:
            return self._items.get(inventory_id, 0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(
                {
                    "requests": self._requests,
                    "endpoints": self._endpoints,
                    "tasks": self._tasks,
                    "applied": self._applied,
                    "items": self._items,
                    "statuses": self._statuses,
                    "faults": self._faults,
                    "webhooks": self._webhooks,
                    "in_flight": self._in_flight,
                    "max_concurrent": self._max_concurrent,
                }
            )


def iter_task_counts(snapshot: Mapping[str, Any]) -> Iterator[tuple[TaskKey, str, int]]:
    """Flatten a snapshot's `tasks` into ((inventory_id, product, version), method, count) rows."""
    for inventory_id, products in snapshot["tasks"].items():
        for product, versions in products.items():
            for version, methods in versions.items():
                for method, count in methods.items():
                    yield (inventory_id, product, version), method, count
