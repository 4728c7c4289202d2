"""Which in-flight tasks count as stuck: in flight for longer than their product's threshold.

The threshold of a (product, priority) pair is, in order: the product's configured `stuck_after`; the 95th
percentile of past durations (requested → done) for that product and priority once there are enough of them;
the site-wide `ProductSetting.DEFAULT_STUCK_AFTER`. Reads the database only: two queries, however large the
history (the percentile is taken over a bounded sample of the most recent completions).
"""

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Q
from django.utils import timezone

from .models import PriorityChoices, ProductChoices, ProductSetting, ProductTask, TaskStatus
from .querysets import ProductTaskQuerySet

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
    samples: dict[tuple[str, str], list[dt.timedelta]] = defaultdict(list)
    recent = (
        ProductTask.objects.filter(
            status=TaskStatus.DONE, requested_at__isnull=False, status_changed_at__isnull=False
        )
        .order_by("-status_changed_at")
        .values_list("product", "priority", "requested_at", "status_changed_at")[:SAMPLE_LIMIT]
    )
    for product, priority, requested_at, finished_at in recent:
        if requested_at is not None and finished_at is not None and finished_at >= requested_at:
            samples[(product, priority)].append(finished_at - requested_at)
    thresholds = StuckThresholds()
    for product in ProductChoices.values:
        for priority in PriorityChoices.values:
            if product in configured:
                thresholds.by_key[(product, priority)] = Threshold(configured[product], "configured")
                continue
            durations = samples.get((product, priority), [])
            if len(durations) >= MIN_SAMPLES:
                thresholds.by_key[(product, priority)] = Threshold(
                    percentile(durations), f"95th percentile of {len(durations)}"
                )
    return thresholds


def stuck_filter(thresholds: StuckThresholds, *, now: dt.datetime | None = None) -> Q:
    """A Q over ProductTask annotated with `inflight_since` (see `stuck_tasks`) selecting the stuck ones."""
    now = now or timezone.now()
    specific = Q()
    covered = Q()
    for (product, priority), threshold in thresholds.by_key.items():
        pair = Q(product=product, priority=priority)
        covered |= pair
        specific |= pair & Q(inflight_since__lt=now - threshold.after)
    rest = Q(inflight_since__lt=now - thresholds.default.after)
    if thresholds.by_key:
        rest &= ~covered
    # Implied by the rest, but a plain range the database can read from task_inflight_since_idx: only tasks
    # older than the shortest threshold are looked at, not every task in flight.
    shortest = min([thresholds.default.after, *(t.after for t in thresholds.by_key.values())])
    return (
        Q(status__in=sorted(TaskStatus.IN_FLIGHT)) & Q(inflight_since__lt=now - shortest) & (specific | rest)
    )


def stuck_tasks(thresholds: StuckThresholds, *, qs: ProductTaskQuerySet | None = None) -> ProductTaskQuerySet:
    """In-flight tasks older than their threshold, the longest-stuck first."""
    if qs is None:
        qs = ProductTask.objects.all()
    return qs.with_inflight_since().filter(stuck_filter(thresholds)).order_by("inflight_since", "pk")
