"""Bulk operations at scale: chunks claimed by several runners, leases (taken over when they run out, renewed
while a runner waits out a 429), selections of any size carried in one field, the one-time confirm token,
the enabled-product rule, series and seasons widened to their episodes, and the queries spent per item."""

from __future__ import annotations

import datetime as dt
import re
import threading

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dashboard.catalog import operations, services
from dashboard.catalog.models import (
    CatalogItem,
    ChunkState,
    EventAction,
    ItemKind,
    Operation,
    OperationChunk,
    OperationItem,
    OperationItemState,
    OperationState,
    ProductSetting,
    ProductTask,
    TaskEvent,
)

from .test_operations import PRODUCT, VERSION, freeze, make_items, posts, run_enqueued, start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def enabled_product(db):
    return ProductSetting.objects.create(product=PRODUCT, default_version=VERSION)


@pytest.fixture
def operator(db):
    user = User.objects.create_user("olga", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["operate_tasks", "view_producttask", "view_catalogitem", "change_catalogitem"]
        )
    )
    return user


# --- Chunks and leases ---------------------------------------------------------------------------------


@pytest.mark.postgres_only
def test_two_runners_share_the_chunks_and_never_send_an_item_twice(use_sandbox, settings, monkeypatch):
    settings.BULK_CONCURRENCY = 4
    use_sandbox.configure(latency=0.005)
    monkeypatch.setattr(operations, "CHUNK_SIZE", 25)
    items = make_items(600, prefix="fan")
    operation = freeze(start())
    assert OperationChunk.objects.filter(operation=operation).count() == 24
    claims: list[tuple[str, int]] = []
    claim = operations._claim

    def recording_claim(op, me):
        chunk = claim(op, me)
        if chunk is not None:
            claims.append((me, chunk.pk))
        return chunk

    monkeypatch.setattr(operations, "_claim", recording_claim)
    barrier = threading.Barrier(2)

    def runner():
        barrier.wait()
        operations.operation_run(operation_id=operation.pk)

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    operation.refresh_from_db()
    assert operation.state == OperationState.DONE
    assert (operation.done, operation.skipped, operation.failed) == (600, 0, 0)
    chunk_ids = [pk for _, pk in claims]
    assert sorted(chunk_ids) == sorted(set(chunk_ids))  # no chunk claimed twice
    assert len({me for me, _ in claims}) == 2  # both runners worked
    assert [posts(use_sandbox, item.inventory_id) for item in items] == [1] * 600
    assert TaskEvent.objects.filter(operation=operation, action=EventAction.CREATE).count() == 600


def test_a_chunk_held_under_a_live_lease_is_left_alone_and_taken_over_once_it_runs_out(use_sandbox):
    items = make_items(5, prefix="lease")
    operation = freeze(start())
    Operation.objects.filter(pk=operation.pk).update(state=OperationState.RUNNING)
    OperationItem.objects.filter(operation=operation, item=items[0]).update(state=OperationItemState.DONE)
    OperationChunk.objects.filter(operation=operation).update(
        state=ChunkState.RUNNING,
        owner="other-worker",
        lease_until=timezone.now() + timezone.timedelta(minutes=1),
    )

    operations.operation_run(operation_id=operation.pk)

    operation.refresh_from_db()
    assert operation.state == OperationState.RUNNING  # its runner is alive: it finishes the operation
    assert use_sandbox.stats()["requests"] == 0

    OperationChunk.objects.filter(operation=operation).update(
        lease_until=timezone.now() - timezone.timedelta(seconds=1)
    )
    operations.operation_run(operation_id=operation.pk)

    operation.refresh_from_db()
    assert operation.state == OperationState.DONE
    # The item the dead runner finished is counted (recounted from its row) and not sent again.
    assert (operation.done, operation.failed) == (5, 0)
    assert [posts(use_sandbox, item.inventory_id) for item in items] == [0, 1, 1, 1, 1]
    assert OperationChunk.objects.get(operation=operation).state == ChunkState.FINISHED


def test_the_lease_is_renewed_while_the_runner_waits_out_a_429_storm(use_sandbox, settings):
    """429s without a usable Retry-After for 5 minutes of (fake) time, longer than the lease: the runner
    keeps renewing it while it waits, writes one history row for the 429s (not one per retry), and sends the
    item once it may."""
    settings.OPERATION_LEASE_SECONDS = 60
    settings.BULK_CONCURRENCY = 1
    use_sandbox.configure(rate_limit_rate=1.0, retry_after=0)
    item = make_items(1, prefix="storm")[0]
    operation = freeze(start())
    now = [0.0]
    leases: list = []

    def fake_sleep(seconds: float) -> None:
        now[0] += seconds
        leases.append(OperationChunk.objects.get(operation=operation).lease_until)
        if now[0] > 300:
            use_sandbox.configure(rate_limit_rate=0.0)

    operations.operation_run(operation_id=operation.pk, sleep=fake_sleep, clock=lambda: now[0])

    operation.refresh_from_db()
    assert operation.state == OperationState.DONE
    assert operation.done == 1
    limited = use_sandbox.stats()["faults"]["429"]
    assert limited > 100
    # Renewed all along: about once per second of waiting (lease_until moves on each renewal), where a
    # lease lasts 60 s.
    assert len(set(leases)) >= 270
    assert leases == sorted(leases)
    task = ProductTask.objects.get(item=item)
    assert task.status == "pending"
    # Two history rows: the first 429, then the create. None for the hundreds of retries answered 429.
    events = list(TaskEvent.objects.filter(task=task).order_by("pk").values_list("action", "status_after"))
    assert events == [(EventAction.CREATE, ""), (EventAction.CREATE, "pending")]


def test_cancel_reaches_a_runner_waiting_out_429s(use_sandbox, settings):
    settings.BULK_CONCURRENCY = 2
    use_sandbox.configure(rate_limit_rate=1.0, retry_after=0)
    make_items(3, prefix="calm")
    operation = freeze(start())
    now = [0.0]

    def fake_sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] > 20:
            operations.operation_cancel(operation=operation)

    operations.operation_run(operation_id=operation.pk, sleep=fake_sleep, clock=lambda: now[0])

    operation.refresh_from_db()
    assert operation.state == OperationState.CANCELLED
    assert OperationItem.objects.filter(operation=operation, state=OperationItemState.CANCELLED).count() == 3
    assert not ProductTask.objects.filter(status="pending").exists()


# --- Per-item cost ---------------------------------------------------------------------------------------


def test_a_created_item_costs_a_fixed_small_number_of_queries(use_sandbox, monkeypatch):
    """Pinned: the runner and the services spend 8 statements per created item, transactions included:
    insert the row already marked (3: the chunk read no row for it, and the product's kind rule uses the
    setting the runner read at its last tick), lock, save and event with the answer (5); the items' rows
    are written in one statement per batch. (This was 13 with a kind-rule read, a lock-then-insert in a
    savepoint and an UPDATE of its row per item; about 20 before that: a task read, an item read, a
    separate marking write, a health check per answer, a transaction per counter, and two empty durable
    transactions.)"""
    # A healthy upstream is written at most once a second: make that "once" for the whole test, so a slow
    # machine does not see a second write.
    monkeypatch.setattr(services, "SUCCESS_WRITE_INTERVAL", dt.timedelta(hours=1))
    make_items(12, prefix="cost")
    operation = freeze(start())
    chunk = OperationChunk.objects.get(operation=operation)
    run = operations._ChunkRun(operation, chunk, "me", sleep=lambda s: None, clock=lambda: 0.0)
    rows = list(OperationItem.objects.filter(operation=operation).select_related("item").order_by("pk"))
    operations._process(run, rows[0], None)  # the first answer also records the upstream's health
    run.flush()
    with CaptureQueriesContext(connection) as queries:
        for row in rows[1:]:
            operations._process(run, row, None)
        run.flush()
    assert len(queries.captured_queries) == 8 * 11 + 1
    assert ProductTask.objects.filter(status="pending").count() == 12
    assert OperationItem.objects.filter(operation=operation, state=OperationItemState.DONE).count() == 12


def test_a_runner_keeps_bulk_concurrency_calls_in_flight_and_no_more(use_sandbox, settings):
    """THREADS_PER_CALL threads per call: while some record answers, the others' calls are out; the gate
    holds the calls in flight at BULK_CONCURRENCY, as the sandbox counts them."""
    settings.BULK_CONCURRENCY = 3
    use_sandbox.configure(latency=0.05)
    make_items(30, prefix="gate")
    operation = freeze(start())
    operations.operation_run(operation_id=operation.pk)
    operation.refresh_from_db()
    assert (operation.state, operation.done) == (OperationState.DONE, 30)
    assert use_sandbox.stats()["max_concurrent"] == 3


def test_outcomes_are_written_in_batches_at_each_tick_and_only_over_pending_rows(use_sandbox):
    """A runner writes its items' outcomes together: when RESULT_BATCH are noted, at every tick (so the
    progress a tick counts includes them) and at the chunk's end. A row another runner already finished
    keeps its outcome, so an item is counted once whoever ran it."""
    make_items(3, prefix="batch")
    operation = freeze(start())
    Operation.objects.filter(pk=operation.pk).update(state=OperationState.RUNNING)
    chunk = OperationChunk.objects.get(operation=operation)
    OperationChunk.objects.filter(pk=chunk.pk).update(state=ChunkState.RUNNING, owner="me")
    now = [0.0]
    run = operations._ChunkRun(operation, chunk, "me", sleep=lambda s: None, clock=lambda: now[0])
    first, second, third = OperationItem.objects.filter(operation=operation).order_by("pk")
    OperationItem.objects.filter(pk=third.pk).update(state=OperationItemState.DONE)  # by another runner

    run.record(first.pk, OperationItemState.DONE, "")
    run.record(second.pk, OperationItemState.FAILED, "Vionlabs said no")
    run.record(third.pk, OperationItemState.FAILED, "too late")
    assert OperationItem.objects.filter(operation=operation, state=OperationItemState.PENDING).count() == 2
    now[0] += operations.TICK_SECONDS
    run.tick()

    states = dict(OperationItem.objects.filter(operation=operation).values_list("pk", "state"))
    assert states == {first.pk: "done", second.pk: "failed", third.pk: "done"}
    assert OperationItem.objects.get(pk=second.pk).error == "Vionlabs said no"
    operation.refresh_from_db()
    assert (operation.done, operation.failed, operation.skipped) == (2, 1, 0)


# --- Selections, tokens, the enabled rule ---------------------------------------------------------------


def test_the_admins_select_all_of_3328_items_previews_and_confirms_in_one_field(
    client, operator, use_sandbox
):
    CatalogItem.objects.bulk_create(CatalogItem(inventory_id=f"all-{i:05d}") for i in range(3328))
    client.force_login(operator)
    first = CatalogItem.objects.order_by("pk").first()
    page = client.post(
        reverse("admin:catalog_catalogitem_changelist"),
        {
            "action": "start_bulk_operation",
            "select_across": "1",
            "index": "0",
            "_selected_action": [first.pk],
        },
    )
    assert page.status_code == 200
    body = page.content.decode()
    assert "3328 items · adbreaks" in body
    assert body.count('type="hidden"') < 20
    form = dict(
        re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', body.split("operation-confirm")[1])
    )
    assert set(form) >= {"selection", "confirm_token", "expected_count", "max_item_id"}
    response = client.post(reverse("catalog:operation-create"), {**form, "reason": "everything"})
    assert response.status_code == 302
    operation = freeze(Operation.objects.get())
    assert operation.state == OperationState.RUNNING
    assert operation.total == 3328


def test_a_preview_of_3328_ticked_ids_carries_one_field(client, operator):
    CatalogItem.objects.bulk_create(CatalogItem(inventory_id=f"tick-{i:05d}") for i in range(3328))
    selection = operations.selection_create(items=list(CatalogItem.objects.values_list("pk", flat=True)))
    client.force_login(operator)
    page = client.post(
        reverse("catalog:operation-preview"),
        {"kind": "create", "product": PRODUCT, "version": VERSION, "selection": selection.token},
    )
    body = page.content.decode()
    assert "3328 items" in body
    assert f'name="selection" value="{selection.token}"' in body
    assert 'name="items"' not in body


def test_a_selection_over_the_limit_is_refused_with_the_way_out(operator, monkeypatch):
    monkeypatch.setattr(operations, "MAX_SELECTED_ITEMS", 10)
    make_items(11, prefix="big")
    with pytest.raises(operations.OperationRefused, match=r"at most 10 can be.*all matching this filter"):
        operations.selection_create(items=CatalogItem.objects.all())


def test_a_double_submitted_confirmation_shows_the_first_operation(client, operator):
    make_items(4, prefix="dbl")
    client.force_login(operator)
    data = {"kind": "create", "product": PRODUCT, "version": VERSION, "filter": "q=dbl"}
    body = client.post(reverse("catalog:operation-preview"), data).content.decode()
    form = dict(
        re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', body.split("operation-confirm")[1])
    )
    first = client.post(reverse("catalog:operation-create"), {**form, "reason": "once"})
    second = client.post(reverse("catalog:operation-create"), {**form, "reason": "once"})

    operation = Operation.objects.get()
    assert first["Location"] == second["Location"] == reverse("catalog:operation-detail", args=[operation.pk])
    assert operation.token == form["confirm_token"]
    page = client.get(second["Location"]).content.decode()
    assert f"already confirmed: operation #{operation.pk}" in page
    with pytest.raises(operations.AlreadyConfirmed):
        start(filter_query="q=dbl", token=form["confirm_token"])


def test_a_disabled_product_is_refused_in_preview_confirm_run_and_admin_actions(
    client, operator, enabled_product, use_sandbox
):
    items = make_items(3, prefix="off")
    ProductTask.objects.bulk_create(
        ProductTask(item=item, product=PRODUCT, version=VERSION, status="failed") for item in items
    )
    queued = start(filter_query="q=off")  # confirmed while enabled
    enabled_product.enabled = False
    enabled_product.save()
    client.force_login(operator)
    data = {"kind": "create", "product": PRODUCT, "version": VERSION, "filter": "q=off"}

    preview = client.post(reverse("catalog:operation-preview"), data).content.decode()
    assert "not enabled under Product settings" in preview
    assert "operation-confirm" not in preview
    confirm = client.post(
        reverse("catalog:operation-create"),
        {**data, "reason": "x", "expected_count": 3, "max_item_id": items[-1].pk, "confirm_token": "t1"},
    )
    assert "not enabled under Product settings" in confirm.content.decode()
    with pytest.raises(operations.ProductDisabled):
        start(filter_query="q=off")
    queued = run_enqueued(queued)
    assert queued.state == OperationState.FAILED
    assert "not enabled" in queued.error
    response = client.post(
        reverse("admin:catalog_producttask_changelist"),
        {"action": "create_default_version", "_selected_action": [t.pk for t in ProductTask.objects.all()]},
        follow=True,
    )
    assert "adbreaks has no enabled product setting" in response.content.decode()
    assert Operation.objects.count() == 1
    assert use_sandbox.stats()["requests"] == 0


def test_a_product_disabled_during_a_run_stops_it(use_sandbox, enabled_product):
    make_items(3, prefix="mid")
    operation = freeze(start())
    ProductSetting.objects.filter(pk=enabled_product.pk).update(enabled=False)
    operations.operation_run(operation_id=operation.pk)
    operation.refresh_from_db()
    assert operation.state == OperationState.FAILED
    assert "not enabled" in operation.error
    assert OperationItem.objects.filter(operation=operation, state=OperationItemState.CANCELLED).count() == 3
    assert use_sandbox.stats()["requests"] == 0


def test_admin_task_actions_over_many_rows_open_the_bulk_preview(client, operator):
    items = make_items(12, prefix="many")
    ProductTask.objects.bulk_create(
        ProductTask(item=item, product=PRODUCT, version=VERSION, status="pending") for item in items
    )
    client.force_login(operator)
    response = client.post(
        reverse("admin:catalog_producttask_changelist"),
        {"action": "refresh_tasks", "_selected_action": [t.pk for t in ProductTask.objects.all()]},
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "Preview: Refresh" in body
    assert "12 items · adbreaks 1.0.1" in body
    assert not Operation.objects.exists()


# --- Series and seasons ---------------------------------------------------------------------------------


def _series(prefix: str) -> tuple[CatalogItem, list[CatalogItem], list[CatalogItem]]:
    series = CatalogItem.objects.create(inventory_id=prefix, kind=ItemKind.SERIES)
    seasons, episodes = [], []
    for s in range(1, 4):
        season = CatalogItem.objects.create(
            inventory_id=f"{prefix}/s{s:02d}", kind=ItemKind.SEASON, parent=series
        )
        seasons.append(season)
        for e in range(1, 4):
            episodes.append(
                CatalogItem.objects.create(
                    inventory_id=f"{prefix}/s{s:02d}e{e:02d}", kind=ItemKind.EPISODE, parent=season
                )
            )
    return series, seasons, episodes


def test_a_series_filter_creates_tasks_for_the_episodes_only_counted_at_the_sandbox(
    client, operator, use_sandbox
):
    series, seasons, episodes = _series("sr-0003")
    _series("sr-0004")  # not matched
    have = episodes[:3]
    ProductTask.objects.bulk_create(
        ProductTask(item=item, product=PRODUCT, version=VERSION, status="done") for item in have
    )
    client.force_login(operator)
    data = {"kind": "create", "product": PRODUCT, "version": VERSION, "filter": "q=sr-0003"}
    body = client.post(reverse("catalog:operation-preview"), data).content.decode()
    assert "9 items · adbreaks" in body
    assert "1 series and 3 seasons → 9 episodes; 3 already have the task" in body
    form = dict(
        re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', body.split("operation-confirm")[1])
    )
    client.post(reverse("catalog:operation-create"), {**form, "reason": "new season"})

    operation = run_enqueued(Operation.objects.get())

    assert (operation.state, operation.total, operation.done, operation.skipped) == ("done", 9, 6, 3)
    assert posts(use_sandbox, series.inventory_id) == 0
    assert [posts(use_sandbox, season.inventory_id) for season in seasons] == [0, 0, 0]
    assert [posts(use_sandbox, episode.inventory_id) for episode in episodes] == [0, 0, 0] + [1] * 6
    assert use_sandbox.stats()["endpoints"].get("POST task") == 6


def test_a_container_the_product_applies_to_is_sent_as_itself(use_sandbox, enabled_product):
    enabled_product.applies_to = ["series", "episode"]
    enabled_product.save()
    series, seasons, episodes = _series("sr-0005")
    operation = run_enqueued(start(items=CatalogItem.objects.filter(pk=series.pk)))
    assert (operation.state, operation.total, operation.done) == ("done", 1, 1)
    assert posts(use_sandbox, series.inventory_id) == 1
    assert [posts(use_sandbox, item.inventory_id) for item in seasons + episodes] == [0] * 12


def test_an_item_the_product_stopped_applying_to_after_the_freeze_is_skipped(use_sandbox, enabled_product):
    series, _seasons, episodes = _series("sr-0006")
    operation = freeze(start(items=CatalogItem.objects.filter(pk=series.pk)))
    # The admin narrows the product to standalone items while the frozen set (episodes) waits to run.
    enabled_product.applies_to = ["standalone"]
    enabled_product.save()
    operations.operation_run(operation_id=operation.pk)
    operation.refresh_from_db()
    assert (operation.done, operation.failed, operation.skipped) == (0, 0, len(episodes))
    assert [posts(use_sandbox, item.inventory_id) for item in episodes] == [0] * len(episodes)
