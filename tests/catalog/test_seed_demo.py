"""seed_demo: the demo catalog, tasks in every status, the three logins, idempotence, and the sandbox path."""

from __future__ import annotations

import io
import re
import socket
import time

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.test import RequestFactory

from dashboard.catalog import services
from dashboard.catalog.models import (
    CatalogItem,
    EventSource,
    ProductSetting,
    ProductTask,
    TaskEvent,
    TaskStatus,
)


def login_request():
    # django-axes counts each attempt against the request's address: authenticate() needs a request.
    return RequestFactory().post("/login/")


def seed(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def no_api(settings):
    """Point the settings at a port where nothing listens (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.VIONLABS_API_URL = f"http://127.0.0.1:{port}"
    settings.VIONLABS_API_KEY = settings.SANDBOX_API_KEY
    return settings


def _passwords(out):
    return dict(re.findall(r"^  (admin|operator|viewer)\s+(\S+)\s", out, flags=re.MULTILINE))


@pytest.mark.django_db
def test_seed_builds_movies_and_series_with_seasons_and_episodes(no_api):
    seed()

    assert CatalogItem.objects.count() == 300
    ids = set(CatalogItem.objects.values_list("inventory_id", flat=True))
    assert "mv-0001" in ids
    assert any(re.fullmatch(r"sr-\d{4}/s\d{2}/e\d{2}", i) for i in ids)
    assert any("fail" in i for i in ids)
    episode = CatalogItem.objects.filter(kind="episode").select_related("parent__parent").first()
    assert episode.parent.kind == "season"
    assert episode.parent.parent.kind == "series"
    assert episode.inventory_id.startswith(episode.parent.inventory_id + "/")
    movie = CatalogItem.objects.get(inventory_id="mv-0001")
    assert movie.title
    assert {"year", "genres"} <= set(movie.metadata)


@pytest.mark.django_db
def test_seed_writes_tasks_in_every_status_with_one_demo_event_each(no_api):
    out, _ = seed()

    statuses = set(ProductTask.objects.values_list("status", flat=True))
    assert set(TaskStatus.values) <= statuses
    failed = ProductTask.objects.filter(status="failed")
    assert all(task.error for task in failed)
    assert failed.filter(item__inventory_id__contains="fail").exists()
    for task in ProductTask.objects.all():
        events = list(task.events.all())
        assert len(events) == 1
        assert (events[0].source, events[0].note, events[0].status_after) == (
            EventSource.IMPORT,
            "demo data",
            task.status,
        )
    assert "written directly (the sandbox at" in out
    assert "does not answer" in out


@pytest.mark.django_db
def test_seed_enables_four_products_with_their_versions(no_api):
    seed()

    enabled = dict(ProductSetting.objects.filter(enabled=True).values_list("product", "default_version"))
    assert enabled == {
        "adbreaks": "op-adbreak-v6",
        "jitthumbnails": "1.0.1",
        "fingerprint": "2.3.0",
        "scene_tags": "1.0.1",
    }
    assert ProductSetting.objects.count() == 16


@pytest.mark.django_db
def test_seed_prints_three_logins_that_work_with_their_roles(no_api):
    out, _ = seed()

    passwords = _passwords(out)
    assert set(passwords) == {"admin", "operator", "viewer"}
    admin = authenticate(login_request(), username="admin", password=passwords["admin"])
    operator = authenticate(login_request(), username="operator", password=passwords["operator"])
    viewer = authenticate(login_request(), username="viewer", password=passwords["viewer"])
    assert admin.is_superuser
    assert operator.has_perm("catalog.operate_tasks")
    assert operator.has_perm("catalog.view_catalogitem")
    assert not viewer.has_perm("catalog.operate_tasks")
    assert viewer.has_perm("catalog.view_producttask")
    assert list(operator.groups.values_list("name", flat=True)) == ["Operators"]
    assert list(viewer.groups.values_list("name", flat=True)) == ["Viewers"]


@pytest.mark.django_db
def test_seed_creates_the_groups_when_the_roles_migration_did_not(no_api):
    from django.contrib.auth.models import Group

    Group.objects.filter(name__in=["Operators", "Viewers"]).delete()

    out, _ = seed()

    operator = authenticate(login_request(), username="operator", password=_passwords(out)["operator"])
    assert operator.has_perm("catalog.operate_tasks")
    viewer = get_user_model().objects.get(username="viewer")
    assert viewer.has_perm("catalog.view_catalogitem")
    assert not viewer.has_perm("catalog.operate_tasks")


@pytest.mark.django_db
def test_seed_twice_changes_nothing(no_api):
    first_out, _ = seed()
    counts = (CatalogItem.objects.count(), ProductTask.objects.count(), TaskEvent.objects.count())
    updated = dict(CatalogItem.objects.values_list("inventory_id", "updated_at"))
    passwords = _passwords(first_out)

    out, _ = seed()

    assert (CatalogItem.objects.count(), ProductTask.objects.count(), TaskEvent.objects.count()) == counts
    assert dict(CatalogItem.objects.values_list("inventory_id", "updated_at")) == updated
    assert "password unchanged" in out
    assert authenticate(login_request(), username="admin", password=passwords["admin"]) is not None
    assert get_user_model().objects.count() == 3


@pytest.mark.django_db
def test_if_empty_does_nothing_when_items_exist(no_api):
    CatalogItem.objects.create(inventory_id="mine")

    out, _ = seed("--if-empty")

    assert "already has 1 items" in out
    assert CatalogItem.objects.count() == 1
    assert not get_user_model().objects.exists()


@pytest.mark.django_db
def test_items_option_sets_the_catalog_size(no_api):
    seed("--items", "60")

    assert CatalogItem.objects.count() == 60


@pytest.mark.django_db(transaction=True)
def test_in_flight_tasks_are_created_through_the_sandbox_and_progress(use_sandbox):
    out, _ = seed("--items", "120")

    live = ProductTask.objects.filter(
        events__note="demo data", events__action="create", requested_by__isnull=False
    )
    posts = use_sandbox.stats()["endpoints"].get("POST task", 0)
    assert posts > 0
    assert live.count() == posts
    assert "created through the API" in out
    # The sandbox knows them: a failing id ends failed there, as the brief's "fail" ids should.
    fail_task = ProductTask.objects.filter(item__inventory_id__contains="fail", status="pending").first()
    assert fail_task is not None
    assert (
        use_sandbox.task_requests(fail_task.item.inventory_id, fail_task.product, fail_task.version, "POST")
        == 1
    )
    time.sleep(0.8)  # the test sandbox finishes a task in 0.6 s
    assert services.task_refresh(task=fail_task).status == "failed"


@pytest.mark.django_db(transaction=True)
def test_demo_tasks_are_never_sent_to_an_api_that_is_not_the_sandbox(use_sandbox, settings):
    settings.VIONLABS_API_KEY = "a-real-customer-key"

    out, _ = seed("--items", "60")

    assert use_sandbox.stats()["requests"] == 0
    assert "the configured API is not the sandbox" in out
    assert ProductTask.objects.filter(status__in=TaskStatus.IN_FLIGHT).exists()


@pytest.mark.django_db(transaction=True)
def test_finished_demo_tasks_are_known_to_the_sandbox(use_sandbox):
    seed("--items", "60")

    for status in ("done", "failed", "deactivated"):
        task = ProductTask.objects.filter(status=status, events__note="demo data").first()
        refreshed = services.task_refresh(task=task)
        assert (refreshed.status, refreshed.sync_error) == (status, "")
    failed = ProductTask.objects.filter(status="failed").first()
    assert services.task_refresh(task=failed).error == failed.error


@pytest.mark.django_db(transaction=True)
def test_a_restarted_sandbox_is_told_the_tasks_again(use_sandbox):
    seed("--items", "60")
    use_sandbox.reset()  # what a restart of `make run` does to the in-memory sandbox

    out, err = seed("--if-empty")

    assert "Sandbox told about the" in out, err
    done = ProductTask.objects.filter(status="done").first()
    assert services.task_refresh(task=done).sync_error == ""
