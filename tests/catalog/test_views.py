"""Pages and fragments of the operations UI: what they show, and a query count that stays put as rows grow."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from dashboard.catalog import pagination
from dashboard.catalog.models import (
    CatalogItem,
    EventAction,
    EventSource,
    ItemKind,
    ProductSetting,
    ProductTask,
    TaskEvent,
    UpstreamHealth,
)
from dashboard.catalog.selectors import pk_urls
from tests.factories import add_items, add_series

HTMX = {"HX-Request": "true"}
# Session, user, and the user's and groups' permissions: what every logged-in request costs.
AUTH = 4


def text(response) -> str:
    return response.content.decode()


def ids_in(html: str, prefix: str) -> list[str]:
    return re.findall(rf'id="({prefix}[^"]*)"', html)


@pytest.fixture
def small_pages(settings):
    settings.DASHBOARD_PAGE_SIZE = 10


# --- overview ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [4, 40])
def test_overview_query_count_is_constant(viewer_client, products, rows, django_assert_num_queries):
    add_items(rows)
    add_series()
    # + 1: the "last alert sent" line (the AlertCursor row).
    with django_assert_num_queries(AUTH + 8):
        response = viewer_client.get(reverse("catalog:overview"))
    assert response.status_code == 200


def test_overview_matrix_counts_statuses_and_not_requested(viewer_client, products):
    add_items(8)  # adbreaks: 2 done, 2 pending, 2 failed, 2 processing; markers: none
    CatalogItem.objects.create(inventory_id="extra")
    ProductTask.objects.create(
        item=CatalogItem.objects.get(inventory_id="extra"),
        product="adbreaks",
        version="1.0.1",
        status="quarantined",
    )
    ProductTask.objects.create(
        item=CatalogItem.objects.get(inventory_id="item-00000"),
        product="adbreaks",
        version="0.9",
        status="done",
    )  # another version: not counted
    html = text(viewer_client.get(reverse("catalog:overview")))
    matrix = html[html.index('id="coverage-matrix"') :]
    rows = dict(re.findall(r'<tr data-status="([^"]+)">(.*?)</tr>', matrix, re.S))

    def counts(status):
        return [int(n) for n in re.findall(r">(\d+)<", rows[status])]

    assert counts("done") == [2, 0]
    assert counts("failed") == [2, 0]
    assert counts("quarantined") == [1, 0]  # unknown status shown as it comes
    assert counts("not requested") == [0, 9]
    assert "Nudity" not in matrix  # disabled product: no column
    assert 'href="/items/?product=adbreaks&amp;version=1.0.1&amp;status=failed"' in matrix
    assert 'href="/items/?missing=markers"' in matrix


def test_matrix_links_lead_to_lists_with_the_same_counts(viewer_client, products):
    add_items(8)
    assert (
        text(viewer_client.get("/items/?product=adbreaks&version=1.0.1&status=failed")).count(
            'class="item-row'
        )
        == 2
    )
    assert text(viewer_client.get("/items/?missing=markers")).count('class="item-row') == 8


def test_overview_lists_recent_failures_with_their_error(viewer_client, products):
    add_items(4)
    html = text(viewer_client.get(reverse("catalog:overview")))
    failures = html[html.index('id="recent-failures"') :]
    assert "S3 asset missing" in failures
    assert "item-00002" in failures


def test_overview_flags_stuck_tasks(viewer_client, products):
    _items, tasks = add_items(4)
    old = tasks[1]  # pending
    ProductTask.objects.filter(pk=old.pk).update(requested_at=timezone.now() - dt.timedelta(hours=7))
    html = text(viewer_client.get(reverse("catalog:overview")))
    stuck = html[html.index('id="stuck-tasks"') : html.index('id="recent-failures"')]
    assert f'id="stuck-{old.pk}"' in stuck
    assert f'id="stuck-{tasks[3].pk}"' not in stuck  # processing for only an hour
    assert "(default)" in stuck


def test_overview_shows_last_contact_and_a_banner_when_vionlabs_is_failing(viewer_client, products):
    since = timezone.now() - dt.timedelta(minutes=12)
    UpstreamHealth.objects.create(
        name="vionlabs",
        last_success_at=since - dt.timedelta(minutes=1),
        failing_since=since,
        consecutive_failures=3,
        last_error="Vionlabs did not answer within 10 s",
    )
    html = text(viewer_client.get(reverse("catalog:overview")))
    assert 'role="alert"' in html
    assert "Vionlabs is not reachable" in html
    assert since.strftime("%Y-%m-%d %H:%M:%S") in html
    assert "Last successful contact with Vionlabs" in html


def test_overview_has_no_banner_when_vionlabs_answers(viewer_client, products):
    UpstreamHealth.objects.create(name="vionlabs", last_success_at=timezone.now())
    html = text(viewer_client.get(reverse("catalog:overview")))
    assert "Vionlabs is not reachable" not in html
    assert "ago" in html[html.index('id="last-contact"') :]


# --- catalog page --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [5, 40])
def test_item_list_query_count_is_constant(
    viewer_client, products, small_pages, rows, django_assert_num_queries
):
    add_items(rows)
    add_series()  # a series row brings its roll-up queries
    # +1: the statuses present, for the status filter's choices.
    with django_assert_num_queries(AUTH + 7):
        response = viewer_client.get(reverse("catalog:item-list"), {"sort": "-inventory_id"})
    assert response.status_code == 200


@pytest.mark.parametrize("rows", [5, 40])
def test_item_list_filtered_fragment_query_count_is_constant(
    viewer_client, products, small_pages, rows, django_assert_num_queries
):
    add_items(rows)
    # The matches fit on one page in both cases: their count is the page's (no count query).
    with django_assert_num_queries(AUTH + 4):
        response = viewer_client.get(
            reverse("catalog:item-list"),
            {"product": "adbreaks", "status": "done", "missing": "markers"},
            headers={**HTMX, "HX-Target": "item-results"},
        )
    assert response.status_code == 200


def test_item_list_shows_one_row_per_item_with_a_badge_per_enabled_product(viewer_client, products):
    items, _tasks = add_items(3)
    html = text(viewer_client.get(reverse("catalog:item-list")))
    assert html.count('class="item-row') == 3
    assert f'id="badge-{items[0].pk}-adbreaks"' in html
    assert f'id="badge-{items[0].pk}-markers"' in html
    assert "badge-" + str(items[0].pk) + "-nudity" not in html
    assert 'aria-live="polite"' in html
    assert "not requested" in html


def test_catalog_badge_prefers_the_default_version(viewer_client, products):
    items, _tasks = add_items(1)
    ProductTask.objects.create(item=items[0], product="adbreaks", version="0.9", status="failed")
    html = text(viewer_client.get(reverse("catalog:item-list")))
    cell = re.search(rf'id="badge-{items[0].pk}-adbreaks".*?</span></a>', html, re.S).group(0)
    assert "done" in cell
    assert "failed" not in cell


def test_search_matches_inventory_id_and_title_and_returns_only_the_results_fragment(viewer_client, products):
    add_items(3)
    CatalogItem.objects.create(inventory_id="zz/odd id", title="The Shawshank Redemption")
    response = viewer_client.get(
        reverse("catalog:item-list"), {"q": "shawshank"}, headers={**HTMX, "HX-Target": "item-results"}
    )
    html = text(response)
    assert not html.lstrip().startswith("<!doctype")
    assert html.lstrip().startswith('<div id="item-results"')
    assert html.count('class="item-row') == 1
    assert "zz/odd id" in html
    assert html.count('id="poll"') == 1


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        # Every word must appear, each in the inventory id or the title, in any order.
        ("redemption shawshank", {"tt0111161/4k", "tt0111161/hd"}),
        ("tt0111161 4k", {"tt0111161/4k"}),
        ("shawshank godfather", set()),
        # A quoted phrase must appear as written.
        ('"shawshank redemption"', {"tt0111161/4k"}),
        ('"redemption shawshank"', set()),
        ("REDEMPTION", {"tt0111161/4k", "tt0111161/hd"}),
        ("   ", {"tt0111161/4k", "tt0111161/hd", "tt0068646/4k"}),
    ],
)
def test_search_needs_every_word_and_keeps_quoted_phrases_whole(viewer_client, products, q, expected):
    CatalogItem.objects.create(inventory_id="tt0111161/4k", title="The Shawshank Redemption")
    CatalogItem.objects.create(inventory_id="tt0111161/hd", title="Redemption (Shawshank cut)")
    CatalogItem.objects.create(inventory_id="tt0068646/4k", title="The Godfather")
    html = text(viewer_client.get(reverse("catalog:item-list"), {"q": q}))
    found = set(re.findall(r'class="inventory-id">([^<]+)</a>', html))
    assert found == expected


@pytest.mark.parametrize("sort", ["inventory_id", "-title"])
@pytest.mark.parametrize(("matching", "pages"), [(0, 1), (7, 1), (10, 1), (11, 2), (25, 3)])
def test_the_count_is_exact_on_every_page_whether_or_not_one_page_holds_all(
    viewer_client, products, small_pages, matching, pages, sort
):
    # A search's first page is paged and counted in one query; the next pages use the cursor it gave and
    # count apart (or count their own rows when one page holds them all).
    add_items(matching, prefix="match")
    add_items(5, prefix="other")
    url, params = reverse("catalog:item-list"), {"q": "match", "sort": sort}
    seen: list[str] = []
    for _ in range(pages):
        html = text(viewer_client.get(url, params))
        summary = re.search(r'id="item-count">(.*?)</p>', html, re.S).group(1)
        assert summary.startswith(f"{matching} item"), summary
        seen += re.findall(r'class="inventory-id">([^<]+)</a>', html)
        after = re.search(r'href="\?[^"]*after=([^"&]+)', html)
        if after is None:
            break
        params = {**params, "after": after.group(1)}
    expected = sorted(
        CatalogItem.objects.filter(inventory_id__startswith="match"), key=lambda i: i.inventory_id
    )
    if sort == "-title":
        expected = sorted(expected, key=lambda i: (i.title, i.pk), reverse=True)
    assert seen == [item.inventory_id for item in expected]


def test_search_input_is_an_active_search(viewer_client, products):
    html = text(viewer_client.get(reverse("catalog:item-list")))
    search = re.search(r'<input type="search" name="q".*?>', html, re.S).group(0)
    assert 'hx-trigger="input changed delay:300ms, search"' in search
    assert 'hx-push-url="true"' in search
    assert '<label for="id_q">Search</label>' in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"product": "adbreaks", "status": "failed"}, {"item-00002"}),
        ({"status": "pending"}, {"item-00001"}),
        ({"version": "1.0.1", "status": "processing"}, {"item-00003"}),
        ({"kind": "episode"}, {"ep"}),
        ({"missing": "adbreaks"}, {"ep"}),
        ({"missing": "markers"}, {"item-00000", "item-00001", "item-00002", "item-00003"}),
        ({"failures": "on"}, {"item-00002"}),
        ({"status": "unanswered"}, set()),
    ],
)
def test_catalog_filters(viewer_client, products, query, expected):
    add_items(4)
    ep = CatalogItem.objects.create(inventory_id="ep", kind=ItemKind.EPISODE)
    ProductTask.objects.create(item=ep, product="markers", version="2", status="done")
    ProductTask.objects.create(item=ep, product="adbreaks", version="0.5", status="done")  # not default
    html = text(viewer_client.get(reverse("catalog:item-list"), query))
    shown = set(re.findall(r'class="inventory-id">([^<]+)<', html))
    assert shown == expected


def test_an_invalid_filter_is_explained_not_a_500(viewer_client, products):
    add_items(2)
    response = viewer_client.get(reverse("catalog:item-list"), {"product": "nope", "after": "%%%"})
    assert response.status_code == 200
    html = text(response)
    assert "This filter cannot be applied" in html
    assert "damaged" in html
    assert 'class="item-row' not in html


def test_keyset_pages_walk_every_item_once_both_ways(viewer_client, products, small_pages):
    add_items(25)
    seen, url, pages = [], reverse("catalog:item-list") + "?sort=-title", []
    while url:
        html = text(viewer_client.get(url))
        pages.append(html)
        seen += re.findall(r'class="inventory-id">([^<]+)<', html)
        nxt = re.search(r'rel="next" href="([^"]+)"', html)
        url = reverse("catalog:item-list") + nxt.group(1).replace("&amp;", "&") if nxt else None
    assert len(pages) == 3
    assert len(seen) == 25 == len(set(seen))
    assert seen == sorted(seen, key=lambda s: f"Title {int(s[-5:])}", reverse=True)
    prev = re.search(r'rel="prev" href="([^"]+)"', pages[-1]).group(1).replace("&amp;", "&")
    back = text(viewer_client.get(reverse("catalog:item-list") + prev))
    assert re.findall(r'class="inventory-id">([^<]+)<', back) == seen[10:20]
    assert "sort=-title" in prev


@pytest.mark.parametrize("q", ["", "item", "item-000"])
def test_count_is_bounded_on_large_sets(viewer_client, products, small_pages, monkeypatch, q):
    monkeypatch.setattr(pagination, "COUNT_LIMIT", 5)
    add_items(12)  # more than a page of 10: counted by the database, at most COUNT_LIMIT + 1 rows
    html = text(viewer_client.get(reverse("catalog:item-list"), {"q": q}))
    assert "5+ items match" in html
    assert html.count('class="item-row') == 10
    assert 'rel="next"' in html


def test_series_and_seasons_roll_up_their_episodes(viewer_client, products):
    series = add_series(seasons=2, episodes=5)
    html = text(viewer_client.get(reverse("catalog:item-list"), {"kind": "series"}))
    assert f'id="rollup-{series.pk}-adbreaks"' in html
    assert "6/10 done, 2 failed, 2 missing" in html
    assert "0/10 done, 10 missing" in html  # markers
    assert f'hx-get="/items/{series.pk}/children/?depth=0"' in html


@pytest.mark.parametrize("episodes", [3, 12])
def test_children_fragment_shows_seasons_with_roll_ups(
    viewer_client, products, episodes, django_assert_num_queries
):
    series = add_series(seasons=2, episodes=episodes)
    with django_assert_num_queries(AUTH + 6):
        response = viewer_client.get(reverse("catalog:item-children", args=[series.pk]), headers=HTMX)
    html = text(response)
    assert html.lstrip().startswith(f'<tr id="item-row-{series.pk}"')
    assert "is-expanded" in html
    assert html.count('class="item-row depth-1') == 2
    assert f"{episodes - 2}/{episodes} done, 1 failed, 1 missing" in html


def test_bulk_selection_posts_to_the_operation_preview(operator_client, products):
    items, _ = add_items(3)
    html = text(
        operator_client.get(
            reverse("catalog:item-list"), {"product": "adbreaks", "q": "item", "sort": "title"}
        )
    )
    form = re.search(r'<form id="bulk-form".*?</form>', html, re.S).group(0)
    assert f'action="{reverse("catalog:operation-preview")}"' in form
    # "All N matching": the checkbox carries the filter (no sort, no cursor), sent only when ticked.
    assert '<input type="checkbox" name="filter" value="q=item&amp;product=adbreaks" id="select-all">' in form
    assert "All 3 matching this filter" in form
    for name in ("kind", "product", "version", "priority"):
        assert f'name="{name}"' in form
    assert '<option value="nudity">' not in form
    assert f'name="items" value="{items[0].pk}" form="bulk-form"' in html


def test_bulk_form_reaches_the_preview_with_the_same_items(operator_client, products):
    add_items(4)
    html = text(operator_client.get(reverse("catalog:item-list"), {"status": "failed"}))
    value = re.search(r'name="filter" value="([^"]*)"', html).group(1).replace("&amp;", "&")
    response = operator_client.post(
        reverse("catalog:operation-preview"), {"filter": value, "kind": "refresh", "product": "adbreaks"}
    )
    assert response.status_code == 200
    assert "item-00002" in text(response)
    assert "item-00000" not in text(response)  # done, not failed: outside the filter


def test_viewer_gets_no_bulk_form_and_no_action_buttons(viewer_client, products):
    add_items(3)
    html = text(viewer_client.get(reverse("catalog:item-list")))
    assert "bulk-form" not in html
    assert "hx-post" not in html


# --- item page -----------------------------------------------------------------------------------------


def add_history(task, n: int):
    start = timezone.now() - dt.timedelta(hours=n)
    statuses = ["pending", "processing", "done"]
    TaskEvent.objects.bulk_create(
        [
            TaskEvent(
                task=task,
                action=EventAction.REFRESH,
                source=EventSource.SYNC,
                status_before=statuses[(i - 1) % 3] if i else "",
                status_after=statuses[i % 3],
                created_at=start + dt.timedelta(hours=i),
            )
            for i in range(n)
        ]
    )


@pytest.mark.parametrize("rows", [2, 20])
def test_item_detail_query_count_is_constant(operator_client, products, rows, django_assert_num_queries):
    items, _tasks = add_items(1)
    for i in range(rows):
        task = ProductTask.objects.create(item=items[0], product="markers", version=f"v{i}", status="done")
        add_history(task, 3)
    with django_assert_num_queries(AUTH + 5):
        response = operator_client.get(reverse("catalog:item-detail", args=[items[0].pk]))
    assert response.status_code == 200


def test_item_detail_shows_each_task_with_its_facts(viewer_client, products, operator):
    items, tasks = add_items(3)
    task = tasks[2]  # failed
    ProductTask.objects.filter(pk=task.pk).update(
        sync_error="Vionlabs did not answer",
        sync_error_at=timezone.now(),
        last_checked_at=timezone.now(),
        links=[
            {"name": "deactivate", "method": "DELETE", "href": "https://api.example.com/t/x"},
            {"name": "evil", "method": "GET", "href": "javascript:alert(1)"},
        ],
    )
    TaskEvent.objects.create(
        task=task,
        actor=operator,
        action=EventAction.RETRY,
        status_before="failed",
        status_after="pending",
        created_at=timezone.now() - dt.timedelta(minutes=5),
    )
    html = text(viewer_client.get(reverse("catalog:item-detail", args=[items[2].pk])))
    row = html[html.index(f'<tbody id="task-{task.pk}"') :]
    assert f'id="badge-{task.pk}"' in row
    assert "S3 asset missing" in row
    assert "Vionlabs did not answer" in row
    assert "Low" in row
    assert "1.0.1" in row
    assert '<span class="method">DELETE</span> <a href="https://api.example.com/t/x"' in row
    assert 'href="javascript:' not in row  # shown as text, never a link
    assert "olivia" in row  # who
    assert "Retry" in row  # what
    assert "5m in pending" in row or "4m in pending" in row  # time spent in the status


def test_timeline_gives_time_spent_in_each_status(viewer_client, products):
    items, tasks = add_items(1)
    TaskEvent.objects.all().delete()
    add_history(tasks[0], 3)  # pending 1h, processing 1h, done since
    html = text(viewer_client.get(reverse("catalog:item-detail", args=[items[0].pk])))
    assert "1h in pending" in html
    assert "1h in processing" in html


def test_viewer_sees_no_action_buttons_on_the_item_page(viewer_client, products):
    items, _ = add_items(1)
    html = text(viewer_client.get(reverse("catalog:item-detail", args=[items[0].pk])))
    assert "hx-post" not in html
    assert "Create a task" not in html


def test_operator_sees_actions_fitting_each_status(operator_client, products):
    items, tasks = add_items(3)  # done, pending, failed
    done = text(operator_client.get(reverse("catalog:item-detail", args=[items[0].pk])))
    assert f'hx-post="/tasks/{tasks[0].pk}/deactivate/"' in done
    assert "hx-confirm=" in done
    assert f"/tasks/{tasks[0].pk}/retry/" not in done
    failed = text(operator_client.get(reverse("catalog:item-detail", args=[items[2].pk])))
    assert f'hx-post="/tasks/{tasks[2].pk}/retry/"' in failed
    assert f"/tasks/{tasks[2].pk}/deactivate/" not in failed
    assert f'hx-post="/tasks/{tasks[2].pk}/refresh/"' in failed


def test_create_form_offers_enabled_products_with_the_default_version(operator_client, products):
    items, _ = add_items(1)
    html = text(operator_client.get(reverse("catalog:item-detail", args=[items[0].pk])))
    form = re.search(r'<form id="create-form-.*?</form>', html, re.S).group(0)
    assert '<option value="adbreaks" selected>Ad breaks</option>' in form
    assert '<option value="markers">Markers</option>' in form
    assert "nudity" not in form
    assert 'name="version" id="create-version-' in form
    assert 'value="1.0.1"' in form
    assert '<label for="create-priority-' in form


@pytest.mark.parametrize("product", ["markers", "adbreaks"])
def test_choosing_a_product_prefills_its_default_version(
    operator_client, products, product, django_assert_num_queries
):
    items, _ = add_items(1)
    with django_assert_num_queries(AUTH + 2):
        response = operator_client.get(
            reverse("catalog:item-detail", args=[items[0].pk]),
            {"product": product},
            headers={**HTMX, "HX-Target": f"create-form-{items[0].pk}"},
        )
    html = text(response)
    assert html.lstrip().startswith(f'<form id="create-form-{items[0].pk}"')
    expected = ProductSetting.objects.get(product=product).default_version
    assert f'value="{expected}"' in html
    assert f'<option value="{product}" selected>' in html


# --- tasks page ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [5, 40])
def test_task_list_query_count_is_constant(
    viewer_client, products, small_pages, rows, django_assert_num_queries
):
    add_items(rows)
    # + 1: which products have tasks in flight (the count table), for the stuck filter's ranges. The matches
    # fit on one page (at most 10 of each status): their count is the page's, no count query.
    with django_assert_num_queries(AUTH + 5):
        response = viewer_client.get(reverse("catalog:task-list"), {"stuck": "on"})
    assert response.status_code == 200
    with django_assert_num_queries(AUTH + 4):
        response = viewer_client.get(
            reverse("catalog:task-list"), {"status": "done"}, headers={**HTMX, "HX-Target": "task-results"}
        )
    assert text(response).lstrip().startswith('<div id="task-results"')


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "failed"}, {"item-00002"}),
        ({"product": "markers"}, {"item-00001"}),
        ({"version": "7"}, {"item-00001"}),
        ({"priority": "high"}, {"item-00001"}),
        ({"error": "s3 ASSET"}, {"item-00002"}),
        ({"age": "6h"}, {"item-00000"}),
        ({"stuck": "on"}, {"item-00000"}),
        ({"status": "unanswered"}, set()),
    ],
)
def test_task_filters(viewer_client, products, query, expected):
    items, tasks = add_items(3)  # done, pending, failed
    ProductTask.objects.filter(pk=tasks[0].pk).update(
        status="processing",
        requested_at=timezone.now() - dt.timedelta(hours=8),
        status_changed_at=timezone.now() - dt.timedelta(hours=7),
    )
    ProductTask.objects.create(item=items[1], product="markers", version="7", priority="high", status="done")
    html = text(viewer_client.get(reverse("catalog:task-list"), query))
    shown = set(re.findall(r'<td><a href="/items/\d+/">([^<]+)</a></td>', html))
    assert shown == expected


def test_task_list_marks_stuck_tasks(viewer_client, products):
    _items, tasks = add_items(2)
    ProductTask.objects.filter(pk=tasks[1].pk).update(requested_at=timezone.now() - dt.timedelta(days=1))
    html = text(viewer_client.get(reverse("catalog:task-list")))
    row = re.search(rf'<tr id="task-{tasks[1].pk}".*?</tr>', html, re.S).group(0)
    assert "stuck" in row


def test_an_invalid_task_filter_is_explained_not_a_500(viewer_client, products):
    add_items(2)
    response = viewer_client.get(reverse("catalog:task-list"), {"priority": "urgent", "age": "forever"})
    assert response.status_code == 200
    html = text(response)
    assert "This filter cannot be applied" in html
    assert "priority:" in html
    assert "__all__" not in html


@pytest.mark.parametrize("pk", [1, 7, 10, 918273645, 9_007_199_254_740_993])
def test_row_urls_reversed_once_are_those_django_reverses(pk):
    for name in ("catalog:item-detail", "catalog:item-refresh", "catalog:item-children"):
        assert pk_urls(name)(pk) == reverse(name, args=[pk])
