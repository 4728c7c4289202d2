"""What `/metrics` reads from the database at scrape time: a few cheap queries, each served by an index.

Each function is one bounded read; `dashboard.metrics.StateCollector` turns them into Prometheus gauges. The
per-status reads use `ORDER BY … LIMIT 1` on the (status, <time>) indexes of ProductTask, so their cost does not
grow with the table; the queue counts use django-tasks-db's partial index on READY jobs and ours on RUNNING ones
(migration `0015_running_jobs_index`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Q
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from .models import Operation, OperationState, ProductTask, TaskStatus

#: The operation states whose progress is reported (finished operations drop out of the metrics).
ACTIVE_OPERATION_STATES = (OperationState.QUEUED, OperationState.RUNNING, OperationState.CANCELLING)


@dataclass(frozen=True)
class OperationProgress:
    pk: int
    kind: str
    state: str
    total: int
    done: int
    skipped: int
    failed: int


def queue_depth() -> dict[str, int]:
    """Jobs waiting ("ready", due or not) and being run ("running"): two counts, each on a partial index."""
    return {
        "ready": DBTaskResult.objects.filter(status="READY").count(),
        "running": DBTaskResult.objects.filter(status="RUNNING").count(),
    }


def _earliest(field: str, *, extra: Q | None = None) -> dt.datetime | None:
    """The smallest non-null `field` over in-flight tasks: one index-ordered LIMIT 1 per in-flight status."""
    earliest: dt.datetime | None = None
    for status in sorted(TaskStatus.IN_FLIGHT):
        qs = ProductTask.objects.filter(status=status, **{f"{field}__isnull": False})
        if extra is not None:
            qs = qs.filter(extra)
        value = qs.order_by(field).values_list(field, flat=True).first()
        if value is not None and (earliest is None or value < earliest):
            earliest = value
    return earliest


def oldest_in_flight_age(now: dt.datetime | None = None) -> float:
    """Seconds the longest-waiting in-flight task has been in its current status (0 when none is in flight)."""
    now = now or timezone.now()
    since = _earliest("status_changed_at")
    return max(0.0, (now - since).total_seconds()) if since else 0.0


def sync_lag(now: dt.datetime | None = None) -> float:
    """Seconds the oldest due in-flight task has been waiting for the scheduler past its `next_check_at`
    (0 when nothing is overdue). Tasks never scheduled (`next_check_at` empty) are claimed first by the next
    cycle and are not counted."""
    now = now or timezone.now()
    due = _earliest("next_check_at", extra=Q(next_check_at__lte=now))
    return max(0.0, (now - due).total_seconds()) if due else 0.0


def active_operations() -> list[OperationProgress]:
    """Progress of every operation not finished yet (few at any time)."""
    rows = Operation.objects.filter(state__in=ACTIVE_OPERATION_STATES).order_by("pk")
    return [
        OperationProgress(op.pk, op.kind, op.state, op.total, op.done, op.skipped, op.failed)
        for op in rows.only("pk", "kind", "state", "total", "done", "skipped", "failed")
    ]
