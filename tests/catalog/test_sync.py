"""Scheduled sync: claims, leases, backoff, the per-minute budget, the circuit breaker, the command; and on
PostgreSQL, two workers and two schedulers over 2,000 in-flight tasks."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, F
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from dashboard.catalog import services, sync
from dashboard.catalog.jobs import refresh_item
from dashboard.catalog.models import (
    CatalogItem,
    EventSource,
    ProductTask,
    SyncBudget,
    TaskEvent,
    UpstreamHealth,
)

ROOT = Path(__file__).resolve().parents[2]
LONG = 3600.0  # sandbox pending/processing seconds that keep a task in flight for the whole test

pytestmark = pytest.mark.django_db


def in_flight(sandbox, n_items: int, products=("adbreaks",), prefix="s", status="pending", **task_fields):
    """Items with in-flight tasks, both here and at the sandbox."""
    CatalogItem.objects.bulk_create(CatalogItem(inventory_id=f"{prefix}-{i:05d}") for i in range(n_items))
    items = list(CatalogItem.objects.filter(inventory_id__startswith=f"{prefix}-").order_by("pk"))
    ProductTask.objects.bulk_create(
        ProductTask(item=item, product=product, version="1", status=status, **task_fields)
        for item in items
        for product in products
    )
    for item in items:
        for product in products:
            sandbox.state.create(
                (item.inventory_id, product, "1"),
                priority="low",
                pending_seconds=LONG,
                processing_seconds=LONG,
            )
    return items


# --- Backoff --------------------------------------------------------------------------------------------


def test_backoff_grows_with_age_between_the_bounds(settings):
    settings.SYNC_MIN_INTERVAL, settings.SYNC_MAX_INTERVAL = 30, 900
    delay = sync.next_check_delay
    assert delay(age=dt.timedelta(seconds=5)) == dt.timedelta(seconds=30)
    assert delay(age=dt.timedelta(minutes=10)) == dt.timedelta(minutes=1)
    assert delay(age=dt.timedelta(minutes=60)) == dt.timedelta(minutes=6)
    assert delay(age=dt.timedelta(days=3)) == dt.timedelta(minutes=15)


def test_a_refreshed_task_is_checked_again_later_the_longer_it_has_been_in_flight(use_sandbox, settings):
    settings.SYNC_MIN_INTERVAL, settings.SYNC_MAX_INTERVAL = 30, 900
    now = timezone.now()
    young, old = in_flight(use_sandbox, 2)
    ProductTask.objects.filter(item=young).update(requested_at=now - dt.timedelta(minutes=1))
    ProductTask.objects.filter(item=old).update(requested_at=now - dt.timedelta(hours=2))
    report = sync.run_cycle(inline=True)
    assert report.claimed == 2
    young_next = ProductTask.objects.get(item=young).next_check_at - now
    old_next = ProductTask.objects.get(item=old).next_check_at - now
    assert dt.timedelta(seconds=29) < young_next < dt.timedelta(seconds=40)
    assert dt.timedelta(minutes=11) < old_next < dt.timedelta(minutes=13)


# --- Claims ---------------------------------------------------------------------------------------------


def test_claims_longest_unchecked_first_and_leases_what_it_claims(use_sandbox, settings):
    settings.SYNC_LEASE_SECONDS = 600
    now = timezone.now()
    items = in_flight(use_sandbox, 5)
    for minutes, item in zip([5, 50, 1, 30, None], items, strict=True):
        checked = now - dt.timedelta(minutes=minutes) if minutes else None
        ProductTask.objects.filter(item=item).update(last_checked_at=checked)
    claim = sync.claim_due_items(limit=3, cycle_start=now)
    assert claim.item_ids == [items[4].pk, items[1].pk, items[3].pk]  # never checked, then oldest first
    leased = ProductTask.objects.filter(item_id__in=claim.item_ids)
    assert all(task.next_check_at > now + dt.timedelta(seconds=590) for task in leased)
    # The lease keeps them out of the next claim; the rest come next, then nothing.
    assert sync.claim_due_items(limit=3, cycle_start=now).item_ids == [items[0].pk, items[2].pk]
    assert sync.claim_due_items(limit=3, cycle_start=now).item_ids == []


def test_final_and_not_yet_due_tasks_are_not_claimed(use_sandbox):
    now = timezone.now()
    due, later, done = in_flight(use_sandbox, 3)
    ProductTask.objects.filter(item=later).update(next_check_at=now + dt.timedelta(minutes=5))
    ProductTask.objects.filter(item=done).update(status="done")
    assert sync.claim_due_items(limit=10, cycle_start=now).item_ids == [due.pk]


def test_one_item_level_call_per_item_whatever_its_number_of_tasks(use_sandbox):
    items = in_flight(use_sandbox, 4, products=("adbreaks", "emotions", "markers"))
    report = sync.run_cycle(inline=True)
    assert (report.claimed, report.outcomes) == (4, {"refreshed": 4})
    assert {use_sandbox.item_requests(item.inventory_id) for item in items} == {1}
    assert use_sandbox.stats()["requests"] == 4
    assert ProductTask.objects.filter(last_checked_at__isnull=False).count() == 12
    # A second cycle right away finds nothing due: each task was refreshed exactly once.
    assert sync.run_cycle(inline=True).claimed == 0
    assert use_sandbox.stats()["requests"] == 4


def test_a_status_change_is_recorded_with_an_event_from_the_sync(use_sandbox):
    (item,) = in_flight(use_sandbox, 1)
    use_sandbox.state.deactivate((item.inventory_id, "adbreaks", "1"))
    sync.run_cycle(inline=True)
    task = ProductTask.objects.get(item=item)
    assert task.status == "deactivated"
    assert task.next_check_at is None  # final: the scheduler no longer looks at it
    event = TaskEvent.objects.get(task=task)
    assert (event.source, event.status_before, event.status_after) == (
        EventSource.SYNC,
        "pending",
        "deactivated",
    )


# --- Budget ---------------------------------------------------------------------------------------------


def test_the_per_minute_budget_holds_and_the_cycle_waits_for_the_next_minute(use_sandbox, settings):
    settings.SYNC_REQUESTS_PER_MINUTE = 5
    in_flight(use_sandbox, 12)
    waits: list[float] = []
    requests_per_window: list[int] = []

    def next_minute(seconds: float) -> None:
        # Instead of sleeping, move the budget's window a minute into the past.
        waits.append(seconds)
        requests_per_window.append(use_sandbox.stats()["requests"] - sum(requests_per_window))
        SyncBudget.objects.update(window_start=F("window_start") - dt.timedelta(minutes=1))

    report = sync.run_cycle(inline=True, batch_size=100, sleep=next_minute)
    assert report.claimed == 12
    assert report.budget_waits == 2
    assert requests_per_window == [5, 5]
    assert all(0 < wait <= 60 for wait in waits)
    assert use_sandbox.stats()["requests"] == 12


# --- Circuit breaker ------------------------------------------------------------------------------------


def test_breaker_opens_after_consecutive_failures_and_stops_calling(use_sandbox, settings):
    settings.SYNC_BREAKER_THRESHOLD, settings.SYNC_BREAKER_PAUSE = 3, 60
    settings.VIONLABS_MAX_RETRIES = 0
    in_flight(use_sandbox, 10)
    use_sandbox.configure(error_rate=1.0)
    before = timezone.now()
    report = sync.run_cycle(inline=True)

    assert use_sandbox.stats()["requests"] == 3  # then the breaker opened
    assert report.outcomes == {"failed": 3, "paused": 7}
    health = UpstreamHealth.objects.get(name="vionlabs")
    assert health.failing_since >= before
    assert health.paused_until > timezone.now() + dt.timedelta(seconds=50)
    assert sync.breaker_status().state == "open"
    # While open, a cycle sends nothing.
    assert sync.run_cycle(inline=True).breaker == "open"
    assert use_sandbox.stats()["requests"] == 3
    # Tasks keep their last known status, with the failure noted apart.
    assert set(ProductTask.objects.values_list("status", flat=True)) == {"pending"}


def test_after_the_pause_one_probe_goes_out_and_success_closes_the_breaker(use_sandbox, settings):
    settings.SYNC_BREAKER_THRESHOLD = 3
    in_flight(use_sandbox, 6)
    past = timezone.now() - dt.timedelta(seconds=1)
    UpstreamHealth.objects.create(
        name="vionlabs",
        consecutive_failures=7,
        failing_since=past - dt.timedelta(minutes=5),
        paused_until=past,
    )
    assert sync.breaker_status().state == "half-open"
    probe = sync.run_cycle(inline=True)
    assert (probe.breaker, probe.claimed) == ("half-open", 1)
    assert use_sandbox.stats()["requests"] == 1
    health = UpstreamHealth.objects.get(name="vionlabs")
    assert (health.consecutive_failures, health.failing_since, health.paused_until) == (0, None, None)
    assert sync.run_cycle(inline=True).claimed == 5


def test_a_failed_probe_pauses_again(use_sandbox, settings):
    settings.SYNC_BREAKER_THRESHOLD = 3
    settings.VIONLABS_MAX_RETRIES = 0
    in_flight(use_sandbox, 6)
    past = timezone.now() - dt.timedelta(seconds=1)
    UpstreamHealth.objects.create(
        name="vionlabs", consecutive_failures=3, failing_since=past, paused_until=past
    )
    use_sandbox.configure(error_rate=1.0)
    sync.run_cycle(inline=True)
    assert use_sandbox.stats()["requests"] == 1
    assert sync.breaker_status().state == "open"


def test_a_webhook_refresh_during_a_pause_is_deferred_to_its_end(
    use_sandbox, django_capture_on_commit_callbacks
):
    (item,) = in_flight(use_sandbox, 1)
    until = timezone.now() + dt.timedelta(minutes=1)
    UpstreamHealth.objects.create(name="vionlabs", consecutive_failures=9, paused_until=until)
    assert sync.refresh_claimed_item(item_id=item.pk, source=EventSource.WEBHOOK) == "paused"
    assert use_sandbox.stats()["requests"] == 0
    job = DBTaskResult.objects.get(task_path=refresh_item.module_path)
    assert job.run_after == until
    assert job.args_kwargs["args"] == [item.pk, "webhook"]


def test_a_webhook_refresh_keeps_schedulers_off_the_item_while_it_runs(use_sandbox, monkeypatch):
    (item,) = in_flight(use_sandbox, 1)
    claims_during_the_call = []
    original = services.item_refresh

    def item_refresh(**kwargs):
        claims_during_the_call.append(sync.claim_due_items(limit=10, cycle_start=timezone.now()).item_ids)
        return original(**kwargs)

    monkeypatch.setattr(services, "item_refresh", item_refresh)
    assert sync.refresh_claimed_item(item_id=item.pk, source=EventSource.WEBHOOK) == "refreshed"
    assert claims_during_the_call == [[]]
    assert use_sandbox.item_requests(item.inventory_id) == 1


# --- The command ----------------------------------------------------------------------------------------


def test_command_enqueues_one_job_per_item_for_the_workers(use_sandbox, django_capture_on_commit_callbacks):
    items = in_flight(use_sandbox, 3, products=("adbreaks", "emotions"))
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("sync_tasks", stdout=out)
    assert "3 item(s) queued for refresh" in out.getvalue()
    jobs = DBTaskResult.objects.filter(task_path=refresh_item.module_path)
    assert sorted(job.args_kwargs["args"][0] for job in jobs) == sorted(item.pk for item in items)
    assert use_sandbox.stats()["requests"] == 0  # the scheduler itself calls nobody
    for job in jobs:
        refresh_item.call(*job.task_result.args)
    assert {use_sandbox.item_requests(item.inventory_id) for item in items} == {1}


def test_command_inline_refreshes_here_and_every_loops_until_interrupted(use_sandbox, monkeypatch):
    in_flight(use_sandbox, 2)
    out = StringIO()
    call_command("sync_tasks", "--inline", stdout=out)
    assert "2 item(s) refreshed (2 refreshed)" in out.getvalue()

    cycles = []

    def interrupt(seconds: float) -> None:
        cycles.append(seconds)
        if len(cycles) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("dashboard.catalog.management.commands.sync_tasks.time.sleep", interrupt)
    out = StringIO()
    call_command("sync_tasks", "--inline", "--every", "5", stdout=out)
    # Idle cycles of a running scheduler print nothing (one every few seconds would flood the terminal).
    assert out.getvalue() == "Stopped.\n"
    assert all(0 < wait <= 5 for wait in cycles)
    cycles.clear()
    out = StringIO()
    call_command("sync_tasks", "--inline", "--every", "5", "-v", "2", stdout=out)
    assert out.getvalue().count("0 item(s) refreshed") == 2


def test_command_refuses_a_bad_interval():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="positive"):
        call_command("sync_tasks", "--every", "0")


# --- Several schedulers and workers at once (PostgreSQL) -----------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_overlap(use_sandbox):
    in_flight(use_sandbox, 400)
    now = timezone.now()
    barrier = threading.Barrier(8)
    claimed: list[list[int]] = []

    def scheduler() -> None:
        try:
            barrier.wait()
            while ids := sync.claim_due_items(limit=7, cycle_start=now).item_ids:
                claimed.append(ids)
        finally:
            connection.close()

    threads = [threading.Thread(target=scheduler) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [pk for ids in claimed for pk in ids]
    assert len(flat) == len(set(flat)) == 400


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # Output goes to a file: a pipe nobody reads until the end fills up and blocks a chatty worker.
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=out, stderr=out
        )


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_workers_and_two_schedulers_refresh_each_task_exactly_once_per_cycle(use_sandbox, tmp_path):
    """2,000 in-flight tasks (1,000 items x 2 products) stay in flight (long sandbox times); two
    `sync_tasks` and two `db_worker` processes run together against this test database. Each cycle must
    send exactly one item-level GET per item (counted at the sandbox) and record every answer."""
    items = in_flight(use_sandbox, 1000, products=("adbreaks", "emotions"), prefix="pg")
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "VIONLABS_API_URL": use_sandbox.url,
        "VIONLABS_API_KEY": use_sandbox.api_key,
        "SYNC_REQUESTS_PER_MINUTE": "100000",
        # A lease shorter than the shortest check interval, so the test can tell which one a row carries.
        "SYNC_LEASE_SECONDS": "300",
        "SYNC_MIN_INTERVAL": "600",
        "TEST_DATABASE_NAME": "",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("TEST_DATABASE_NAME")
    ids = {item.inventory_id for item in items}
    # Some tasks change at Vionlabs before the cycle: their new status must be recorded, once each.
    changed = items[:100]
    for item in changed:
        use_sandbox.state.deactivate((item.inventory_id, "adbreaks", "1"))
    started = time.monotonic()
    before = timezone.now()
    worker_args = ["db_worker", "--interval", "0.1", "--no-startup-delay", "--worker-id"]
    workers = [_spawn([*worker_args, f"w{n}"], env, tmp_path / f"worker{n}.log") for n in range(2)]
    schedulers = [
        _spawn(["sync_tasks", "--batch-size", "50"], env, tmp_path / f"scheduler{n}.log") for n in range(2)
    ]
    jobs = DBTaskResult.objects.filter(task_path=refresh_item.module_path)
    try:
        for n, proc in enumerate(schedulers):
            proc.wait(timeout=60)
            assert proc.returncode == 0, (tmp_path / f"scheduler{n}.log").read_text()
        # Generous: the machine may be shared; the time taken is printed, not asserted.
        deadline = time.monotonic() + 150
        while jobs.exclude(status="SUCCESSFUL").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        statuses = dict(jobs.order_by().values_list("status").annotate(n=Count("pk")))
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(timeout=30)
    elapsed = time.monotonic() - started
    log = (tmp_path / "worker0.log").read_text()
    assert set(statuses) == {"SUCCESSFUL"}, f"jobs: {statuses}; worker output: {log[-3000:]}"
    assert jobs.count() == 1000

    # Exactly once: one item-level GET per item, counted at the sandbox, and one task read per changed task
    # (its new links), nothing else.
    counts = use_sandbox.stats()["items"]
    assert set(counts) == ids
    assert set(counts.values()) == {1}, "an item was refreshed twice, or not at all, in the cycle"
    assert use_sandbox.stats()["endpoints"].get("GET task", 0) == len(changed)
    assert use_sandbox.stats()["requests"] == 1000 + len(changed)
    # No lost update: every task carries this cycle's answer; the changed ones their new status with one
    # event each; the ones still in flight a next check set by the backoff rule (not the lease).
    tasks = ProductTask.objects.all()
    assert tasks.count() == 2000
    assert not tasks.filter(last_checked_at__lt=before).exists()
    assert not tasks.exclude(sync_error="").exists()
    deactivated = tasks.filter(status="deactivated")
    assert set(deactivated.values_list("item_id", flat=True)) == {item.pk for item in changed}
    assert set(deactivated.values_list("product", flat=True)) == {"adbreaks"}
    assert TaskEvent.objects.count() == 100
    assert set(TaskEvent.objects.values_list("task__status", "source").distinct()) == {
        ("deactivated", "sync")
    }
    still = tasks.filter(status="pending")
    assert still.count() == 1900
    assert not still.filter(next_check_at__isnull=True).exists()
    assert not still.filter(next_check_at__lt=before + dt.timedelta(seconds=590)).exists()

    # The same cycle run again at once by both schedulers finds nothing due: no task is refreshed twice.
    again = [_spawn(["sync_tasks"], env, tmp_path / f"again{n}.log") for n in range(2)]
    for proc in again:
        proc.wait(timeout=60)
    assert jobs.count() == 1000
    print(f"\n2,000 tasks / 1,000 items, 2 schedulers + 2 workers: one cycle in {elapsed:.1f} s")
