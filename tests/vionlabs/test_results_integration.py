"""The results client against the sandbox on a real port: a task's life to its result, and every failure kind."""

from __future__ import annotations

import time

import pytest

from dashboard.vionlabs import (
    Product,
    Status,
    VionlabsClient,
    VionlabsNoAccess,
    VionlabsNoResult,
    VionlabsRateLimited,
    VionlabsRejected,
    VionlabsUnauthorized,
    VionlabsUnavailable,
)


@pytest.fixture
def client(sandbox):
    with VionlabsClient(base_url=sandbox.url, api_key=sandbox.api_key, timeout=5.0, backoff=0.01) as client:
        yield client


def _done(client, inventory_id: str, product: str, version: str) -> None:
    client.create_task(inventory_id, product, version)
    deadline = time.monotonic() + 5
    while client.get_task(inventory_id, product, version).status != Status.DONE:
        assert time.monotonic() < deadline, "the task did not finish"
        time.sleep(0.05)


def test_ad_breaks_appear_once_the_task_is_done(client):
    client.create_task("tt0111161/4k", Product.ADBREAKS, "op-adbreak-v6")
    with pytest.raises(VionlabsNoResult) as caught:
        client.get_adbreaks("tt0111161/4k", version="op-adbreak-v6")
    assert caught.value.status_code == 404
    _done(client, "tt0111161/4k", Product.ADBREAKS, "op-adbreak-v6")
    result = client.get_adbreaks(
        "tt0111161/4k", version="op-adbreak-v6", minimum_separation=2, skip_first=5, skip_last=5
    )
    assert result.inventory_id == "tt0111161/4k"
    assert result.version_id == "op-adbreak-v6"
    assert result.status == "success"
    assert result.updated is not None
    assert [tier.rank for tier in result.ranks] == [1, 2, 3]
    assert all(at >= 300 for tier in result.ranks for at in tier.candidates)
    assert result.extra == {}
    assert result == client.get_adbreaks(
        "tt0111161/4k", version="op-adbreak-v6", minimum_separation=2, skip_first=5, skip_last=5
    )


def test_contextual_breaks_markers_and_generic_results(client):
    for product in (Product.CONTEXTUAL_ADBREAK, Product.MARKERS, Product.SCENE_TAGS):
        _done(client, "ep-1", product, "1.0")
    contextual = client.get_contextual_adbreaks("ep-1", version="1.0")
    assert contextual.breaks
    assert all(entry.keyword and entry.mood_tag and entry.iab_tier for entry in contextual.breaks)
    assert all(entry.extra == {} for entry in contextual.breaks)
    markers = client.get_markers("ep-1", version="1.0")
    assert markers.ident == "ep-1"
    assert markers.extra == {}
    generic = client.get_result("ep-1", Product.SCENE_TAGS, version="1.0")
    assert generic.data["data"]["product"] == "scene_tags"


def test_markers_of_an_item_in_processing_are_not_yet_available(client, sandbox):
    sandbox.configure(pending_seconds=30)
    client.create_task("ep-2", Product.MARKERS, "1.0")
    with pytest.raises(VionlabsNoResult, match="not processed yet") as caught:
        client.get_markers("ep-2")
    assert caught.value.status_code == 200


def test_the_no_access_product_raises_no_access_while_tasks_work(client, sandbox):
    _done(client, "tt1", Product.MARKERS, "1.0")
    sandbox.configure(no_access_product="markers")
    with pytest.raises(VionlabsNoAccess, match="no access to the markers results API"):
        client.get_markers("tt1")
    assert client.get_task("tt1", Product.MARKERS, "1.0").status == Status.DONE


def test_a_wrong_key_on_results_is_no_access_and_says_to_check_the_key(sandbox):
    with (
        VionlabsClient(base_url=sandbox.url, api_key="wrong", timeout=5.0) as client,
        pytest.raises(VionlabsNoAccess) as caught,
    ):
        client.get_adbreaks("tt1")
    assert isinstance(caught.value, VionlabsUnauthorized)
    assert caught.value.status_code == 401
    assert "check VIONLABS_API_KEY" in str(caught.value)


def test_a_bad_minute_value_is_rejected_with_its_field(client):
    _done(client, "tt1", Product.ADBREAKS, "v6")
    with pytest.raises(VionlabsRejected) as caught:
        client.get_adbreaks("tt1", skip_last=-1)
    assert [detail.loc for detail in caught.value.details] == ["query.skip_last"]


def test_injected_faults_reach_the_results_client(client, sandbox):
    _done(client, "tt1", Product.ADBREAKS, "v6")
    sandbox.configure(error_rate=1.0)
    with pytest.raises(VionlabsUnavailable):
        client.get_adbreaks("tt1")
    sandbox.configure(error_rate=0.0, rate_limit_rate=1.0, retry_after=0)
    with pytest.raises(VionlabsRateLimited):
        client.get_adbreaks("tt1")
    # Every attempt of the client's retry policy reached the sandbox: 4 for the 503s, 4 for the 429s.
    assert sandbox.stats()["endpoints"]["GET results"] == 8


def test_a_hanging_result_times_out(sandbox):
    with VionlabsClient(base_url=sandbox.url, api_key=sandbox.api_key, timeout=0.5, max_retries=0) as client:
        _done(client, "tt1", Product.MARKERS, "1.0")
        sandbox.configure(hang_rate=1.0, hang_seconds=5, hang_mode="drip")
        with pytest.raises(VionlabsUnavailable, match="did not answer"):
            client.get_markers("tt1")
