"""Which in-flight tasks count as stuck: in flight for longer than their product's threshold.

The threshold of a (product, priority) pair is, in order: the product's configured `stuck_after`; the 95th
percentile of past durations (requested → done) for that product and priority once there are enough of them;
the site-wide `ProductSetting.DEFAULT_STUCK_AFTER`. Reads the database only: two queries, however large the
history (the percentile is taken over a bounded sample of the most recent completions).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone

from .counts import Counts
from .models import PriorityChoices, ProductChoices, ProductSetting, ProductTask, TaskCount, TaskStatus

#: Fewer completed tasks than this for a (product, priority) and the percentile is not trusted.
MIN_SAMPLES = 20
#: The most recent completions looked at: enough for a stable percentile, bounded so the query stays cheap.
SAMPLE_LIMIT = 5000
PERCENTILE = 0.95


def percentile(values: list[dt.timedelta], fraction: float = PERCENTILE) -> dt.timedelta:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Threshold:
    after: dt.timedelta
    # "configured", "p95 of N" or "default": shown next to a stuck task so nobody has to guess.
    basis: str


@dataclass
class StuckThresholds:
    by_key: dict[tuple[str, str], Threshold] = field(default_factory=dict)
    default: Threshold = field(
        default_factory=lambda: Threshold(ProductSetting.DEFAULT_STUCK_AFTER, "default")
    )

    def for_task(self, product: str, priority: str) -> Threshold:
        return self.by_key.get((product, priority), self.default)

    def is_stuck(self, task: ProductTask, *, now: dt.datetime | None = None) -> bool:
        if task.status not in TaskStatus.IN_FLIGHT:
            return False
        since = task.in_flight_since
        if since is None:
            return False
        now = now or timezone.now()
        return now - since > self.for_task(task.product, task.priority).after


def compute_thresholds(settings: Iterable[ProductSetting] | None = None) -> StuckThresholds:
    """The threshold of every (product, priority): two queries, one if the settings are passed in."""
    if settings is None:
        settings = ProductSetting.objects.all()
    configured = {s.product: s.stuck_after for s in settings if s.stuck_after}
    observed = _observed_percentiles()
    thresholds = StuckThresholds()
    for product in ProductChoices.values:
        for priority in PriorityChoices.values:
            if product in configured:
                thresholds.by_key[(product, priority)] = Threshold(configured[product], "configured")
                continue
            count, value = observed.get((product, priority), (0, dt.timedelta(0)))
            if count >= MIN_SAMPLES:
                thresholds.by_key[(product, priority)] = Threshold(value, f"95th percentile of {count}")
    return thresholds


def _observed_percentiles() -> dict[tuple[str, str], tuple[int, dt.timedelta]]:
    """(number of durations, their PERCENTILE) per (product, priority), over the SAMPLE_LIMIT most recent
    completions (requested → done, negative durations left out). One query. PostgreSQL computes the
    nearest-rank percentile itself (`percentile_disc`) and sends a row per pair; elsewhere the sample comes
    back and `percentile` takes it (the tasks, overview and item pages ask this on every view: moving 5,000
    rows of timestamps to Python cost about 6 ms of CPU per page at 1.5 M tasks on PostgreSQL)."""
    recent = ProductTask.objects.filter(
        status=TaskStatus.DONE, requested_at__isnull=False, status_changed_at__isnull=False
    ).order_by("-status_changed_at")
    if connection.vendor == "postgresql":
        took = recent.annotate(took=F("status_changed_at") - F("requested_at"))
        sql, params = took.values("product", "priority", "took")[:SAMPLE_LIMIT].query.sql_with_params()
        with connection.cursor() as cursor:
            query = (  # the ORM's own SQL and parameters, wrapped
                "SELECT product, priority, COUNT(*), percentile_disc(%s) WITHIN GROUP (ORDER BY took) "  # noqa: S608
                f"FROM ({sql}) AS sample WHERE took >= interval '0' GROUP BY product, priority"
            )
            cursor.execute(query, [PERCENTILE, *params])
            return {
                (product, priority): (count, value) for product, priority, count, value in cursor.fetchall()
            }
    # SQLite subtracts timestamps with a Python function per row: subtracting here costs less.
    samples: dict[tuple[str, str], list[dt.timedelta]] = defaultdict(list)
    sample = recent.values_list("product", "priority", "requested_at", "status_changed_at")[:SAMPLE_LIMIT]
    for product, priority, requested_at, finished_at in sample:
        if requested_at is not None and finished_at is not None and finished_at >= requested_at:
            samples[(product, priority)].append(finished_at - requested_at)
    return {key: (len(durations), percentile(durations)) for key, durations in samples.items()}


def _cutoffs(
    thresholds: StuckThresholds, products: Iterable[str], now: dt.datetime
) -> list[tuple[str, str, dt.datetime]]:
    """(product, priority, in flight since before this is stuck) for every pair."""
    return [
        (product, priority, now - thresholds.for_task(product, priority).after)
        for product in products
        for priority in PriorityChoices.values
    ]


def products_in_flight(counts: Counts | None = None) -> list[str]:
    """The products with tasks in flight, from the trigger-kept counts (a product Vionlabs reported that is not
    among ours included): the pairs the stuck queries look at. One small query when `counts` is not given."""
    if counts is not None:
        in_flight = counts.tasks.items()
        return sorted({p for (p, _, status, _), n in in_flight if status in TaskStatus.IN_FLIGHT and n > 0})
    rows = (
        TaskCount.objects.filter(status__in=sorted(TaskStatus.IN_FLIGHT))
        .values_list("product")
        .annotate(total=Sum("n"))
        .filter(total__gt=0)
        .order_by("product")
    )
    return [product for product, _ in rows]


def stuck_filter(
    thresholds: StuckThresholds, *, now: dt.datetime | None = None, products: Iterable[str] | None = None
) -> Q:
    """A Q over ProductTask annotated with `inflight_since` (`with_inflight_since`) selecting the stuck ones:
    one range per (product, priority), each of which task_inflight_pair_idx reads directly."""
    now = now or timezone.now()
    products = products_in_flight() if products is None else products
    pairs = Q(pk__in=[])
    for product, priority, cutoff in _cutoffs(thresholds, products, now):
        pairs |= Q(product=product, priority=priority, inflight_since__lt=cutoff)
    return Q(status__in=sorted(TaskStatus.IN_FLIGHT)) & pairs


def stuck_ranking(
    thresholds: StuckThresholds, *, limit: int, counts: Counts | None = None, now: dt.datetime | None = None
) -> QuerySet | None:
    """(inflight_since, pk) of the `limit` longest-stuck in-flight tasks: one ordered index range per
    (product, priority), merged by the database (UNION ALL, ORDER BY, LIMIT), so the cost follows `limit`,
    not the number of tasks in flight. None when nothing is in flight."""
    now = now or timezone.now()
    base = ProductTask.objects.in_flight().with_inflight_since()
    # django-stubs cannot see the annotation that with_inflight_since() adds.
    parts = [
        base.filter(product=product, priority=priority, inflight_since__lt=cutoff)  # type: ignore[misc]
        .order_by()
        .values_list("inflight_since", "pk")
        for product, priority, cutoff in _cutoffs(thresholds, products_in_flight(counts), now)
    ]
    if not parts:
        return None
    if connection.features.supports_slicing_ordering_in_compound:
        # Each range ordered and limited too: the planner then reads the index in order and stops early, rather
        # than trusting its row estimate for the range (which once sent it to a 140 ms bitmap scan).
        parts = [part.order_by("inflight_since", "pk")[:limit] for part in parts]  # type: ignore[misc]
    return parts[0].union(*parts[1:], all=True).order_by("inflight_since", "pk")[:limit]  # type: ignore[misc]


def stuck_tasks(
    thresholds: StuckThresholds, *, limit: int, counts: Counts | None = None, now: dt.datetime | None = None
) -> list[ProductTask]:
    """The `limit` longest-stuck in-flight tasks, the longest first, with their items: two queries."""
    ranking = stuck_ranking(thresholds, limit=limit, counts=counts, now=now)
    if ranking is None:
        return []
    ids = [pk for _, pk in ranking]
    found = ProductTask.objects.with_inflight_since().select_related("item").in_bulk(ids)
    return [found[pk] for pk in ids if pk in found]
