"""The client against the sandbox on a real port: every endpoint, life cycles, errors, odd ids, faults."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from dashboard.sandbox.state import FAILURE_ERRORS
from dashboard.vionlabs import (
    CatalogEntry,
    FieldError,
    ItemTask,
    Link,
    Priority,
    Product,
    Status,
    TaskState,
    VionlabsClient,
    VionlabsNotFound,
    VionlabsRateLimited,
    VionlabsRejected,
    VionlabsUnauthorized,
    VionlabsUnavailable,
)

ODD_IDS = ["a/b", "a b", "é✓", "x?key=evil", "x#frag", "%2F", "tt0111161/4k"]


def _client(sandbox, **overrides) -> VionlabsClient:
    options = {"base_url": sandbox.url, "api_key": sandbox.api_key, "timeout": 5.0, "backoff": 0.01}
    return VionlabsClient(**(options | overrides))


@pytest.fixture
def client(sandbox):
    with _client(sandbox) as client:
        yield client


def _wait_for_status(client, inventory_id, product, version, wanted: str, timeout: float = 5.0) -> TaskState:
    deadline = time.monotonic() + timeout
    while True:
        state = client.get_task(inventory_id, product, version)
        if state.status == wanted or time.monotonic() > deadline:
            return state
        time.sleep(0.03)


def _links(state: TaskState) -> dict[str, str]:
    return {link.name: link.method for link in state.links}


def test_full_life_cycle_of_a_task(client, sandbox):
    created = client.create_task("tt0111161", Product.ADBREAKS, "1.0.1", priority=Priority.HIGH)
    assert created.status == Status.PENDING
    assert created.error is None
    href = sandbox.url + "/tasks/catalog-item/tt0111161/product/adbreaks/version/1.0.1"
    assert Link(name="self", method="GET", href=href) in created.links
    assert _links(created) == {"self": "GET", "deactivate": "DELETE"}

    processing = _wait_for_status(client, "tt0111161", Product.ADBREAKS, "1.0.1", Status.PROCESSING)
    assert processing.status == Status.PROCESSING
    done = _wait_for_status(client, "tt0111161", Product.ADBREAKS, "1.0.1", Status.DONE)
    assert done.status == Status.DONE
    assert _links(done) == {"self": "GET", "results": "GET", "deactivate": "DELETE"}
    assert client.list_item_tasks("tt0111161") == [
        ItemTask(product="adbreaks", version="1.0.1", status="done", error=None)
    ]

    # A second POST on a done task leaves it as it is.
    assert client.create_task("tt0111161", Product.ADBREAKS, "1.0.1").status == Status.DONE
    deactivated = client.deactivate_task("tt0111161", Product.ADBREAKS, "1.0.1")
    assert deactivated.status == Status.DEACTIVATED
    assert client.get_task("tt0111161", Product.ADBREAKS, "1.0.1").status == Status.DEACTIVATED
    assert client.create_task("tt0111161", Product.ADBREAKS, "1.0.1").status == Status.PENDING
    assert sandbox.task_requests("tt0111161", "adbreaks", "1.0.1", "POST") == 3


def test_failing_task_ends_failed_with_its_reason(client):
    client.create_task("trailer-FAIL-3", Product.MARKERS, "2")
    failed = _wait_for_status(client, "trailer-FAIL-3", Product.MARKERS, "2", Status.FAILED)
    assert failed.status == Status.FAILED
    assert failed.error in [text.format(inventory_id="trailer-FAIL-3") for text in FAILURE_ERRORS]
    assert _links(failed) == {"self": "GET", "create": "POST"}
    (listed,) = client.list_item_tasks("trailer-FAIL-3")
    assert (listed.status, listed.error) == ("failed", failed.error)
    # Retrying a failed task is a new POST on the same natural key.
    assert client.create_task("trailer-FAIL-3", Product.MARKERS, "2").status == Status.PENDING


def test_item_listing_covers_every_product_and_an_unknown_item(client):
    client.create_task("show-1", Product.ADBREAKS, "1")
    client.create_task("show-1", Product.SCENE_TAGS, "op-v6", priority=Priority.MEDIUM)
    assert client.list_item_tasks("show-1") == [
        ItemTask(product="adbreaks", version="1", status="pending", error=None),
        ItemTask(product="scene_tags", version="op-v6", status="pending", error=None),
    ]
    assert client.list_item_tasks("nothing-here") == []


def test_every_product_is_accepted(client, sandbox):
    for product in Product:
        assert client.create_task("all-products", product, "1").status == Status.PENDING
    assert len(client.list_item_tasks("all-products")) == len(Product) == 16


def test_catalog_listing_pages_through_everything(client, sandbox):
    for number in range(5):
        requests.put(
            sandbox.url + "/catalog/v1/item",
            params={"key": sandbox.api_key},
            json={"id": f"ep-{number}", "type": "episode"},
            timeout=5,
        ).raise_for_status()
    client.create_task("film/1", Product.EMOTIONS, "1")
    page = client.list_catalog_items(page_num=1, page_size=2)
    assert [entry.id for entry in page] == ["ep-2", "ep-3"]
    assert all(isinstance(entry, CatalogEntry) and entry.vionlabs_id for entry in page)
    everything = list(client.iter_catalog_items(page_size=2))
    assert [(entry.id, entry.type) for entry in everything] == [
        *((f"ep-{number}", "episode") for number in range(5)),
        ("film/1", "standalone"),
    ]
    assert sandbox.stats()["endpoints"]["GET catalog"] == 1 + 4  # 6 items in pages of 2: 3 full and 1 empty


def test_missing_task_is_not_found(client):
    with pytest.raises(VionlabsNotFound) as caught:
        client.get_task("ghost", Product.ADBREAKS, "1")
    assert caught.value.status_code == 404
    with pytest.raises(VionlabsNotFound):
        client.deactivate_task("ghost", Product.ADBREAKS, "1")


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_task("tt1", "adbreaks", "1"),
        lambda c: c.create_task("tt1", "adbreaks", "1"),
        lambda c: c.deactivate_task("tt1", "adbreaks", "1"),
        lambda c: c.list_item_tasks("tt1"),
        lambda c: c.list_catalog_items(page_num=0),
    ],
    ids=["get", "create", "deactivate", "item", "catalog"],
)
def test_wrong_key_is_unauthorized_on_every_endpoint(sandbox, call):
    wrong = "wrong-key-§&?"
    with _client(sandbox, api_key=wrong) as client, pytest.raises(VionlabsUnauthorized) as caught:
        call(client)
    assert caught.value.status_code == 401
    assert wrong not in str(caught.value) + repr(caught.value)
    assert sandbox.stats()["requests"] == 1  # a 401 is not retried


def test_unknown_product_is_rejected_with_the_field(client, sandbox):
    with pytest.raises(VionlabsRejected) as caught:
        client.create_task("tt1", "adbreak", "1")
    assert caught.value.status_code == 422
    (detail,) = caught.value.details
    assert detail.loc == "path.product"
    assert "'adbreaks'" in detail.msg
    assert sandbox.stats()["requests"] == 1


def test_unknown_product_and_bad_priority_are_rejected_together(client):
    with pytest.raises(VionlabsRejected) as caught:
        client.create_task("tt1", "nope", "1.0", priority="urgent")
    assert [detail.loc for detail in caught.value.details] == ["path.product", "body.priority"]
    assert all(isinstance(detail, FieldError) and detail.msg for detail in caught.value.details)


@pytest.mark.parametrize("inventory_id", ODD_IDS)
def test_odd_inventory_ids_reach_the_sandbox_as_exactly_that_id(client, sandbox, inventory_id):
    created = client.create_task(inventory_id, Product.ADBREAKS, "1.0")
    assert created.status == Status.PENDING
    assert client.get_task(inventory_id, Product.ADBREAKS, "1.0").status == Status.PENDING
    assert client.list_item_tasks(inventory_id) == [ItemTask("adbreaks", "1.0", "pending", None)]
    assert [entry.id for entry in client.iter_catalog_items()] == [inventory_id]
    assert client.deactivate_task(inventory_id, Product.ADBREAKS, "1.0").status == Status.DEACTIVATED
    stats = sandbox.stats()
    assert stats["tasks"] == {inventory_id: {"adbreaks": {"1.0": {"POST": 1, "GET": 1, "DELETE": 1}}}}
    assert stats["items"] == {inventory_id: 1}


@pytest.mark.parametrize("inventory_id", [".", ".."])
def test_dot_ids_are_refused_before_anything_is_sent(client, sandbox, inventory_id):
    with pytest.raises(VionlabsRejected):
        client.create_task(inventory_id, Product.ADBREAKS, "1")
    assert sandbox.stats()["requests"] == 0


# -- faults, as the client meets them ---------------------------------------------------------------------


def test_503_on_get_is_retried_then_reported(client, sandbox):
    sandbox.configure(error_rate=1.0)
    with pytest.raises(VionlabsUnavailable) as caught:
        client.list_item_tasks("tt1")
    assert caught.value.status_code == 503
    assert sandbox.item_requests("tt1") == 4  # max_retries=3: four attempts


def test_503_on_post_is_not_retried(client, sandbox):
    sandbox.configure(error_rate=1.0)
    with pytest.raises(VionlabsUnavailable) as caught:
        client.create_task("tt1", Product.ADBREAKS, "1")
    assert caught.value.outcome_unknown
    assert sandbox.task_requests("tt1", "adbreaks", "1", "POST") == 1


def test_some_503s_are_absorbed_by_retries(client, sandbox):
    sandbox.configure(error_rate=0.3, seed=3)
    for number in range(20):
        assert client.list_item_tasks(f"item-{number}") == []
    assert sandbox.stats()["faults"]["503"] > 0


def test_429_carries_retry_after_to_the_caller(sandbox):
    sandbox.configure(rate_limit_rate=1.0, retry_after=0)
    with _client(sandbox, max_retries=1) as client, pytest.raises(VionlabsRateLimited) as caught:
        client.get_task("tt1", Product.ADBREAKS, "1")
    assert caught.value.retry_after == 0
    assert sandbox.task_requests("tt1", "adbreaks", "1", "GET") == 2


def test_a_hung_post_is_unknown_and_settled_by_a_get(sandbox):
    sandbox.configure(hang_rate=1.0, hang_seconds=0.2, pending_seconds=60)
    with _client(sandbox) as client:
        with pytest.raises(VionlabsUnavailable) as caught:
            client.create_task("tt1", Product.ADBREAKS, "1")
        assert caught.value.outcome_unknown
        sandbox.configure(hang_rate=0.0)
        assert client.get_task("tt1", Product.ADBREAKS, "1").status == Status.PENDING
    assert sandbox.task_requests("tt1", "adbreaks", "1", "POST") == 1


def test_a_dripping_answer_is_cut_off_by_the_deadline(sandbox):
    # The 28-byte 404 body drips over 3 s, a byte every ~0.1 s: well inside the 0.6 s read timeout, so
    # without the per-attempt deadline the client would wait 3 s and then raise NotFound.
    sandbox.configure(hang_rate=1.0, hang_mode="drip", hang_seconds=3)
    with _client(sandbox, timeout=0.6, max_retries=0) as client, pytest.raises(VionlabsUnavailable):
        client.get_task("tt1", Product.ADBREAKS, "1")


def test_one_client_shared_by_many_threads(sandbox):
    errors = []

    with _client(sandbox, pool_size=32) as client:

        def create(number: int) -> None:
            try:
                client.create_task(f"bulk-{number}", Product.ADBREAKS, "1")
            except Exception as exc:  # collected and asserted below, with the thread's own message
                errors.append(exc)

        threads = [threading.Thread(target=create, args=(number,)) for number in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert sandbox.stats()["endpoints"] == {"POST task": 64}
