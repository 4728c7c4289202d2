"""The sandbox's Results APIs: made-up but deterministic results for done tasks, 404 before, faults, 403."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.core.management import CommandError, call_command

from dashboard.sandbox import Sandbox
from dashboard.sandbox.results import Separation, adbreak_ranks, markers, runtime_seconds
from dashboard.sandbox.server import parse_route

from .helpers import FakeClock, call, task_path

IDS = [f"mv-{number:04d}" for number in range(40)]


def adbreaks_path(inventory_id: str, unit: str = "millisec") -> str:
    return f"/results/adbreaks/v3/filter/{unit}/{quote(inventory_id, safe='')}"


def contextual_path(inventory_id: str) -> str:
    return f"/results/contextual_adbreak/v2/{quote(inventory_id, safe='')}"


def markers_path(inventory_id: str) -> str:
    return f"/results/markers/v1/asset/{quote(inventory_id, safe='')}"


def load_done(sandbox, *keys: tuple[str, str, str], status: str = "done") -> None:
    rows = [{"inventory_id": i, "product": p, "version": v, "status": status} for i, p, v in keys]
    answer = call(sandbox, "POST", "/_sandbox/tasks", json={"tasks": rows})
    assert answer.status_code == 200, answer.text


@pytest.fixture
def clocked():
    clock = FakeClock()
    server = Sandbox(pending_seconds=2, processing_seconds=3, clock=clock).start()
    yield server, clock
    server.stop()


def test_ad_breaks_of_a_done_task_follow_the_vendors_v3_shape(sandbox):
    load_done(sandbox, ("tt1", "adbreaks", "op-adbreak-v6"))
    answer = call(sandbox, "GET", adbreaks_path("tt1"), params={"version": "op-adbreak-v6"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "success"
    assert body["error"] is None
    assert body["updated"].endswith("Z")
    assert (body["inventory_id"], body["version_id"], body["type"]) == ("tt1", "op-adbreak-v6", "movie")
    data = body["data"]
    assert (data["inventory_id"], data["version_id"]) == ("tt1", "op-adbreak-v6")
    assert len(data["vionlabs_id"]) == 16
    assert [tier["rank"] for tier in data["adbreak"]] == [1, 2, 3]
    assert all(isinstance(at, float) for tier in data["adbreak"] for at in tier["candidates"])


def test_a_task_only_has_results_once_it_is_done(clocked):
    server, clock = clocked
    call(server, "POST", task_path("tt1", "adbreaks", "v6"))
    assert call(server, "GET", adbreaks_path("tt1")).status_code == 404
    clock.advance(2.5)  # processing
    assert call(server, "GET", adbreaks_path("tt1")).json() == {"detail": "Result not found"}
    clock.advance(3)
    assert call(server, "GET", adbreaks_path("tt1")).status_code == 200


@pytest.mark.parametrize("status", ["failed", "deactivated", "pending"])
def test_a_task_that_is_not_done_has_no_result(sandbox, status):
    load_done(sandbox, ("tt1", "adbreaks", "v6"), status=status)
    assert call(sandbox, "GET", adbreaks_path("tt1")).status_code == 404


def test_an_unknown_item_or_another_product_has_no_result(sandbox):
    load_done(sandbox, ("tt1", "jitthumbnails", "1.0.1"))
    assert call(sandbox, "GET", adbreaks_path("tt1")).status_code == 404
    assert call(sandbox, "GET", adbreaks_path("nobody")).status_code == 404


def test_the_version_asked_for_must_be_the_done_one(sandbox):
    load_done(sandbox, ("tt1", "adbreaks", "v6"))
    assert call(sandbox, "GET", adbreaks_path("tt1"), params={"version": "v5"}).status_code == 404
    assert call(sandbox, "GET", adbreaks_path("tt1"), params={"version": "v6"}).status_code == 200
    assert call(sandbox, "GET", adbreaks_path("tt1")).json()["version_id"] == "v6"


def test_results_are_the_same_for_the_same_id_across_requests_resets_and_servers(sandbox):
    load_done(
        sandbox, ("tt1", "adbreaks", "v6"), ("tt1", "contextual_adbreak", "v2"), ("tt1", "markers", "1")
    )
    paths = [adbreaks_path("tt1"), contextual_path("tt1"), markers_path("tt1")]
    first = [call(sandbox, "GET", path).json() for path in paths]
    assert [call(sandbox, "GET", path).json() for path in paths] == first
    sandbox.reset()
    load_done(
        sandbox, ("tt1", "adbreaks", "v6"), ("tt1", "contextual_adbreak", "v2"), ("tt1", "markers", "1")
    )
    again = [call(sandbox, "GET", path).json() for path in paths]
    assert [answer.get("data") for answer in again] == [answer.get("data") for answer in first]
    with Sandbox() as other:
        load_done(other, ("tt1", "adbreaks", "v6"))
        assert (
            call(other, "GET", adbreaks_path("tt1")).json()["data"]["adbreak"] == first[0]["data"]["adbreak"]
        )


def test_different_ids_get_different_results():
    assert len({str(adbreak_ranks(inventory_id, Separation())) for inventory_id in IDS}) == len(IDS)
    assert len({runtime_seconds(inventory_id) for inventory_id in IDS}) == len(IDS)


@pytest.mark.parametrize("inventory_id", IDS)
def test_candidates_are_plausible_over_the_runtime(inventory_id):
    runtime = runtime_seconds(inventory_id)
    assert 20 * 60 <= runtime <= 150 * 60
    ranks = {tier["rank"]: tier["candidates"] for tier in adbreak_ranks(inventory_id, Separation())}
    assert 2 <= len(ranks[1]) < len(ranks[2])  # a few of the best, more of the next tier
    for candidates in ranks.values():
        assert candidates == sorted(candidates)
        assert all(60 <= at <= runtime - 60 for at in candidates)  # default skip_first/skip_last: 1 minute


@pytest.mark.parametrize("inventory_id", IDS[:10])
def test_separation_and_skip_minutes_are_honoured(inventory_id):
    separation = Separation(minimum=4, maximum=12, skip_first=10, skip_last=8)
    runtime = runtime_seconds(inventory_id)
    for tier in adbreak_ranks(inventory_id, separation):
        candidates = tier["candidates"]
        assert all(600 <= at <= runtime - 480 for at in candidates)
        assert all(b - a >= 240 for a, b in itertools.pairwise(candidates))


def test_gaps_wider_than_the_maximum_separation_get_lower_rank_candidates():
    def counts(maximum: float) -> tuple[int, int]:
        ranks = [adbreak_ranks(inventory_id, Separation(maximum=maximum)) for inventory_id in IDS]
        return sum(len(r[0]["candidates"]) for r in ranks), sum(len(r[-1]["candidates"]) for r in ranks)

    (best_wide, last_wide), (best_tight, last_tight) = counts(60), counts(3)
    assert best_tight == best_wide
    assert last_tight > last_wide


def test_the_query_parameters_reach_the_answer(sandbox):
    load_done(sandbox, ("tt1", "adbreaks", "v6"))
    params = {"minimum_separation": "4", "skip_first": "10", "skip_last": "8", "maximum_separation": "12"}
    answer = call(sandbox, "GET", adbreaks_path("tt1"), params=params).json()
    expected = adbreak_ranks("tt1", Separation(minimum=4, maximum=12, skip_first=10, skip_last=8))
    assert answer["data"]["adbreak"] == expected
    assert expected != adbreak_ranks("tt1", Separation())


def test_the_frame_endpoint_counts_frames_at_25_fps(sandbox):
    load_done(sandbox, ("tt1", "adbreaks", "v6"))
    seconds = call(sandbox, "GET", adbreaks_path("tt1")).json()["data"]["adbreak"]
    frames = call(sandbox, "GET", adbreaks_path("tt1", "frame")).json()["data"]["adbreak"]
    assert [tier["candidates"] for tier in frames] == [
        [round(at * 25) for at in tier["candidates"]] for tier in seconds
    ]


@pytest.mark.parametrize(
    ("value", "error_type"),
    [("soon", "float_parsing"), ("-1", "greater_than_equal"), ("nan", "greater_than_equal")],
)
def test_a_bad_minute_parameter_is_422_in_fastapi_shape(sandbox, value, error_type):
    load_done(sandbox, ("tt1", "adbreaks", "v6"))
    answer = call(
        sandbox, "GET", adbreaks_path("tt1"), params={"skip_last": value, "minimum_separation": "x"}
    )
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert [item["loc"] for item in detail] == [["query", "minimum_separation"], ["query", "skip_last"]]
    assert detail[1]["type"] == error_type


def test_contextual_breaks_have_keywords_moods_and_iab_tiers_at_the_best_breaks(sandbox):
    load_done(sandbox, ("tt1", "contextual_adbreak", "v2"))
    body = call(sandbox, "GET", contextual_path("tt1")).json()
    assert body["status"] == "success"
    breaks = body["data"]["context_adbreak"]
    ranks = adbreak_ranks("tt1", Separation())
    assert sorted(entry["timestamp"] for entry in breaks) == sorted(
        ranks[0]["candidates"] + ranks[1]["candidates"]
    )
    for entry in breaks:
        assert entry["frame_number"] == round(entry["timestamp"] * 25)
        assert entry["rank"] in (1, 2)
        assert isinstance(entry["contains_nudity"], bool)
        assert isinstance(entry["contains_profanity"], bool)
        assert len(entry["keyword"]) == 3
        assert len(entry["mood_tag"]) == 2
        assert entry["iab_version"] == "3.0"
        assert 1 <= len(entry["iab_tier"]) == len(entry["iab_uid"]) <= 3
        assert entry["iab_all_versions"]["3.0"]["iab_tier"] == entry["iab_tier"]


def test_markers_of_a_done_task(sandbox):
    load_done(sandbox, ("tt1", "markers", "1"))
    body = call(sandbox, "GET", markers_path("tt1"), params={"version": "1"}).json()
    assert body["ident"] == "tt1"
    assert body["not_yet_available"] is False
    assert body == markers("tt1")


def test_markers_are_plausible_and_sometimes_missing():
    answers = [markers(inventory_id) for inventory_id in IDS]
    for answer in answers:
        runtime = runtime_seconds(answer["ident"])
        if "intro_start" in answer:
            assert 0 <= answer["intro_start"] < answer["intro_end"] < 300
        if "recap_start" in answer:
            assert answer["recap_start"] < answer["recap_end"]
        if "credit_start" in answer:
            assert runtime - 400 <= answer["credit_start"] <= runtime - 60
    for name in ("intro_start", "recap_start", "credit_start"):
        present = sum(name in answer for answer in answers)
        assert 0 < present < len(answers), name


def test_markers_of_a_known_item_not_done_yet_are_not_yet_available(sandbox):
    load_done(sandbox, ("tt1", "markers", "1"), status="processing")
    answer = call(sandbox, "GET", markers_path("tt1"))
    assert answer.status_code == 200
    assert answer.json() == {"ident": "tt1", "not_yet_available": True}
    call(sandbox, "PUT", "/catalog/v1/item", json={"id": "in-catalog"})
    assert call(sandbox, "GET", markers_path("in-catalog")).json()["not_yet_available"] is True


def test_markers_of_an_unknown_item_are_404(sandbox):
    assert call(sandbox, "GET", markers_path("nobody")).status_code == 404


def test_other_products_answer_plain_json(sandbox):
    load_done(sandbox, ("tt1", "jitthumbnails", "1.0.1"))
    body = call(sandbox, "GET", "/results/jitthumbnails/v1/tt1").json()
    assert body["data"]["product"] == "jitthumbnails"
    assert body["data"]["version_id"] == "1.0.1"
    assert 3 <= len(body["data"]["items"]) <= 6


def test_the_results_link_of_a_done_task_answers(sandbox):
    load_done(sandbox, ("a/b", "markers", "1"))
    link = call(sandbox, "GET", task_path("a/b", "markers", "1")).json()["_links"]["results"]
    assert link["href"] == sandbox.url + "/results/markers/v1/asset/a%2Fb?version=1"
    answer = call(
        sandbox, "GET", link["href"].removeprefix(sandbox.url).split("?")[0], params={"version": "1"}
    )
    assert answer.json()["ident"] == "a/b"


@pytest.mark.parametrize(
    ("path", "product", "name"),
    [
        ("/results/adbreaks/v3/filter/millisec/a%2Fb", "adbreaks", "millisec"),
        ("/results/adbreaks/v3/filter/frame/x", "adbreaks", "frame"),
        ("/results/contextual_adbreak/v2/x", "contextual_adbreak", ""),
        ("/results/markers/v1/asset/x", "markers", ""),
        ("/results/scene_tags/v1/x", "scene_tags", ""),
    ],
)
def test_results_routes(path, product, name):
    route = parse_route(path)
    assert (route.kind, route.product, route.name) == ("results", product, name)


@pytest.mark.parametrize(
    "path",
    [
        "/results/adbreaks/v1/x",
        "/results/adbreaks/v3/filter/seconds/x",
        "/results/markers/v1/x",
        "/results/nosuchproduct/v1/x",
        "/results/contextual_adbreak/v2/",
    ],
)
def test_other_results_paths_are_404(sandbox, path):
    assert parse_route(path).kind == "unknown"
    assert call(sandbox, "GET", path).status_code == 404


def test_results_are_get_only(sandbox):
    answer = call(sandbox, "POST", adbreaks_path("tt1"))
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET"


@pytest.mark.parametrize("key", [None, "wrong"])
def test_results_need_the_key(sandbox, key):
    load_done(sandbox, ("tt1", "adbreaks", "v6"))
    assert call(sandbox, "GET", adbreaks_path("tt1"), key=key).status_code == 401


def test_one_product_can_be_refused_with_403_while_the_rest_works(sandbox):
    load_done(sandbox, ("tt1", "adbreaks", "v6"), ("tt1", "markers", "1"))
    answer = call(sandbox, "POST", "/_sandbox/config", json={"no_access_product": "markers"})
    assert answer.json()["no_access_product"] == "markers"
    assert call(sandbox, "GET", markers_path("tt1")).status_code == 403
    assert call(sandbox, "GET", markers_path("nobody")).status_code == 403  # access is checked first
    assert call(sandbox, "GET", adbreaks_path("tt1")).status_code == 200
    assert call(sandbox, "GET", task_path("tt1", "markers", "1")).status_code == 200
    assert call(sandbox, "GET", markers_path("tt1"), key="wrong").status_code == 401


def test_an_unknown_no_access_product_is_refused(sandbox):
    answer = call(sandbox, "POST", "/_sandbox/config", json={"no_access_product": "thumbnails"})
    assert answer.status_code == 422
    assert "no_access_product" in answer.json()["detail"][0]["msg"]


def test_faults_apply_to_results(sandbox):
    load_done(sandbox, ("tt1", "adbreaks", "v6"))
    sandbox.configure(error_rate=1.0)
    assert call(sandbox, "GET", adbreaks_path("tt1")).status_code == 503
    sandbox.configure(error_rate=0.0, rate_limit_rate=1.0, retry_after=4)
    limited = call(sandbox, "GET", markers_path("tt1"))
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "4"
    stats = sandbox.stats()
    assert stats["faults"]["503"] == 1
    assert stats["faults"]["429"] == 1
    assert stats["endpoints"]["GET results"] == 2


def test_run_sandbox_takes_the_no_access_product():
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_sandbox", "--port", "0", "--pending-seconds", "0",
         "--processing-seconds", "0", "--no-access-product", "jitthumbnails"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = process.stdout.readline().split(" on ")[1].split()[0]
        key = {"key": "sandbox-key"}
        for product in ("jitthumbnails", "scene_tags"):
            requests.post(url + task_path("tt1", product, "1"), params=key, timeout=5).raise_for_status()
        assert requests.get(url + "/results/jitthumbnails/v1/tt1", params=key, timeout=5).status_code == 403
        assert requests.get(url + "/results/scene_tags/v1/tt1", params=key, timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    assert process.returncode == 0


def test_run_sandbox_refuses_an_unknown_no_access_product():
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("run_sandbox", "--port", "0", "--no-access-product", "thumbnails")
