"""Statuses are free strings: a long one is stored whole, a hostile one is a clear upstream error, and the
in-progress marker of a create or deactivate is released however the recording of the answer ends."""

from __future__ import annotations

from contextlib import contextmanager
from urllib.parse import quote

import pytest
import responses
from django.db import DatabaseError, connection
from django.urls import reverse

from dashboard.catalog import services
from dashboard.catalog.models import CatalogItem, ProductTask, TaskEvent
from dashboard.catalog.sync import refresh_claimed_item
from dashboard.vionlabs import STATUS_MAX_LENGTH, VionlabsBadResponse

BASE = "https://vionlabs.test"
KEY = "sk-status-test-secret-0042"
INVENTORY_ID = "tt0068646"
LONG_STATUS = "waiting-for-the-rights-holder-to-confirm-the-master-file-" * 4  # 228 characters
HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def vionlabs_settings(settings):
    settings.VIONLABS_API_URL = BASE
    settings.VIONLABS_API_KEY = KEY
    settings.VIONLABS_MAX_RETRIES = 0


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def item(db):
    return CatalogItem.objects.create(inventory_id=INVENTORY_ID, title="The Godfather")


def task_url(product="adbreaks", version="1.0.1"):
    return f"{BASE}/tasks/catalog-item/{quote(INVENTORY_ID, safe='')}/product/{product}/version/{version}"


def state(status, error=None):
    return {"status": status, "error": error, "_links": {}}


@contextmanager
def event_inserts_fail():
    """Make the database itself refuse every new TaskEvent row (a real DatabaseError, on either backend)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_event() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END; "
                "$$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_event BEFORE INSERT ON catalog_taskevent "
                "FOR EACH ROW EXECUTE FUNCTION refuse_event()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER refuse_event BEFORE INSERT ON catalog_taskevent "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("DROP TRIGGER refuse_event ON catalog_taskevent")
                cursor.execute("DROP FUNCTION refuse_event()")
            else:
                cursor.execute("DROP TRIGGER refuse_event")


@pytest.mark.django_db
def test_a_create_answered_with_a_long_status_stores_it_whole(mocked, item):
    mocked.post(task_url(), json=state(LONG_STATUS))
    task = services.task_create(item=item, product="adbreaks", version="1.0.1")
    task.refresh_from_db()
    assert task.status == LONG_STATUS
    assert task.action_in_progress == ""
    assert TaskEvent.objects.get(task=task).status_after == LONG_STATUS


@pytest.mark.django_db
def test_a_refresh_and_an_item_refresh_store_a_long_status_whole(mocked, item):
    task = ProductTask.objects.create(item=item, product="adbreaks", version="1.0.1", status="pending")
    mocked.get(task_url(), json=state(LONG_STATUS))
    services.task_refresh(task=task)
    task.refresh_from_db()
    assert task.status == LONG_STATUS
    other = LONG_STATUS.upper()
    mocked.get(
        f"{BASE}/tasks/catalog-item/{INVENTORY_ID}",
        json=[{"product": "adbreaks", "version": "1.0.1", "task_status": {"status": other, "error": None}}],
    )
    mocked.get(task_url(), json=state(other))  # the one read of a changed task, for its links
    assert refresh_claimed_item(item_id=item.pk) == "refreshed"
    task.refresh_from_db()
    assert task.status == other
    assert TaskEvent.objects.filter(task=task, status_before=LONG_STATUS, status_after=other).exists()


@pytest.mark.django_db
def test_the_create_view_shows_a_long_status_without_an_error(operator_client, mocked, products, item):
    mocked.post(task_url("markers", "2"), json=state(LONG_STATUS))
    response = operator_client.post(
        reverse("catalog:task-create", args=[item.pk]),
        {"product": "markers", "version": "2", "priority": "low"},
        headers=HTMX,
    )
    assert response.status_code == 200
    assert LONG_STATUS in response.content.decode()
    assert ProductTask.objects.get(item=item, product="markers").status == LONG_STATUS


@pytest.mark.django_db
@pytest.mark.parametrize(
    "status",
    ["x" * (STATUS_MAX_LENGTH + 1), "pending\x00", "pending\ud800"],
    ids=["huge", "nul", "surrogate"],
)
def test_a_status_no_database_can_store_is_a_clear_upstream_error_and_frees_the_task(mocked, item, status):
    mocked.post(task_url(), json=state(status))
    with pytest.raises(VionlabsBadResponse):
        services.task_create(item=item, product="adbreaks", version="1.0.1")
    task = ProductTask.objects.get(item=item)
    assert task.action_in_progress == ""
    assert task.status == ""
    assert task.sync_error


@pytest.mark.django_db
def test_the_marker_is_released_when_the_answer_of_a_create_cannot_be_recorded(mocked, item):
    mocked.post(task_url(), json=state("pending"))
    with event_inserts_fail(), pytest.raises(DatabaseError):
        services.task_create(item=item, product="adbreaks", version="1.0.1")
    task = ProductTask.objects.get(item=item)
    assert task.action_in_progress == ""
    assert task.action_started_at is None
    # Nothing is left blocked: the next create goes out at once.
    mocked.post(task_url(), json=state("pending"))
    assert services.task_create(item=item, product="adbreaks", version="1.0.1").status == "pending"


@pytest.mark.django_db
def test_the_marker_is_released_when_the_failure_of_a_deactivate_cannot_be_recorded(mocked, item):
    task = ProductTask.objects.create(item=item, product="adbreaks", version="1.0.1", status="done")
    mocked.delete(task_url(), status=422, json={"detail": "no"})
    with event_inserts_fail(), pytest.raises(DatabaseError):
        services.task_deactivate(task=task)
    task.refresh_from_db()
    assert task.action_in_progress == ""
    assert task.status == "done"
