"""The catalog page's htmx interactions: active search kept in the URL, expanding a series, and the bulk
operation preview a selection leads to."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import login_as, screenshot

pytestmark = pytest.mark.browser


def item_links(page):
    """The inventory id link of each row (badges are links too)."""
    return page.locator("#item-results table a.inventory-id")


def test_search_narrows_the_list_in_place_and_the_url_can_be_shared(page, live_server, operator, catalog):
    login_as(page.context, live_server, operator)
    page.goto("/items/")
    page.evaluate("window.sameDocument = true")

    page.get_by_role("searchbox", name="Search").fill("godfather")

    expect(item_links(page)).to_have_text(["tt0068646", "tt0071562"])
    expect(page).to_have_url(re.compile(r"/items/\?.*q=godfather"))
    assert page.evaluate("window.sameDocument") is True
    screenshot(page, "catalog-search")

    page.reload()  # a bookmarked or shared link shows the same view
    expect(page.get_by_role("searchbox", name="Search")).to_have_value("godfather")
    expect(item_links(page)).to_have_text(["tt0068646", "tt0071562"])


def test_expanding_a_series_shows_its_seasons_and_episodes(page, live_server, operator, catalog):
    login_as(page.context, live_server, operator)
    page.goto("/items/?kind=series")
    expect(item_links(page)).to_have_text(["series-dark"])
    expect(page.locator("#item-results")).to_contain_text("2/3 done, 1 failed")

    page.get_by_role("button", name="Expand series-dark").click()
    expect(item_links(page)).to_have_text(["series-dark", "series-dark/s01"])
    page.get_by_role("button", name="Expand series-dark/s01").click()

    expect(item_links(page)).to_have_text(
        ["series-dark", "series-dark/s01", *(f"series-dark/s01/e{n:02d}" for n in (1, 2, 3))]
    )
    screenshot(page, "catalog-expanded")


def test_bulk_preview_shows_what_the_operation_would_touch(page, live_server, operator, catalog, sandbox):
    login_as(page.context, live_server, operator)
    page.goto("/items/?kind=episode")
    bulk = page.get_by_role("group", name="Bulk operation")

    bulk.get_by_label("All 3 matching this filter").check()
    bulk.get_by_label("Action").select_option(label="Create tasks")
    bulk.get_by_label("Product").select_option(label="Ad breaks")
    bulk.get_by_role("button", name="Preview…").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("Preview: Create tasks"))
    expect(page.get_by_role("heading", level=2)).to_have_text(re.compile(r"3 items · adbreaks 1\.0\.1"))
    expect(page.get_by_role("button", name=re.compile("Confirm: run over these 3 items"))).to_be_visible()
    screenshot(page, "operation-preview")
    assert sandbox.stats()["requests"] == 0  # a preview reads the database only
