"""Results links survive a status change seen by the scheduler or a webhook: one task read per change,
counted against the scheduler's budget. And tasks the product's setting no longer covers keep being synced."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import responses
from django.utils import timezone

from dashboard.catalog import sync
from dashboard.catalog.models import (
    CatalogItem,
    EventSource,
    ItemKind,
    ProductSetting,
    ProductTask,
    SyncBudget,
)

BASE = "https://vionlabs.test"
KEY = "sk-sync-links-0815"
RESULTS = {"href": f"{BASE}/results/markers/v1/asset/sr", "method": "GET"}

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def vionlabs_settings(settings):
    settings.VIONLABS_API_URL = BASE
    settings.VIONLABS_API_KEY = KEY
    settings.VIONLABS_MAX_RETRIES = 0


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def item_url(inventory_id: str) -> str:
    return f"{BASE}/tasks/catalog-item/{quote(inventory_id, safe='')}"


def task_url(inventory_id: str, product: str, version: str) -> str:
    return f"{item_url(inventory_id)}/product/{product}/version/{version}"


def listing(*entries: tuple[str, str, str]) -> list[dict]:
    return [
        {"task_status": {"status": status, "error": None}, "product": product, "version": version}
        for product, version, status in entries
    ]


def gets(mocked) -> list[str]:
    return [call.request.url.split("?")[0] for call in mocked.calls if call.request.method == "GET"]


def test_a_task_that_goes_done_through_sync_shows_its_results_link(mocked):
    item = CatalogItem.objects.create(inventory_id="film")
    task = ProductTask.objects.create(
        item=item, product="markers", version="1", status="processing",
        links=[{"name": "deactivate", "method": "DELETE", "href": f"{BASE}/tasks/x"}],
    )  # fmt: skip
    mocked.get(item_url("film"), json=listing(("markers", "1", "done")))
    mocked.get(
        task_url("film", "markers", "1"),
        json={"status": "done", "error": None, "_links": {"results": RESULTS}},
    )

    report = sync.run_cycle(inline=True)

    assert report.outcomes == {"refreshed": 1}
    task.refresh_from_db()
    assert task.status == "done"
    assert [link["name"] for link in task.links] == ["results"]
    assert gets(mocked) == [item_url("film"), task_url("film", "markers", "1")]
    # The listing and the task read both count against this minute's budget.
    assert SyncBudget.objects.get(name=sync.BUDGET_NAME).used == 2


def test_a_webhook_refresh_brings_the_results_link_too(mocked):
    item = CatalogItem.objects.create(inventory_id="film")
    task = ProductTask.objects.create(item=item, product="fingerprint", version="2", status="pending")
    mocked.get(item_url("film"), json=listing(("fingerprint", "2", "done")))
    mocked.get(
        task_url("film", "fingerprint", "2"),
        json={"status": "done", "error": None, "_links": {"results": RESULTS}},
    )

    assert sync.refresh_claimed_item(item_id=item.pk, source=EventSource.WEBHOOK) == "refreshed"

    task.refresh_from_db()
    assert (task.status, [link["name"] for link in task.links]) == ("done", ["results"])


def test_no_task_read_when_the_status_did_not_change(mocked):
    item = CatalogItem.objects.create(inventory_id="film")
    ProductTask.objects.create(item=item, product="markers", version="1", status="processing")
    mocked.get(item_url("film"), json=listing(("markers", "1", "processing")))

    sync.run_cycle(inline=True)

    assert gets(mocked) == [item_url("film")]
    assert SyncBudget.objects.get(name=sync.BUDGET_NAME).used == 1


def test_a_spent_budget_sends_no_task_read_and_keeps_the_old_links(mocked, settings):
    settings.SYNC_REQUESTS_PER_MINUTE = 1  # the listing takes the whole minute
    item = CatalogItem.objects.create(inventory_id="film")
    old = [{"name": "deactivate", "method": "DELETE", "href": f"{BASE}/tasks/x"}]
    task = ProductTask.objects.create(
        item=item, product="markers", version="1", status="processing", links=old
    )
    mocked.get(item_url("film"), json=listing(("markers", "1", "done")))

    claim = sync.claim_due_items(limit=10, cycle_start=timezone.now())
    assert claim.item_ids == [item.pk]
    sync.refresh_claimed_item(item_id=item.pk)

    task.refresh_from_db()
    assert (task.status, task.links) == ("done", old)
    assert gets(mocked) == [item_url("film")]
    assert SyncBudget.objects.get(name=sync.BUDGET_NAME).used == 1


def test_take_budget_grants_what_is_left_of_the_minute(settings):
    settings.SYNC_REQUESTS_PER_MINUTE = 5
    assert sync.take_budget(3) == 3
    assert sync.take_budget(3) == 2
    assert sync.take_budget(1) == 0
    assert sync.take_budget(0) == 0


def test_the_scheduler_keeps_refreshing_a_task_its_product_no_longer_applies_to(mocked):
    ProductSetting.objects.create(product="markers", default_version="1")  # standalone and episodes only
    series = CatalogItem.objects.create(inventory_id="sr", kind=ItemKind.SERIES)
    task = ProductTask.objects.create(item=series, product="markers", version="1", status="processing")
    mocked.get(item_url("sr"), json=listing(("markers", "1", "processing")))

    report = sync.run_cycle(inline=True)

    assert (report.claimed, report.outcomes) == (1, {"refreshed": 1})
    task.refresh_from_db()
    assert task.last_checked_at is not None
    assert task.next_check_at is not None  # still in flight: checked again later, until final
