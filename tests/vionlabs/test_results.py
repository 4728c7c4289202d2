"""The Results APIs through VionlabsClient, with `responses`: every answer shape, every failure, no key leak."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from dashboard.vionlabs import (
    AdBreakRank,
    GenericResult,
    MarkersResult,
    VionlabsBadResponse,
    VionlabsError,
    VionlabsNoAccess,
    VionlabsNoResult,
    VionlabsNotFound,
    VionlabsRateLimited,
    VionlabsRejected,
    VionlabsUnauthorized,
    VionlabsUnavailable,
)
from tests.vionlabs.fakes import BASE, FAILURES, KEY, make_client
from tests.vionlabs.test_redaction import CANARY, HTTP_FAILURES, assert_key_absent, debug_logs  # noqa: F401

ADBREAKS_URL = BASE + "/results/adbreaks/v3/filter/millisec/tt1"
CONTEXTUAL_URL = BASE + "/results/contextual_adbreak/v2/tt1"
MARKERS_URL = BASE + "/results/markers/v1/asset/tt1"
THUMBNAILS_URL = BASE + "/results/jitthumbnails/v1/tt1"

ADBREAKS_BODY = {
    "status": "success",
    "error": None,
    "updated": "2019-08-24T14:15:22Z",
    "version_id": "op-adbreak-v6",
    "inventory_id": "tt1",
    "type": "movie",
    "served_by": "eu-1",  # not in the reference: must be kept
    "data": {
        "adbreak": [
            {"candidates": [1535.4, 2101.3], "rank": 2},
            {"candidates": [1352.08, 10.6, 1886.6, 2401.6], "rank": 1, "confidence": 0.9},
        ],
        "inventory_id": "tt1",
        "type": "movie",
        "version_id": "op-adbreak-v6",
        "vionlabs_id": "33880c61819a5d50",
        "runtime": 2700.5,
    },
}

BREAK = {
    "timestamp": 612.4,
    "frame_number": 15310,
    "rank": 1,
    "contains_nudity": False,
    "contains_profanity": True,
    "keyword": {"home invasion": 0.67, "house": 0.83},
    "mood_tag": {"amusing": 0.76, "suspenseful": 0.57},
    "iab_version": "3.0",
    "iab_tier": {"Houses": 0.46, "Smart Home": 0.33},
    "iab_uid": {"665": 0.46, "712": 0.33},
    "iab_all_versions": {"2.0": {"iab_tier": {"Utility/Online Tool": 0.58}, "iab_uid": {"1008": 0.58}}},
    "scene_id": 17,
}
CONTEXTUAL_BODY = {
    "status": "success",
    "error": None,
    "updated": "2024-03-06T20:00:00+00:00",
    "version_id": "ctx-v2",
    "inventory_id": "tt1",
    "type": "movie",
    "data": {"inventory_id": "tt1", "type": "movie", "vionlabs_id": "abc", "context_adbreak": [BREAK]},
}
MARKERS_BODY = {
    "ident": "tt1",
    "not_yet_available": False,
    "intro_start": 60,
    "intro_end": 125,
    "recap_start": 125,
    "recap_end": 155.5,
    "credit_start": 3057,
}


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def query_of(call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query, keep_blank_values=True)


# --- answer shapes -----------------------------------------------------------------------------------------


def test_adbreaks_are_ranked_candidates_in_seconds(mocked):
    mocked.get(ADBREAKS_URL, json=ADBREAKS_BODY)
    client, _ = make_client()
    result = client.get_adbreaks("tt1", version="op-adbreak-v6")
    assert result.inventory_id == "tt1"
    assert result.status == "success"
    assert result.error is None
    assert result.updated == datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)
    assert (result.version_id, result.type, result.vionlabs_id) == (
        "op-adbreak-v6",
        "movie",
        "33880c61819a5d50",
    )
    assert result.ranks == (
        AdBreakRank(rank=1, candidates=(10.6, 1352.08, 1886.6, 2401.6), extra={"confidence": 0.9}),
        AdBreakRank(rank=2, candidates=(1535.4, 2101.3)),
    )
    assert result.candidates(2) == (1535.4, 2101.3)
    assert result.candidates(3) == ()
    assert result.raw == ADBREAKS_BODY


def test_adbreaks_keep_unknown_fields_of_the_envelope_and_of_data(mocked):
    mocked.get(ADBREAKS_URL, json=ADBREAKS_BODY)
    client, _ = make_client()
    assert client.get_adbreaks("tt1").extra == {"served_by": "eu-1", "data.runtime": 2700.5}


def test_adbreaks_pass_the_separation_and_skip_minutes_through(mocked):
    mocked.get(ADBREAKS_URL, json=ADBREAKS_BODY)
    client, _ = make_client()
    client.get_adbreaks(
        "tt1", version="v6", minimum_separation=2, maximum_separation=7.5, skip_first=0, skip_last=3
    )
    assert query_of(mocked.calls[0]) == {
        "key": [KEY],
        "version": ["v6"],
        "minimum_separation": ["2"],
        "maximum_separation": ["7.5"],
        "skip_first": ["0"],
        "skip_last": ["3"],
    }


def test_adbreaks_send_only_the_parameters_given(mocked):
    mocked.get(ADBREAKS_URL, json=ADBREAKS_BODY)
    client, _ = make_client()
    client.get_adbreaks("tt1")
    assert query_of(mocked.calls[0]) == {"key": [KEY]}


@pytest.mark.parametrize("value", [True, float("nan"), float("inf"), "2"])
def test_adbreaks_refuse_a_minute_value_that_is_not_a_number_without_sending(mocked, value):
    client, _ = make_client()
    with pytest.raises(ValueError, match="minimum_separation"):
        client.get_adbreaks("tt1", minimum_separation=value)
    assert len(mocked.calls) == 0


def test_adbreaks_v2_answer_without_envelope_is_read_too(mocked):
    body = {
        "inventory_id": "tt1",
        "type": "movie",
        "version_id": "v5",
        "adbreak": [{"rank": 1, "candidates": [5]}],
    }
    mocked.get(ADBREAKS_URL, json=body)
    client, _ = make_client()
    result = client.get_adbreaks("tt1")
    assert result.ranks == (AdBreakRank(rank=1, candidates=(5.0,)),)
    assert result.version_id == "v5"
    assert result.status is None


def test_an_inventory_id_is_percent_encoded_in_the_results_path(mocked):
    mocked.get(BASE + "/results/adbreaks/v3/filter/millisec/a%2Fb%3Fkey%3Dx", json=ADBREAKS_BODY)
    client, _ = make_client()
    client.get_adbreaks("a/b?key=x")
    assert query_of(mocked.calls[0]) == {"key": [KEY]}


def test_contextual_breaks_carry_their_context(mocked):
    mocked.get(CONTEXTUAL_URL, json=CONTEXTUAL_BODY)
    client, _ = make_client()
    result = client.get_contextual_adbreaks("tt1", version="ctx-v2", skip_first=2)
    assert query_of(mocked.calls[0]) == {"key": [KEY], "version": ["ctx-v2"], "skip_first": ["2"]}
    assert (result.inventory_id, result.version_id, result.vionlabs_id) == ("tt1", "ctx-v2", "abc")
    (only,) = result.breaks
    assert only.timestamp == 612.4
    assert only.frame_number == 15310
    assert only.rank == 1
    assert only.contains_nudity is False
    assert only.contains_profanity is True
    assert only.keyword == {"home invasion": 0.67, "house": 0.83}
    assert only.mood_tag == {"amusing": 0.76, "suspenseful": 0.57}
    assert only.iab_version == "3.0"
    assert only.iab_tier == {"Houses": 0.46, "Smart Home": 0.33}
    assert only.iab_uid == {"665": 0.46, "712": 0.33}
    assert only.iab_all_versions == BREAK["iab_all_versions"]
    assert only.extra == {"scene_id": 17}


def test_a_contextual_field_of_an_unexpected_type_is_kept_not_refused(mocked):
    odd = {**BREAK, "keyword": {"house": "high"}, "contains_nudity": "no", "frame_number": None}
    body = {**CONTEXTUAL_BODY, "data": {"context_adbreak": [odd]}}
    mocked.get(CONTEXTUAL_URL, json=body)
    client, _ = make_client()
    (only,) = client.get_contextual_adbreaks("tt1").breaks
    assert only.keyword == {}
    assert only.contains_nudity is None
    assert only.frame_number is None
    assert only.extra == {"scene_id": 17, "keyword": {"house": "high"}, "contains_nudity": "no"}


def test_markers_give_intro_recap_and_credits(mocked):
    mocked.get(MARKERS_URL, json=MARKERS_BODY)
    client, _ = make_client()
    result = client.get_markers("tt1", version="bm-1")
    assert query_of(mocked.calls[0]) == {"key": [KEY], "version": ["bm-1"]}
    assert result == MarkersResult(
        ident="tt1",
        intro_start=60.0,
        intro_end=125.0,
        recap_start=125.0,
        recap_end=155.5,
        credit_start=3057.0,
        extra={},
        raw=MARKERS_BODY,
    )
    assert result.intro == (60.0, 125.0)
    assert result.recap == (125.0, 155.5)


def test_markers_not_detected_are_none_and_unknown_fields_are_kept(mocked):
    mocked.get(MARKERS_URL, json={"ident": "tt1", "intro_start": 12, "intro_end": None, "outro_start": 3000})
    client, _ = make_client()
    result = client.get_markers("tt1")
    assert (result.intro_start, result.intro_end, result.recap_start, result.credit_start) == (
        12.0,
        None,
        None,
        None,
    )
    assert result.intro is None
    assert result.extra == {"outro_start": 3000}


def test_markers_not_yet_available_is_no_result_yet(mocked):
    mocked.get(MARKERS_URL, json={"ident": "tt1", "not_yet_available": True})
    client, _ = make_client()
    with pytest.raises(VionlabsNoResult) as caught:
        client.get_markers("tt1")
    assert caught.value.product == "markers"
    assert "no markers result for this item yet" in str(caught.value)
    assert "not processed yet" in str(caught.value)
    assert len(mocked.calls) == 1


def test_an_envelope_without_data_is_no_result_yet(mocked):
    mocked.get(ADBREAKS_URL, json={"status": "processing", "error": "result is being computed", "data": None})
    client, _ = make_client()
    with pytest.raises(VionlabsNoResult, match="result is being computed"):
        client.get_adbreaks("tt1")


def test_any_other_product_is_plain_json_at_the_assumed_path(mocked):
    body = {
        "thumbnails": [{"timestamp": 12.5, "url": "https://cdn.test/1.jpg"}],
        "new": {"nested": [1, None]},
    }
    mocked.get(THUMBNAILS_URL, json=body)
    client, _ = make_client()
    result = client.get_result(
        "tt1", "jitthumbnails", version="1.0.1", query={"character": "0", "stillness": 50}
    )
    assert result == GenericResult(product="jitthumbnails", inventory_id="tt1", data=body)
    assert query_of(mocked.calls[0]) == {
        "key": [KEY],
        "character": ["0"],
        "stillness": ["50"],
        "version": ["1.0.1"],
    }


def test_a_generic_answer_may_be_a_list(mocked):
    mocked.get(BASE + "/results/scene_tags/v1/tt1", json=[{"scene": 1, "tags": ["car"]}])
    client, _ = make_client()
    assert client.get_result("tt1", "scene_tags").data == [{"scene": 1, "tags": ["car"]}]


def test_a_products_results_path_can_be_configured(mocked):
    mocked.get(BASE + "/results/jitthumbnails/v2/tt1", json={"ok": True})
    client, _ = make_client(result_paths={"jitthumbnails": "/results/jitthumbnails/v2/{inventory_id}"})
    assert client.get_result("tt1", "jitthumbnails").data == {"ok": True}


@pytest.mark.parametrize(
    "template", ["results/x/{inventory_id}", "/results/x", "/results/{product}/{inventory_id}", "/r/{id}"]
)
def test_a_results_path_without_exactly_one_known_placeholder_is_refused(template):
    with pytest.raises(ValueError, match="placeholder"):
        make_client(result_paths={"jitthumbnails": template})


def test_the_key_cannot_be_overridden_through_the_generic_query(mocked):
    client, _ = make_client()
    with pytest.raises(ValueError, match="key"):
        client.get_result("tt1", "jitthumbnails", query={"KEY": "other"})
    assert len(mocked.calls) == 0


# --- failures ----------------------------------------------------------------------------------------------

READS = {
    "adbreaks": (ADBREAKS_URL, lambda client: client.get_adbreaks("tt1")),
    "contextual_adbreak": (CONTEXTUAL_URL, lambda client: client.get_contextual_adbreaks("tt1")),
    "markers": (MARKERS_URL, lambda client: client.get_markers("tt1")),
    "jitthumbnails": (THUMBNAILS_URL, lambda client: client.get_result("tt1", "jitthumbnails")),
}


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("product", list(READS))
def test_401_or_403_on_a_results_api_is_no_access_to_that_api(mocked, product, status):
    url, read = READS[product]
    mocked.get(url, status=status, json={"detail": "Not authorized to access this API"})
    client, _ = make_client()
    with pytest.raises(VionlabsNoAccess) as caught:
        read(client)
    assert isinstance(caught.value, VionlabsUnauthorized)
    assert caught.value.status_code == status
    assert caught.value.product == product
    assert f"no access to the {product} results API" in str(caught.value)
    assert len(mocked.calls) == 1


def test_403_on_tasks_is_still_the_plain_unauthorized(mocked):
    mocked.get(BASE + "/tasks/catalog-item/tt1/product/adbreaks/version/1", status=403, json={"detail": "no"})
    client, _ = make_client()
    with pytest.raises(VionlabsUnauthorized) as caught:
        client.get_task("tt1", "adbreaks", "1")
    assert not isinstance(caught.value, VionlabsNoAccess)


@pytest.mark.parametrize("product", list(READS))
def test_404_on_a_results_api_is_no_result_yet_and_not_retried(mocked, product):
    url, read = READS[product]
    mocked.get(url, status=404, json={"detail": "Not Found"})
    client, _ = make_client()
    with pytest.raises(VionlabsNoResult) as caught:
        read(client)
    assert isinstance(caught.value, VionlabsNotFound)
    assert caught.value.status_code == 404
    assert caught.value.product == product
    assert f"no {product} result for this item yet" in str(caught.value)
    assert len(mocked.calls) == 1


def test_422_is_the_validation_error_with_its_fields(mocked):
    detail = [
        {
            "loc": ["query", "minimum_separation"],
            "msg": "Input should be a valid number",
            "type": "float_parsing",
        }
    ]
    mocked.get(ADBREAKS_URL, status=422, json={"detail": detail})
    client, _ = make_client()
    with pytest.raises(VionlabsRejected) as caught:
        client.get_adbreaks("tt1", minimum_separation=-1)
    assert caught.value.status_code == 422
    assert [str(item) for item in caught.value.details] == [
        "query.minimum_separation: Input should be a valid number"
    ]


def test_429_is_rate_limited_after_the_retries(mocked):
    mocked.get(MARKERS_URL, status=429, headers={"Retry-After": "3"})
    client, sleeps = make_client(max_retries=2)
    with pytest.raises(VionlabsRateLimited) as caught:
        client.get_markers("tt1")
    assert caught.value.retry_after == 3
    assert len(mocked.calls) == 3
    assert sleeps == [3, 3]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_unavailable_after_the_retries(mocked, status):
    mocked.get(CONTEXTUAL_URL, status=status)
    client, _ = make_client(max_retries=2)
    with pytest.raises(VionlabsUnavailable) as caught:
        client.get_contextual_adbreaks("tt1")
    assert caught.value.status_code == status
    assert caught.value.outcome_unknown is False
    assert len(mocked.calls) == 3


def test_a_5xx_then_an_answer_is_retried_into_a_result(mocked):
    mocked.get(MARKERS_URL, status=503)
    mocked.get(MARKERS_URL, json=MARKERS_BODY)
    client, _ = make_client()
    assert client.get_markers("tt1").credit_start == 3057.0
    assert len(mocked.calls) == 2


@pytest.mark.parametrize("failure", ["read timeout", "connect timeout", "connection refused"])
def test_transport_failures_are_unavailable(mocked, failure):
    mocked.get(ADBREAKS_URL, body=FAILURES[failure]("GET", ADBREAKS_URL, KEY))
    client, _ = make_client(max_retries=1)
    with pytest.raises(VionlabsUnavailable):
        client.get_adbreaks("tt1")
    assert len(mocked.calls) == 2


@pytest.mark.parametrize(
    "body",
    [
        b'{"status": "success", "data": {"adbreak": [{"rank": 1, "candidates": [10.6, 13',
        b"<html>Bad gateway</html>",
        b"",
    ],
    ids=["truncated", "html", "empty"],
)
@pytest.mark.parametrize("product", list(READS))
def test_a_truncated_or_non_json_body_is_a_bad_response(mocked, product, body):
    url, read = READS[product]
    mocked.get(url, body=body, content_type="application/json")
    client, _ = make_client()
    with pytest.raises(VionlabsBadResponse, match="not JSON"):
        read(client)
    assert len(mocked.calls) == 1


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (ADBREAKS_URL, {"data": {"adbreak": [{"rank": 1, "candidates": ["ten"]}]}}),
        (ADBREAKS_URL, {"data": {"adbreak": {"rank": 1}}}),
        (ADBREAKS_URL, [1, 2]),
        (CONTEXTUAL_URL, {"data": {"context_adbreak": [{"rank": 1}]}}),
        (MARKERS_URL, ["tt1"]),
    ],
    ids=[
        "candidate not a number",
        "adbreak not a list",
        "not an object",
        "break without timestamp",
        "markers list",
    ],
)
def test_a_result_of_the_wrong_shape_is_a_bad_response(mocked, url, body):
    mocked.get(url, json=body)
    client, _ = make_client()
    read = {ADBREAKS_URL: READS["adbreaks"][1], CONTEXTUAL_URL: READS["contextual_adbreak"][1]}.get(
        url, READS["markers"][1]
    )
    with pytest.raises(VionlabsBadResponse):
        read(client)


# --- the key never leaks -----------------------------------------------------------------------------------

RESULT_FAILURES = {
    **HTTP_FAILURES,
    "truncated": {"status": 200, "body": f'{{"ident": "{CANARY}", "intro_start": 1'},
    "no data": {"status": 200, "json": {"status": "error", "error": f"bad key {CANARY}", "data": None}},
}


@pytest.mark.parametrize(
    ("product", "failure"),
    # Any JSON is a generic result, so "wrong shape" is no failure for a generic product.
    [(p, f) for p in READS for f in RESULT_FAILURES if (p, f) != ("jitthumbnails", "wrong shape")],
)
def test_results_failures_do_not_leak_the_key(debug_logs, product, failure):  # noqa: F811
    url, read = READS[product]
    spec = dict(RESULT_FAILURES[failure])
    if failure == "no data" and product in ("markers", "jitthumbnails"):
        spec["json"] = {"not_yet_available": True, "ident": CANARY}
    client, _ = make_client(api_key=CANARY, max_retries=1)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.add("GET", url, **spec)
        with pytest.raises(VionlabsError) as caught:
            read(client)
    assert_key_absent(client, caught.value, debug_logs)


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.parametrize("product", list(READS))
def test_results_transport_failures_do_not_leak_the_key(debug_logs, product, failure):  # noqa: F811
    url, read = READS[product]
    client, _ = make_client(api_key=CANARY, max_retries=1)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.add("GET", url, body=FAILURES[failure]("GET", url, CANARY))
        with pytest.raises(VionlabsError) as caught:
            read(client)
    assert_key_absent(client, caught.value, debug_logs)
