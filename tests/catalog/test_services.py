"""The service layer against a real database, with Vionlabs faked at the HTTP boundary by `responses`."""

from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import quote, quote_plus

import pytest
import requests
import responses
from django.db import transaction
from django.utils import timezone

from dashboard.catalog import services
from dashboard.catalog.client import get_client
from dashboard.catalog.models import (
    CatalogItem,
    EventAction,
    EventSource,
    ProductTask,
    TaskEvent,
    UpstreamHealth,
)
from dashboard.vionlabs import TaskState, VionlabsNotFound, VionlabsRejected, VionlabsUnavailable

BASE = "https://vionlabs.test"
KEY = "sk-test-very-secret-4711"
INVENTORY_ID = "tt0111161/4k Director's cut"


@pytest.fixture(autouse=True)
def vionlabs_settings(settings):
    settings.VIONLABS_API_URL = BASE
    settings.VIONLABS_API_KEY = KEY
    # No retries: each registered answer is used exactly once, and no backoff sleeps slow the tests.
    settings.VIONLABS_MAX_RETRIES = 0


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def item(db):
    return CatalogItem.objects.create(inventory_id=INVENTORY_ID, title="The Shawshank Redemption")


def task_url(product="adbreaks", version="1.0.1", inventory_id=INVENTORY_ID):
    return (
        f"{BASE}/tasks/catalog-item/{quote(inventory_id, safe='')}/product/{quote(product, safe='')}"
        f"/version/{quote(version, safe='')}"
    )


def item_url(inventory_id=INVENTORY_ID):
    return f"{BASE}/tasks/catalog-item/{quote(inventory_id, safe='')}"


def state(status, error=None, links=None):
    return {"status": status, "error": error, "_links": links or {}}


def make_task(item, *, status="pending", product="adbreaks", version="1.0.1", **fields):
    checked = fields.pop("last_checked_at", timezone.now() - dt.timedelta(hours=1))
    return ProductTask.objects.create(
        item=item, product=product, version=version, status=status, last_checked_at=checked, **fields
    )


def calls(mocked, method):
    return [call for call in mocked.calls if call.request.method == method]


def health():
    return UpstreamHealth.objects.get(name="vionlabs")


# --- create ---------------------------------------------------------------------------------------------


# known_new: a bulk run that read no row for the task inserts it at once; the outcome is the same.
@pytest.mark.parametrize("known_new", [False, True])
def test_create_posts_the_priority_and_records_the_task_and_its_event(mocked, item, operator, known_new):
    links = {"self": {"href": f"{BASE}/tasks/x?key={KEY}&page=2", "method": "GET"}}
    mocked.post(task_url(), json=state("pending", links=links))

    task = services.task_create(
        item=item, product="adbreaks", version="1.0.1", priority="high", actor=operator, note="launch",
        known_new=known_new,
    )  # fmt: skip

    [post] = calls(mocked, "POST")
    assert json.loads(post.request.body) == {"priority": "high"}
    task.refresh_from_db()
    assert (task.status, task.priority, task.requested_by, task.sync_error) == (
        "pending",
        "high",
        operator,
        "",
    )
    assert task.last_checked_at is not None
    assert task.status_changed_at is not None
    assert task.action_in_progress == ""
    assert task.links == [{"name": "self", "method": "GET", "href": f"{BASE}/tasks/x"}]
    [event] = task.events.all()
    assert (event.action, event.actor, event.source) == (EventAction.CREATE, operator, EventSource.USER)
    assert (event.status_before, event.status_after, event.note) == ("", "pending", "launch")
    assert health().last_success_at is not None


# known_new=True: the caller read no row a moment ago, but one was added since: the insert finds it and the
# locking read decides as it does without the hint.
@pytest.mark.parametrize("known_new", [False, True])
@pytest.mark.parametrize("status", ["pending", "processing", "done"])
def test_create_refuses_a_task_that_is_already_active_without_calling_vionlabs(
    mocked, item, status, known_new
):
    make_task(item, status=status)

    with pytest.raises(services.TaskAlreadyActive, match=f"already {status}"):
        services.task_create(item=item, product="adbreaks", version="1.0.1", known_new=known_new)

    assert len(mocked.calls) == 0
    assert not TaskEvent.objects.exists()
    assert ProductTask.objects.get().action_in_progress == ""


@pytest.mark.parametrize("known_new", [False, True])
def test_create_refuses_while_another_action_is_under_way(mocked, item, known_new):
    make_task(item, status="failed", action_in_progress="deactivate", action_started_at=timezone.now())

    with pytest.raises(services.ActionInProgress, match="already under way"):
        services.task_create(item=item, product="adbreaks", version="1.0.1", known_new=known_new)

    assert len(mocked.calls) == 0


def test_create_takes_over_a_marker_abandoned_by_a_dead_process(mocked, item):
    stale = timezone.now() - services.ABANDONED_AFTER - dt.timedelta(seconds=1)
    make_task(item, status="failed", action_in_progress="create", action_started_at=stale)
    mocked.get(task_url(), status=404, json={"detail": "Not found"})
    mocked.post(task_url(), json=state("pending"))

    task = services.task_create(item=item, product="adbreaks", version="1.0.1")

    assert task.status == "pending"
    assert (task.action_in_progress, task.action_started_at) == ("", None)


# --- An abandoned marker is settled by a read (issue 9, item 9) ---------------------------------------------


def _abandoned(item, action, status="failed"):
    stale = timezone.now() - services.ABANDONED_AFTER - dt.timedelta(seconds=1)
    return make_task(item, status=status, action_in_progress=action, action_started_at=stale)


def _methods(mocked):
    return [call.request.method for call in mocked.calls]


@pytest.mark.parametrize("found", ["pending", "processing", "done"])
def test_create_over_an_abandoned_create_reads_first_and_records_a_found_task_without_a_post(
    mocked, item, found
):
    _abandoned(item, "create")
    mocked.get(task_url(), json=state(found))
    mocked.post(task_url(), json=state("pending"))

    task = services.task_create(item=item, product="adbreaks", version="1.0.1")

    assert _methods(mocked) == ["GET"]
    assert task.status == found
    assert (task.action_in_progress, task.action_started_at) == ("", None)
    event = TaskEvent.objects.filter(task=task).latest("pk")
    assert "interrupted" in event.note
    assert "nothing was sent again" in event.note


def test_create_over_an_abandoned_create_posts_only_after_a_404(mocked, item):
    _abandoned(item, "create")
    mocked.get(task_url(), status=404, json={"detail": "Not found"})
    mocked.post(task_url(), json=state("pending"))

    task = services.task_create(item=item, product="adbreaks", version="1.0.1")

    assert _methods(mocked) == ["GET", "POST"]
    assert task.status == "pending"


def test_create_over_an_abandoned_create_sends_nothing_when_the_read_fails(mocked, item):
    _abandoned(item, "create")
    mocked.get(task_url(), status=503)
    mocked.post(task_url(), json=state("pending"))

    with pytest.raises(VionlabsUnavailable):
        services.task_create(item=item, product="adbreaks", version="1.0.1")

    assert _methods(mocked) == ["GET"]
    task = ProductTask.objects.get(item=item)
    assert task.sync_error.startswith(services.OUTCOME_UNKNOWN)
    assert (task.action_in_progress, task.action_started_at) == ("", None)
    assert ProductTask.objects.needs_sync().filter(pk=task.pk).exists()


def test_retry_over_an_abandoned_retry_records_the_task_it_started_without_a_post(mocked, item):
    task = _abandoned(item, "retry")
    mocked.get(task_url(), json=state("processing"))
    mocked.post(task_url(), json=state("pending"))

    task = services.task_retry(task=task)

    assert _methods(mocked) == ["GET"]
    assert task.status == "processing"


def test_create_over_an_abandoned_create_that_left_the_task_failed_posts_after_the_read(mocked, item):
    _abandoned(item, "create")
    mocked.get(task_url(), json=state("failed"))
    mocked.post(task_url(), json=state("pending"))

    task = services.task_create(item=item, product="adbreaks", version="1.0.1")

    assert _methods(mocked) == ["GET", "POST"]
    assert task.status == "pending"


def test_deactivate_over_an_abandoned_deactivate_reads_first_and_sends_no_delete_when_done(mocked, item):
    task = _abandoned(item, "deactivate", status="processing")
    mocked.get(task_url(), json=state("deactivated"))
    mocked.delete(task_url(), json=state("deactivated"))

    task = services.task_deactivate(task=task)

    assert _methods(mocked) == ["GET"]
    assert task.status == "deactivated"
    assert (task.action_in_progress, task.action_started_at) == ("", None)


def test_deactivate_over_an_abandoned_deactivate_sends_the_delete_when_the_task_still_runs(mocked, item):
    task = _abandoned(item, "deactivate", status="processing")
    mocked.get(task_url(), json=state("processing"))
    mocked.delete(task_url(), json=state("deactivated"))

    task = services.task_deactivate(task=task)

    assert _methods(mocked) == ["GET", "DELETE"]
    assert task.status == "deactivated"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"product": "teleport"}, "Unknown product"),
        ({"version": "  "}, "version is required"),
        ({"version": "v" * 101}, "too long"),
        ({"priority": "urgent"}, "Unknown priority"),
        ({"version": ".."}, "cannot be sent"),
        ({"version": "1.0\n"}, "no control characters"),
    ],
)
def test_create_refuses_bad_input_before_writing_anything(mocked, item, fields, message):
    args = {"product": "adbreaks", "version": "1.0.1", "priority": "low", **fields}

    with pytest.raises(services.ActionRefused, match=message):
        services.task_create(item=item, **args)

    assert not ProductTask.objects.exists()
    assert len(mocked.calls) == 0


def test_a_rejected_create_keeps_the_row_records_the_error_and_reraises_it(mocked, item):
    mocked.post(
        task_url(), status=422, json={"detail": [{"loc": ["path", "version"], "msg": "unknown version"}]}
    )

    with pytest.raises(VionlabsRejected) as raised:
        services.task_create(item=item, product="adbreaks", version="1.0.1")

    task = ProductTask.objects.get()
    assert task.status == ""
    assert task.sync_error == str(raised.value)
    assert "unknown version" in task.sync_error
    assert task.action_in_progress == ""
    [event] = task.events.all()
    assert (event.action, event.error) == (EventAction.CREATE, str(raised.value))
    # Vionlabs answered: it is reachable, even though it said no.
    assert health().failing_since is None


# --- the ambiguous create: a GET settles it, never a second POST -----------------------------------------


def test_an_ambiguous_create_found_by_the_follow_up_read_counts_as_created(mocked, item, operator):
    mocked.post(task_url(), body=requests.ReadTimeout("read timed out"))
    mocked.get(task_url(), json=state("pending"))

    task = services.task_create(item=item, product="adbreaks", version="1.0.1", actor=operator)

    assert len(calls(mocked, "POST")) == 1
    assert len(calls(mocked, "GET")) == 1
    assert (task.status, task.sync_error, task.requested_by) == ("pending", "", operator)
    [event] = task.events.all()
    assert event.action == EventAction.CREATE
    assert "so the create succeeded" in event.note


def test_an_ambiguous_create_that_vionlabs_does_not_know_is_reported_as_not_created(mocked, item):
    mocked.post(task_url(), status=502)
    mocked.get(task_url(), status=404, json={"detail": "Not Found"})

    with pytest.raises(services.TaskNotCreated, match="The task was not created"):
        services.task_create(item=item, product="adbreaks", version="1.0.1")

    assert len(calls(mocked, "POST")) == 1
    task = ProductTask.objects.get()
    assert task.status == ""
    assert "was not created" in task.sync_error
    assert task.action_in_progress == ""
    [event] = task.events.all()
    assert "was not created" in event.error


def test_an_ambiguous_create_whose_read_also_fails_keeps_the_status_and_says_the_outcome_is_unknown(
    mocked, item
):
    make_task(item, status="failed")
    mocked.post(task_url(), status=503)
    mocked.get(task_url(), body=requests.ConnectionError("connection reset"))

    with pytest.raises(VionlabsUnavailable) as raised:
        services.task_create(item=item, product="adbreaks", version="1.0.1")

    assert raised.value.outcome_unknown is True
    assert len(calls(mocked, "POST")) == 1
    task = ProductTask.objects.get()
    assert task.status == "failed"
    assert task.sync_error.startswith("Outcome unknown")
    assert "A refresh will settle it" in task.sync_error
    assert task.events.get().action == EventAction.CREATE
    assert health().failing_since is not None


def test_an_ambiguous_retry_that_still_reads_failed_is_reported_as_not_created(mocked, item):
    task = make_task(item, status="failed", error="missing S3 asset")
    mocked.post(task_url(), status=500)
    mocked.get(task_url(), json=state("failed", error="missing S3 asset"))

    with pytest.raises(services.TaskNotCreated, match="shows the task failed"):
        services.task_retry(task=task)

    assert len(calls(mocked, "POST")) == 1
    task.refresh_from_db()
    assert task.status == "failed"
    assert "was not created" in task.sync_error


# --- retry ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["failed", "deactivated"])
def test_retry_posts_again_for_a_failed_or_deactivated_task(mocked, item, operator, status):
    task = make_task(item, status=status, priority="medium")
    mocked.post(task_url(), json=state("pending"))

    task = services.task_retry(task=task, actor=operator, source=EventSource.BULK)

    [post] = calls(mocked, "POST")
    assert json.loads(post.request.body) == {"priority": "medium"}
    assert task.status == "pending"
    event = task.events.get()
    assert (event.action, event.source, event.status_before, event.status_after) == (
        EventAction.RETRY,
        EventSource.BULK,
        status,
        "pending",
    )


def test_retry_refuses_a_task_that_has_not_failed(mocked, item):
    task = make_task(item, status="processing")

    with pytest.raises(services.ActionRefused, match="Only a failed or deactivated task"):
        services.task_retry(task=task)

    assert len(mocked.calls) == 0


# --- deactivate -----------------------------------------------------------------------------------------


def test_deactivate_sends_delete_and_records_the_new_status(mocked, item, operator):
    task = make_task(item, status="processing")
    mocked.delete(task_url(), json=state("deactivated"))

    task = services.task_deactivate(task=task, actor=operator, note="wrong cut")

    assert len(calls(mocked, "DELETE")) == 1
    task.refresh_from_db()
    assert (task.status, task.action_in_progress) == ("deactivated", "")
    event = task.events.get()
    assert (event.action, event.status_before, event.status_after, event.note) == (
        EventAction.DEACTIVATE,
        "processing",
        "deactivated",
        "wrong cut",
    )


def test_deactivating_a_task_vionlabs_does_not_have_says_so_and_keeps_the_status(mocked, item):
    task = make_task(item, status="pending")
    mocked.delete(task_url(), status=404, json={"detail": "Not Found"})

    with pytest.raises(VionlabsNotFound):
        services.task_deactivate(task=task)

    task.refresh_from_db()
    assert task.status == "pending"
    assert "Vionlabs has no task adbreaks 1.0.1" in task.sync_error
    assert "nothing was deactivated" in task.events.get().error


def test_an_ambiguous_deactivate_is_settled_by_a_read(mocked, item):
    task = make_task(item, status="processing")
    mocked.delete(task_url(), body=requests.ConnectionError("reset by peer"))
    mocked.get(task_url(), json=state("deactivated"))

    task = services.task_deactivate(task=task)

    assert len(calls(mocked, "DELETE")) == 1
    assert (task.status, task.sync_error) == ("deactivated", "")
    assert "took effect" in task.events.get().note


def test_deactivate_refuses_an_already_deactivated_task(mocked, item):
    task = make_task(item, status="deactivated")

    with pytest.raises(services.ActionRefused, match="already deactivated"):
        services.task_deactivate(task=task)

    assert len(mocked.calls) == 0


# --- refresh --------------------------------------------------------------------------------------------


def test_refresh_records_a_status_change_with_its_time_and_event(mocked, item):
    task = make_task(item, status="pending", status_changed_at=timezone.now() - dt.timedelta(days=1))
    before_change = task.status_changed_at
    mocked.get(task_url(), json=state("failed", error="probe could not decode the video"))

    task = services.task_refresh(task=task, source=EventSource.SYNC)

    task.refresh_from_db()
    assert (task.status, task.error) == ("failed", "probe could not decode the video")
    assert task.status_changed_at > before_change
    event = task.events.get()
    assert (event.action, event.source, event.status_before, event.status_after, event.actor) == (
        EventAction.REFRESH,
        EventSource.SYNC,
        "pending",
        "failed",
        None,
    )


def test_refresh_without_change_keeps_status_changed_at_and_notes_no_change(mocked, item):
    changed = timezone.now() - dt.timedelta(days=1)
    task = make_task(item, status="processing", status_changed_at=changed)
    mocked.get(task_url(), json=state("processing"))

    task = services.task_refresh(task=task)

    task.refresh_from_db()
    assert task.status_changed_at == changed
    assert task.last_checked_at > changed
    assert task.events.get().note == "No change."


def test_an_unknown_status_is_stored_as_it_comes(mocked, item):
    task = make_task(item, status="pending")
    mocked.get(task_url(), json=state("queued_for_gpu"))

    task = services.task_refresh(task=task)

    assert task.status == "queued_for_gpu"
    assert not task.is_final
    assert not task.is_in_flight


def test_an_upstream_failure_keeps_the_last_known_status_and_records_it_everywhere(mocked, item):
    task = make_task(item, status="processing")
    checked = task.last_checked_at
    mocked.get(task_url(), status=503)

    with pytest.raises(VionlabsUnavailable) as raised:
        services.task_refresh(task=task)

    task.refresh_from_db()
    assert (task.status, task.last_checked_at) == ("processing", checked)
    assert task.sync_error == str(raised.value)
    assert task.sync_error_at is not None
    event = task.events.get()
    assert (event.action, event.status_before, event.status_after, event.error) == (
        EventAction.SYNC_FAILED,
        "processing",
        "processing",
        str(raised.value),
    )
    assert health().failing_since is not None
    assert health().consecutive_failures == 1
    assert health().last_error == str(raised.value)


def test_the_next_success_clears_the_sync_error_and_the_failing_since(mocked, item):
    task = make_task(item, status="processing")
    mocked.get(task_url(), status=500)
    with pytest.raises(VionlabsUnavailable):
        services.task_refresh(task=task)
    mocked.replace(responses.GET, task_url(), json=state("done"))

    task = services.task_refresh(task=task)

    assert (task.status, task.sync_error, task.sync_error_at) == ("done", "", None)
    assert health().failing_since is None
    assert health().consecutive_failures == 0


def test_an_older_answer_never_overwrites_a_newer_one(mocked, item):
    task = make_task(item, status="pending")
    newer = timezone.now() + dt.timedelta(seconds=30)

    def newer_answer_lands_meanwhile(request):
        # While our GET is in flight, another worker records a later answer.
        ProductTask.objects.filter(pk=task.pk).update(status="done", last_checked_at=newer)
        return 200, {}, json.dumps(state("processing"))

    mocked.add_callback(responses.GET, task_url(), callback=newer_answer_lands_meanwhile)

    task = services.task_refresh(task=task)

    task.refresh_from_db()
    assert (task.status, task.last_checked_at) == ("done", newer)
    event = task.events.get()
    assert (event.status_before, event.status_after) == ("done", "done")
    assert "newer answer had already been recorded" in event.note


def test_a_read_sent_while_a_deactivate_is_under_way_does_not_decide_the_status(mocked, item):
    # The GET may be served before the DELETE it overlaps; only the DELETE's own answer can be trusted.
    task = make_task(
        item, status="pending", action_in_progress="deactivate", action_started_at=timezone.now()
    )
    mocked.get(task_url(), json=state("processing"))

    task = services.task_refresh(task=task, source=EventSource.SYNC)

    task.refresh_from_db()
    assert task.status == "pending"
    assert task.action_in_progress == "deactivate"
    event = task.events.get()
    assert event.action == EventAction.REFRESH
    assert "while a deactivate was under way" in event.note


def test_item_refresh_leaves_rows_with_a_change_under_way_alone(mocked, item):
    busy = make_task(
        item, product="adbreaks", status="", action_in_progress="create", action_started_at=timezone.now()
    )
    idle = make_task(item, product="markers", status="pending")
    mocked.get(
        item_url(),
        json=item_tasks(("adbreaks", "1.0.1", "pending", None), ("markers", "1.0.1", "done", None)),
    )

    services.item_refresh(item=item)

    busy.refresh_from_db()
    idle.refresh_from_db()
    assert (busy.status, idle.status) == ("", "done")
    assert not busy.events.exists()


def test_item_refresh_updates_a_row_whose_marker_was_abandoned(mocked, item):
    stale = timezone.now() - services.ABANDONED_AFTER - dt.timedelta(seconds=1)
    task = make_task(item, status="", action_in_progress="create", action_started_at=stale)
    mocked.get(item_url(), json=item_tasks(("adbreaks", "1.0.1", "pending", None)))

    services.item_refresh(item=item)

    task.refresh_from_db()
    assert task.status == "pending"


def test_an_unexpected_error_during_the_call_releases_the_marker(mocked, item):
    mocked.post(task_url(), body=KeyError("a bug"))

    with pytest.raises(KeyError):
        services.task_create(item=item, product="adbreaks", version="1.0.1")

    task = ProductTask.objects.get()
    assert (task.action_in_progress, task.action_started_at) == ("", None)


# --- item refresh ---------------------------------------------------------------------------------------


def item_tasks(*entries):
    return [
        {"task_status": {"status": status, "error": error}, "product": product, "version": version}
        for product, version, status, error in entries
    ]


def test_item_refresh_updates_every_row_with_one_call_and_discovers_unknown_tasks(mocked, item):
    changing = make_task(item, product="adbreaks", version="1.0.1", status="pending")
    unchanged = make_task(item, product="markers", version="2", status="processing")
    unlisted = make_task(item, product="nudity", version="1", status="done")
    mocked.get(
        item_url(),
        json=item_tasks(
            ("adbreaks", "1.0.1", "done", None),
            ("markers", "2", "processing", None),
            ("emotions", "op-v6", "failed", "unsupported video length"),
        ),
    )
    mocked.get(task_url("adbreaks", "1.0.1"), json=state("done"))

    tasks = services.item_refresh(item=item)

    # One listing, and one read of the task whose status changed (for its links); none for the others.
    assert [call.request.url.split("?")[0] for call in mocked.calls] == [
        item_url(),
        task_url("adbreaks", "1.0.1"),
    ]
    assert [(t.product, t.version, t.status) for t in tasks] == [
        ("adbreaks", "1.0.1", "done"),
        ("emotions", "op-v6", "failed"),
        ("markers", "2", "processing"),
        ("nudity", "1", "done"),
    ]
    changing.refresh_from_db()
    unchanged.refresh_from_db()
    unlisted.refresh_from_db()
    assert changing.status == "done"
    assert unchanged.last_checked_at > unlisted.last_checked_at
    found = ProductTask.objects.get(product="emotions")
    assert (found.status, found.error) == ("failed", "unsupported video length")
    events = {(e.task.product, e.action, e.status_before, e.status_after) for e in TaskEvent.objects.all()}
    # Events for changes and discoveries only: the scheduler's quiet polls leave no history.
    assert events == {
        ("adbreaks", EventAction.REFRESH, "pending", "done"),
        ("emotions", EventAction.DISCOVER, "", "failed"),
    }
    assert all(e.source == EventSource.SYNC for e in TaskEvent.objects.all())


def test_item_refresh_yields_to_a_row_inserted_by_someone_else_meanwhile(mocked, item):
    def another_refresh_discovers_it_first(request):
        ProductTask.objects.create(
            item=item,
            product="emotions",
            version="op-v6",
            status="processing",
            last_checked_at=timezone.now(),
        )
        return 200, {}, json.dumps(item_tasks(("emotions", "op-v6", "pending", None)))

    mocked.add_callback(responses.GET, item_url(), callback=another_refresh_discovers_it_first)

    [task] = services.item_refresh(item=item)

    assert task.status == "processing"  # theirs is newer than our answer: kept
    assert ProductTask.objects.get().status == "processing"
    assert not TaskEvent.objects.filter(action=EventAction.DISCOVER).exists()


def test_item_refresh_failure_marks_every_row_once_per_distinct_error(mocked, item):
    first = make_task(item, product="adbreaks", status="pending")
    second = make_task(item, product="markers", status="done")
    mocked.get(item_url(), status=503)

    for _ in range(2):
        with pytest.raises(VionlabsUnavailable):
            services.item_refresh(item=item)

    for task in (first, second):
        task.refresh_from_db()
        assert task.sync_error.startswith("Vionlabs failed with HTTP 503")
        assert task.events.get().action == EventAction.SYNC_FAILED
    assert (first.status, second.status) == ("pending", "done")
    assert health().consecutive_failures == 2


# --- guards ---------------------------------------------------------------------------------------------


def test_calling_vionlabs_inside_a_transaction_is_refused_before_any_request(mocked, item):
    task = make_task(item, status="pending")
    mocked.get(task_url(), json=state("done"))

    with pytest.raises(services.HttpInsideTransaction), transaction.atomic():
        services.task_refresh(task=task)

    assert len(mocked.calls) == 0


def test_a_create_inside_a_transaction_is_refused_before_anything_is_written(mocked, item):
    with transaction.atomic():
        with pytest.raises(services.HttpInsideTransaction):
            services.task_create(item=item, product="adbreaks", version="1.0.1")
        # Checked inside the caller's transaction: nothing was written that its commit would keep.
        assert not ProductTask.objects.exists()

    assert len(mocked.calls) == 0


def test_the_guard_allows_calls_outside_a_transaction(db):
    services.ensure_no_transaction()


def test_the_api_key_never_reaches_the_database(mocked, item):
    links = {
        "result": {"href": f"{BASE}/results/1?key={KEY}", "method": "GET"},
        "login": {"href": f"https://user:{KEY}@vionlabs.test/x", "method": "GET"},
    }
    mocked.post(task_url(), json=state("failed", error=f"asset unreadable with key {KEY}", links=links))
    mocked.get(task_url(), status=500, body=f"internal error for key={KEY}")
    mocked.get(item_url(), status=401)

    task = services.task_create(item=item, product="adbreaks", version="1.0.1")
    assert task.links == [
        {"name": "result", "method": "GET", "href": f"{BASE}/results/1"},
        {"name": "login", "method": "GET", "href": "https://vionlabs.test/x"},
    ]
    assert task.error == "asset unreadable with key [redacted]"
    with pytest.raises(VionlabsUnavailable):
        services.task_refresh(task=task)
    with pytest.raises(Exception, match="refused the API key"):
        services.item_refresh(item=item)

    stored = [
        *ProductTask.objects.values_list("links", "sync_error", "error"),
        *TaskEvent.objects.values_list("error", "note"),
        *UpstreamHealth.objects.values_list("last_error"),
    ]
    assert KEY not in json.dumps(stored, default=str)
    assert "refused the API key" in ProductTask.objects.get().sync_error


def test_get_client_is_shared_and_follows_the_settings(settings):
    first = get_client()
    assert get_client() is first
    settings.VIONLABS_TIMEOUT = 3.0
    assert get_client() is not first


def test_a_healthy_upstream_is_not_rewritten_on_every_success(db):
    services.record_upstream_success()
    first = health().last_success_at

    services.record_upstream_success()

    assert health().last_success_at == first
    services.record_upstream_failure(VionlabsUnavailable("down"))
    services.record_upstream_success()
    assert health().failing_since is None
    assert health().last_success_at > first


def test_item_refresh_reads_a_changed_task_once_for_its_new_links(mocked, item):
    changed = make_task(item, product="adbreaks", version="1.0.1", status="pending")
    same = make_task(item, product="markers", version="2", status="processing")
    old_links = [{"name": "deactivate", "method": "DELETE", "href": "https://v.test/tasks/x"}]
    ProductTask.objects.filter(pk__in=[changed.pk, same.pk]).update(links=old_links)
    listing = item_tasks(("adbreaks", "1.0.1", "done", None), ("markers", "2", "processing", None))
    mocked.get(item_url(), json=listing)
    results = {"results": {"href": "https://v.test/results/adbreaks/1", "method": "GET"}}
    mocked.get(task_url("adbreaks", "1.0.1"), json=state("done", links=results))

    services.item_refresh(item=item)
    # A second refresh sees no change: no further task read.
    services.item_refresh(item=item)

    changed.refresh_from_db()
    same.refresh_from_db()
    assert (changed.status, changed.links) == (
        "done",
        [{"name": "results", "method": "GET", "href": "https://v.test/results/adbreaks/1"}],
    )
    assert same.links == old_links
    assert len(calls(mocked, "GET")) == 3  # two listings, one task read
    assert TaskEvent.objects.filter(task=changed).count() == 1  # the change, once


def test_item_refresh_keeps_the_stored_links_when_the_task_read_fails(mocked, item):
    changed = make_task(item, status="pending")
    old_links = [{"name": "self", "method": "GET", "href": "https://v.test/tasks/x"}]
    ProductTask.objects.filter(pk=changed.pk).update(links=old_links)
    mocked.get(item_url(), json=item_tasks(("adbreaks", "1.0.1", "done", None)))
    mocked.get(task_url(), body=requests.ConnectionError("reset"))

    services.item_refresh(item=item)

    changed.refresh_from_db()
    assert (changed.status, changed.links) == ("done", old_links)


def test_item_refresh_reads_no_more_tasks_than_it_is_allowed(mocked, item):
    for product in ("adbreaks", "markers", "nudity"):
        make_task(item, product=product, version="1", status="pending")
    mocked.get(
        item_url(), json=item_tasks(*[(p, "1", "done", None) for p in ("adbreaks", "markers", "nudity")])
    )
    for product in ("adbreaks", "markers", "nudity"):
        mocked.get(task_url(product, "1"), json=state("done"))
    asked = []

    services.item_refresh(item=item, link_reads=lambda n: asked.append(n) or 1)

    assert asked == [3]
    assert len(calls(mocked, "GET")) == 2  # the listing and the one read granted


ENCODED_KEY = "sk/odd key+&=%?#'\"\\x"


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda key: quote(key, safe=""), id="quote"),
        pytest.param(quote_plus, id="quote_plus"),
        pytest.param(
            lambda key: re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(key, safe="")),
            id="lowercase-hex",
        ),
    ],
)
def test_an_encoded_key_echoed_by_vionlabs_is_stored_redacted(settings, mocked, item, encode):
    settings.VIONLABS_API_KEY = ENCODED_KEY
    encoded = encode(ENCODED_KEY)
    links = {
        # The key in the path, URL-encoded: the query string is dropped anyway, the path is kept.
        "result": {"href": f"{BASE}/results/{encoded}/1?key={encoded}", "method": "GET"},
    }
    mocked.post(task_url(), json=state("failed", error=f"asset unreadable (key {encoded})", links=links))

    task = services.task_create(item=item, product="adbreaks", version="1.0.1")

    task.refresh_from_db()
    event = TaskEvent.objects.get(task=task)
    stored = [task.error, json.dumps(task.links), event.error]
    assert task.error == "asset unreadable (key [redacted])"
    assert task.links == [{"name": "result", "method": "GET", "href": f"{BASE}/results/[redacted]/1"}]
    assert event.error == task.error
    for text in stored:
        assert encoded not in text
        assert ENCODED_KEY not in text


def test_an_encoded_key_in_an_item_listing_error_is_stored_redacted(settings, mocked, item):
    settings.VIONLABS_API_KEY = ENCODED_KEY
    make_task(item, status="pending")
    listing = [
        {
            "product": "adbreaks",
            "version": "1.0.1",
            "task_status": {
                "status": "failed",
                "error": f"fetch failed: https://cdn.test/{quote_plus(ENCODED_KEY)}/a.mp4",
            },
        }
    ]
    mocked.get(item_url(), json=listing)

    services.item_refresh(item=item)

    task = ProductTask.objects.get(item=item)
    assert task.error == "fetch failed: https://cdn.test/[redacted]/a.mp4"
    assert TaskEvent.objects.get(task=task).error == task.error


def test_a_read_sent_while_a_deactivate_was_in_flight_cannot_overwrite_it(mocked, item, operator):
    """Such a read may have been served before the DELETE took effect; once the deactivate is recorded and its
    marker cleared, its "done" must be dropped as older than the deactivate's own answer."""
    task = make_task(item, status="done")
    in_flight: list[dt.datetime] = []

    def answer_delete(request):
        in_flight.append(timezone.now())  # a read sent now, by the scheduler say, is "observed" at this time
        return (200, {}, json.dumps(state("deactivated")))

    mocked.add_callback(responses.DELETE, task_url(), callback=answer_delete)
    services.task_deactivate(task=task, actor=operator)

    task.refresh_from_db()
    assert task.status == "deactivated"
    assert task.last_checked_at > in_flight[0]
    stale_read = services._answer_from_state(TaskState(status="done"))
    with transaction.atomic():
        locked = ProductTask.objects.select_for_update().get(pk=task.pk)
        assert not services._apply(locked, stale_read, in_flight[0])
    assert ProductTask.objects.get(pk=task.pk).status == "deactivated"
