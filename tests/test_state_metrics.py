"""/metrics' state gauges, read at scrape time: each checked against known rows, and a scrape's query count."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from prometheus_client.parser import text_string_to_metric_families

from dashboard.catalog import gauges, selectors
from dashboard.catalog.models import Operation, OperationState, UpstreamHealth
from tests.factories import make_item, make_task

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def allowed(settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def job(status: str) -> DBTaskResult:
    return DBTaskResult.objects.create(
        status=status,
        args_kwargs={"args": [], "kwargs": {}},
        task_path="dashboard.catalog.jobs.refresh_item",
        backend_name="default",
        run_after=timezone.now(),
        exception_class_path="",
        traceback="",
    )


def test_tasks_are_counted_by_product_and_status(client):
    for n in range(3):
        make_task(make_item(f"a{n}"), status="done")
    make_task(make_item("b"), status="failed")
    make_task(make_item("c"), product="markers", version="2", status="")
    samples = scrape(client)
    assert samples[("dashboard_tasks", (("product", "adbreaks"), ("status", "done")))] == 3
    assert samples[("dashboard_tasks", (("product", "adbreaks"), ("status", "failed")))] == 1
    assert samples[("dashboard_tasks", (("product", "markers"), ("status", "")))] == 1


def test_task_counts_follow_every_change_at_once():
    task = make_task(make_item("a"), status="done")
    assert selectors.task_counts() == {("adbreaks", "done"): 1}
    make_task(make_item("b"), status="done")
    task.status = "failed"
    task.save()
    assert selectors.task_counts() == {("adbreaks", "done"): 1, ("adbreaks", "failed"): 1}


def test_the_circuit_state_is_one_hot(client):
    UpstreamHealth.objects.create(
        name="vionlabs", consecutive_failures=9, paused_until=timezone.now() + dt.timedelta(minutes=5)
    )
    samples = scrape(client)
    assert samples[("dashboard_vionlabs_circuit_state", (("state", "open"),))] == 1
    assert samples[("dashboard_vionlabs_circuit_state", (("state", "closed"),))] == 0
    assert samples[("dashboard_vionlabs_circuit_state", (("state", "half-open"),))] == 0


def test_queue_depth_counts_ready_and_running_jobs_only(client):
    for status in ("READY", "READY", "RUNNING", "SUCCESSFUL", "FAILED"):
        job(status)
    samples = scrape(client)
    assert samples[("dashboard_jobs", (("state", "ready"),))] == 2
    assert samples[("dashboard_jobs", (("state", "running"),))] == 1


def test_the_oldest_in_flight_task_age_ignores_final_tasks():
    now = timezone.now()
    make_task(make_item("a"), status="pending", status_changed_at=now - dt.timedelta(minutes=10))
    make_task(make_item("b"), status="processing", status_changed_at=now - dt.timedelta(minutes=30))
    make_task(make_item("c"), status="done", status_changed_at=now - dt.timedelta(days=3))
    assert gauges.oldest_in_flight_age(now) == 1800


def test_sync_lag_is_the_age_of_the_oldest_due_in_flight_task():
    now = timezone.now()
    make_task(make_item("a"), status="pending", next_check_at=now - dt.timedelta(seconds=40))
    make_task(make_item("b"), status="processing", next_check_at=now - dt.timedelta(seconds=90))
    make_task(make_item("c"), status="processing", next_check_at=now + dt.timedelta(hours=1))
    make_task(make_item("d"), status="failed", next_check_at=now - dt.timedelta(days=1))
    assert gauges.sync_lag(now) == 90


def test_no_lag_and_no_age_when_nothing_is_in_flight(client):
    make_task(make_item("a"), status="done")
    samples = scrape(client)
    assert samples[("dashboard_sync_lag_seconds", ())] == 0
    assert samples[("dashboard_oldest_in_flight_task_age_seconds", ())] == 0


def test_progress_is_reported_for_unfinished_operations_only(client):
    running = Operation.objects.create(
        kind="create", state=OperationState.RUNNING, reason="r", total=10, done=4, skipped=1, failed=2
    )
    Operation.objects.create(kind="refresh", state=OperationState.DONE, reason="r", total=5, done=5)
    samples = scrape(client)
    labels = (("kind", "create"), ("operation", str(running.pk)))
    assert samples[("dashboard_operation_items", (*labels, ("outcome", "total")))] == 10
    assert samples[("dashboard_operation_items", (*labels, ("outcome", "done")))] == 4
    assert samples[("dashboard_operation_items", (*labels, ("outcome", "skipped")))] == 1
    assert samples[("dashboard_operation_items", (*labels, ("outcome", "failed")))] == 2
    assert not [
        key for key in samples if key[0] == "dashboard_operation_items" and ("kind", "refresh") in key[1]
    ]


def test_a_scrape_makes_a_fixed_number_of_queries(client, django_assert_num_queries):
    for n in range(20):
        make_task(make_item(f"a{n}"), status=("pending", "processing", "done")[n % 3])
    Operation.objects.create(kind="create", state=OperationState.RUNNING, reason="r", total=3)
    # counts 2 (the task and item count logs) + breaker 1 + queue 2 + oldest 2 + lag 2 + operations 1
    with django_assert_num_queries(10):
        scrape(client)
