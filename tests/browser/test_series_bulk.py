"""A bulk create over a series filter, for a product that applies to episodes only (adbreaks, the default
standalone + episode), run end to end: the catalog's form, the preview naming the series and seasons that
stand for their episodes, the confirmation, a worker's run, and the POSTs counted where they land (the
sandbox): none for the series or its seasons, one for each episode that lacked the task."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from dashboard.catalog import operations, services
from dashboard.catalog.models import CatalogItem, ItemKind, Operation, OperationState

from .conftest import login_as, screenshot

pytestmark = pytest.mark.browser

PRODUCT = "adbreaks"
VERSION = "1.0.1"


def posts(sandbox, inventory_id: str) -> int:
    return sandbox.task_requests(inventory_id, PRODUCT, VERSION, "POST")


@pytest.fixture
def night_watch(products):
    """sr-0042: three seasons of three episodes, plus a series the filter does not match. Season 3's episodes
    carry ids of their own (as a catalog may give them): `q=sr-0042` matches them only through their season."""
    series = CatalogItem.objects.create(inventory_id="sr-0042", title="Night Watch", kind=ItemKind.SERIES)
    seasons, episodes = [], []
    for s in (1, 2, 3):
        season = CatalogItem.objects.create(
            inventory_id=f"sr-0042/s{s:02d}", title=f"Season {s}", kind=ItemKind.SEASON, parent=series
        )
        seasons.append(season)
        for e in (1, 2, 3):
            episodes.append(
                CatalogItem.objects.create(
                    inventory_id=f"sr-0042/s{s:02d}e{e:02d}" if s < 3 else f"nw-s03e{e:02d}",
                    title=f"Episode {e}",
                    kind=ItemKind.EPISODE,
                    parent=season,
                )
            )
    other = CatalogItem.objects.create(inventory_id="sr-0043", title="Day Shift", kind=ItemKind.SERIES)
    CatalogItem.objects.create(
        inventory_id="sr-0043/s01e01",
        kind=ItemKind.EPISODE,
        parent=CatalogItem.objects.create(inventory_id="sr-0043/s01", kind=ItemKind.SEASON, parent=other),
    )
    return series, seasons, episodes


def test_a_bulk_create_over_a_series_filter_posts_once_per_episode_lacking_the_task(
    page, live_server, operator, products, night_watch, sandbox, background
):
    series, seasons, episodes = night_watch
    assert products[0].product == PRODUCT
    assert products[0].applies_to == ["standalone", "episode"]  # the default: not series, not seasons
    # One episode per season already has an active task, created at the sandbox as any operator would.
    had = [episodes[0], episodes[4], episodes[8]]
    for episode in had:
        services.task_create(item=episode, product=PRODUCT, version=VERSION, actor=operator)
    lacked = [episode for episode in episodes if episode not in had]
    everything = [series, *seasons, *episodes]
    before = {item.inventory_id: posts(sandbox, item.inventory_id) for item in everything}
    assert before == {item.inventory_id: 1 if item in had else 0 for item in everything}
    posts_before = sandbox.stats()["endpoints"].get("POST task", 0)

    login_as(page.context, live_server, operator)
    page.goto("/items/?q=sr-0042")
    expect(page.locator("#item-count")).to_have_text("10 items match this filter.")
    bulk = page.get_by_role("group", name="Bulk operation")
    bulk.get_by_label("All 10 matching this filter").check()
    bulk.get_by_label("Action").select_option(label="Create tasks")
    bulk.get_by_label("Product").select_option(label="Ad breaks")
    bulk.get_by_label("Version").fill(VERSION)
    bulk.get_by_role("button", name="Preview…").click()

    # The 10 matches are the series, its 3 seasons and 6 of its episodes: the containers stand for their
    # episodes, season 3's included, and for no season or series of their own.
    expect(page.get_by_role("heading", name=f"9 items · {PRODUCT} {VERSION}")).to_be_visible()
    expect(page.locator(".coverage-note")).to_contain_text(
        "1 series and 3 seasons → 9 episodes; 3 already have the task"
    )
    expect(page.get_by_text("3 of them would be skipped")).to_be_visible()
    page.get_by_label(re.compile("^Reason")).fill("Ad breaks for Night Watch, all seasons")
    screenshot(page, "series-bulk-preview")
    page.get_by_role("button", name="Confirm: run over these 9 items").click()

    expect(page).to_have_url(re.compile(r"/operations/\d+/$"))
    operation = Operation.objects.get()
    background.once(lambda: operations.operation_work(operation_id=operation.pk))  # the worker's part
    progress = page.locator(f"#progress-{operation.pk}")
    expect(progress).to_contain_text("Done · 9 of 9 (100%)")

    # Counted where the requests land, against the counts before the operator's first click.
    sent = {
        item.inventory_id: posts(sandbox, item.inventory_id) - before[item.inventory_id]
        for item in everything
    }
    assert sent[series.inventory_id] == 0
    assert [sent[season.inventory_id] for season in seasons] == [0, 0, 0]
    assert [sent[episode.inventory_id] for episode in had] == [0, 0, 0]
    assert [sent[episode.inventory_id] for episode in lacked] == [1] * 6
    assert sandbox.stats()["endpoints"].get("POST task", 0) - posts_before == 6  # nothing sent anywhere else
    expect(progress).to_contain_text("6 done, 3 skipped, 0 failed.")
    operation.refresh_from_db()
    assert (operation.state, operation.done, operation.skipped, operation.failed) == (
        OperationState.DONE,
        6,
        3,
        0,
    )
