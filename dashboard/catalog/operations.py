"""Bulk operations: preview a set of items, freeze it, run it in the background, cancel it, retry its failures.

The set is frozen when the operator confirms: one transaction writes the `Operation` and one `OperationItem`
per item, and the run touches those rows only, so items that match the filter later are never touched. The
run goes through the same services as a single click (one item at a time per thread), so every item touched
gets its `TaskEvent` naming the operation.

Concurrency: BULK_CONCURRENCY threads share the process-wide client (one connection pool, one `Throttle`):
a 429 pauses every thread, and the item is tried again rather than counted as failed. Counters move with
`F()` updates, so threads never overwrite each other's counts. Cancel is checked between items.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import close_old_connections, connection, transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from dashboard.vionlabs.errors import VionlabsError, VionlabsRateLimited

from . import services
from .jobs import enqueue_on_commit, run_operation
from .models import (
    CatalogItem,
    EventSource,
    Operation,
    OperationItem,
    OperationItemState,
    OperationKind,
    OperationState,
    PriorityChoices,
    ProductChoices,
    ProductTask,
    TaskStatus,
)
from .validators import validate_version

logger = logging.getLogger(__name__)

NO_TASK = ""
REASON_MAX = 2000
#: Cancel is read from the database at most this often per run (shared by the threads).
CANCEL_CHECK_SECONDS = 0.2
#: Waits between attempts of an item answered 429 without Retry-After (otherwise the shared throttle waits).
RATE_LIMIT_BACKOFF = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class OperationRefused(ValueError):
    """The operation cannot be started or changed; the message says why, fit for an operator."""


class SelectionChanged(OperationRefused):
    """The items matching the selection changed between the preview and the confirmation."""


@dataclass(frozen=True)
class Preview:
    kind: str
    product: str
    version: str
    priority: str
    count: int
    #: (status label, number of items), the status of each item's task for the chosen product and version.
    breakdown: list[tuple[str, int]]
    #: How many the run would skip as things stand (already active for a create, nothing to act on otherwise).
    will_skip: int
    sample: list[CatalogItem]
    #: The highest item id seen: the confirmation acts on no item created after the preview.
    max_item_id: int
    by_status: dict[str, int] = field(default_factory=dict)


def _validate(*, kind: str, product: str, version: str, priority: str) -> None:
    if kind not in OperationKind.values:
        raise OperationRefused(f"Unknown operation {kind!r}.")
    if product not in ProductChoices.values:
        raise OperationRefused("Choose a product.")
    if not version.strip():
        raise OperationRefused("Choose a version.")
    try:
        validate_version(version)
    except ValidationError as invalid:
        raise OperationRefused(invalid.messages[0]) from invalid
    if priority not in PriorityChoices.values:
        raise OperationRefused("Choose a priority: low, medium or high.")


def _would_skip(kind: str, status: str) -> bool:
    """The bulk skip rule, for the preview's count and the run alike: True if `kind` has nothing to do on
    an item whose task for the chosen product and version has `status` (NO_TASK: there is none)."""
    if kind == OperationKind.CREATE:
        return status in TaskStatus.ACTIVE
    if kind == OperationKind.RETRY:
        return status not in TaskStatus.RETRYABLE
    if kind == OperationKind.DEACTIVATE:
        return status in {NO_TASK, TaskStatus.DEACTIVATED}
    return status == NO_TASK  # refresh: nothing to read


def operation_preview(
    *,
    kind: str,
    items: QuerySet[CatalogItem],
    product: str,
    version: str,
    priority: str = PriorityChoices.LOW,
    sample_size: int = 10,
) -> Preview:
    """Count the items, break them down by the status of their task for product/version, pick a sample."""
    version = version.strip()
    _validate(kind=kind, product=product, version=version, priority=priority)
    ids = items.order_by().values("pk")
    count = items.count()
    rows = (
        ProductTask.objects.filter(item__in=ids, product=product, version=version)
        .order_by()
        .values("status")
        .annotate(n=Count("pk"))
    )
    by_status = {row["status"]: row["n"] for row in rows}
    with_task = sum(by_status.values())
    if count - with_task:
        by_status[NO_TASK] = by_status.get(NO_TASK, 0) + count - with_task
    breakdown = [(status_label(status), n) for status, n in sorted(by_status.items(), key=lambda kv: -kv[1])]
    will_skip = sum(n for status, n in by_status.items() if _would_skip(kind, status))
    sample = list(items.order_by("pk")[:sample_size])
    max_item_id = items.order_by("-pk").values_list("pk", flat=True).first() or 0
    return Preview(
        kind=kind,
        product=product,
        version=version,
        priority=priority,
        count=count,
        breakdown=breakdown,
        will_skip=will_skip,
        sample=sample,
        max_item_id=max_item_id,
        by_status=by_status,
    )


def status_label(status: str) -> str:
    if status == NO_TASK:
        return "no task yet"
    return status


def operation_start(
    *,
    kind: str,
    items: QuerySet[CatalogItem],
    product: str,
    version: str,
    priority: str = PriorityChoices.LOW,
    reason: str,
    actor: AbstractBaseUser | None = None,
    expected_count: int | None = None,
    max_item_id: int | None = None,
    params: dict[str, Any] | None = None,
) -> Operation:
    """Freeze the set (Operation + OperationItem rows in one transaction) and enqueue its run on commit.
    With `expected_count`/`max_item_id` from the preview, refuses (SelectionChanged) if the set differs."""
    version = version.strip()
    reason = reason.strip()
    _validate(kind=kind, product=product, version=version, priority=priority)
    if not reason:
        raise OperationRefused(
            "Give a reason: it is recorded with the operation and on every task it touches."
        )
    if len(reason) > REASON_MAX:
        raise OperationRefused(f"The reason is too long (at most {REASON_MAX} characters).")
    if max_item_id is not None:
        items = items.filter(pk__lte=max_item_id)
    with transaction.atomic():
        item_ids = list(items.order_by("pk").values_list("pk", flat=True))
        if expected_count is not None and len(item_ids) != expected_count:
            raise SelectionChanged(
                f"The selection changed since the preview: {len(item_ids)} items match now, not "
                f"{expected_count}. Check the preview again before confirming."
            )
        if not item_ids:
            raise OperationRefused("No items match: there is nothing to do.")
        operation = Operation.objects.create(
            kind=kind,
            created_by=actor if actor is not None and actor.is_authenticated else None,
            reason=reason,
            params={"product": product, "version": version, "priority": priority, **(params or {})},
            total=len(item_ids),
        )
        OperationItem.objects.bulk_create(
            (OperationItem(operation=operation, item_id=pk) for pk in item_ids), batch_size=1000
        )
        enqueue_on_commit(run_operation, operation.pk)
    return operation


def operation_cancel(*, operation: Operation) -> Operation:
    """Stop an operation: a queued one at once, a running one between items (state `cancelling`, then
    `cancelled` when its threads have stopped); items not reached are marked cancelled."""
    with transaction.atomic():
        op = Operation.objects.select_for_update().get(pk=operation.pk)
        if op.state == OperationState.QUEUED:
            _finish_cancelled(op)
        elif op.state == OperationState.RUNNING:
            op.state = OperationState.CANCELLING
            op.save(update_fields=["state"])
        elif op.state != OperationState.CANCELLING:
            raise OperationRefused(
                f"Operation #{op.pk} has already ended ({op.get_state_display().lower()})."
            )
    return op


def operation_retry_failures(
    *, operation: Operation, actor: AbstractBaseUser | None = None, reason: str = ""
) -> Operation:
    """Start a new operation of the same kind and parameters over the items that failed in this one."""
    if operation.is_active:
        raise OperationRefused("Wait for the operation to end (or cancel it) before retrying its failures.")
    failed = OperationItem.objects.filter(operation=operation, state=OperationItemState.FAILED)
    if not failed.exists():
        raise OperationRefused(f"Operation #{operation.pk} has no failed items to retry.")
    params = operation.params or {}
    return operation_start(
        kind=operation.kind,
        items=CatalogItem.objects.filter(pk__in=failed.values("item_id")),
        product=params.get("product", ""),
        version=params.get("version", ""),
        priority=params.get("priority", PriorityChoices.LOW),
        reason=reason.strip()
        or f"Retry the failures of operation #{operation.pk}: {operation.reason}"[:REASON_MAX],
        actor=actor,
        params={"retry_of": operation.pk, "selection": "failures"},
    )


# --- Running ---------------------------------------------------------------------------------------------


def _finish_cancelled(op: Operation) -> None:
    now = timezone.now()
    OperationItem.objects.filter(operation=op, state=OperationItemState.PENDING).update(
        state=OperationItemState.CANCELLED, finished_at=now
    )
    op.state = OperationState.CANCELLED
    op.finished_at = now
    op.save(update_fields=["state", "finished_at"])


class _Run:
    """The shared state of one run: the queue of pending items and the cancel flag."""

    def __init__(self, op: Operation, pending: list[tuple[int, int]]) -> None:
        self.op = op
        self._pending = iter(pending)
        self._lock = threading.Lock()
        self.cancelled = threading.Event()
        self._checked_at = 0.0

    def next_item(self) -> tuple[int, int] | None:
        with self._lock:
            return next(self._pending, None)

    def cancel_requested(self) -> bool:
        if self.cancelled.is_set():
            return True
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at < CANCEL_CHECK_SECONDS:
                return False
            self._checked_at = now
        state = Operation.objects.filter(pk=self.op.pk).values_list("state", flat=True).first()
        if state in {OperationState.CANCELLING, OperationState.CANCELLED, None}:
            self.cancelled.set()
        return self.cancelled.is_set()


def operation_run(*, operation_id: int, sleep: Callable[[float], None] = time.sleep) -> Operation | None:
    """Run an operation's pending items (also resumes one whose worker died). Called by the job."""
    with transaction.atomic():
        op = Operation.objects.select_for_update().filter(pk=operation_id).first()
        if op is None:
            logger.warning("Operation %s no longer exists; nothing to run", operation_id)
            return None
        if op.state == OperationState.CANCELLING:
            _finish_cancelled(op)
            return op
        if op.state not in {OperationState.QUEUED, OperationState.RUNNING}:
            return op
        op.state = OperationState.RUNNING
        op.started_at = op.started_at or timezone.now()
        op.heartbeat_at = timezone.now()
        op.save(update_fields=["state", "started_at", "heartbeat_at"])
    # Read once here: the threads share it (events name its creator) instead of each querying the user.
    op = Operation.objects.select_related("created_by").get(pk=op.pk)
    pending = list(
        OperationItem.objects.filter(operation=op, state=OperationItemState.PENDING)
        .order_by("pk")
        .values_list("pk", "item_id")
    )
    run = _Run(op, pending)
    threads = max(1, min(int(settings.BULK_CONCURRENCY), len(pending)))
    # One long-lived loop per thread rather than one future per item: each thread pulls items until none
    # are left or cancel is asked, and closes its own database connection when it stops.
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"operation-{op.pk}") as pool:
        futures = [pool.submit(_worker, run, sleep) for _ in range(threads)]
    errors = [error for future in futures if (error := future.exception()) is not None]
    return _finish(op, run, errors)


def operation_resume_stale(*, stale_after: dt.timedelta | None = None) -> list[int]:
    """Queue the job again for running (or cancelling) operations whose worker went away: no item finished
    for `stale_after`. The run only takes pending items, so nothing is counted or sent twice. Returns ids."""
    if stale_after is None:
        stale_after = dt.timedelta(seconds=settings.OPERATION_STALE_AFTER)
    now = timezone.now()
    cutoff = now - stale_after
    with transaction.atomic():
        stale = list(
            Operation.objects.select_for_update(skip_locked=True)
            .filter(state__in=[OperationState.RUNNING, OperationState.CANCELLING])
            .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff))
            .order_by("pk")
        )
        for op in stale:
            # Moving the heartbeat is the claim: another scheduler, or the next cycle, leaves it alone.
            op.heartbeat_at = now
            op.save(update_fields=["heartbeat_at"])
            logger.warning("Operation %s had no progress for %s: resuming it", op.pk, stale_after)
            enqueue_on_commit(run_operation, op.pk)
    return [op.pk for op in stale]


def _worker(run: _Run, sleep: Callable[[float], None]) -> None:
    try:
        while not run.cancel_requested():
            entry = run.next_item()
            if entry is None:
                return
            _process(run, *entry, sleep=sleep)
    except BaseException:  # recorded on the operation (through the future); the other threads carry on
        logger.exception("Operation %s: a worker thread stopped", run.op.pk)
        raise
    finally:
        # Each thread has its own connection: close it, or a long-lived worker leaks one per thread per run.
        connection.close()


def _process(run: _Run, operation_item_id: int, item_id: int, *, sleep: Callable[[float], None]) -> None:
    op = run.op
    attempt = 0
    while True:
        try:
            state, error = _act(op, item_id)
            break
        except VionlabsRateLimited as limited:
            # The client has already paused the shared throttle for Retry-After; every thread waits there.
            # Not a failure: try the item again, a little later each time, unless cancelled meanwhile.
            if run.cancel_requested():
                return  # left pending: the finish marks it cancelled
            if limited.retry_after is None:
                # No Retry-After to pause the throttle by: back off on our own, a little longer each time.
                sleep(RATE_LIMIT_BACKOFF[min(attempt, len(RATE_LIMIT_BACKOFF) - 1)])
            attempt += 1
        except services.TaskAlreadyActive as refused:
            state, error = OperationItemState.SKIPPED, str(refused)
            break
        except (services.ActionRefused, VionlabsError) as refused:
            state, error = OperationItemState.FAILED, str(refused)
            break
        except Exception:
            logger.exception("Operation %s: unexpected error on item %s", op.pk, item_id)
            state, error = OperationItemState.FAILED, "Unexpected error (details in the worker's log)."
            break
    _record(op, operation_item_id, state, error)


def _skip_note(kind: str, status: str, product: str, version: str) -> str:
    """Why `_would_skip` skips an item, in words for the operation's page."""
    if kind == OperationKind.CREATE:
        return f"Already {status} for {product} {version}."
    if status == NO_TASK:
        return f"No {product} {version} task for this item."
    if kind == OperationKind.DEACTIVATE:
        return "Already deactivated."
    return f"Not failed or deactivated (it is {status or 'unanswered'})."


def _act(op: Operation, item_id: int) -> tuple[str, str]:
    """Do the operation's action on one item; returns (state, note). Raises what the services raise."""
    params = op.params or {}
    product, version = params.get("product", ""), params.get("version", "")
    task = ProductTask.objects.filter(item_id=item_id, product=product, version=version).first()
    status = task.status if task else NO_TASK
    if _would_skip(op.kind, status):
        return OperationItemState.SKIPPED, _skip_note(op.kind, status, product, version)
    common: dict[str, Any] = {"actor": op.created_by, "source": EventSource.BULK, "operation": op}
    if op.kind == OperationKind.CREATE:
        item = CatalogItem.objects.get(pk=item_id)
        services.task_create(
            item=item, product=product, version=version, priority=params.get("priority", "low"),
            note=op.reason, **common,
        )  # fmt: skip
        return OperationItemState.DONE, ""
    assert task is not None  # _would_skip skips a missing task for every kind but create
    if op.kind == OperationKind.REFRESH:
        services.task_refresh(task=task, **common)
    elif op.kind == OperationKind.DEACTIVATE:
        services.task_deactivate(task=task, note=op.reason, **common)
    elif op.kind == OperationKind.RETRY:
        services.task_retry(task=task, note=op.reason, **common)
    return OperationItemState.DONE, ""


_COUNTER = {
    OperationItemState.DONE: "done",
    OperationItemState.SKIPPED: "skipped",
    OperationItemState.FAILED: "failed",
}


def _record(op: Operation, operation_item_id: int, state: str, error: str) -> None:
    with transaction.atomic():
        # Only a pending row moves: a resumed run never counts an item twice.
        moved = OperationItem.objects.filter(pk=operation_item_id, state=OperationItemState.PENDING).update(
            state=state, error=error[:5000], finished_at=timezone.now()
        )
        if moved:
            counter = _COUNTER[state]
            Operation.objects.filter(pk=op.pk).update(
                **{counter: F(counter) + 1}, heartbeat_at=timezone.now()
            )


def _finish(op: Operation, run: _Run, errors: list[BaseException]) -> Operation:
    close_old_connections()
    with transaction.atomic():
        op = Operation.objects.select_for_update().get(pk=op.pk)
        left = OperationItem.objects.filter(operation=op, state=OperationItemState.PENDING).exists()
        if op.state == OperationState.CANCELLING or (run.cancelled.is_set() and left):
            _finish_cancelled(op)
            return op
        if left or errors:
            op.state = OperationState.FAILED
            op.error = "The run stopped before every item was processed (details in the worker's log)."
        else:
            op.state = OperationState.DONE
        op.finished_at = timezone.now()
        op.save(update_fields=["state", "error", "finished_at"])
    return op
