"""Series and seasons on the item page: the create form offers only the products that apply, the service
refuses the others, a container lists its seasons and episodes, and tasks the setting no longer covers are
flagged."""

from __future__ import annotations

import re

import pytest
import responses
from django.urls import reverse

from dashboard.catalog import selectors, services
from dashboard.catalog.models import CatalogItem, EventSource, ProductSetting, ProductTask
from dashboard.catalog.services import NotApplicable
from tests.factories import add_series, make_task

HTMX = {"HX-Request": "true"}
AUTH = 4


def text(response) -> str:
    return response.content.decode()


def product_options(html: str, item_pk: int) -> list[str]:
    select = re.search(rf'<select name="product" id="create-product-{item_pk}".*?</select>', html, re.S)
    return re.findall(r'<option value="([^"]+)"', select.group(0)) if select else []


@pytest.fixture
def show(products):
    return add_series(seasons=2, episodes=3)


def test_a_series_page_offers_only_products_that_apply_to_series(operator_client, products, show):
    ProductSetting.objects.filter(product="markers").update(applies_to=["series", "episode"])
    html = text(operator_client.get(reverse("catalog:item-detail", args=[show.pk])))
    assert product_options(html, show.pk) == ["markers"]
    assert "Ad breaks is set to apply to standalone items and episodes only." in html


def test_an_episode_page_offers_every_enabled_product(operator_client, products, show):
    episode = CatalogItem.objects.get(inventory_id="show-s0e0")
    html = text(operator_client.get(reverse("catalog:item-detail", args=[episode.pk])))
    assert product_options(html, episode.pk) == ["adbreaks", "markers"]
    assert "not offered" not in html


def test_a_series_with_no_applicable_product_says_so(operator_client, products, show):
    html = text(operator_client.get(reverse("catalog:item-detail", args=[show.pk])))
    assert product_options(html, show.pk) == []
    assert "No enabled product applies to a series." in html


def test_the_service_refuses_a_product_that_does_not_apply(products, show):
    refused = pytest.raises(
        NotApplicable, match="Markers is set to apply to standalone items and episodes only"
    )
    with responses.RequestsMock(), refused:  # any HTTP call would fail the test
        services.task_create(item=show, product="markers", version="2", source=EventSource.ADMIN)
    assert not ProductTask.objects.filter(item=show).exists()


def test_the_create_view_shows_the_refusal_and_sends_nothing(operator_client, products, show):
    with responses.RequestsMock():
        response = operator_client.post(
            reverse("catalog:task-create", args=[show.pk]),
            {"product": "adbreaks", "version": "1.0.1", "priority": "low"},
            headers=HTMX,
        )
    html = text(response)
    assert response.status_code == 200
    assert "Ad breaks is set to apply to standalone items and episodes only; show is a series" in html
    assert not ProductTask.objects.filter(item=show).exists()


def test_retrying_a_task_the_product_no_longer_applies_to_is_refused(products, show):
    task = make_task(show, status="failed")
    with responses.RequestsMock(), pytest.raises(NotApplicable):
        services.task_retry(task=task)
    assert ProductTask.objects.get(pk=task.pk).status == "failed"


def test_a_series_page_lists_its_seasons_and_episodes_with_badges(viewer_client, products, show):
    html = text(viewer_client.get(reverse("catalog:item-detail", args=[show.pk])))
    listed = re.findall(r'id="item-row-(\d+)"', html)
    below = CatalogItem.objects.filter(parent__parent=show) | CatalogItem.objects.filter(parent=show)
    assert sorted(map(int, listed)) == sorted(below.values_list("pk", flat=True))
    season = CatalogItem.objects.get(inventory_id="show-s0")
    # A season's row carries the catalog's roll-up; an episode's row its badge.
    assert re.search(rf'id="rollup-{season.pk}-adbreaks"[^>]*>1/3 done, 1 failed, 1 missing<', html)
    episode = CatalogItem.objects.get(inventory_id="show-s0e1")
    assert f'id="badge-{episode.pk}-adbreaks"' in html


def test_a_season_page_lists_only_its_own_episodes(viewer_client, products, show):
    season = CatalogItem.objects.get(inventory_id="show-s1")
    html = text(viewer_client.get(reverse("catalog:item-detail", args=[season.pk])))
    listed = set(map(int, re.findall(r'id="item-row-(\d+)"', html)))
    assert listed == set(CatalogItem.objects.filter(parent=season).values_list("pk", flat=True))


def test_a_series_page_filters_its_contents_by_status_and_search(viewer_client, products, show):
    url = reverse("catalog:item-detail", args=[show.pk])
    html = text(
        viewer_client.get(
            url,
            {"product": "adbreaks", "status": "failed"},
            headers={**HTMX, "HX-Target": f"contents-results-{show.pk}"},
        )
    )
    assert html.lstrip().startswith(f'<div id="contents-results-{show.pk}"')
    listed = re.findall(r'class="inventory-id">([^<]+)<', html)
    assert listed == ["show-s0e0", "show-s1e0"]
    html = text(viewer_client.get(url, {"q": "s1e"}))
    assert re.findall(r'id="item-row-\d+"[^>]*>.*?class="inventory-id">([^<]+)<', html, re.S) == [
        "show-s1e0",
        "show-s1e1",
        "show-s1e2",
    ]


def test_a_series_page_pages_its_contents_with_cursors(viewer_client, products, show, settings):
    settings.DASHBOARD_PAGE_SIZE = 3
    url = reverse("catalog:item-detail", args=[show.pk])
    seen = []
    query: dict[str, str] = {}
    for _ in range(5):
        html = text(viewer_client.get(url, query))
        seen += re.findall(r'id="item-row-\d+"[^>]*>.*?class="inventory-id">([^<]+)<', html, re.S)
        after = re.search(r'rel="next" href="\?[^"]*after=([^"&]+)"', html)
        if not after:
            break
        query = {"after": after.group(1)}
    assert seen == sorted(CatalogItem.objects.exclude(pk=show.pk).values_list("inventory_id", flat=True))


def test_a_damaged_cursor_on_a_series_page_is_a_clear_message(viewer_client, products, show):
    response = viewer_client.get(reverse("catalog:item-detail", args=[show.pk]), {"after": "%%%"})
    assert response.status_code == 200
    assert "This page link is damaged" in text(response)


@pytest.mark.parametrize("extra_seasons", [1, 4])
def test_a_series_page_query_count_is_constant(
    viewer_client, products, extra_seasons, django_assert_num_queries
):
    show = add_series(seasons=extra_seasons, episodes=4)
    # item, settings, tasks, thresholds (1: settings passed), contents page, its badges, two roll-ups,
    # statuses present.
    with django_assert_num_queries(AUTH + 9):
        response = viewer_client.get(reverse("catalog:item-detail", args=[show.pk]))
    assert response.status_code == 200


def test_the_series_poll_covers_its_rows(viewer_client, products, show):
    html = text(viewer_client.get(reverse("catalog:item-detail", args=[show.pk])))
    poll = re.search(r'<div id="poll"[^>]*>', html).group(0)
    episode = CatalogItem.objects.get(inventory_id="show-s0e1")
    assert re.search(rf"items=[\d,]*\b{episode.pk}\b", poll)


def test_a_task_the_setting_no_longer_covers_is_flagged_on_the_item_page_and_task_list(
    operator_client, products, show
):
    task = make_task(show, product="markers", version="2", status="processing")
    html = text(operator_client.get(reverse("catalog:item-detail", args=[show.pk])))
    row = re.search(rf'<tbody id="task-{task.pk}".*?</tbody>', html, re.S).group(0)
    assert "not applicable: Markers is set to apply to standalone items and episodes only" in row
    assert "Deactivate" in row  # it can still be deactivated
    html = text(operator_client.get(reverse("catalog:task-list")))
    row = re.search(rf'<tr id="task-{task.pk}".*?</tr>', html, re.S).group(0)
    assert "not applicable: Markers" in row
    ProductSetting.objects.filter(product="markers").update(applies_to=["series"])
    html = text(operator_client.get(reverse("catalog:item-detail", args=[show.pk])))
    assert "not applicable" not in re.search(rf'<tbody id="task-{task.pk}".*?</tbody>', html, re.S).group(0)


def test_an_episode_is_not_flagged(operator_client, products, show):
    episode = CatalogItem.objects.get(inventory_id="show-s0e0")
    html = text(operator_client.get(reverse("catalog:item-detail", args=[episode.pk])))
    assert "not applicable" not in html


def test_a_flagged_task_can_be_deactivated(operator_client, products, show, settings):
    settings.VIONLABS_API_URL = "https://api.example.test"
    settings.VIONLABS_MAX_RETRIES = 0
    task = make_task(show, product="markers", version="2", status="processing")
    with responses.RequestsMock() as mock:
        mock.delete(
            re.compile(r"https://api\.example\.test/tasks/catalog-item/show/product/markers/version/2"),
            json={"status": "deactivated", "error": None, "_links": {}},
        )
        response = operator_client.post(reverse("catalog:task-deactivate", args=[task.pk]), headers=HTMX)
    assert response.status_code == 200
    assert ProductTask.objects.get(pk=task.pk).status == "deactivated"


def test_statuses_present_lists_each_distinct_status_once(products, show):
    item = CatalogItem.objects.get(inventory_id="show-s0e2")
    make_task(item, product="markers", version="2", status="quarantined")
    make_task(item, product="nudity", version="1", status="")
    assert selectors.statuses_present() == {"done", "failed", "quarantined", ""}


def test_the_status_choices_add_unknown_statuses_and_the_current_value(products, show):
    make_task(CatalogItem.objects.get(inventory_id="show-s0e2"), product="markers", version="2", status="zzz")
    values = [value for value, _ in selectors.status_choices("typed-in")]
    assert values == [
        "pending",
        "processing",
        "done",
        "failed",
        "deactivated",
        "unanswered",
        "typed-in",
        "zzz",
    ]


def test_changing_the_product_on_a_series_form_keeps_to_applicable_products(operator_client, products, show):
    ProductSetting.objects.filter(product="markers").update(applies_to=["series"])
    response = operator_client.get(
        reverse("catalog:item-detail", args=[show.pk]),
        {"product": "markers"},
        headers={**HTMX, "HX-Target": f"create-form-{show.pk}"},
    )
    html = text(response)
    assert html.lstrip().startswith(f'<form id="create-form-{show.pk}"')
    assert product_options(html, show.pk) == ["markers"]
    assert "Ad breaks is set to apply to standalone items and episodes only." in html


def test_a_poll_row_keeps_the_not_applicable_flag(operator_client, products, show):
    task = make_task(show, product="markers", version="2", status="processing")
    html = text(
        operator_client.get(reverse("catalog:poll"), {"tasks": str(task.pk), "rows": "item", "since": "0"})
    )
    row = re.search(rf'<tbody id="task-{task.pk}".*?</tbody>', html, re.S).group(0)
    assert "not applicable: Markers is set to apply to standalone items and episodes only" in row
