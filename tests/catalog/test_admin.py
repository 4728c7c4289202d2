"""Django admin: constant query counts, read-only history, and task actions that go through the services."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import quote

import pytest
import responses
from django.urls import reverse
from django.utils import timezone

from dashboard.catalog.admin import ADMIN_ACTION_LIMIT
from dashboard.catalog.models import (
    CatalogItem,
    EventAction,
    EventSource,
    ItemKind,
    Operation,
    OperationItem,
    ProductSetting,
    ProductTask,
    TaskEvent,
    UpstreamHealth,
)
from tests.factories import make_user

BASE = "https://vionlabs.test"


@pytest.fixture(autouse=True)
def vionlabs_settings(settings):
    settings.VIONLABS_API_URL = BASE
    settings.VIONLABS_API_KEY = "admin-test-key"
    settings.VIONLABS_MAX_RETRIES = 0


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def task_url(task):
    return (
        f"{BASE}/tasks/catalog-item/{quote(task.item.inventory_id, safe='')}/product/{task.product}"
        f"/version/{quote(task.version, safe='')}"
    )


def state(status):
    return {"status": status, "error": None, "_links": {}}


# Staff users with exactly the permissions the admin checks (not the role groups, which also see the app's
# other models): what an admin page shows depends on each one.
@pytest.fixture
def staff_operator(db):
    return make_user(
        "operator", staff=True, permissions=("view_producttask", "view_catalogitem", "operate_tasks")
    )


@pytest.fixture
def staff_viewer(db):
    return make_user("viewer", staff=True, permissions=("view_producttask", "view_catalogitem"))


def add_rows(count, *, start=0, user=None):
    """`count` items, each with a parent, two tasks with events, and an operation item: every relation the
    changelists display, so a missing select_related shows up as a query per row."""
    series = CatalogItem.objects.get_or_create(inventory_id="series", defaults={"kind": ItemKind.SERIES})[0]
    operation = Operation.objects.get_or_create(kind="create", reason="test", defaults={"created_by": user})[
        0
    ]
    for n in range(start, start + count):
        item = CatalogItem.objects.create(inventory_id=f"ep/{n}", kind=ItemKind.EPISODE, parent=series)
        for product in ("adbreaks", "markers"):
            task = ProductTask.objects.create(
                item=item, product=product, version="1.0", status="pending", requested_by=user
            )
            TaskEvent.objects.create(
                task=task, action=EventAction.CREATE, status_after="pending", actor=user, operation=operation
            )
        OperationItem.objects.create(operation=operation, item=item)


CHANGELISTS = [
    "catalog_catalogitem_changelist",
    "catalog_producttask_changelist",
    "catalog_taskevent_changelist",
    "catalog_operation_changelist",
    "catalog_operationitem_changelist",
    "catalog_productsetting_changelist",
    "catalog_upstreamhealth_changelist",
]


@pytest.mark.parametrize("name", CHANGELISTS)
def test_changelist_query_count_does_not_grow_with_rows(
    admin_client, admin_user, django_assert_num_queries, name
):
    url = reverse(f"admin:{name}")
    ProductSetting.objects.create(product="adbreaks", default_version="1.0")
    UpstreamHealth.objects.create(name="vionlabs")
    add_rows(2, user=admin_user)
    admin_client.get(url)  # warm caches (content types, session) so both measured requests start alike
    with django_assert_num_queries(QUERIES[name]) as small:
        assert admin_client.get(url).status_code == 200

    add_rows(9, start=2, user=admin_user)
    ProductSetting.objects.create(product="markers", default_version="2.0")
    with django_assert_num_queries(QUERIES[name]) as large:
        response = admin_client.get(url)

    assert response.status_code == 200
    assert len(small.captured_queries) == len(large.captured_queries)


# Session, user, count and page, plus the distinct values of the free-string filters (status, version).
QUERIES = {
    "catalog_catalogitem_changelist": 5,
    "catalog_producttask_changelist": 6,
    "catalog_taskevent_changelist": 4,
    "catalog_operation_changelist": 5,
    "catalog_operationitem_changelist": 5,
    "catalog_productsetting_changelist": 5,
    "catalog_upstreamhealth_changelist": 5,
}


def test_item_change_page_query_count_does_not_grow_with_its_tasks(admin_client, django_assert_num_queries):
    parent = CatalogItem.objects.create(inventory_id="series", kind=ItemKind.SERIES)
    item = CatalogItem.objects.create(inventory_id="ep/1", kind=ItemKind.EPISODE, parent=parent)
    url = reverse("admin:catalog_catalogitem_change", args=[item.pk])
    ProductTask.objects.create(item=item, product="adbreaks", version="1", status="done")
    admin_client.get(url)
    with django_assert_num_queries(ITEM_CHANGE_QUERIES):
        assert admin_client.get(url).status_code == 200

    for product in ("markers", "nudity", "emotions", "semantic", "similar"):
        ProductTask.objects.create(item=item, product=product, version="1", status="pending")
    with django_assert_num_queries(ITEM_CHANGE_QUERIES):
        response = admin_client.get(url)

    assert response.status_code == 200
    assert response.content.count(b"similar") >= 1


ITEM_CHANGE_QUERIES = 5


# --- actions --------------------------------------------------------------------------------------------


def run_action(client, action, tasks, model="producttask"):
    url = reverse(f"admin:catalog_{model}_changelist")
    data = {"action": action, "_selected_action": [task.pk for task in tasks]}
    response = client.post(url, data, follow=True)
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def item(db):
    return CatalogItem.objects.create(inventory_id="tt0111161/4k", title="Movie")


def make_task(item, product="adbreaks", version="1.0.1", status="pending"):
    checked = timezone.now() - dt.timedelta(hours=1)
    return ProductTask.objects.create(
        item=item, product=product, version=version, status=status, last_checked_at=checked
    )


def test_refresh_action_calls_the_service_and_reports_each_row(client, staff_operator, item, mocked):
    changing = make_task(item, product="adbreaks")
    failing = make_task(item, product="markers")
    mocked.get(task_url(changing), json=state("done"))
    mocked.get(task_url(failing), status=503)
    client.force_login(staff_operator)

    messages = run_action(client, "refresh_tasks", [changing, failing])

    assert any("adbreaks" in m and "pending → done" in m for m in messages)
    assert any("markers" in m and "failed: Vionlabs failed with HTTP 503" in m for m in messages)
    assert "Refresh: 1 done, 0 skipped, 1 failed of 2." in messages
    changing.refresh_from_db()
    failing.refresh_from_db()
    assert (changing.status, failing.status) == ("done", "pending")
    event = changing.events.get()
    assert (event.actor, event.source) == (staff_operator, EventSource.ADMIN)
    assert failing.events.get().action == EventAction.SYNC_FAILED


def test_deactivate_action_skips_refused_rows_and_deactivates_the_rest(client, staff_operator, item, mocked):
    live = make_task(item, product="adbreaks", status="processing")
    gone = make_task(item, product="markers", status="deactivated")
    mocked.delete(task_url(live), json=state("deactivated"))
    client.force_login(staff_operator)

    messages = run_action(client, "deactivate_tasks", [live, gone])

    assert any("markers" in m and "skipped" in m and "already deactivated" in m for m in messages)
    assert "Deactivate: 1 done, 1 skipped, 0 failed of 2." in messages
    assert len(mocked.calls) == 1
    live.refresh_from_db()
    assert live.status == "deactivated"


def test_create_default_version_action_creates_once_per_item_and_product(
    client, staff_operator, item, mocked
):
    ProductSetting.objects.create(product="adbreaks", default_version="2.0", default_priority="high")
    old = make_task(item, product="adbreaks", version="1.0.1", status="done")
    older = make_task(item, product="adbreaks", version="0.9", status="failed")
    unset = make_task(item, product="nudity", version="1", status="failed")
    mocked.post(
        f"{BASE}/tasks/catalog-item/tt0111161%2F4k/product/adbreaks/version/2.0", json=state("pending")
    )
    client.force_login(staff_operator)

    messages = run_action(client, "create_default_version", [old, older, unset])

    [post] = mocked.calls
    assert json.loads(post.request.body) == {"priority": "high"}
    created = ProductTask.objects.get(item=item, product="adbreaks", version="2.0")
    assert (created.status, created.requested_by) == ("pending", staff_operator)
    assert any("nudity" in m and "no enabled product setting" in m for m in messages)
    assert "Create: 1 done, 1 skipped, 0 failed of 2." in messages


def test_item_action_creates_tasks_for_every_enabled_product(client, staff_operator, item, mocked):
    ProductSetting.objects.create(product="adbreaks", default_version="2.0")
    ProductSetting.objects.create(product="markers", default_version="m1")
    ProductSetting.objects.create(product="nudity", default_version="n1", enabled=False)
    mocked.post(
        f"{BASE}/tasks/catalog-item/tt0111161%2F4k/product/adbreaks/version/2.0", json=state("pending")
    )
    mocked.post(f"{BASE}/tasks/catalog-item/tt0111161%2F4k/product/markers/version/m1", json=state("pending"))
    client.force_login(staff_operator)

    messages = run_action(client, "create_default_tasks", [item], model="catalogitem")

    assert "Create: 2 done, 0 skipped, 0 failed of 2." in messages
    assert set(ProductTask.objects.values_list("product", "version")) == {
        ("adbreaks", "2.0"),
        ("markers", "m1"),
    }


def test_actions_need_the_operate_permission(client, staff_viewer, item, mocked):
    task = make_task(item)
    client.force_login(staff_viewer)
    url = reverse("admin:catalog_producttask_changelist")

    page = client.get(url)
    messages = run_action(client, "refresh_tasks", [task])

    assert page.status_code == 200
    assert b"refresh_tasks" not in page.content
    assert len(mocked.calls) == 0
    assert not any("Refresh:" in m for m in messages)
    assert not task.events.exists()


def test_operators_see_the_actions(client, staff_operator, item):
    make_task(item)
    client.force_login(staff_operator)

    page = client.get(reverse("admin:catalog_producttask_changelist"))

    for action in ("refresh_tasks", "deactivate_tasks", "create_default_version"):
        assert action.encode() in page.content


def test_an_action_on_too_many_rows_is_refused_before_any_call(client, staff_operator, mocked):
    item = CatalogItem.objects.create(inventory_id="many")
    tasks = [make_task(item, version=str(n)) for n in range(ADMIN_ACTION_LIMIT + 1)]
    client.force_login(staff_operator)

    messages = run_action(client, "refresh_tasks", tasks)

    # Over the limit, the rows would go to the bulk preview; these span several versions, which one bulk
    # operation cannot: the action says so and calls nothing.
    assert any(f"More than {ADMIN_ACTION_LIMIT}" in m and "one product and version" in m for m in messages)
    assert len(mocked.calls) == 0


# --- read-only records ----------------------------------------------------------------------------------


def test_task_history_cannot_be_added_changed_or_deleted(admin_client, item):
    task = make_task(item)
    event = TaskEvent.objects.create(task=task, action=EventAction.REFRESH, status_after="pending")

    assert admin_client.get(reverse("admin:catalog_taskevent_add")).status_code == 403
    change = admin_client.get(reverse("admin:catalog_taskevent_change", args=[event.pk]))
    assert change.status_code == 200
    assert b'name="_save"' not in change.content
    assert (
        admin_client.post(
            reverse("admin:catalog_taskevent_change", args=[event.pk]), {"note": "x"}
        ).status_code
        == 403
    )
    assert (
        admin_client.post(
            reverse("admin:catalog_taskevent_delete", args=[event.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert TaskEvent.objects.filter(pk=event.pk, note="").exists()


def test_task_rows_are_not_edited_by_hand(admin_client, item):
    task = make_task(item)

    assert admin_client.get(reverse("admin:catalog_producttask_add")).status_code == 403
    admin_client.post(reverse("admin:catalog_producttask_change", args=[task.pk]), {"status": "done"})
    assert (
        admin_client.post(
            reverse("admin:catalog_producttask_delete", args=[task.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    task.refresh_from_db()
    assert task.status == "pending"


@pytest.mark.parametrize(
    "name", ["catalog_operation_add", "catalog_operationitem_add", "catalog_upstreamhealth_add"]
)
def test_operations_and_upstream_health_are_read_only(admin_client, name):
    assert admin_client.get(reverse(f"admin:{name}")).status_code == 403


def test_product_settings_are_edited_in_the_list(admin_client):
    setting = ProductSetting.objects.create(product="adbreaks", default_version="1.0", position=3)
    url = reverse("admin:catalog_productsetting_changelist")
    data = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-0-id": str(setting.pk),
        "form-0-enabled": "on",
        "form-0-position": "1",
        "form-0-default_version": "2.0",
        "form-0-default_priority": "medium",
        "_save": "Save",
    }

    response = admin_client.post(url, data)

    assert response.status_code == 302
    setting.refresh_from_db()
    assert (setting.position, setting.default_version, setting.default_priority) == (1, "2.0", "medium")


def test_item_search_finds_by_inventory_id_and_title(admin_client):
    CatalogItem.objects.create(inventory_id="tt-needle", title="Alpha")
    CatalogItem.objects.create(inventory_id="tt-other", title="Needle in title")
    CatalogItem.objects.create(inventory_id="tt-none", title="Nothing")

    page = admin_client.get(reverse("admin:catalog_catalogitem_changelist"), {"q": "needle"})

    assert page.context["cl"].result_count == 2


def test_inventory_id_cannot_be_renamed_once_created(admin_client, item):
    page = admin_client.get(reverse("admin:catalog_catalogitem_change", args=[item.pk]))

    assert b'name="inventory_id"' not in page.content
