"""Keeping in-flight tasks fresh: claiming due items, the per-minute budget, backoff and the circuit breaker.

The scheduler (`manage.py sync_tasks`) claims items whose in-flight tasks are due and enqueues one refresh job
per item for the workers (`manage.py db_worker`); the job makes one item-level call (`services.item_refresh`).

Why claims cannot collide, on any number of machines: a claim is one short transaction that locks the shared
budget row, locks the candidate items with `SELECT … FOR NO KEY UPDATE SKIP LOCKED` (PostgreSQL; SQLite runs
one writer at a time anyway), re-reads which of their tasks are still due *after* taking the locks, and pushes
those tasks' `next_check_at` forward as a lease before committing. Another scheduler either skips the locked
items or, once the claim commits, no longer sees them as due. The HTTP call happens later, in a job, outside
any transaction; when it returns the job sets `next_check_at` by the backoff rule, which replaces the lease.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from dashboard.vionlabs.errors import VionlabsError

from . import services
from .jobs import enqueue_on_commit, refresh_item
from .models import (
    UPSTREAM_NAME,
    CatalogItem,
    EventSource,
    ProductTask,
    SyncBudget,
    TaskStatus,
    UpstreamHealth,
)
from .querysets import OUTCOME_UNKNOWN

logger = logging.getLogger(__name__)

BUDGET_NAME = "sync"
BUDGET_WINDOW = dt.timedelta(minutes=1)


def _seconds(name: str, default: float) -> dt.timedelta:
    return dt.timedelta(seconds=float(getattr(settings, name, default)))


def min_interval() -> dt.timedelta:
    return _seconds("SYNC_MIN_INTERVAL", 30)


def max_interval() -> dt.timedelta:
    return _seconds("SYNC_MAX_INTERVAL", 900)


def lease_length() -> dt.timedelta:
    return _seconds("SYNC_LEASE_SECONDS", 600)


def breaker_threshold() -> int:
    return int(getattr(settings, "SYNC_BREAKER_THRESHOLD", 5))


def breaker_pause() -> dt.timedelta:
    return _seconds("SYNC_BREAKER_PAUSE", 60)


# --- Backoff --------------------------------------------------------------------------------------------


def next_check_delay(*, age: dt.timedelta) -> dt.timedelta:
    """How long to wait before asking again about a task in flight for `age`: a tenth of its age, between
    SYNC_MIN_INTERVAL and SYNC_MAX_INTERVAL (a task pending for hours is not worth asking every 30 s)."""
    factor = float(getattr(settings, "SYNC_BACKOFF_FACTOR", 0.1))
    delay = age * factor
    return max(min_interval(), min(max_interval(), delay))


def _in_flight_for(task: ProductTask, now: dt.datetime) -> dt.timedelta:
    return max(dt.timedelta(0), now - (task.in_flight_since or now))


def schedule_next_checks(*, item_id: int, now: dt.datetime | None = None) -> None:
    """Set `next_check_at` of an item's tasks after a refresh: by the backoff rule while in flight or while a
    change's outcome is still unknown, cleared otherwise (the scheduler looks only at `needs_sync()` tasks)."""
    now = now or timezone.now()
    rows = ProductTask.objects.filter(item_id=item_id).only(
        "pk", "status", "requested_at", "created_at", "sync_error", "sync_error_at"
    )
    for row in rows:
        if row.status in TaskStatus.IN_FLIGHT:
            when = now + next_check_delay(age=_in_flight_for(row, now))
        elif row.sync_error.startswith(OUTCOME_UNKNOWN):
            # Still unsettled (item_refresh settles what it can): ask again, less often the longer it lasts.
            when = now + next_check_delay(age=now - (row.sync_error_at or now))
        else:
            when = None
        # A single-column update: it cannot overwrite a status another process wrote meanwhile.
        ProductTask.objects.filter(pk=row.pk).update(next_check_at=when)


# --- Circuit breaker ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Breaker:
    state: str  # "closed", "open" or "half-open"
    paused_until: dt.datetime | None = None
    failing_since: dt.datetime | None = None


def breaker_status(now: dt.datetime | None = None) -> Breaker:
    """Closed: sync runs. Open: paused until `paused_until`. Half-open: the pause is over but Vionlabs has not
    answered since, so one probe goes out before the rest."""
    now = now or timezone.now()
    health = UpstreamHealth.objects.filter(name=UPSTREAM_NAME).first()
    if health is None:
        return Breaker("closed")
    if health.paused_until and health.paused_until > now:
        return Breaker("open", health.paused_until, health.failing_since)
    if health.consecutive_failures >= breaker_threshold():
        return Breaker("half-open", health.paused_until, health.failing_since)
    return Breaker("closed", None, health.failing_since)


def trip_breaker_if_needed(now: dt.datetime | None = None) -> dt.datetime | None:
    """After a failed call: if Vionlabs has failed SYNC_BREAKER_THRESHOLD times in a row, pause sync for
    SYNC_BREAKER_PAUSE (again, when a half-open probe failed). Returns the end of the pause, if any."""
    now = now or timezone.now()
    until = now + breaker_pause()
    updated = (
        UpstreamHealth.objects.filter(name=UPSTREAM_NAME, consecutive_failures__gte=breaker_threshold())
        .filter(Q(paused_until__isnull=True) | Q(paused_until__lt=until))
        .update(paused_until=until)
    )
    if updated:
        logger.warning("Vionlabs keeps failing: scheduled sync paused until %s", until.isoformat())
        return until
    return None


def close_breaker() -> None:
    """After a successful call: lift any pause (the failure count is reset by the services)."""
    UpstreamHealth.objects.filter(name=UPSTREAM_NAME, paused_until__isnull=False).update(paused_until=None)


# --- Claiming -------------------------------------------------------------------------------------------


@dataclass
class Claim:
    item_ids: list[int]
    #: Seconds until the budget allows more, when it is what stopped this claim (0 otherwise).
    budget_wait: float = 0.0


def _budget_row() -> SyncBudget:
    # get_or_create settles a race with another scheduler creating the row (savepoint, then get).
    SyncBudget.objects.get_or_create(name=BUDGET_NAME)
    return SyncBudget.objects.select_for_update().get(name=BUDGET_NAME)


def _due(cycle_start: dt.datetime) -> Q:
    return Q(next_check_at__isnull=True) | Q(next_check_at__lte=cycle_start)


def claim_due_items(*, limit: int, cycle_start: dt.datetime, now: dt.datetime | None = None) -> Claim:
    """Claim up to `limit` items with in-flight tasks due at `cycle_start` (longest unchecked first), within
    the per-minute budget, leasing their due tasks; see the module docstring for why claims never overlap."""
    now = now or timezone.now()
    per_minute = int(settings.SYNC_REQUESTS_PER_MINUTE)
    with transaction.atomic():
        budget = _budget_row()
        if budget.window_start is None or now - budget.window_start >= BUDGET_WINDOW:
            budget.window_start, budget.used = now, 0
        allowed = min(limit, max(0, per_minute - budget.used))
        if allowed == 0:
            wait = (budget.window_start + BUDGET_WINDOW - now).total_seconds()
            budget.save(update_fields=["window_start", "used"])
            return Claim([], budget_wait=max(0.05, wait))
        due = ProductTask.objects.needs_sync().filter(_due(cycle_start))
        # More candidates than needed: some may be locked by another scheduler right now, and are skipped.
        candidates = list(
            due.order_by(F("last_checked_at").asc(nulls_first=True), "pk").values_list("item_id", flat=True)[
                : allowed * 4
            ]
        )
        ordered = list(dict.fromkeys(candidates))
        locked = set(
            CatalogItem.objects.select_for_update(skip_locked=True, no_key=True)
            .filter(pk__in=ordered)
            .values_list("pk", flat=True)
        )
        chosen = [pk for pk in ordered if pk in locked][:allowed]
        # Re-read after locking: a claim committed since our first read has already moved these forward.
        still_due = due.filter(item_id__in=chosen)
        claimed = set(still_due.values_list("item_id", flat=True))
        still_due.filter(item_id__in=claimed).update(next_check_at=now + lease_length())
        item_ids = [pk for pk in chosen if pk in claimed]
        budget.used += len(item_ids)
        budget.save(update_fields=["window_start", "used"])
    return Claim(item_ids)


def take_budget(wanted: int, *, now: dt.datetime | None = None) -> int:
    """Take up to `wanted` requests from this minute's budget (the extra task-level reads an item refresh
    makes for links after a status change); returns how many were granted."""
    if wanted <= 0:
        return 0
    now = now or timezone.now()
    per_minute = int(settings.SYNC_REQUESTS_PER_MINUTE)
    with transaction.atomic():
        budget = _budget_row()
        if budget.window_start is None or now - budget.window_start >= BUDGET_WINDOW:
            budget.window_start, budget.used = now, 0
        granted = min(wanted, max(0, per_minute - budget.used))
        budget.used += granted
        budget.save(update_fields=["window_start", "used"])
    return granted


# --- Refreshing -----------------------------------------------------------------------------------------


def refresh_claimed_item(*, item_id: int, source: str = EventSource.SYNC) -> str:
    """Refresh one item (one item-level call) and schedule its next check; returns what happened:
    "refreshed", "failed", "paused" or "gone". Upstream errors are recorded, not raised."""
    now = timezone.now()
    breaker = breaker_status(now)
    if breaker.state == "open":
        # Do not call while paused; look again right after the pause.
        ProductTask.objects.needs_sync().filter(item_id=item_id).update(next_check_at=breaker.paused_until)
        if source == EventSource.WEBHOOK:
            refresh_item.using(run_after=breaker.paused_until).enqueue(item_id, source)
        return "paused"
    item = CatalogItem.objects.filter(pk=item_id).first()
    if item is None:
        return "gone"
    if source != EventSource.SYNC:
        # A webhook's refresh leases the item like a scheduler's claim, so no scheduler claims it meanwhile.
        ProductTask.objects.needs_sync().filter(item_id=item_id).update(next_check_at=now + lease_length())
    try:
        # A status change seen in the listing costs one more GET (the task's new links): from the budget.
        services.item_refresh(item=item, source=source, link_reads=take_budget)
    except VionlabsError as error:
        logger.warning("Refreshing item %s failed: %s", item_id, error)
        trip_breaker_if_needed()
        # Try again after the shortest interval (or after the pause, if one just started).
        retry_at = timezone.now() + min_interval()
        paused = breaker_status()
        if paused.state == "open" and paused.paused_until:
            retry_at = max(retry_at, paused.paused_until)
        ProductTask.objects.needs_sync().filter(item_id=item_id).update(next_check_at=retry_at)
        return "failed"
    close_breaker()
    schedule_next_checks(item_id=item_id)
    return "refreshed"


# --- A cycle --------------------------------------------------------------------------------------------


@dataclass
class CycleReport:
    claimed: int = 0
    budget_waits: int = 0
    breaker: str = "closed"
    paused_until: dt.datetime | None = None
    outcomes: dict[str, int] = field(default_factory=dict)


def run_cycle(
    *,
    inline: bool = False,
    batch_size: int = 100,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[[int], None] | None = None,
) -> CycleReport:
    """Refresh every in-flight task that is due now, once: claim batches and enqueue one refresh job per
    item (or, with `inline`, refresh here). Waits for the budget when it runs out; stops when the breaker
    is open, after a single probe when it is half-open."""
    report = CycleReport()
    cycle_start = timezone.now()
    while True:
        breaker = breaker_status()
        report.breaker, report.paused_until = breaker.state, breaker.paused_until
        if breaker.state == "open":
            break
        probe = breaker.state == "half-open"
        claim = claim_due_items(limit=1 if probe else batch_size, cycle_start=cycle_start)
        if not claim.item_ids:
            if claim.budget_wait:
                report.budget_waits += 1
                sleep(claim.budget_wait)
                continue
            break
        report.claimed += len(claim.item_ids)
        for item_id in claim.item_ids:
            if inline:
                outcome = refresh_claimed_item(item_id=item_id, source=EventSource.SYNC)
                report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
                if on_progress:
                    on_progress(sum(report.outcomes.values()))
            else:
                enqueue_on_commit(refresh_item, item_id, EventSource.SYNC.value)
        if on_progress and not inline:
            on_progress(report.claimed)
        if probe:
            break
    record_cycle()
    return report


def due_item_count(now: dt.datetime | None = None) -> int:
    """Items with a task due for a check now (a progress total for one cycle)."""
    due = ProductTask.objects.needs_sync().filter(_due(now or timezone.now()))
    return due.values("item_id").distinct().order_by().count()


def record_cycle(now: dt.datetime | None = None) -> None:
    """Note that a scheduler finished a cycle (read by /readyz)."""
    SyncBudget.objects.get_or_create(name=BUDGET_NAME)
    SyncBudget.objects.filter(name=BUDGET_NAME).update(last_cycle_at=now or timezone.now())
