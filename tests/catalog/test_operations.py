"""Bulk operations against the sandbox on a real port: progress counts, the skip rule, the frozen set, cancel,
retry the failures, 429s; and the operation pages. Runs use real threads, so these tests commit
(transaction=True) and run the enqueued job explicitly."""

from __future__ import annotations

import re
import threading
import time

import pytest
from django.contrib.auth.models import Permission
from django.http import QueryDict
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from dashboard.catalog import client as client_module
from dashboard.catalog import operations
from dashboard.catalog.forms import CatalogFilterForm
from dashboard.catalog.jobs import run_operation
from dashboard.catalog.models import (
    CatalogItem,
    EventSource,
    Operation,
    OperationItem,
    OperationItemState,
    OperationKind,
    OperationState,
    ProductSetting,
    ProductTask,
    Selection,
    TaskEvent,
)
from tests.factories import rebuild_role_groups

PRODUCT, VERSION = "adbreaks", "1.0.1"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def role_groups():
    """Transactional tests flush the tables, the role groups of migration 0003 included: make them again for
    the `operator` and `viewer` fixtures."""
    rebuild_role_groups()


@pytest.fixture(autouse=True)
def enabled_product(db):
    """Bulk operations act on enabled products only."""
    return ProductSetting.objects.create(product=PRODUCT, default_version=VERSION)


def make_items(n: int, prefix: str = "op") -> list[CatalogItem]:
    CatalogItem.objects.bulk_create(
        CatalogItem(inventory_id=f"{prefix}-{i:05d}", title=f"Title {i}") for i in range(n)
    )
    return list(CatalogItem.objects.filter(inventory_id__startswith=f"{prefix}-").order_by("pk"))


def start(kind=OperationKind.CREATE, items=None, **kwargs) -> Operation:
    return operations.operation_start(
        kind=kind,
        **(
            {}
            if items is None and "filter_query" in kwargs
            else {"items": items or CatalogItem.objects.all()}
        ),
        product=PRODUCT,
        version=VERSION,
        priority="low",
        reason=kwargs.pop("reason", "new season arrived"),
        **kwargs,
    )


def freeze(operation: Operation) -> Operation:
    """Freeze the set as the job does first (without running it)."""
    operations.operation_freeze(operation_id=operation.pk)
    operation.refresh_from_db()
    return operation


def run_enqueued(operation: Operation) -> Operation:
    """Run the job the confirmation enqueued, as a worker would: from its stored (JSON) arguments. It freezes
    the set, then runs every chunk itself (the jobs it fans out to are for other workers and stay queued)."""
    job = (
        DBTaskResult.objects.filter(task_path=run_operation.module_path, args_kwargs__args=[operation.pk])
        .order_by("enqueued_at")
        .first()
    )
    result = job.task_result
    run_operation.call(*result.args, **result.kwargs)
    operation.refresh_from_db()
    return operation


def posts(sandbox, inventory_id: str) -> int:
    return sandbox.task_requests(inventory_id, PRODUCT, VERSION, "POST")


def test_bulk_create_over_1000_items_counts_skips_active_keeps_the_set_frozen_and_rides_out_429s(
    use_sandbox, settings, monkeypatch
):
    """One run over 1,100 items checks what a run must get right together: the counts, the skip rule, the
    frozen set, and 429s answered by slowing down (several behaviours, one run: 1,000 creates are not free)."""
    settings.BULK_CONCURRENCY = 4
    use_sandbox.configure(rate_limit_rate=0.004, retry_after=1, seed=3)
    pauses: list[float] = []
    throttle = client_module._throttle
    original_pause = throttle.pause

    def recording_pause(seconds: float) -> None:
        pauses.append(seconds)
        original_pause(seconds)

    monkeypatch.setattr(throttle, "pause", recording_pause)
    items = make_items(1100)
    make_items(20, prefix="unrelated")
    active, failed_before = items[:100], items[100:150]
    ProductTask.objects.bulk_create(
        ProductTask(item=item, product=PRODUCT, version=VERSION, status=status)
        for item, status in zip(active, ["pending", "processing", "done", "done"] * 25, strict=True)
    )
    ProductTask.objects.bulk_create(
        ProductTask(item=item, product=PRODUCT, version=VERSION, status="failed") for item in failed_before
    )
    matching = CatalogFilterForm(data=QueryDict("q=op-")).filter_items(CatalogItem.objects.all())

    operation = start(items=matching)
    assert operation.state == OperationState.FREEZING
    late = make_items(40, prefix="op-late")  # they match the filter now, but were not confirmed
    started = time.monotonic()
    operation = run_enqueued(operation)
    elapsed = time.monotonic() - started

    assert operation.state == OperationState.DONE
    assert operation.total == 1100
    assert (operation.done, operation.skipped, operation.failed) == (1000, 100, 0)
    assert operation.processed == operation.total
    # The skip rule: nothing was sent for an item already active; everything else was created once.
    limited = use_sandbox.stats()["faults"]["429"]
    assert all(posts(use_sandbox, item.inventory_id) == 0 for item in active)
    assert sum(posts(use_sandbox, item.inventory_id) for item in items[100:]) == 1000 + limited
    assert use_sandbox.stats()["endpoints"].get("POST task") == 1000 + limited
    states = dict(
        OperationItem.objects.filter(operation=operation).values_list("item_id", "state").order_by()
    )
    assert {states[item.pk] for item in active} == {OperationItemState.SKIPPED}
    assert {states[item.pk] for item in items[100:]} == {OperationItemState.DONE}
    assert ProductTask.objects.filter(item__in=items[100:], status="pending").count() == 1000
    # The frozen set: items matching only after the confirmation were not touched.
    assert not ProductTask.objects.filter(item__in=late).exists()
    assert all(posts(use_sandbox, item.inventory_id) == 0 for item in late)
    # 429s: each paused the shared throttle for its Retry-After, the item was sent again, none failed.
    assert limited > 0
    assert len(pauses) == limited
    assert set(pauses) == {1.0}
    # Every item touched has its event naming the operation, with its reason and source.
    events = TaskEvent.objects.filter(operation=operation)
    created = events.filter(action="create", status_after="pending")
    assert created.count() == 1000
    # A 429 is recorded on the task too (sync_error and an event with the error), then the create is redone;
    # a retry answered 429 again writes no second row (a 429 storm would otherwise write one per attempt).
    limited_events = events.exclude(pk__in=created)
    limited_items = set(limited_events.values_list("task__item_id", flat=True))
    assert 0 < limited_events.count() == len(limited_items) <= limited
    assert all("slow down" in error for error in limited_events.values_list("error", flat=True))
    assert set(created.values_list("task__item_id", flat=True)) == {item.pk for item in items[100:]}
    assert set(created.values_list("source", "note").distinct()) == {(EventSource.BULK, "new season arrived")}
    print(f"\n1,100 items: 1,000 created, 100 skipped, {limited} answers of 429 ridden out; {elapsed:.1f} s")


def test_the_freeze_refuses_a_selection_that_changed_since_the_preview_before_sending(use_sandbox):
    make_items(20, prefix="prev")
    form = CatalogFilterForm(data=QueryDict("q=prev"))
    preview = operations.operation_preview(
        kind=OperationKind.CREATE, items=form.filter_items(CatalogItem.objects.all()), product=PRODUCT,
        version=VERSION,
    )  # fmt: skip
    CatalogItem.objects.filter(inventory_id="prev-00003").delete()
    operation = start(filter_query="q=prev", expected_count=preview.count, max_item_id=preview.max_item_id)
    operation = run_enqueued(operation)
    assert operation.state == OperationState.FAILED
    assert "19 items match now, not 20" in operation.error
    assert "Nothing was sent" in operation.error
    assert use_sandbox.stats()["requests"] == 0
    assert not OperationItem.objects.filter(operation=operation, state=OperationItemState.PENDING).exists()
    # Items created after the preview are outside it even when the count happens to agree again.
    make_items(1, prefix="prev-new")
    operation = start(filter_query="q=prev", expected_count=19, max_item_id=preview.max_item_id)
    assert freeze(operation).total == 19
    assert operation.state == OperationState.RUNNING


def test_cancel_midway_stops_between_items_and_cancels_the_rest(use_sandbox, settings):
    settings.BULK_CONCURRENCY = 4
    use_sandbox.configure(latency=0.01)  # long enough to cancel while most items are still pending
    make_items(1000, prefix="cancel")
    operation = start()
    runner = threading.Thread(target=run_enqueued, args=(operation,))
    runner.start()
    deadline = time.monotonic() + 30
    while Operation.objects.get(pk=operation.pk).processed < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    operations.operation_cancel(operation=operation)
    runner.join(timeout=30)
    assert not runner.is_alive()

    operation.refresh_from_db()
    cancelled = OperationItem.objects.filter(operation=operation, state=OperationItemState.CANCELLED).count()
    assert operation.state == OperationState.CANCELLED
    assert operation.finished_at is not None
    assert 100 <= operation.processed < 1000
    assert operation.processed + cancelled == 1000
    assert not OperationItem.objects.filter(operation=operation, state=OperationItemState.PENDING).exists()
    # No request was sent for a cancelled item, and every processed item was sent once.
    assert use_sandbox.stats()["endpoints"].get("POST task") == operation.done
    print(f"\ncancelled after {operation.processed} of 1000 items; {cancelled} cancelled")


def test_cancel_while_freezing_cancels_at_once_and_nothing_runs(use_sandbox):
    make_items(10, prefix="early")
    operation = operations.operation_cancel(operation=start())
    assert operation.state == OperationState.CANCELLED
    operation = run_enqueued(operation)
    assert operation.state == OperationState.CANCELLED
    assert not OperationItem.objects.filter(operation=operation).exists()
    assert use_sandbox.stats()["requests"] == 0


def test_cancel_before_the_run_starts_cancels_everything(use_sandbox):
    make_items(10, prefix="early")
    operation = freeze(start())
    operation = operations.operation_cancel(operation=operation)
    assert operation.state == OperationState.CANCELLING
    operation = run_enqueued(operation)
    assert operation.state == OperationState.CANCELLED
    assert OperationItem.objects.filter(operation=operation, state=OperationItemState.CANCELLED).count() == 10
    assert use_sandbox.stats()["requests"] == 0
    with pytest.raises(operations.OperationRefused, match="already ended"):
        operations.operation_cancel(operation=operation)


def test_retry_the_failures_makes_a_new_operation_of_the_failed_items(use_sandbox, settings):
    settings.BULK_CONCURRENCY = 4
    # 503s on POST: the client does not resend a create, the service settles it with a GET (404: not
    # created), and the item fails with a message. Seeded, so the same items fail on every run.
    use_sandbox.configure(error_rate=0.05, seed=11)
    items = make_items(300, prefix="retry")
    first = run_enqueued(start())
    failed_ids = set(
        OperationItem.objects.filter(operation=first, state=OperationItemState.FAILED).values_list(
            "item_id", flat=True
        )
    )
    assert first.state == OperationState.DONE
    assert first.failed == len(failed_ids) > 0
    assert first.done + first.failed == 300
    errors = set(
        OperationItem.objects.filter(operation=first, state="failed").values_list("error", flat=True)
    )
    assert all(error for error in errors)

    use_sandbox.configure(error_rate=0.0)
    retry = operations.operation_retry_failures(operation=first)
    assert retry.params["retry_of"] == first.pk
    assert retry.params["selection"] == "failures"
    retry = run_enqueued(retry)
    assert retry.total == len(failed_ids)
    assert set(OperationItem.objects.filter(operation=retry).values_list("item_id", flat=True)) == failed_ids

    assert (retry.state, retry.done, retry.failed, retry.skipped) == (
        OperationState.DONE,
        len(failed_ids),
        0,
        0,
    )
    created = ProductTask.objects.filter(item__in=items, product=PRODUCT, version=VERSION, status="pending")
    assert created.count() == 300
    with pytest.raises(operations.OperationRefused, match="no failed items"):
        operations.operation_retry_failures(operation=retry)


# --- Pages ---------------------------------------------------------------------------------------------


def test_viewer_can_see_operations_but_not_start_or_cancel_one(client, viewer, use_sandbox):
    make_items(3, prefix="v")
    operation = start()
    client.force_login(viewer)
    assert client.get(reverse("catalog:operation-list")).status_code == 200
    assert client.get(reverse("catalog:operation-detail", args=[operation.pk])).status_code == 200
    assert client.get(reverse("catalog:operation-progress", args=[operation.pk])).status_code == 200
    data = {"kind": "create", "product": PRODUCT, "version": VERSION, "items": [1]}
    assert client.post(reverse("catalog:operation-preview"), data).status_code == 403
    assert client.post(reverse("catalog:operation-create"), {**data, "reason": "x"}).status_code == 403
    assert client.post(reverse("catalog:operation-cancel", args=[operation.pk])).status_code == 403
    assert client.post(reverse("catalog:operation-retry-failures", args=[operation.pk])).status_code == 403
    assert Operation.objects.get(pk=operation.pk).state == OperationState.FREEZING
    assert Operation.objects.count() == 1


def test_preview_shows_count_breakdown_and_sample_then_confirm_freezes_and_enqueues(client, operator):
    items = make_items(30, prefix="pv")
    ProductTask.objects.create(item=items[0], product=PRODUCT, version=VERSION, status="done")
    ProductTask.objects.create(item=items[1], product=PRODUCT, version=VERSION, status="failed")
    client.force_login(operator)
    data = {"kind": "create", "product": PRODUCT, "version": VERSION, "priority": "high", "filter": "q=pv-"}
    page = client.post(reverse("catalog:operation-preview"), data)
    assert page.status_code == 200
    body = page.content.decode()
    assert "30 items" in body
    assert "<td>no task yet</td><td>28</td>" in body
    assert "<td>done</td><td>1</td>" in body
    assert "<td>failed</td><td>1</td>" in body
    assert "1 of them would be skipped" in body
    assert "pv-00000" in body
    assert "pv-00009" in body
    assert "pv-00010" not in body
    assert 'name="expected_count" value="30"' in body
    token = re.search(r'name="confirm_token" value="([^"]+)"', body).group(1)

    without_reason = client.post(
        reverse("catalog:operation-create"),
        {**data, "expected_count": 30, "max_item_id": items[-1].pk, "confirm_token": token},
    )
    assert without_reason.status_code == 200
    assert "Give a reason" in without_reason.content.decode()
    assert not Operation.objects.exists()

    response = client.post(
        reverse("catalog:operation-create"),
        {
            **data,
            "expected_count": 30,
            "max_item_id": items[-1].pk,
            "reason": "  launch  ",
            "confirm_token": token,
        },
    )
    operation = Operation.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("catalog:operation-detail", args=[operation.pk])
    assert (operation.state, operation.reason, operation.created_by) == ("freezing", "launch", operator)
    assert operation.params == {
        "product": PRODUCT, "version": VERSION, "priority": "high", "selection": "filter", "filter": "q=pv-",
        "expected_count": 30, "max_item_id": items[-1].pk,
    }  # fmt: skip
    job = DBTaskResult.objects.get(task_path=run_operation.module_path)
    # Ids only, and the request's id so the job's log lines can be traced back to it.
    assert job.args_kwargs == {"args": [operation.pk], "kwargs": {"request_id": response["X-Request-ID"]}}
    assert freeze(operation).total == 30


def test_preview_explains_a_bad_selection(client, operator):
    client.force_login(operator)
    response = client.post(reverse("catalog:operation-preview"), {"kind": "create", "product": PRODUCT})
    assert response.status_code == 200
    assert "Select at least one item" in response.content.decode()
    response = client.post(
        reverse("catalog:operation-preview"),
        {"kind": "create", "product": PRODUCT, "version": VERSION, "items": ["1", "x"]},
    )
    assert "not an item id" in response.content.decode()


def test_progress_fragment_polls_only_while_the_operation_runs(client, viewer, use_sandbox):
    make_items(5, prefix="pg")
    operation = freeze(start())
    client.force_login(viewer)
    url = reverse("catalog:operation-progress", args=[operation.pk])
    running = client.get(url, headers={"HX-Request": "true"})
    assert 'hx-trigger="every' in running.content.decode()
    assert "0 of 5" in running.content.decode()

    run_enqueued(operation)
    ended = client.get(url, headers={"HX-Request": "true"})
    assert "hx-trigger" not in ended.content.decode()
    assert "5 of 5" in ended.content.decode()


def test_operation_pages_run_a_constant_number_of_queries(client, viewer, django_assert_max_num_queries):
    make_items(5, prefix="q")
    for _ in range(30):
        operation = start()
    freeze(operation)
    OperationItem.objects.filter(operation=operation).update(state="failed", error="boom")
    client.force_login(viewer)
    with django_assert_max_num_queries(8):
        assert client.get(reverse("catalog:operation-list")).status_code == 200
    with django_assert_max_num_queries(10):
        assert client.get(reverse("catalog:operation-detail", args=[operation.pk])).status_code == 200
    with django_assert_max_num_queries(5):
        assert client.get(reverse("catalog:operation-progress", args=[operation.pk])).status_code == 200


def test_admin_bulk_action_opens_the_preview_for_the_selected_items(client, operator):
    from dashboard.catalog.models import ProductSetting

    operator.is_staff = True
    operator.save()
    operator.user_permissions.add(Permission.objects.get(codename="view_catalogitem"))
    ProductSetting.objects.filter(product=PRODUCT).update(position=5)  # emotions is the first enabled one
    ProductSetting.objects.create(product="emotions", default_version="2.0", default_priority="medium")
    items = make_items(5, prefix="adm")
    client.force_login(operator)
    response = client.post(
        reverse("admin:catalog_catalogitem_changelist"),
        {"action": "start_bulk_operation", "_selected_action": [items[1].pk, items[3].pk]},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "2 items · emotions 2.0" in body
    # The selection is kept on the server: one field carries it.
    assert 'name="items"' not in body
    token = re.search(r'name="selection" value="([^"]+)"', body).group(1)
    selection = Selection.objects.get(token=token)
    assert set(selection.rows.values_list("item_id", flat=True)) == {items[1].pk, items[3].pk}
    assert 'name="priority" value="medium"' in body
    assert not Operation.objects.exists()  # nothing runs before the confirmation


def test_the_last_poll_brings_the_failures_and_the_retry_button_without_a_reload(
    client, operator, use_sandbox
):
    make_items(4, prefix="fin")
    operation = freeze(start())
    client.force_login(operator)
    url = reverse("catalog:operation-progress", args=[operation.pk])
    assert "Retry the" not in client.get(url).content.decode()
    OperationItem.objects.filter(operation=operation, item__inventory_id="fin-00002").update(
        state="failed", error="Vionlabs could not be reached: HTTP 503"
    )
    OperationItem.objects.filter(operation=operation, state="pending").update(state="done")
    Operation.objects.filter(pk=operation.pk).update(state=OperationState.DONE, done=3, failed=1)

    body = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in body
    assert "Retry the 1 failure" in body
    assert "fin-00002" in body
    assert "Vionlabs could not be reached: HTTP 503" in body
    assert "Cancel the rest" not in body


@pytest.mark.parametrize("version", ["1.0\x00", "1.0\x07", ".."])
def test_preview_refuses_a_version_that_cannot_be_sent_in_words(client, operator, version):
    items = make_items(2)
    client.force_login(operator)
    response = client.post(
        reverse("catalog:operation-preview"),
        {"kind": "create", "product": PRODUCT, "version": version, "items": [str(i.pk) for i in items]},
    )
    assert response.status_code == 200
    assert "cannot be sent to Vionlabs" in response.content.decode()


def test_a_confirmation_without_the_preview_numbers_asks_to_check_the_preview(client, operator):
    items = make_items(2)
    client.force_login(operator)
    data = {"kind": "create", "product": PRODUCT, "version": VERSION, "reason": "r", "expected_count": "two"}
    response = client.post(reverse("catalog:operation-create"), {**data, "items": [str(i.pk) for i in items]})
    assert response.status_code == 200
    assert "Check the preview before confirming." in response.content.decode()
    assert not Operation.objects.exists()
