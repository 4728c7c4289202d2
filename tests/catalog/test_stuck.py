"""Stuck detection: configured threshold, else the 95th percentile of past durations (20+ samples), else default."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from django.utils import timezone

from dashboard.catalog.models import CatalogItem, ProductSetting, ProductTask
from dashboard.catalog.stuck import MIN_SAMPLES, Threshold, compute_thresholds, percentile, stuck_tasks

pytestmark = pytest.mark.django_db

HOUR = dt.timedelta(hours=1)


def make_task(n: int, *, product="adbreaks", priority="low", status="pending", age=HOUR, took=None):
    item = CatalogItem.objects.create(inventory_id=f"{product}-{priority}-{status}-{n}")
    now = timezone.now()
    return ProductTask.objects.create(
        item=item,
        product=product,
        version="1",
        priority=priority,
        status=status,
        requested_at=now - age,
        status_changed_at=(now - age + took) if took is not None else None,
    )


def history(count: int, *, product="adbreaks", priority="low", minutes=lambda i: i + 1):
    for i in range(count):
        make_task(
            i,
            product=product,
            priority=priority,
            status="done",
            age=dt.timedelta(days=2),
            took=dt.timedelta(minutes=minutes(i)),
        )


def test_percentile_is_nearest_rank():
    values = [dt.timedelta(minutes=m) for m in range(1, 101)]
    assert percentile(values) == dt.timedelta(minutes=95)
    assert percentile([dt.timedelta(seconds=5)]) == dt.timedelta(seconds=5)


def test_without_history_or_setting_the_default_applies():
    thresholds = compute_thresholds()
    assert thresholds.for_task("adbreaks", "low").after == ProductSetting.DEFAULT_STUCK_AFTER
    assert thresholds.for_task("adbreaks", "low").basis == "default"


def test_below_the_minimum_sample_the_default_still_applies():
    history(MIN_SAMPLES - 1)
    assert compute_thresholds().for_task("adbreaks", "low").basis == "default"


def test_with_enough_history_the_95th_percentile_of_that_product_and_priority_applies():
    history(40)  # 1..40 minutes
    thresholds = compute_thresholds()
    assert thresholds.for_task("adbreaks", "low").after == dt.timedelta(minutes=38)
    assert thresholds.for_task("adbreaks", "low").basis == "95th percentile of 40"
    assert thresholds.for_task("adbreaks", "high").basis == "default"
    assert thresholds.for_task("markers", "low").basis == "default"


def test_a_configured_threshold_wins_over_history():
    history(40)
    ProductSetting.objects.create(product="adbreaks", default_version="1", stuck_after=dt.timedelta(hours=2))
    thresholds = compute_thresholds()
    assert thresholds.for_task("adbreaks", "low").after == dt.timedelta(hours=2)
    assert thresholds.for_task("adbreaks", "high").basis == "configured"


def test_stuck_tasks_are_those_in_flight_past_their_threshold():
    history(40)  # adbreaks/low: p95 = 38 minutes
    late = make_task(1, age=HOUR)  # adbreaks low pending for an hour: stuck
    fresh = make_task(2, age=dt.timedelta(minutes=10))
    high = make_task(3, priority="high", age=HOUR)  # default 6 h applies: not stuck
    very_old_high = make_task(4, priority="high", age=dt.timedelta(hours=7), status="processing")
    finished = make_task(5, status="failed", age=dt.timedelta(days=3))
    unknown = make_task(6, status="quarantined", age=dt.timedelta(days=3))
    thresholds = compute_thresholds()
    found = [task.pk for task in stuck_tasks(thresholds, limit=50)]
    assert found == [very_old_high.pk, late.pk]  # the longest in flight first
    assert thresholds.is_stuck(late)
    assert not thresholds.is_stuck(fresh)
    assert not thresholds.is_stuck(high)
    assert not thresholds.is_stuck(finished)
    assert not thresholds.is_stuck(unknown)


def test_stuck_tasks_include_a_product_that_is_not_among_ours():
    # Vionlabs reported it (item_refresh's discovery): the default threshold applies.
    odd = make_task(1, age=dt.timedelta(hours=7))
    ProductTask.objects.filter(pk=odd.pk).update(product="brand_new_product")

    found = [task.pk for task in stuck_tasks(compute_thresholds(), limit=50)]

    assert found == [odd.pk]


def test_stuck_tasks_stop_at_the_limit_longest_first():
    tasks = [make_task(i, age=dt.timedelta(hours=7 + i)) for i in range(1, 6)]

    found = [task.pk for task in stuck_tasks(compute_thresholds(), limit=2)]

    assert found == [tasks[4].pk, tasks[3].pk]


def test_compute_thresholds_costs_two_queries_however_long_the_history(django_assert_num_queries):
    history(60)
    with django_assert_num_queries(2):
        compute_thresholds()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_database_takes_the_same_nearest_rank_percentile_as_python(seed):
    # PostgreSQL computes it in SQL (percentile_disc), SQLite in Python: both must give `percentile`'s answer,
    # ties and finished-before-requested rows (left out) included.
    rng = random.Random(seed)
    minutes = [rng.choice([rng.randint(1, 300), 42, 42, -5]) for _ in range(rng.randint(MIN_SAMPLES, 90))]
    history(len(minutes), priority="high", minutes=lambda i: minutes[i])
    kept = [dt.timedelta(minutes=m) for m in minutes if m >= 0]
    threshold = compute_thresholds().for_task("adbreaks", "high")
    if len(kept) >= MIN_SAMPLES:
        assert threshold == Threshold(percentile(kept), f"95th percentile of {len(kept)}")
    else:
        assert threshold.basis == "default"
