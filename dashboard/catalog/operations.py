"""Bulk operations: preview a selection, confirm it, freeze it in the background, run it on every worker
process, cancel it, retry its failures.

Selection. An operation covers everything matching a catalog filter (its query string is carried), items
chosen one by one (kept on the server as a `Selection`: one token in the forms, up to MAX_SELECTED_ITEMS
items), or the failures of an earlier operation. For the chosen product the selection is widened by
`CatalogItem.objects.covered_for(setting)`: a series or season the product does not apply to stands for its
episodes, one it applies to is sent as itself. Only enabled products are accepted, in the preview, the
confirmation, the freeze and the run.

Confirm (`operation_start`) only validates and writes the `Operation` (state `freezing`) with what selects its
set, then enqueues its job: it takes the same time for ten items as for a million. The preview's one-time
token is stored on the operation (unique), so a second confirmation of the same preview finds the first.

Freeze (the job, `operation_freeze`): item ids are streamed from the selection in pk order, FREEZE_BATCH at a
time, limited to `pk <= max_item_id` of the preview; each batch writes its `OperationItem` rows and one
`OperationChunk` per CHUNK_SIZE items in one transaction, under the operation's row lock, so two freezers
never write the same batch and a freeze that died goes on after its last chunk. If the frozen set does not
hold as many items as the preview counted, the operation is refused before anything is sent (state `failed`,
the two counts in its error): acting on a set the operator did not see is worse than asking again.

Run (`operation_run`): the freezer enqueues BULK_FANOUT jobs, so every `db_worker` process can take one. Each
is a runner that claims a pending chunk (`SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises
writers), holds it with a lease it renews while it works and while it waits out a 429, runs the chunk's
pending items on THREADS_PER_CALL x BULK_CONCURRENCY threads sharing the process-wide client, at most
BULK_CONCURRENCY of them with a call in flight (the others record answers meanwhile), writes the items'
outcomes in batches, then claims the next. A chunk whose
lease ran out (its worker died) is taken over by another runner; a runner that cannot renew stops before its
lease ends. An item leaves `pending` once, and the services' in-progress marker refuses a second create or
deactivate of a task already under way, so nothing is sent twice. Each chunk's counts are recounted from its
rows at every renewal and at its end, and the operation's counters move by the difference (F()), so
progress, cancel and "retry the failures" stay exact after a takeover.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max, Q, QuerySet
from django.http import QueryDict
from django.utils import timezone

from dashboard.vionlabs.errors import VionlabsError, VionlabsRateLimited

from . import services
from .client import calls_in_flight, throttle_remaining
from .forms import CatalogFilterForm
from .jobs import enqueue_on_commit, run_operation
from .models import (
    CatalogItem,
    ChunkState,
    EventSource,
    ItemKind,
    Operation,
    OperationChunk,
    OperationItem,
    OperationItemState,
    OperationKind,
    OperationState,
    PriorityChoices,
    ProductChoices,
    ProductSetting,
    ProductTask,
    Selection,
    SelectionItem,
    TaskStatus,
)
from .validators import validate_version

logger = logging.getLogger(__name__)

NO_TASK = ""
REASON_MAX = 2000
#: Items chosen one by one (checkboxes, the admin's selection or "select all") kept for one preview; more
#: than this is a filter's job ("all matching this filter" carries a query string, not ids).
MAX_SELECTED_ITEMS = 100_000
#: How long a kept selection lives (its operation, once confirmed, has frozen its own copy of the set).
SELECTION_KEPT = dt.timedelta(days=7)
#: Item ids written per freeze transaction.
FREEZE_BATCH = 5000
#: Items per chunk: the unit a runner claims, holds by a lease and recounts.
CHUNK_SIZE = 200
#: Waits between attempts of an item answered 429 without a Retry-After of its own.
RATE_LIMIT_BACKOFF = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
#: A wait (429) is slept in slices no longer than this, with a lease renewal between them.
WAIT_SLICE = 1.0
#: How often a runner renews its lease, recounts its chunk and looks for a cancel (seconds); at most a
#: quarter of the lease.
TICK_SECONDS = 0.5
#: A runner's threads per Vionlabs call it may have in flight (BULK_CONCURRENCY): while some threads record
#: an answer in the database, others have their calls out, so BULK_CONCURRENCY calls stay in flight.
THREADS_PER_CALL = 2
#: Item outcomes a runner keeps before writing them (one UPDATE per outcome for the lot, not one per item);
#: they are written sooner at every tick and when the chunk ends.
RESULT_BATCH = 32


class OperationRefused(ValueError):
    """The operation cannot be started or changed; the message says why, fit for an operator."""


class SelectionChanged(OperationRefused):
    """The items matching the selection changed between the preview and the confirmation."""


class ProductDisabled(OperationRefused):
    """The product is not enabled under Product settings: nothing is sent for it."""


class AlreadyConfirmed(OperationRefused):
    """The preview's token was confirmed before: `operation` is the operation that confirmation started."""

    def __init__(self, operation: Operation) -> None:
        super().__init__(f"This preview was already confirmed: operation #{operation.pk}.")
        self.operation = operation


def _lease() -> dt.timedelta:
    return dt.timedelta(seconds=float(getattr(settings, "OPERATION_LEASE_SECONDS", 120.0)))


def enabled_setting(product: str) -> ProductSetting:
    """The setting of an enabled product; raises ProductDisabled for a disabled or unconfigured one."""
    setting = ProductSetting.objects.filter(product=product).first()
    if setting is None or not setting.enabled:
        label = ProductChoices(product).label if product in ProductChoices.values else product
        raise ProductDisabled(
            f"{label} is not enabled under Product settings, so no task is sent for it. An administrator can "
            "enable it there."
        )
    return setting


# --- Selection -----------------------------------------------------------------------------------------


def selection_create(
    *, items: QuerySet[CatalogItem] | Iterable[int], actor: services.Actor = None
) -> Selection:
    """Keep items chosen one by one under a new token (ids are written in batches, never posted back).
    Raises OperationRefused for an empty selection or one over MAX_SELECTED_ITEMS."""
    if isinstance(items, QuerySet):
        size = items.count()
        ids: Iterable[int] = (
            items.order_by("pk").values_list("pk", flat=True).iterator(chunk_size=FREEZE_BATCH)
        )
    else:
        wanted = sorted(set(items))
        # Only ids of items that exist (a row deleted since the page was shown is dropped, not an error).
        ids = [
            pk
            for start in range(0, len(wanted), FREEZE_BATCH)
            for pk in CatalogItem.objects.filter(pk__in=wanted[start : start + FREEZE_BATCH])
            .order_by("pk")
            .values_list("pk", flat=True)
        ]
        size = len(ids)
    if not size:
        raise OperationRefused("Select at least one item, or choose “all matching this filter”.")
    if size > MAX_SELECTED_ITEMS:
        raise OperationRefused(
            f"{size:,} items were chosen one by one; at most {MAX_SELECTED_ITEMS:,} can be. Use a filter on the "
            "catalog and “all matching this filter” instead."
        )
    user = services.acting_user(actor)
    # Selections live as long as a preview is looked at; a week covers any preview left open.
    Selection.objects.filter(created_at__lt=timezone.now() - SELECTION_KEPT).delete()
    with transaction.atomic():
        selection = Selection.objects.create(token=secrets.token_urlsafe(24), created_by=user, size=size)
        batch: list[SelectionItem] = []
        for pk in ids:
            batch.append(SelectionItem(selection=selection, item_id=pk))
            if len(batch) == FREEZE_BATCH:
                SelectionItem.objects.bulk_create(batch)
                batch = []
        SelectionItem.objects.bulk_create(batch)
    return selection


def selection_items(params: dict[str, Any]) -> QuerySet[CatalogItem]:
    """The items an operation's params select, before the product's rule widens them. Raises
    OperationRefused for a selection that cannot be read."""
    kind = params.get("selection")
    if kind == "filter":
        form = CatalogFilterForm(data=QueryDict(params.get("filter", "")))
        try:
            return form.filter_items(CatalogItem.objects.all())
        except ValueError as error:
            raise OperationRefused(str(error)) from error
    if kind == "items":
        rows = SelectionItem.objects.filter(selection__token=params.get("selection_token", ""))
        return CatalogItem.objects.filter(pk__in=rows.values("item_id"))
    if kind == "failures":
        failed = OperationItem.objects.filter(
            operation_id=int(params.get("retry_of") or 0), state=OperationItemState.FAILED
        )
        return CatalogItem.objects.filter(pk__in=failed.values("item_id"))
    raise OperationRefused("The operation does not say which items it covers.")


# --- Preview -------------------------------------------------------------------------------------------


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
    #: The highest item id of the set: the confirmation acts on no item created after the preview.
    max_item_id: int
    by_status: dict[str, int] = field(default_factory=dict)
    #: Containers in the selection the product does not apply to, by kind: they stand for their episodes.
    containers: dict[str, int] = field(default_factory=dict)
    #: Items of the set reached through those containers.
    through_containers: int = 0

    @property
    def coverage_note(self) -> str:
        """e.g. "3 series and 9 seasons → 96 episodes; 40 already have the task" (empty without containers)."""
        if not self.containers:
            return ""
        names: dict[str, tuple[str, str]] = {
            ItemKind.SERIES.value: ("series", "series"),
            ItemKind.SEASON.value: ("season", "seasons"),
        }
        parts = [
            f"{n} {names[kind][0] if n == 1 else names[kind][1]}"
            for kind, n in sorted(self.containers.items(), key=lambda kv: kv[0] != ItemKind.SERIES)
        ]
        reached = f"{self.through_containers} episode{'s' if self.through_containers != 1 else ''}"
        having = (
            self.will_skip
            if self.kind == OperationKind.CREATE
            else self.count - self.by_status.get(NO_TASK, 0)
        )
        verb = "has" if having == 1 else "have"
        return f"{' and '.join(parts)} → {reached}; {having} already {verb} the task"


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
    """What the operation would cover: the selection widened for the product, counted, broken down by the
    status of each item's task, with a sample. Raises OperationRefused (ProductDisabled for a disabled one)."""
    version = version.strip()
    _validate(kind=kind, product=product, version=version, priority=priority)
    setting = enabled_setting(product)
    selected = items.order_by()
    covered = selected.covered_for(setting)  # type: ignore[attr-defined]  # CatalogItemQuerySet
    count = covered.count()
    containers: dict[str, int] = {}
    through = 0
    expand = setting.container_kinds_covered_by_episodes
    if expand:
        containers = dict(
            selected.filter(kind__in=expand).values_list("kind").annotate(n=Count("pk")).order_by()
        )
        if containers:
            parents = selected.filter(kind__in=expand).values("pk")
            through = covered.filter(Q(parent__in=parents) | Q(parent__parent__in=parents)).count()
    rows = (
        ProductTask.objects.filter(item__in=covered.values("pk"), product=product, version=version)
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
    sample = list(covered.order_by("pk")[:sample_size])
    max_item_id = covered.order_by("-pk").values_list("pk", flat=True).first() or 0
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
        containers=containers,
        through_containers=through,
    )


def status_label(status: str) -> str:
    if status == NO_TASK:
        return "no task yet"
    return status


def new_confirm_token() -> str:
    """A one-time token for a preview's confirm form (stored on the operation it starts)."""
    return secrets.token_urlsafe(24)


# --- Confirm -------------------------------------------------------------------------------------------


def operation_start(
    *,
    kind: str,
    product: str,
    version: str,
    priority: str = PriorityChoices.LOW,
    reason: str,
    actor: services.Actor = None,
    filter_query: str | None = None,
    selection: Selection | None = None,
    items: QuerySet[CatalogItem] | None = None,
    retry_of: Operation | None = None,
    expected_count: int | None = None,
    max_item_id: int | None = None,
    token: str | None = None,
    params: dict[str, Any] | None = None,
) -> Operation:
    """Record the operation (state `freezing`) and enqueue its job on commit; the set is frozen there.

    Name the set with one of `filter_query` (a catalog filter's query string), `selection`, `retry_of`
    (its failures) or `items` (a queryset, kept as a Selection here: for small sets made in code).
    With `expected_count`/`max_item_id` from the preview, the freeze refuses a set that differs. With the
    preview's `token`, a second call raises AlreadyConfirmed naming the first operation."""
    if token:
        existing = Operation.objects.filter(token=token).first()
        if existing is not None:
            raise AlreadyConfirmed(existing)
    version = version.strip()
    reason = reason.strip()
    _validate(kind=kind, product=product, version=version, priority=priority)
    if not reason:
        raise OperationRefused(
            "Give a reason: it is recorded with the operation and on every task it touches."
        )
    if len(reason) > REASON_MAX:
        raise OperationRefused(f"The reason is too long (at most {REASON_MAX} characters).")
    if "\x00" in reason:
        raise OperationRefused("The reason cannot contain a NUL character.")
    enabled_setting(product)
    chosen = [name for name, value in (("filter", filter_query), ("items", selection), ("items", items),
                                       ("failures", retry_of)) if value is not None]  # fmt: skip
    if len(chosen) != 1:
        raise OperationRefused("Name the items once: a filter, a selection, or the failures of an operation.")
    spec: dict[str, Any] = {"selection": chosen[0]}
    if filter_query is not None:
        spec["filter"] = filter_query
        selection_items(spec)  # an unreadable filter is refused now, not in the background
    elif retry_of is not None:
        spec["retry_of"] = retry_of.pk
    else:
        if items is not None:
            selection = selection_create(items=items, actor=actor)
        assert selection is not None
        spec["selection_token"] = selection.token
    if expected_count is not None:
        spec["expected_count"] = expected_count
    if max_item_id is not None:
        spec["max_item_id"] = max_item_id
    try:
        with transaction.atomic():
            operation = Operation.objects.create(
                kind=kind,
                state=OperationState.FREEZING,
                created_by=services.acting_user(actor),
                reason=reason,
                params={
                    "product": product,
                    "version": version,
                    "priority": priority,
                    **spec,
                    **(params or {}),
                },
                token=token or None,
            )
            enqueue_on_commit(run_operation, operation.pk)
    except IntegrityError:
        # The same token confirmed at the same moment by a second request: that one won.
        existing = Operation.objects.filter(token=token).first() if token else None
        if existing is None:
            raise
        raise AlreadyConfirmed(existing) from None
    return operation


def operation_cancel(*, operation: Operation) -> Operation:
    """Stop an operation: one not yet running at once, a running one between items (state `cancelling`,
    then `cancelled` once its runners have stopped); items not reached are marked cancelled."""
    with transaction.atomic():
        op = Operation.objects.select_for_update().get(pk=operation.pk)
        if op.state in {OperationState.QUEUED, OperationState.FREEZING}:
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
    *, operation: Operation, actor: services.Actor = None, reason: str = ""
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
        retry_of=operation,
        product=params.get("product", ""),
        version=params.get("version", ""),
        priority=params.get("priority", PriorityChoices.LOW),
        reason=reason.strip()
        or f"Retry the failures of operation #{operation.pk}: {operation.reason}"[:REASON_MAX],
        actor=actor,
    )


# --- Freeze --------------------------------------------------------------------------------------------


def operation_freeze(*, operation_id: int) -> Operation | None:
    """Write the operation's frozen set in batches (items and chunks), then check it against the preview and
    start the run: state `running` and BULK_FANOUT runner jobs on commit. Does nothing to an operation no
    longer freezing; safe to call from two workers at once."""
    op = Operation.objects.filter(pk=operation_id).first()
    if op is None or op.state != OperationState.FREEZING:
        return op
    params = op.params or {}
    try:
        setting = enabled_setting(params.get("product", ""))
        items = selection_items(params).covered_for(setting)  # type: ignore[attr-defined]
    except OperationRefused as refused:
        return _refuse(op.pk, str(refused))
    if params.get("max_item_id") is not None:
        items = items.filter(pk__lte=params["max_item_id"])
    ids = items.order_by("pk").values_list("pk", flat=True)
    while True:
        with transaction.atomic():
            op = Operation.objects.select_for_update().get(pk=operation_id)
            if op.state != OperationState.FREEZING:
                return op
            last = op.chunks.aggregate(last=Max("last_item_id"))["last"] or 0
            batch = list(ids.filter(pk__gt=last)[:FREEZE_BATCH])
            if not batch:
                break
            OperationItem.objects.bulk_create(
                [OperationItem(operation_id=op.pk, item_id=pk) for pk in batch], batch_size=FREEZE_BATCH
            )
            OperationChunk.objects.bulk_create(
                OperationChunk(
                    operation_id=op.pk,
                    first_item_id=batch[start],
                    last_item_id=batch[min(start + CHUNK_SIZE, len(batch)) - 1],
                    size=len(batch[start : start + CHUNK_SIZE]),
                )
                for start in range(0, len(batch), CHUNK_SIZE)
            )
            Operation.objects.filter(pk=op.pk).update(
                total=F("total") + len(batch), heartbeat_at=timezone.now()
            )
    with transaction.atomic():
        op = Operation.objects.select_for_update().get(pk=operation_id)
        if op.state != OperationState.FREEZING:
            return op
        expected = params.get("expected_count")
        if not op.total:
            return _refuse(op.pk, "No items match: there is nothing to do.")
        if expected is not None and op.total != expected:
            return _refuse(
                op.pk,
                f"The selection changed since the preview: {op.total} items match now, not {expected}. Nothing "
                "was sent; preview it again before confirming.",
            )
        now = timezone.now()
        op.state = OperationState.RUNNING
        op.started_at = op.started_at or now
        op.heartbeat_at = now
        op.save(update_fields=["state", "started_at", "heartbeat_at"])
        # One runner is this job; the others are for the other worker processes (extras find nothing, and end).
        chunks = op.chunks.count()
        for _ in range(min(max(1, int(getattr(settings, "BULK_FANOUT", 4))), chunks) - 1):
            enqueue_on_commit(run_operation, op.pk)
    return op


def _refuse(operation_id: int, message: str) -> Operation:
    """End an operation before anything was sent: state `failed` with the message; frozen items cancelled."""
    with transaction.atomic():
        op = Operation.objects.select_for_update().get(pk=operation_id)
        if op.state in OperationState.ACTIVE:
            _finish_cancelled(op)
            op.state = OperationState.FAILED
            op.error = message
            op.save(update_fields=["state", "error"])
    logger.warning("Operation %s refused: %s", operation_id, message)
    return op


def _finish_cancelled(op: Operation) -> None:
    now = timezone.now()
    OperationItem.objects.filter(operation=op, state=OperationItemState.PENDING).update(
        state=OperationItemState.CANCELLED, finished_at=now
    )
    OperationChunk.objects.filter(operation=op).exclude(state=ChunkState.FINISHED).update(
        state=ChunkState.FINISHED, owner="", lease_until=None
    )
    op.state = OperationState.CANCELLED
    op.finished_at = now
    op.save(update_fields=["state", "finished_at"])


# --- Run -----------------------------------------------------------------------------------------------


def operation_work(*, operation_id: int, sleep: Callable[[float], None] = time.sleep) -> Operation | None:
    """The job: freeze the set if that is still to do, then run chunks until none is left to claim."""
    op = operation_freeze(operation_id=operation_id)
    if op is None:
        logger.warning("Operation %s no longer exists; nothing to run", operation_id)
        return None
    return operation_run(operation_id=operation_id, sleep=sleep)


def operation_run(
    *,
    operation_id: int,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Operation | None:
    """Claim and run the operation's chunks until none is left (also takes over chunks whose runner died),
    then end the operation if no other runner still holds a chunk. `sleep`/`clock`: for tests."""
    op = Operation.objects.select_related("created_by").filter(pk=operation_id).first()
    if op is None or op.state == OperationState.FREEZING:
        return op
    me = f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"
    calls = max(1, int(settings.BULK_CONCURRENCY))
    threads = calls * THREADS_PER_CALL
    errors: list[BaseException] = []
    with (
        calls_in_flight(threading.BoundedSemaphore(calls)),
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"operation-{op.pk}") as pool,
    ):
        try:
            while op.state == OperationState.RUNNING and not errors:
                chunk = _claim(op, me)
                if chunk is None:
                    break
                errors += _run_chunk(op, chunk, me, pool, sleep=sleep, clock=clock, threads=threads)
                op.state = Operation.objects.filter(pk=op.pk).values_list("state", flat=True).first() or ""
        finally:
            _close_thread_connections(pool, threads)
    if errors:
        _stop_failed(op.pk)
    return _finish(op.pk)


def _claim(op: Operation, me: str) -> OperationChunk | None:
    """Take a pending chunk, or one whose lease ran out, under a fresh lease; None when none is left.
    Refuses (ends the operation) when its product was disabled meanwhile."""
    now = timezone.now()
    with transaction.atomic():
        chunk = (
            OperationChunk.objects.select_for_update(skip_locked=True)
            .filter(operation_id=op.pk)
            .filter(Q(state=ChunkState.PENDING) | Q(state=ChunkState.RUNNING, lease_until__lt=now))
            .order_by("pk")
            .first()
        )
        if chunk is None:
            return None
        if chunk.state == ChunkState.RUNNING:
            logger.warning(
                "Operation %s: taking over chunk %s from %s (lease ran out)", op.pk, chunk.pk, chunk.owner
            )
        chunk.state = ChunkState.RUNNING
        chunk.owner = me
        chunk.lease_until = now + _lease()
        chunk.save(update_fields=["state", "owner", "lease_until"])
    try:
        enabled_setting((op.params or {}).get("product", ""))
    except ProductDisabled as disabled:
        _refuse_running(op.pk, f"Stopped: {disabled}")
        return None
    return chunk


class _ChunkRun:
    """What the threads of one chunk share: the lease, the stop flag, the tick that renews and recounts."""

    def __init__(
        self,
        op: Operation,
        chunk: OperationChunk,
        me: str,
        *,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        self.op = op
        self.chunk = chunk
        self.me = me
        self.sleep = sleep
        self.clock = clock
        self.stopped = threading.Event()
        self.lost = False
        self._tick_lock = threading.Lock()
        self._ticked_at = clock()
        self.renewals = 0
        #: The product's setting, read again at every tick: a change to it applies within TICK_SECONDS.
        self.setting = ProductSetting.objects.filter(product=(op.params or {}).get("product", "")).first()
        self._results: list[tuple[int, str, str]] = []
        self._results_lock = threading.Lock()

    def record(self, row_pk: int, state: str, error: str) -> None:
        """Note an item's outcome; written with others (see `flush`)."""
        with self._results_lock:
            self._results.append((row_pk, state, error[:5000]))
            full = len(self._results) >= RESULT_BATCH
        if full:
            self.flush()

    def flush(self) -> None:
        """Write the outcomes noted so far: one UPDATE per (state, error), and only rows still pending move,
        so an item is counted once, whoever ran it. `finished_at` is the time of the write (at most a tick
        or a batch after the item's end)."""
        with self._results_lock:
            results, self._results = self._results, []
        if not results:
            return
        groups: dict[tuple[str, str], list[int]] = {}
        for pk, state, error in results:
            groups.setdefault((state, error), []).append(pk)
        try:
            now = timezone.now()
            for (state, error), pks in groups.items():
                OperationItem.objects.filter(pk__in=pks, state=OperationItemState.PENDING).update(
                    state=state, error=error, finished_at=now
                )
        except BaseException:
            with self._results_lock:  # not written: kept for the next flush (the chunk's end tries again)
                self._results[:0] = results
            raise

    def tick(self) -> None:
        """At most every TICK_SECONDS (one thread at a time): renew the lease, move the heartbeat, recount
        the chunk into the operation's counters, and stop if the operation is no longer running."""
        if self.clock() - self._ticked_at < TICK_SECONDS:
            return
        if not self._tick_lock.acquire(blocking=False):
            return
        try:
            self._ticked_at = self.clock()
            now = timezone.now()
            with transaction.atomic():
                self.flush()
                renewed = OperationChunk.objects.filter(
                    pk=self.chunk.pk, owner=self.me, state=ChunkState.RUNNING
                ).update(lease_until=now + _lease())
                if not renewed:
                    self.lost = True
                    self.stopped.set()
                    logger.warning("Operation %s: lost chunk %s to another runner", self.op.pk, self.chunk.pk)
                    return
                self.renewals += 1
                _recount(self.op.pk, self.chunk.pk)
                state = Operation.objects.filter(pk=self.op.pk).values_list("state", flat=True).first()
                Operation.objects.filter(pk=self.op.pk).update(heartbeat_at=now)
                self.setting = (
                    ProductSetting.objects.filter(pk=self.setting.pk).first() if self.setting else None
                )
            if state != OperationState.RUNNING:
                self.stopped.set()
        finally:
            self._tick_lock.release()

    def wait(self, seconds: float) -> bool:
        """Wait `seconds` (a 429), renewing the lease meanwhile; False if told to stop while waiting."""
        until = self.clock() + seconds
        while not self.stopped.is_set():
            self.tick()
            left = until - self.clock()
            if left <= 0:
                return True
            self.sleep(min(left, WAIT_SLICE))
        return False


def _recount(operation_id: int, chunk_id: int) -> None:
    """Count the chunk's rows by state and move the operation's counters by the difference (in the caller's
    transaction, the chunk row locked first): exact whoever counted last, and after a takeover."""
    chunk = OperationChunk.objects.select_for_update().get(pk=chunk_id)
    counts = dict(
        OperationItem.objects.filter(
            operation_id=operation_id, item_id__gte=chunk.first_item_id, item_id__lte=chunk.last_item_id
        )
        .values_list("state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    delta = {name: counts.get(name, 0) - getattr(chunk, name) for name in ("done", "skipped", "failed")}
    if not any(delta.values()):
        return
    OperationChunk.objects.filter(pk=chunk_id).update(**{name: counts.get(name, 0) for name in delta})
    Operation.objects.filter(pk=operation_id).update(**{name: F(name) + n for name, n in delta.items() if n})


def _run_chunk(
    op: Operation,
    chunk: OperationChunk,
    me: str,
    pool: ThreadPoolExecutor,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    threads: int,
) -> list[BaseException]:
    """Run a claimed chunk's pending items on the pool, then recount it and finish or release it."""
    params = op.params or {}
    rows = list(
        OperationItem.objects.filter(
            operation_id=op.pk,
            item_id__gte=chunk.first_item_id,
            item_id__lte=chunk.last_item_id,
            state=OperationItemState.PENDING,
        )
        .select_related("item")
        .order_by("item_id")
    )
    tasks = {
        task.item_id: task
        for task in ProductTask.objects.filter(
            item_id__in=[row.item_id for row in rows],
            product=params.get("product", ""),
            version=params.get("version", ""),
        )
    }
    run = _ChunkRun(op, chunk, me, sleep=sleep, clock=clock)
    queue = iter(rows)
    queue_lock = threading.Lock()

    def drain() -> None:
        while not run.stopped.is_set():
            with queue_lock:
                row = next(queue, None)
            if row is None:
                return
            _process(run, row, tasks.get(row.item_id))
            run.tick()

    # Each thread runs in a copy of this job's context, so its log lines carry the operation's ids too.
    futures = [
        pool.submit(contextvars.copy_context().run, drain) for _ in range(min(threads, len(rows)) or 1)
    ]
    errors = [error for future in futures if (error := future.exception()) is not None]
    for error in errors:
        logger.error("Operation %s: a worker thread stopped", op.pk, exc_info=error)
    if run.lost:
        run.flush()  # only rows still pending move: the new owner's outcomes and ours never both count
        return errors
    with transaction.atomic():
        run.flush()
        _recount(op.pk, chunk.pk)
        left = OperationItem.objects.filter(
            operation_id=op.pk,
            item_id__gte=chunk.first_item_id,
            item_id__lte=chunk.last_item_id,
            state=OperationItemState.PENDING,
        ).exists()
        OperationChunk.objects.filter(pk=chunk.pk, owner=me).update(
            state=ChunkState.PENDING if left else ChunkState.FINISHED, owner="", lease_until=None
        )
        Operation.objects.filter(pk=op.pk).update(heartbeat_at=timezone.now())
    return errors


def _process(run: _ChunkRun, row: OperationItem, task: ProductTask | None) -> None:
    op = run.op
    attempt = 0
    while True:
        try:
            # A retry after a 429 writes no history row of its own if it is answered 429 again.
            with services.rate_limit_retry() if attempt else contextlib.nullcontext():
                state, error = _act(op, row.item, task, setting=run.setting)
            break
        except VionlabsRateLimited as limited:
            # Not a failure: wait (the client paused the shared throttle for Retry-After, so every thread
            # waits too), renewing the lease meanwhile, then try the item again, unless told to stop.
            wait = max(throttle_remaining(), limited.retry_after or 0.0)
            if not wait:
                wait = RATE_LIMIT_BACKOFF[min(attempt, len(RATE_LIMIT_BACKOFF) - 1)]
            if not run.wait(wait):
                return  # left pending: a cancel marks it cancelled, a takeover runs it
            attempt += 1
        except (services.TaskAlreadyActive, services.NotApplicable) as refused:
            # Nothing to do for this item (the setting may have changed since the set was frozen): skipped.
            state, error = OperationItemState.SKIPPED, str(refused)
            break
        except (services.ActionRefused, VionlabsError) as refused:
            state, error = OperationItemState.FAILED, str(refused)
            break
        except Exception:
            logger.exception("Operation %s: unexpected error on item %s", op.pk, row.item_id)
            state, error = OperationItemState.FAILED, "Unexpected error (details in the worker's log)."
            break
    run.record(row.pk, state, error)


def _skip_note(kind: str, status: str, product: str, version: str) -> str:
    """Why `_would_skip` skips an item, in words for the operation's page."""
    if kind == OperationKind.CREATE:
        return f"Already {status} for {product} {version}."
    if status == NO_TASK:
        return f"No {product} {version} task for this item."
    if kind == OperationKind.DEACTIVATE:
        return "Already deactivated."
    return f"Not failed or deactivated (it is {status or 'unanswered'})."


def _act(
    op: Operation, item: CatalogItem, task: ProductTask | None, *, setting: ProductSetting | None = None
) -> tuple[str, str]:
    """Do the operation's action on one item (its task for the product and version as read with the chunk;
    the product's setting as read at the last tick); returns (state, note). Raises what the services raise
    (which check the task again under its lock)."""
    params = op.params or {}
    product, version = params.get("product", ""), params.get("version", "")
    status = task.status if task else NO_TASK
    if _would_skip(op.kind, status):
        return OperationItemState.SKIPPED, _skip_note(op.kind, status, product, version)
    common: dict[str, Any] = {"actor": op.created_by, "source": EventSource.BULK, "operation": op}
    if op.kind == OperationKind.CREATE:
        services.task_create(
            item=item, product=product, version=version, priority=params.get("priority", "low"),
            note=op.reason, setting=setting, known_new=task is None, **common,
        )  # fmt: skip
        return OperationItemState.DONE, ""
    assert task is not None  # _would_skip skips a missing task for every kind but create
    task.item = item
    if op.kind == OperationKind.REFRESH:
        services.task_refresh(task=task, **common)
    elif op.kind == OperationKind.DEACTIVATE:
        services.task_deactivate(task=task, note=op.reason, **common)
    elif op.kind == OperationKind.RETRY:
        services.task_retry(task=task, note=op.reason, setting=setting, **common)
    return OperationItemState.DONE, ""


def _close_thread_connections(pool: ThreadPoolExecutor, threads: int) -> None:
    """Close the database connection of every pool thread (each has its own): a long-lived worker would
    otherwise keep one per thread per run. The barrier makes each thread take exactly one close."""
    barrier = threading.Barrier(threads)

    def close() -> None:
        connection.close()
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)

    for future in [pool.submit(close) for _ in range(threads)]:
        future.result()


def _stop_failed(operation_id: int) -> None:
    with transaction.atomic():
        op = Operation.objects.select_for_update().get(pk=operation_id)
        if op.state in {OperationState.RUNNING, OperationState.CANCELLING}:
            op.state = OperationState.FAILED
            op.error = "The run stopped before every item was processed (details in the worker's log)."
            op.finished_at = timezone.now()
            op.save(update_fields=["state", "error", "finished_at"])


def _refuse_running(operation_id: int, message: str) -> None:
    """Stop a running operation for a reason an operator can act on: items not reached are cancelled."""
    with transaction.atomic():
        op = Operation.objects.select_for_update().get(pk=operation_id)
        if op.state in {OperationState.RUNNING, OperationState.CANCELLING}:
            op.state = OperationState.FAILED
            op.error = message
            op.finished_at = timezone.now()
            op.save(update_fields=["state", "error", "finished_at"])
            OperationItem.objects.filter(operation=op, state=OperationItemState.PENDING).update(
                state=OperationItemState.CANCELLED, finished_at=op.finished_at
            )
    logger.warning("Operation %s: %s", operation_id, message)


def _finish(operation_id: int) -> Operation | None:
    """End the operation once no chunk is held by a live runner: `done`, or `cancelled` after a cancel."""
    connection.close_if_unusable_or_obsolete()
    with transaction.atomic():
        op = Operation.objects.select_for_update().filter(pk=operation_id).first()
        if op is None or op.state not in {OperationState.RUNNING, OperationState.CANCELLING}:
            return op
        now = timezone.now()
        if op.chunks.filter(state=ChunkState.RUNNING, lease_until__gte=now).exists():
            return op  # another runner still works: it ends the operation
        if op.state == OperationState.CANCELLING:
            _finish_cancelled(op)
            return op
        if op.chunks.exclude(state=ChunkState.FINISHED).exists():
            return op  # a chunk released or expired meanwhile: the next runner (or the scheduler) takes it
        op.state = OperationState.DONE
        op.finished_at = now
        op.save(update_fields=["state", "finished_at"])
    return op


def operation_resume_stale(*, stale_after: dt.timedelta | None = None) -> list[int]:
    """Queue a runner again for active operations whose workers went away (no heartbeat for `stale_after`):
    it goes on freezing, or takes over the chunks whose lease ran out. Returns the operations' ids."""
    if stale_after is None:
        stale_after = dt.timedelta(seconds=settings.OPERATION_STALE_AFTER)
    now = timezone.now()
    cutoff = now - stale_after
    with transaction.atomic():
        stale = list(
            Operation.objects.select_for_update(skip_locked=True)
            .filter(state__in=[OperationState.FREEZING, OperationState.RUNNING, OperationState.CANCELLING])
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
