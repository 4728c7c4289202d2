"""The overview's coverage follows each product's `applies_to`, reads the trigger-kept counts, and its live
regions refresh; the catalog's missing-product filter follows the same rule."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dashboard.catalog.forms import CatalogFilterForm
from dashboard.catalog.models import CatalogItem, ItemKind, ProductSetting, ProductTask
from tests.factories import add_items, add_series


def missing(product: str) -> list[str]:
    form = CatalogFilterForm(data=QueryDict(f"missing={product}"))
    assert form.is_valid(), form.errors
    return sorted(form.filter_items(CatalogItem.objects.all()).values_list("inventory_id", flat=True))


def test_missing_filter_lists_only_the_kinds_the_product_applies_to(products):
    add_series(seasons=1, episodes=2, prefix="sr")  # sr (series), sr-s0 (season), sr-s0e0 (task), sr-s0e1
    CatalogItem.objects.create(inventory_id="film", kind=ItemKind.STANDALONE)

    assert missing("adbreaks") == ["film", "sr-s0e1"]


def test_missing_filter_lists_containers_when_the_product_applies_to_them(products):
    add_series(seasons=1, episodes=2, prefix="sr")
    ProductSetting.objects.filter(product="markers").update(applies_to=["series", "season"])

    assert missing("markers") == ["sr", "sr-s0"]


@pytest.mark.django_db
def test_missing_filter_for_an_unconfigured_product_uses_the_default_kinds():
    add_series(seasons=1, episodes=1, prefix="sr")
    ProductTask.objects.all().delete()

    assert missing("emotions") == ["sr-s0e0"]


# --- the overview ----------------------------------------------------------------------------------------

HTMX_LIVE = {"HX-Request": "true", "HX-Target": "overview-live"}


def overview_html(client, **headers) -> str:
    response = client.get(reverse("catalog:overview"), headers=headers)
    assert response.status_code == 200
    return response.content.decode()


def matrix_row(html: str, status: str) -> list[int]:
    matrix = html[html.index('id="coverage-matrix"') :]
    rows = dict(re.findall(r'<tr data-status="([^"]+)">(.*?)</tr>', matrix, re.S))
    return [int(n) for n in re.findall(r">(\d+)<", rows[status])]


def test_overview_counts_only_the_kinds_each_product_applies_to(viewer_client, products):
    add_series(seasons=1, episodes=3, prefix="sr")  # episodes: failed, done, missing
    series = CatalogItem.objects.get(inventory_id="sr")
    ProductTask.objects.create(item=series, product="adbreaks", version="1.0.1", status="done")
    ProductSetting.objects.filter(product="markers").update(applies_to=["series"])

    html = overview_html(viewer_client)

    # adbreaks (standalone, episode): the task on the series is not counted, and is flagged instead.
    assert matrix_row(html, "done") == [1, 0]
    assert matrix_row(html, "failed") == [1, 0]
    # not requested: one episode lacks adbreaks; the one series lacks markers.
    assert matrix_row(html, "not requested") == [1, 1]
    assert "1 on other kinds" in html[html.index('id="coverage-adbreaks"') :]


def test_overview_reads_the_count_tables_not_the_tasks(viewer_client, products):
    add_items(12)
    with CaptureQueriesContext(connection) as queries:
        overview_html(viewer_client)

    # The stuck thresholds count their sample of the 5,000 latest completions (PostgreSQL takes the percentile
    # there): bounded, not a count of the tasks.
    counting = [
        q["sql"]
        for q in queries
        if "COUNT(" in q["sql"].upper()
        and "catalog_producttask" in q["sql"]
        and "percentile_disc" not in q["sql"]
    ]
    assert counting == []
    assert any("catalog_taskcount" in q["sql"] for q in queries)


def test_overview_counts_follow_a_status_change_on_the_next_refresh(viewer_client, products):
    _items, tasks = add_items(4)  # done, pending, failed, processing
    assert matrix_row(overview_html(viewer_client), "done") == [1, 0]
    ProductTask.objects.filter(pk=tasks[1].pk).update(status="done")

    html = overview_html(viewer_client, **HTMX_LIVE)

    assert html.lstrip().startswith('<div id="overview-live"')
    assert "<h1>" not in html  # the region only, not the page
    assert 'hx-trigger="every 30s"' in html
    assert matrix_row(html, "done") == [2, 0]
    assert 'id="stuck-tasks"' in html
    assert 'id="recent-failures"' in html


def test_overview_bar_is_csp_clean_svg_whose_segments_fill_the_width(viewer_client, products):
    add_items(7)  # adbreaks: 2 done, 2 pending, 2 failed, 1 processing; markers: none

    html = overview_html(viewer_client)
    bar = html[html.index('id="coverage-adbreaks"') : html.index('id="coverage-markers"')]

    rects = re.findall(r'class="bar__seg bar__seg--([a-z-]+)" x="(\d+)" y="0" width="(\d+)"', bar)
    assert [key for key, _, _ in rects] == ["done", "in-flight", "failed"]
    assert sum(int(width) for _, _, width in rects) == 1000
    assert 'aria-label="Ad breaks: 2 done (29%), 3 in flight (43%), 2 failed (29%)"' in bar
    assert "style=" not in html[html.index('id="overview-live"') :]
    assert "<script" not in html[html.index('id="overview-live"') :]


def test_overview_bar_of_a_product_not_requested_anywhere_is_all_not_requested(viewer_client, products):
    add_items(3)

    html = overview_html(viewer_client)
    bar = html[html.index('id="coverage-markers"') :]

    assert 'class="bar__seg bar__seg--missing" x="0" y="0" width="1000"' in bar
    assert "3 not requested" in bar


def test_overview_live_region_needs_a_login(client, products):
    response = client.get(reverse("catalog:overview"), headers=HTMX_LIVE)

    assert response.headers["HX-Redirect"].startswith("/login/")
    assert response.content == b""


# --- the catalog's count of a task-only filter -------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "product=adbreaks&status=failed",
        "status=failed",
        "failures=on",
        "product=adbreaks",
        "q=item&status=failed",
    ],
)
def test_catalog_count_counts_items_once_whatever_their_tasks(products, query):
    _items, tasks = add_items(8)  # adbreaks: 2 failed
    # A second failed adbreaks task (another version) on an item that already has one: still one item.
    ProductTask.objects.create(item=tasks[2].item, product="adbreaks", version="0.9", status="failed")
    ProductTask.objects.create(item=tasks[0].item, product="markers", version="2", status="failed")
    form = CatalogFilterForm(data=QueryDict(query))
    assert form.is_valid(), form.errors
    items = form.filter_items(CatalogItem.objects.all())

    assert form.countable(items).count() == items.count()
