"""The page's single poll: only changed badges (out-of-band), database only, stops when nothing is in flight."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
import responses
from django.urls import reverse
from django.utils import timezone

from dashboard.catalog.models import ProductTask
from tests.factories import add_items

AUTH = 4


def poll_url(html: str) -> str:
    """The poll element's URL, as the browser would request it."""
    match = re.search(r'<div id="poll"[^>]*(?:hx-get|data-poll-url)="([^"]+)"', html)
    assert match, "no poll element"
    return match.group(1).replace("&amp;", "&")


def poll_element(html: str) -> str:
    return re.search(r'<div id="poll"[^>]*>', html).group(0)


def oob_ids(html: str) -> set[str]:
    return set(re.findall(r'<span id="([^"]+)" hx-swap-oob="innerHTML"', html))


def backdate(*tasks, seconds=60):
    ProductTask.objects.filter(pk__in=[t.pk for t in tasks]).update(
        updated_at=timezone.now() - dt.timedelta(seconds=seconds)
    )


@pytest.fixture
def page_items(products):
    items, tasks = add_items(4)  # done, pending, failed, processing
    backdate(*tasks)
    return items, tasks


def test_each_page_has_exactly_one_poll_element(viewer_client, page_items):
    items, _ = page_items
    for url in [
        reverse("catalog:item-list"),
        reverse("catalog:task-list"),
        reverse("catalog:item-detail", args=[items[1].pk]),
    ]:
        html = viewer_client.get(url).content.decode()
        assert html.count('id="poll"') == 1, url
        assert html.count('hx-trigger="every') == 1, url


def test_poll_element_never_overlaps_and_uses_the_configured_interval(viewer_client, page_items, settings):
    settings.DASHBOARD_POLL_INTERVAL = 7
    html = viewer_client.get(reverse("catalog:item-list")).content.decode()
    element = poll_element(html)
    assert 'hx-trigger="every 7s, live-resume"' in element
    assert 'hx-sync="this:drop"' in element
    assert 'hx-swap="outerHTML"' in element


def test_poll_returns_only_badges_changed_since_the_last_poll(viewer_client, page_items):
    items, tasks = page_items
    page = viewer_client.get(reverse("catalog:item-list")).content.decode()
    url = poll_url(page)
    # Nothing changed yet.
    first = viewer_client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert oob_ids(first) == set()
    # One task moves on.
    ProductTask.objects.filter(pk=tasks[1].pk).update(status="processing", updated_at=timezone.now())
    second = viewer_client.get(poll_url(first), headers={"HX-Request": "true"}).content.decode()
    assert oob_ids(second) == {f"badge-{items[1].pk}-adbreaks"}
    assert "processing" in second


def oob_rows(html: str) -> set[str]:
    return set(re.findall(r'<template>\s*<(?:tbody|tr) id="(task-\d+)"[^>]*hx-swap-oob="true"', html))


def test_poll_on_the_item_page_swaps_whole_task_rows(operator_client, page_items):
    """A task that fails while the page is open must show its error and Retry, not only a new badge."""
    items, tasks = page_items
    page = operator_client.get(reverse("catalog:item-detail", args=[items[3].pk])).content.decode()
    assert "rows=item" in poll_url(page)
    ProductTask.objects.filter(pk=tasks[3].pk).update(
        status="failed", error="Probe could not decode the video", updated_at=timezone.now()
    )
    html = operator_client.get(poll_url(page)).content.decode()
    assert oob_rows(html) == {f"task-{tasks[3].pk}"}
    row = html[html.index("<template>") : html.index("</template>")]
    assert "Probe could not decode the video" in row
    assert f'hx-post="/tasks/{tasks[3].pk}/retry/"' in row
    assert f"/tasks/{tasks[3].pk}/deactivate/" not in row
    assert f'id="badge-{tasks[3].pk}"' in row
    # Replaced rows lose their own live region, so the change is announced in the page's announcer.
    assert re.search(r'<div id="announcer" hx-swap-oob="innerHTML">item-00003 adbreaks 1.0.1: failed', html)


def test_poll_rows_for_a_viewer_have_no_action_buttons(viewer_client, page_items):
    items, tasks = page_items
    page = viewer_client.get(reverse("catalog:item-detail", args=[items[3].pk])).content.decode()
    ProductTask.objects.filter(pk=tasks[3].pk).update(status="failed", updated_at=timezone.now())
    html = viewer_client.get(poll_url(page)).content.decode()
    assert oob_rows(html) == {f"task-{tasks[3].pk}"}
    assert "hx-post" not in html


def test_poll_on_the_tasks_page_swaps_whole_rows(viewer_client, page_items):
    _items, tasks = page_items
    page = viewer_client.get(reverse("catalog:task-list")).content.decode()
    assert "rows=tasks" in poll_url(page)
    ProductTask.objects.filter(pk=tasks[1].pk).update(
        status="failed", error="S3 gone", updated_at=timezone.now()
    )
    html = viewer_client.get(poll_url(page)).content.decode()
    assert oob_rows(html) == {f"task-{tasks[1].pk}"}
    assert "S3 gone" in html


def test_poll_on_bare_task_ids_swaps_badges_only(viewer_client, page_items):
    _, tasks = page_items
    ProductTask.objects.filter(pk=tasks[3].pk).update(status="done", updated_at=timezone.now())
    html = viewer_client.get(
        reverse("catalog:poll"), {"tasks": str(tasks[3].pk), "since": "0"}
    ).content.decode()
    assert oob_ids(html) == {f"badge-{tasks[3].pk}"}
    assert oob_rows(html) == set()


@pytest.mark.parametrize("rows", [3, 30])
def test_poll_with_whole_rows_has_constant_queries(
    operator_client, products, rows, django_assert_num_queries
):
    _items, tasks = add_items(rows)
    params = {
        "tasks": ",".join(str(t.pk) for t in tasks),
        "rows": "item",
        "since": f"{time.time() - 3600:.3f}",
    }
    # tasks, then for the changed ones: product settings and the duration sample (stuck), their events.
    with django_assert_num_queries(AUTH + 4):
        response = operator_client.get(reverse("catalog:poll"), params)
    assert len(oob_rows(response.content.decode())) == rows


def test_poll_slows_down_when_nothing_on_the_page_is_in_flight(viewer_client, page_items, settings):
    settings.DASHBOARD_IDLE_POLL_INTERVAL = 31
    items, tasks = page_items
    page = viewer_client.get(reverse("catalog:item-detail", args=[items[3].pk])).content.decode()
    assert 'hx-trigger="every 5s, live-resume"' in poll_element(page)  # processing: the normal rate
    ProductTask.objects.filter(pk=tasks[3].pk).update(status="done", updated_at=timezone.now())
    html = viewer_client.get(poll_url(page)).content.decode()
    # The last row arrives, and the poll element comes back at the idle rate: it never stops.
    assert oob_rows(html) == {f"task-{tasks[3].pk}"}
    assert 'hx-trigger="every 31s, live-resume"' in poll_element(html)
    assert "hx-get" in poll_element(html)


def test_an_idle_page_still_sees_a_change_made_elsewhere(viewer_client, page_items):
    items, tasks = page_items
    page = viewer_client.get(reverse("catalog:item-detail", args=[items[0].pk])).content.decode()
    assert "every 30s" in poll_element(page)
    ProductTask.objects.filter(pk=tasks[0].pk).update(status="processing", updated_at=timezone.now())
    html = viewer_client.get(poll_url(page)).content.decode()
    assert oob_rows(html) == {f"task-{tasks[0].pk}"}
    assert "every 5s" in poll_element(html)  # now in flight: the normal rate


def test_an_unknown_status_polls_at_the_idle_rate(viewer_client, page_items):
    items, tasks = page_items
    ProductTask.objects.filter(pk=tasks[3].pk).update(status="quarantined")
    page = viewer_client.get(reverse("catalog:item-detail", args=[items[3].pk])).content.decode()
    assert "every 30s" in poll_element(page)


def test_poll_reads_the_database_only(viewer_client, page_items):
    items, tasks = page_items
    with responses.RequestsMock() as mock:  # any HTTP call would raise ConnectionError
        response = viewer_client.get(
            reverse("catalog:poll"),
            {"items": ",".join(str(i.pk) for i in items), "tasks": str(tasks[0].pk), "since": "0"},
        )
        assert len(mock.calls) == 0
    assert response.status_code == 200


@pytest.mark.parametrize("rows", [3, 30])
def test_poll_query_count_is_constant(viewer_client, products, rows, django_assert_num_queries):
    items, tasks = add_items(rows)
    params = {
        "items": ",".join(str(i.pk) for i in items),
        "tasks": ",".join(str(t.pk) for t in tasks),
        "since": f"{time.time() - 3600:.3f}",
    }
    with django_assert_num_queries(AUTH + 3):
        response = viewer_client.get(reverse("catalog:poll"), params)
    assert len(oob_ids(response.content.decode())) == 2 * rows


def test_an_idle_poll_of_catalog_badges_reads_the_tasks_once(
    viewer_client, products, django_assert_num_queries
):
    # The common case, every few seconds on every open catalog page: nothing changed. The products' default
    # versions come along with the tasks; the settings themselves are read only to draw a changed badge.
    items, tasks = add_items(30)
    backdate(*tasks)
    params = {"items": ",".join(str(i.pk) for i in items), "since": f"{time.time():.3f}"}
    with django_assert_num_queries(AUTH + 1):
        response = viewer_client.get(reverse("catalog:poll"), params)
    assert oob_ids(response.content.decode()) == set()
    assert "poll--active" in response.content.decode()  # the pending and processing ones keep it fast


def test_a_polled_badge_shows_the_default_version_task(viewer_client, products):
    items, _ = add_items(1, statuses=("done",))
    ProductTask.objects.create(item=items[0], product="adbreaks", version="0.9", status="failed")
    response = viewer_client.get(reverse("catalog:poll"), {"items": str(items[0].pk), "since": "0"})
    html = response.content.decode()
    cell = re.search(rf'id="badge-{items[0].pk}-adbreaks" hx-swap-oob="innerHTML">(.*?)</span>\n', html, re.S)
    assert "done" in cell.group(1)
    assert "failed" not in cell.group(1)


@pytest.mark.parametrize("since", ["", "yesterday", "1e400", "-99999999999999"])
def test_a_bad_since_is_treated_as_now(viewer_client, page_items, since):
    items, _ = page_items
    response = viewer_client.get(reverse("catalog:poll"), {"items": str(items[0].pk), "since": since})
    assert response.status_code == 200
    assert oob_ids(response.content.decode()) == set()


def test_catalog_badges_are_live_regions_that_survive_the_swap(viewer_client, page_items):
    items, _ = page_items
    html = viewer_client.get(reverse("catalog:item-list")).content.decode()
    assert f'<span id="badge-{items[1].pk}-adbreaks" class="badge-slot" aria-live="polite">' in html
    # The poll swaps the slot's content (innerHTML), so the aria-live element itself stays in the page.
    ProductTask.objects.filter(item=items[1]).update(status="processing", updated_at=timezone.now())
    poll = viewer_client.get(poll_url(html)).content.decode()
    assert f'<span id="badge-{items[1].pk}-adbreaks" hx-swap-oob="innerHTML">' in poll
