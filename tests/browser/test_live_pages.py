"""Pages that never go stale, and series pages: a page left open sees others' changes without a reload (slowly
when idle, not at all while the tab is hidden); a series page lists its seasons and episodes with roll-ups;
the catalog's status filter is a choice; an operation's progress bar spans the content."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from dashboard.catalog import operations
from dashboard.catalog.models import CatalogItem, ItemKind, ProductTask
from tests.factories import make_task

from .conftest import login_as, screenshot

pytestmark = pytest.mark.browser

HIDE_TAB = """() => {
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "hidden"});
  Object.defineProperty(document, "hidden", {configurable: true, get: () => true});
  document.dispatchEvent(new Event("visibilitychange"));
}"""
SHOW_TAB = """() => {
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "visible"});
  Object.defineProperty(document, "hidden", {configurable: true, get: () => false});
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def count_polls(page) -> list[str]:
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "/poll/" in request.url else None)
    return polls


@pytest.fixture
def show(products):
    """A series with two seasons of three episodes; adbreaks done on all but one failed and one missing."""
    series = CatalogItem.objects.create(inventory_id="sr-0003", title="Night Shift", kind=ItemKind.SERIES)
    for s in (1, 2):
        season = CatalogItem.objects.create(
            inventory_id=f"sr-0003/s0{s}", title=f"Season {s}", kind=ItemKind.SEASON, parent=series
        )
        for e in (1, 2, 3):
            episode = CatalogItem.objects.create(
                inventory_id=f"sr-0003/s0{s}e0{e}", title=f"Episode {e}", kind=ItemKind.EPISODE, parent=season
            )
            if e == 3:
                continue
            make_task(episode, status="failed" if (s, e) == (2, 1) else "done")
    return series


def test_a_series_page_lists_its_seasons_and_episodes_with_badges(page, live_server, operator, show):
    login_as(page.context, live_server, operator)
    page.goto(f"/items/{show.pk}/")
    contents = page.locator(f"#contents-{show.pk}")
    expect(contents.get_by_role("heading", name="Seasons and episodes")).to_be_visible()
    season = CatalogItem.objects.get(inventory_id="sr-0003/s02")
    expect(page.locator(f"#rollup-{season.pk}-adbreaks")).to_have_text("1/3 done, 1 failed, 1 missing")
    episode = CatalogItem.objects.get(inventory_id="sr-0003/s01e01")
    expect(page.locator(f"#badge-{episode.pk}-adbreaks")).to_contain_text("done")
    expect(contents.locator("tr.item-row")).to_have_count(8)
    # No product applies to a series here: the form says why instead of offering one.
    expect(page.get_by_text("No enabled product applies to a series.")).to_be_visible()
    screenshot(page, "series-page")

    page.evaluate("window.sameDocument = true")
    contents.get_by_label("Status").select_option("failed")
    expect(contents.locator("tr.item-row")).to_have_count(1)
    expect(contents.locator("tr.item-row")).to_contain_text("sr-0003/s02e01")
    assert page.evaluate("window.sameDocument") is True
    assert "status=failed" in page.url


def test_an_idle_page_left_open_sees_a_change_made_elsewhere(page, live_server, viewer, products, settings):
    settings.DASHBOARD_IDLE_POLL_INTERVAL = 1
    item = CatalogItem.objects.create(inventory_id="idle-001")
    task = make_task(item, status="done")
    login_as(page.context, live_server, viewer)
    page.goto("/items/?q=idle-")
    page.evaluate("window.sameDocument = true")
    expect(page.get_by_text("nothing in flight here, checking every 1 s")).to_be_visible()
    badge = page.locator(f"#badge-{item.pk}-adbreaks")
    expect(badge).to_contain_text("done")

    # Another process (a colleague, the scheduler, a webhook) changes the row.
    ProductTask.objects.filter(pk=task.pk).update(status="failed", updated_at=timezone.now())

    expect(badge).to_contain_text("failed")
    assert page.evaluate("window.sameDocument") is True


def test_a_hidden_tab_does_not_poll_and_catches_up_when_shown(page, live_server, viewer, products):
    item = CatalogItem.objects.create(inventory_id="live-001")
    task = make_task(item, status="processing")
    login_as(page.context, live_server, viewer)
    page.goto(f"/items/{item.pk}/")
    polls = count_polls(page)
    expect(page.get_by_text("Live: checking every 1 s")).to_be_visible()
    page.wait_for_timeout(1500)
    assert polls, "a visible page with work in flight polls"

    page.evaluate(HIDE_TAB)
    hidden_from = len(polls)
    ProductTask.objects.filter(pk=task.pk).update(status="done", updated_at=timezone.now())
    page.wait_for_timeout(3000)  # three intervals
    assert len(polls) == hidden_from, polls[hidden_from:]
    expect(page.locator(f"#badge-{task.pk}")).to_contain_text("processing")  # not refreshed while hidden

    page.evaluate(SHOW_TAB)
    expect(page.locator(f"#badge-{task.pk}")).to_contain_text("done")
    assert len(polls) > hidden_from


def test_a_page_left_open_sees_another_operators_bulk_operation_change_its_rows(
    page, playwright_browser, live_server, viewer, operator, products, background, settings
):
    settings.DASHBOARD_IDLE_POLL_INTERVAL = 1
    items = [
        CatalogItem.objects.create(inventory_id=f"shared-{n:03d}", title=f"Shared {n}") for n in (1, 2, 3)
    ]
    login_as(page.context, live_server, viewer)
    page.goto("/items/?q=shared-")
    page.evaluate("window.sameDocument = true")
    for item in items:
        expect(page.locator(f"#badge-{item.pk}-adbreaks")).to_contain_text("not requested")

    # A colleague, in a browser of their own, runs a bulk create over the same rows.
    other = playwright_browser.new_context(base_url=live_server.url)
    try:
        login_as(other, live_server, operator)
        theirs = other.new_page()
        theirs.goto("/items/?q=shared-")
        bulk = theirs.get_by_role("group", name="Bulk operation")
        bulk.get_by_label("All 3 matching this filter").check()
        bulk.get_by_label("Action").select_option(label="Create tasks")
        bulk.get_by_label("Product").select_option(label="Ad breaks")
        bulk.get_by_role("button", name="Preview…").click()
        theirs.get_by_label(re.compile("^Reason")).fill("Ad breaks for the shared rows")
        theirs.get_by_role("button", name="Confirm: run over these 3 items").click()
        expect(theirs).to_have_url(re.compile(r"/operations/\d+/$"))
        operation_id = int(re.search(r"/operations/(\d+)/$", theirs.url).group(1))
    finally:
        other.close()
    background.once(lambda: operations.operation_work(operation_id=operation_id))  # the worker's part

    for item in items:
        expect(page.locator(f"#badge-{item.pk}-adbreaks")).not_to_contain_text("not requested")
    assert page.evaluate("window.sameDocument") is True  # no reload
    assert ProductTask.objects.filter(item__in=items, product="adbreaks").count() == 3


def test_the_status_filter_is_a_choice_of_statuses_present(page, live_server, viewer, products):
    for n, status in enumerate(["done", "failed", "quarantined"]):
        make_task(CatalogItem.objects.create(inventory_id=f"st-{n}"), status=status)
    login_as(page.context, live_server, viewer)
    page.goto("/items/")
    status = page.locator("#item-filters").get_by_label("Status")
    options = status.locator("option").all_inner_texts()
    assert options[:7] == [
        "Any status",
        "Pending",
        "Processing",
        "Done",
        "Failed",
        "Deactivated",
        "No answer yet",
    ]
    assert "quarantined" in options
    status.select_option("quarantined")
    expect(page.locator("tr.item-row")).to_have_count(1)
    expect(page.locator("tr.item-row")).to_contain_text("st-2")


def test_an_operations_progress_bar_spans_the_content(page, live_server, operator, products, background):
    for n in (1, 2):
        CatalogItem.objects.create(inventory_id=f"bar-{n}")
    login_as(page.context, live_server, operator)
    page.goto("/items/?q=bar-")
    bulk = page.get_by_role("group", name="Bulk operation")
    bulk.get_by_label("All 2 matching this filter").check()
    bulk.get_by_label("Product").select_option(label="Ad breaks")
    bulk.get_by_role("button", name="Preview…").click()
    page.get_by_label(re.compile("^Reason")).fill("bar width")
    page.get_by_role("button", name=re.compile("^Confirm")).click()
    progress = page.get_by_role("progressbar", name="Progress")
    bar = progress.bounding_box()
    content = page.locator("main").bounding_box()
    assert bar["width"] > 0.8 * content["width"], (bar, content)
    screenshot(page, "operation-progress-bar")


def test_a_hidden_tab_stops_an_operations_progress_poll_too(page, live_server, operator, products, settings):
    from dashboard.catalog.models import Operation, OperationKind, OperationState

    operation = Operation.objects.create(
        kind=OperationKind.REFRESH, reason="watching", total=3, state=OperationState.RUNNING
    )
    login_as(page.context, live_server, operator)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/progress/" in r.url else None)
    page.goto(f"/operations/{operation.pk}/")
    page.wait_for_timeout(3000)
    assert requests, "a running operation's page asks for its progress"
    page.evaluate(HIDE_TAB)
    hidden_from = len(requests)
    page.wait_for_timeout(4500)
    assert len(requests) == hidden_from, requests[hidden_from:]
