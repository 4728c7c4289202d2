"""The result fragment and page of a done task, its refresh, the `results` link and the catalog's result
chips: who may see what, what is drawn, bad parameters, and pinned query counts."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import responses
from django.urls import reverse
from django.utils import timezone

from dashboard.catalog import client as client_module
from dashboard.catalog.models import CatalogItem, ItemKind, ProductTask, TaskResult
from dashboard.catalog.results import ResultParams
from dashboard.vionlabs import Throttle
from tests.catalog.test_results import ADBREAKS_URL, BASE, INVENTORY_ID, KEY, MARKERS_ANSWER, adbreaks_answer

HTMX = {"HX-Request": "true"}
AUTH = 4  # session, user, the user's and the groups' permissions


@pytest.fixture(autouse=True)
def vionlabs_settings(settings, monkeypatch):
    settings.VIONLABS_API_URL = BASE
    settings.VIONLABS_API_KEY = KEY
    settings.VIONLABS_MAX_RETRIES = 0
    monkeypatch.setattr(client_module, "_throttle", Throttle())
    client_module.reset_clients()
    yield
    client_module.reset_clients()


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def item(db):
    return CatalogItem.objects.create(inventory_id=INVENTORY_ID, title="The Shawshank Redemption")


@pytest.fixture
def task(item):
    return ProductTask.objects.create(
        item=item,
        product="adbreaks",
        version="1.0.1",
        status="done",
        status_changed_at=timezone.now() - dt.timedelta(hours=5),
        links=[
            {"name": "self", "method": "GET", "href": f"{BASE}/tasks/x"},
            {"name": "results", "method": "GET", "href": f"{BASE}/results/adbreaks/v3/filter/millisec/x"},
        ],
    )


def cached(task, data=None, params=None, age=dt.timedelta(hours=3)):
    params = params or ResultParams()
    return TaskResult.objects.create(
        task=task,
        params_key=params.key,
        params=params.as_dict(),
        fetched_at=timezone.now() - age,
        data=data or adbreaks_answer(),
    )


def url(task, name="catalog:task-result"):
    return reverse(name, args=[task.pk])


def text(response):
    return response.content.decode()


# --- permissions ----------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_log_in(client, task, mocked):
    assert client.get(url(task)).status_code == 302
    assert client.post(url(task, "catalog:task-result-refresh")).status_code == 302
    assert len(mocked.calls) == 0


def test_a_user_without_a_role_may_not_see_or_refresh_a_result(client, nobody, task, mocked):
    client.force_login(nobody)
    assert client.get(url(task), headers=HTMX).status_code == 403
    assert client.post(url(task, "catalog:task-result-refresh"), headers=HTMX).status_code == 403
    assert len(mocked.calls) == 0


def test_a_viewer_sees_the_cached_result_but_may_not_force_a_refresh(viewer_client, task, mocked):
    cached(task)
    response = viewer_client.get(url(task), headers=HTMX)
    assert response.status_code == 200
    assert "00:10:00" in text(response)
    assert "Refresh from Vionlabs" not in text(response)
    assert viewer_client.post(url(task, "catalog:task-result-refresh"), headers=HTMX).status_code == 403
    assert len(mocked.calls) == 0


def test_a_viewers_first_open_fetches_once(viewer_client, task, mocked):
    mocked.get(ADBREAKS_URL, json=adbreaks_answer())
    assert "Fetched from Vionlabs just now" in text(viewer_client.get(url(task), headers=HTMX))
    assert "saved copy" in text(viewer_client.get(url(task), headers=HTMX))
    assert len(mocked.calls) == 1


def test_an_operator_refreshes_with_the_parameters_shown(operator_client, task, mocked):
    cached(task, params=ResultParams(minimum_separation=2), age=dt.timedelta(minutes=1))
    mocked.get(ADBREAKS_URL, json=adbreaks_answer(ranks=((1, [42.0]),)))
    page = text(operator_client.get(url(task) + "?minimum_separation=2", headers=HTMX))
    assert 'name="minimum_separation" value="2"' in page  # the refresh form carries them
    response = operator_client.post(
        url(task, "catalog:task-result-refresh"), {"minimum_separation": "2"}, headers=HTMX
    )
    assert "00:00:42" in text(response)
    assert "minimum_separation=2" in mocked.calls[0].request.url


# --- what is shown --------------------------------------------------------------------------------------


def test_the_fragment_draws_the_ad_breaks_timeline_and_copyable_times(viewer_client, task):
    task.item.metadata = {"runtime_minutes": 50}
    task.item.save()
    cached(task)
    html = text(viewer_client.get(url(task), headers=HTMX))
    assert html.lstrip().startswith(f'<section id="task-result-{task.pk}"')  # the fragment, not the page
    marks = re.findall(r'<rect class="tl-mark tl-mark--rank(\d)" x="([\d.]+)"', html)
    assert sorted(marks) == [("1", "198.50"), ("1", "598.67"), ("2", "398.50")]
    assert re.search(r"<textarea[^>]*readonly[^>]*>00:10:00\n00:30:00</textarea>", html)
    assert "style=" not in html  # CSP: positions are SVG attributes
    assert "Runtime 00:50:00 (from the item's metadata)" in html


def test_the_page_without_htmx_is_a_whole_page(viewer_client, task):
    cached(task)
    html = text(viewer_client.get(url(task)))
    assert "<!doctype html>" in html
    assert f'id="task-result-{task.pk}"' in html


def test_markers_are_segments_with_their_times_and_missing_ones_said(viewer_client, item):
    markers = ProductTask.objects.create(item=item, product="markers", version="2", status="done")
    cached(markers, data=MARKERS_ANSWER)
    html = text(viewer_client.get(url(markers), headers=HTMX))
    assert re.findall(r'class="tl-seg tl-seg--(\w+)"', html) == ["intro", "credits"]
    assert re.search(r'data-marker="recap">.*?not detected', html, re.S)
    assert "00:00:30</time> \u2013 <time>00:01:36" in html


def test_a_failed_fetch_shows_the_cached_result_marked_not_current(operator_client, task, mocked):
    cached(task, age=dt.timedelta(hours=3))
    mocked.get(ADBREAKS_URL, status=503)
    html = text(operator_client.post(url(task, "catalog:task-result-refresh"), headers=HTMX))
    assert "Vionlabs did not answer (HTTP 503). Try again in 30 s." in html
    assert "Not current" in html
    assert "Showing the result as fetched 3\xa0hours ago, not the current one." in html
    assert "result--stale" in html


@pytest.mark.parametrize(
    "query",
    [
        "minimum_separation=abc",
        "minimum_separation=-1",
        "skip_last=1e400",
        "skip_first=nan",
        "minimum_separation=9&maximum_separation=3",
        "maximum_separation=100000",
    ],
)
def test_bad_parameters_get_a_message_and_no_fetch(viewer_client, task, mocked, query):
    response = viewer_client.get(f"{url(task)}?{query}", headers=HTMX)
    assert response.status_code == 200
    assert "Check the parameters: nothing was fetched." in text(response)
    assert 'aria-invalid="true"' in text(response)
    assert len(mocked.calls) == 0


def test_a_task_not_done_has_no_result(viewer_client, item, mocked):
    task = ProductTask.objects.create(item=item, product="adbreaks", version="1", status="pending")
    html = text(viewer_client.get(url(task), headers=HTMX))
    assert "not done" in html
    assert len(mocked.calls) == 0


def test_an_unknown_task_is_a_404(viewer_client, db):
    assert viewer_client.get(reverse("catalog:task-result", args=[999])).status_code == 404


def test_the_cached_fragment_query_count_is_pinned(viewer_client, task, django_assert_num_queries):
    cached(task)
    with django_assert_num_queries(AUTH + 2):  # the task with its item, the cache row
        assert viewer_client.get(url(task), headers=HTMX).status_code == 200


# --- the item page: the expandable row and the results link ---------------------------------------------


def test_the_results_link_opens_the_dashboards_view_never_vionlabs(viewer_client, task):
    html = text(viewer_client.get(reverse("catalog:item-detail", args=[task.item.pk])))
    assert f'<a href="{url(task)}">results</a>' in html
    assert "/results/adbreaks" not in html
    assert f'hx-get="{url(task)}" hx-trigger="toggle once"' in html


def test_only_done_tasks_can_be_expanded(viewer_client, item):
    pending = ProductTask.objects.create(item=item, product="adbreaks", version="1", status="pending")
    html = text(viewer_client.get(reverse("catalog:item-detail", args=[item.pk])))
    assert f'id="result-{pending.pk}"' not in html


def test_the_admin_shows_the_results_link_as_the_dashboards_view(client, task, django_user_model):
    admin = django_user_model.objects.create_superuser("root", password="x")
    client.force_login(admin)
    html = text(client.get(reverse("admin:catalog_producttask_change", args=[task.pk])))
    assert url(task) in html
    assert "/results/adbreaks" not in html


# --- series: which episodes have results ----------------------------------------------------------------


def test_episode_rows_say_whether_markers_and_ad_breaks_results_exist(viewer_client, products):
    season = CatalogItem.objects.create(inventory_id="s01", kind=ItemKind.SEASON)
    episodes = [
        CatalogItem.objects.create(inventory_id=f"s01e0{n}", kind=ItemKind.EPISODE, parent=season)
        for n in (1, 2)
    ]
    ProductTask.objects.create(item=episodes[0], product="adbreaks", version="0.9", status="done")
    ProductTask.objects.create(item=episodes[0], product="markers", version="2", status="failed")
    ProductTask.objects.create(item=episodes[1], product="markers", version="2", status="done")
    html = text(viewer_client.get(reverse("catalog:item-children", args=[season.pk]), headers=HTMX))
    chips = {
        inventory_id: re.findall(r'class="result-chip( result-chip--yes)?" data-product="(\w+)"', row)
        for inventory_id, row in re.findall(r'id="item-row-\d+".*?>(s01e0\d)</a>(.*?)</tr>', html, re.S)
    }
    assert chips == {
        "s01e01": [(" result-chip--yes", "adbreaks"), ("", "markers")],
        "s01e02": [("", "adbreaks"), (" result-chip--yes", "markers")],
    }


def test_the_admin_lists_saved_results_read_only(client, task, django_user_model):
    cached(task)
    client.force_login(django_user_model.objects.create_superuser("root", password="x"))
    html = text(client.get(reverse("admin:catalog_taskresult_changelist")))
    assert INVENTORY_ID in html
    assert client.get(reverse("admin:catalog_taskresult_add")).status_code == 403
