"""services.task_results: fetch, cache, refresh and every failure of a done task's result, with Vionlabs faked
at the HTTP boundary by `responses`; and the presenters that draw it."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import quote

import pytest
import requests
import responses
from django.db import transaction
from django.utils import timezone

from dashboard.catalog import client as client_module
from dashboard.catalog import services
from dashboard.catalog.models import CatalogItem, ProductTask, TaskResult
from dashboard.catalog.results import (
    ResultParams,
    adbreaks_timeline,
    contextual_rows,
    hms,
    json_tree,
    markers_timeline,
    parse_result,
)
from dashboard.vionlabs import Throttle
from tests.vionlabs.test_redaction import CANARY

BASE = "https://vionlabs.test"
KEY = CANARY
INVENTORY_ID = "tt0111161/4k"
ADBREAKS_URL = f"{BASE}/results/adbreaks/v3/filter/millisec/{quote(INVENTORY_ID, safe='')}"
MARKERS_URL = f"{BASE}/results/markers/v1/asset/{quote(INVENTORY_ID, safe='')}"
CONTEXT_URL = f"{BASE}/results/contextual_adbreak/v2/{quote(INVENTORY_ID, safe='')}"
GENERIC_URL = f"{BASE}/results/nudity/v1/{quote(INVENTORY_ID, safe='')}"


def adbreaks_answer(ranks=((1, [600.0, 1800.5]), (2, [1200.0]))):
    return {
        "status": "success",
        "error": None,
        "updated": "2026-11-30T10:00:00+00:00",
        "version_id": "1.0.1",
        "inventory_id": INVENTORY_ID,
        "type": "movie",
        "data": {"adbreak": [{"rank": r, "candidates": c} for r, c in ranks], "inventory_id": INVENTORY_ID},
    }


MARKERS_ANSWER = {"ident": INVENTORY_ID, "intro_start": 30.0, "intro_end": 95.5, "credit_start": 3400.0}


@pytest.fixture(autouse=True)
def vionlabs_settings(settings, monkeypatch):
    settings.VIONLABS_API_URL = BASE
    settings.VIONLABS_API_KEY = KEY
    settings.VIONLABS_MAX_RETRIES = 0
    # A 429 pauses the process-wide throttle: each test starts with a fresh one.
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


def done_task(item, product="adbreaks", version="1.0.1", **fields):
    fields.setdefault("status_changed_at", timezone.now() - dt.timedelta(hours=5))
    return ProductTask.objects.create(item=item, product=product, version=version, status="done", **fields)


def cache(task, data, *, age=dt.timedelta(hours=3), params=None):
    params = params or ResultParams()
    return TaskResult.objects.create(
        task=task, params_key=params.key, params=params.as_dict(), fetched_at=timezone.now() - age, data=data
    )


# --- fetch and cache ------------------------------------------------------------------------------------


def test_first_open_fetches_with_the_tasks_version_and_caches_the_answer(mocked, item):
    task = done_task(item)
    mocked.get(ADBREAKS_URL, json=adbreaks_answer())

    view = services.task_results(task=task)

    assert view.fetched_now
    assert not view.stale
    assert view.message == ""
    assert view.result.candidates(1) == (600.0, 1800.5)
    sent = mocked.calls[0].request.url
    assert "version=1.0.1" in sent
    assert "minimum_separation" not in sent  # defaults are Vionlabs' own
    row = TaskResult.objects.get(task=task)
    assert row.data["data"]["adbreak"][0]["candidates"] == [600.0, 1800.5]


def test_second_open_reads_the_cache_without_calling_vionlabs(mocked, item):
    task = done_task(item)
    cache(task, adbreaks_answer(), age=dt.timedelta(hours=3))

    view = services.task_results(task=task)

    assert len(mocked.calls) == 0
    assert not view.fetched_now
    assert not view.stale
    assert view.fetched_at < timezone.now() - dt.timedelta(hours=2)


def test_parameters_are_passed_through_and_cached_apart(mocked, item):
    task = done_task(item)
    mocked.get(ADBREAKS_URL, json=adbreaks_answer())
    params = ResultParams(minimum_separation=2, maximum_separation=8.5, skip_first=0, skip_last=3)

    services.task_results(task=task, params=params)
    services.task_results(task=task)

    first = mocked.calls[0].request.url
    assert first.endswith("&minimum_separation=2&maximum_separation=8.5&skip_first=0&skip_last=3")
    assert TaskResult.objects.filter(task=task).count() == 2
    assert TaskResult.objects.get(task=task, params_key=params.key).params == params.as_dict()


def test_refresh_fetches_again_even_with_a_current_cache(mocked, item):
    task = done_task(item)
    cache(task, adbreaks_answer(ranks=((1, [10.0]),)), age=dt.timedelta(minutes=1))
    mocked.get(ADBREAKS_URL, json=adbreaks_answer(ranks=((1, [20.0]),)))

    view = services.task_results(task=task, refresh=True)

    assert view.fetched_now
    assert view.result.candidates(1) == (20.0,)
    assert TaskResult.objects.get(task=task).data["data"]["adbreak"][0]["candidates"] == [20.0]


def test_a_cache_older_than_the_tasks_completion_is_fetched_again(mocked, item):
    task = done_task(item, status_changed_at=timezone.now() - dt.timedelta(minutes=5))  # retried, done again
    cache(task, adbreaks_answer(ranks=((1, [10.0]),)), age=dt.timedelta(hours=1))
    mocked.get(ADBREAKS_URL, json=adbreaks_answer(ranks=((1, [20.0]),)))

    assert services.task_results(task=task).result.candidates(1) == (20.0,)


def test_a_cache_older_than_the_max_age_is_fetched_again(mocked, item):
    task = done_task(item, status_changed_at=timezone.now() - dt.timedelta(days=5))
    cache(task, adbreaks_answer(), age=services.RESULT_MAX_AGE + dt.timedelta(minutes=1))
    mocked.get(ADBREAKS_URL, json=adbreaks_answer())

    assert services.task_results(task=task).fetched_now


def test_only_the_newest_parameter_sets_are_kept(mocked, item):
    task = done_task(item)
    mocked.get(ADBREAKS_URL, json=adbreaks_answer())
    for n in range(services.RESULT_CACHE_PER_TASK + 2):
        services.task_results(task=task, params=ResultParams(minimum_separation=n))
    kept = TaskResult.objects.filter(task=task)
    assert kept.count() == services.RESULT_CACHE_PER_TASK
    assert not kept.filter(params__minimum_separation=0.0).exists()


def test_a_task_that_is_not_done_is_not_fetched(mocked, item):
    task = ProductTask.objects.create(item=item, product="adbreaks", version="1.0.1", status="processing")
    view = services.task_results(task=task)
    assert len(mocked.calls) == 0
    assert view.result is None
    assert "not done" in view.message


def test_markers_contextual_and_other_products_use_their_own_api(mocked, item):
    mocked.get(MARKERS_URL, json=MARKERS_ANSWER)
    mocked.get(CONTEXT_URL, json={**adbreaks_answer(), "data": {"context_adbreak": [{"timestamp": 5.0}]}})
    mocked.get(GENERIC_URL, json={"data": {"moments": [1, 2]}})

    assert services.task_results(task=done_task(item, "markers", "2")).kind == "markers"
    assert services.task_results(task=done_task(item, "contextual_adbreak", "1")).kind == "contextual"
    assert services.task_results(task=done_task(item, "nudity", "1")).kind == "generic"


def test_parameters_are_ignored_for_products_that_take_none(mocked, item):
    mocked.get(MARKERS_URL, json=MARKERS_ANSWER)
    services.task_results(task=done_task(item, "markers", "2"), params=ResultParams(skip_first=3))
    assert "skip_first" not in mocked.calls[0].request.url


def test_no_http_inside_a_transaction(mocked, item):
    task = done_task(item)
    mocked.get(ADBREAKS_URL, json=adbreaks_answer())
    with pytest.raises(services.HttpInsideTransaction), transaction.atomic(durable=True):
        services.task_results(task=task)
    assert len(mocked.calls) == 0


def test_the_key_echoed_in_an_answer_is_not_cached_nor_shown(mocked, item):
    task = done_task(item, "nudity", "1")
    mocked.get(GENERIC_URL, json={"data": {"note": f"served for key={KEY}", KEY: KEY}})

    view = services.task_results(task=task)

    stored = json.dumps(TaskResult.objects.get(task=task).data)
    assert KEY not in stored
    assert json.dumps(KEY)[1:-1] not in stored
    assert KEY not in str(json_tree(view.result.data))


# --- failures: a message, and the cached result marked stale with its age -------------------------------

FAILURES = {
    "401": (
        {"status": 401, "json": {"detail": "Not authenticated"}},
        "no access to the Ad breaks results API",
    ),
    "403": (
        {"status": 403, "json": {"detail": f"no access {KEY}"}},
        "no access to the Ad breaks results API",
    ),
    "404": ({"status": 404, "json": {"detail": "Result not found"}}, "No result yet"),
    "422": (
        {"status": 422, "json": {"detail": [{"loc": ["query", "skip_last"], "msg": "bad", "input": KEY}]}},
        "Vionlabs rejected the parameters: query.skip_last: bad",
    ),
    "429": ({"status": 429, "headers": {"Retry-After": "17"}, "json": {}}, "Try again in 17 s"),
    "500": (
        {"status": 500, "body": f"oops key={KEY}"},
        "Vionlabs did not answer (HTTP 500). Try again in 30 s",
    ),
    "503": ({"status": 503, "body": "down"}, "Vionlabs did not answer (HTTP 503)"),
    "timeout": ({"body": requests.exceptions.ReadTimeout(f"timed out key={KEY}")}, "did not answer in time"),
    "truncated": ({"status": 200, "body": '{"status": "success", "data": {"adbr'}, "could not read"),
}


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failed_fetch_says_why_and_shows_no_result(mocked, item, failure):
    answer, expected = FAILURES[failure]
    task = done_task(item)
    mocked.get(ADBREAKS_URL, **answer)

    view = services.task_results(task=task)

    assert expected in view.message
    assert view.result is None
    assert view.stale
    assert not view.fetched_now
    assert KEY not in view.message
    assert not TaskResult.objects.exists()


@pytest.mark.parametrize("failure", ["403", "404", "503", "timeout"])
def test_a_failed_fetch_shows_the_cached_result_as_stale_with_its_age(mocked, item, failure):
    answer, expected = FAILURES[failure]
    task = done_task(item)
    row = cache(task, adbreaks_answer(), age=services.RESULT_MAX_AGE + dt.timedelta(hours=3))
    mocked.get(ADBREAKS_URL, **answer)

    view = services.task_results(task=task)

    assert expected in view.message
    assert view.stale
    assert not view.fetched_now
    assert view.result.candidates(1) == (600.0, 1800.5)
    assert view.fetched_at == row.fetched_at
    assert TaskResult.objects.get().fetched_at == row.fetched_at  # the failure did not touch the cache


def test_a_failed_refresh_keeps_the_current_cache_but_marks_it_stale(mocked, item):
    task = done_task(item)
    cache(task, adbreaks_answer(), age=dt.timedelta(minutes=1))
    mocked.get(ADBREAKS_URL, status=503)
    view = services.task_results(task=task, refresh=True)
    assert view.stale
    assert view.result is not None
    assert "HTTP 503" in view.message


def test_the_rate_limit_message_names_the_wait_without_sleeping(mocked, item, settings):
    settings.VIONLABS_MAX_RETRIES = 3  # the request-path client retries once at most, and not after 2 s
    task = done_task(item)
    mocked.get(ADBREAKS_URL, status=429, headers={"Retry-After": "40"}, json={})
    view = services.task_results(task=task)
    assert len(mocked.calls) == 1
    assert view.retry_after == 40
    assert "Try again in 40 s" in view.message


# --- presenters -----------------------------------------------------------------------------------------


def test_hms_rounds_to_the_second():
    assert [hms(0), hms(59.6), hms(3723.4), hms(None)] == ["00:00:00", "00:01:00", "01:02:03", ""]


def test_adbreaks_timeline_ranks_marks_and_takes_the_runtime_from_metadata(item):
    item.metadata = {"runtime_minutes": "50"}
    result = parse_result("adbreaks", adbreaks_answer(), inventory_id=INVENTORY_ID)
    timeline = adbreaks_timeline(result, item)
    assert (timeline.runtime, timeline.runtime_source) == (3000.0, "metadata")
    by_time = {m.seconds: m for m in timeline.marks}
    assert float(by_time[600.0].height) > float(by_time[1200.0].height)  # rank 1 taller than rank 2
    assert by_time[1800.5].x == "598.67"  # 1800.5 / 3000 of 1000 units, minus half the mark's width
    assert timeline.marks[-1].rank == 1  # drawn last, on top
    assert [t.label for t in timeline.ticks][:2] == ["00:00:00", "00:05:00"]


def test_runtime_is_estimated_from_the_last_candidate_without_metadata(item):
    result = parse_result("adbreaks", adbreaks_answer(), inventory_id=INVENTORY_ID)
    timeline = adbreaks_timeline(result, item)
    assert timeline.runtime_source == "estimated"
    assert timeline.runtime > 1800.5


def test_markers_timeline_draws_detected_segments_and_credits_to_the_end(item):
    item.metadata = {"runtime_seconds": 3600}
    timeline = markers_timeline(parse_result("markers", MARKERS_ANSWER, inventory_id=INVENTORY_ID), item)
    kinds = {s.kind: s for s in timeline.segments}
    assert set(kinds) == {"intro", "credits"}  # no recap detected
    assert kinds["credits"].x == "944.44"
    assert kinds["credits"].width == "55.56"
    assert kinds["intro"].start_time == "00:00:30"
    assert kinds["intro"].end_time == "00:01:36"


def test_contextual_rows_keep_the_top_three_by_score():
    answer = {
        "data": {
            "context_adbreak": [
                {
                    "timestamp": 61.0,
                    "keyword": {"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.7},
                    "iab_tier": {"Sports": 0.4},
                    "contains_nudity": True,
                }
            ]
        }
    }
    row = contextual_rows(parse_result("contextual_adbreak", answer, inventory_id="x"))[0]
    assert [label for label, _ in row.keywords] == ["b", "d", "c"]
    assert row.iab == [("Sports", 0.4)]
    assert row.nudity is True
    assert row.time == "00:01:01"


def test_json_tree_escapes_and_bounds_its_size():
    tree = str(json_tree({"x": "<script>", "deep": [[[[[[[[[[1]]]]]]]]]], "long": list(range(500))}))
    assert "<script>" not in tree
    assert "&lt;script&gt;" in tree
    assert "too deep" in tree
    assert "300 more not shown" in tree
