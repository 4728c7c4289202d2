"""The sandbox's task endpoints: life cycle, links, validation, auth and paths, over plain HTTP."""

from __future__ import annotations

import pytest
import requests

from dashboard.sandbox import Sandbox
from dashboard.sandbox.server import parse_route
from dashboard.sandbox.state import FAILURE_ERRORS, PRODUCTS, Task

from .helpers import FakeClock, call, item_path, task_path

# "." and ".." are left out: HTTP libraries resolve them as dot segments, which is why the client refuses them.
ODD_IDS = ["a/b", "a b", "é✓", "x?key=evil", "x#frag", "%2F", "tt0111161/4k", "a+b", "...", "%"]


@pytest.fixture
def clocked():
    """A sandbox of its own whose clock the test moves: pending 2 s, processing 3 s."""
    clock = FakeClock()
    server = Sandbox(pending_seconds=2, processing_seconds=3, clock=clock).start()
    yield server, clock
    server.stop()


def test_task_moves_from_pending_through_processing_to_done(clocked):
    server, clock = clocked
    created = call(server, "POST", task_path("tt1"), json={"priority": "high"})
    assert created.status_code == 200
    assert created.json()["status"] == "pending"
    clock.advance(1.9)
    assert call(server, "GET", task_path("tt1")).json()["status"] == "pending"
    clock.advance(0.2)
    assert call(server, "GET", task_path("tt1")).json()["status"] == "processing"
    clock.advance(3)
    done = call(server, "GET", task_path("tt1")).json()
    assert done["status"] == "done"
    assert done["error"] is None


def test_links_follow_the_status_and_never_carry_the_key(clocked):
    server, clock = clocked
    path = task_path("a/b")
    href = server.url + path
    pending = call(server, "POST", path).json()["_links"]
    assert pending == {
        "self": {"href": href, "method": "GET"},
        "deactivate": {"href": href, "method": "DELETE"},
    }
    clock.advance(5)
    done = call(server, "GET", path).json()["_links"]
    assert set(done) == {"self", "results", "deactivate"}
    assert done["results"]["method"] == "GET"
    assert "%2F" in done["results"]["href"]
    deactivated = call(server, "DELETE", path).json()
    assert deactivated["status"] == "deactivated"
    assert deactivated["_links"] == {
        "self": {"href": href, "method": "GET"},
        "create": {"href": href, "method": "POST"},
    }
    assert server.api_key not in str(pending) + str(done) + str(deactivated)


def test_inventory_id_containing_fail_ends_failed_with_the_same_realistic_error(clocked):
    server, clock = clocked
    call(server, "POST", task_path("Movie-FAIL-7"))
    clock.advance(2.5)
    assert call(server, "GET", task_path("Movie-FAIL-7")).json() | {"_links": None} == {
        "status": "processing",
        "error": None,
        "_links": None,
    }
    clock.advance(3)
    failed = call(server, "GET", task_path("Movie-FAIL-7")).json()
    assert failed["status"] == "failed"
    assert failed["error"] in [error.format(inventory_id="Movie-FAIL-7") for error in FAILURE_ERRORS]
    assert failed["_links"]["create"]["method"] == "POST"
    # Started again it fails again, for the same reason.
    assert call(server, "POST", task_path("Movie-FAIL-7")).json()["status"] == "pending"
    clock.advance(6)
    assert call(server, "GET", task_path("Movie-FAIL-7")).json()["error"] == failed["error"]


def test_every_kind_of_failure_occurs_across_tasks():
    kinds = set()
    for number in range(40):
        task = Task(f"fail-{number}", "adbreaks", "1.0", "low", 0.0, 0.0, 0.0, 1)
        error = task.error(1.0)
        kinds.add(
            next(
                i
                for i, text in enumerate(FAILURE_ERRORS)
                if text.format(inventory_id=task.inventory_id) == error
            )
        )
    assert kinds == set(range(len(FAILURE_ERRORS)))


def test_post_on_an_active_task_returns_it_unchanged(clocked):
    server, clock = clocked
    call(server, "POST", task_path("tt2"))
    clock.advance(1.5)
    again = call(server, "POST", task_path("tt2"), json={"priority": "high"})
    assert again.status_code == 200
    assert again.json()["status"] == "pending"
    clock.advance(1)  # 2.5 s after the first POST: the second one did not restart the clock
    assert call(server, "GET", task_path("tt2")).json()["status"] == "processing"
    clock.advance(5)
    assert call(server, "POST", task_path("tt2")).json()["status"] == "done"
    assert call(server, "GET", task_path("tt2")).json()["status"] == "done"


def test_post_starts_a_deactivated_task_again(clocked):
    server, clock = clocked
    call(server, "POST", task_path("tt3"))
    clock.advance(3)
    assert call(server, "DELETE", task_path("tt3")).json()["status"] == "deactivated"
    assert call(server, "GET", task_path("tt3")).json()["status"] == "deactivated"
    assert call(server, "POST", task_path("tt3")).json()["status"] == "pending"


def test_a_task_keeps_the_timeline_it_started_with(clocked):
    server, clock = clocked
    call(server, "POST", task_path("tt4"))
    server.configure(pending_seconds=100)
    clock.advance(2.5)
    assert call(server, "GET", task_path("tt4")).json()["status"] == "processing"
    call(server, "POST", task_path("tt5"))
    clock.advance(50)
    assert call(server, "GET", task_path("tt5")).json()["status"] == "pending"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_unknown_task_is_404(sandbox, method):
    answer = call(sandbox, method, task_path("never-created"))
    assert answer.status_code == 404
    assert answer.json() == {"detail": "Task not found"}


def test_item_listing_shows_every_task_of_the_item_in_creation_order(clocked):
    server, clock = clocked
    call(server, "POST", task_path("show-1", "markers", "2"))
    clock.advance(2.5)
    call(server, "POST", task_path("show-1", "adbreaks", "op-adbreak-v6"))
    call(server, "POST", task_path("show-2", "adbreaks", "1"))
    listing = call(server, "GET", item_path("show-1"))
    assert listing.status_code == 200
    assert listing.json() == [
        {"task_status": {"status": "processing", "error": None}, "product": "markers", "version": "2"},
        {
            "task_status": {"status": "pending", "error": None},
            "product": "adbreaks",
            "version": "op-adbreak-v6",
        },
    ]


def test_item_listing_of_an_unknown_item_is_empty(sandbox):
    answer = call(sandbox, "GET", item_path("nothing-here"))
    assert answer.status_code == 200
    assert answer.json() == []


# -- validation -------------------------------------------------------------------------------------------


def test_unknown_product_is_422_in_fastapi_shape(sandbox):
    answer = call(sandbox, "POST", task_path("tt1", product="adbreak"))
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["type"] == "enum"
    assert error["loc"] == ["path", "product"]
    assert error["input"] == "adbreak"
    assert all(f"'{product}'" in error["msg"] for product in PRODUCTS)
    assert error["ctx"]["expected"] in error["msg"]
    assert call(sandbox, "GET", task_path("tt1", product="adbreaks")).status_code == 404  # nothing created


def test_empty_version_is_422(sandbox):
    answer = call(sandbox, "GET", task_path("tt1", version=""))
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["path", "version"]
    assert error["input"] == ""
    assert {"type", "msg", "ctx"} <= set(error)


@pytest.mark.parametrize("version", [" ", "\t", " 1.0 "])
def test_a_whitespace_version_is_taken_as_given(sandbox, version):
    # The vendor's min_length=1 applies to the value as sent: nothing is stripped.
    created = call(sandbox, "POST", task_path("tt1", version=version))
    assert created.status_code == 200
    assert call(sandbox, "GET", task_path("tt1", version=version)).status_code == 200
    assert call(sandbox, "GET", task_path("tt1", version=version.strip() or "x")).status_code == 404
    (listed,) = call(sandbox, "GET", item_path("tt1")).json()
    assert listed["version"] == version


def test_every_invalid_field_is_reported_at_once(sandbox):
    answer = call(sandbox, "POST", task_path("tt1", product="nope", version=""), json={"priority": "urgent"})
    assert answer.status_code == 422
    assert [error["loc"] for error in answer.json()["detail"]] == [
        ["path", "product"],
        ["path", "version"],
        ["body", "priority"],
    ]


@pytest.mark.parametrize(
    ("body", "loc_start", "error_type"),
    [
        (b'{"priority": "urgent"}', ["body", "priority"], "enum"),
        (b'{"priority": ', ["body"], "json_invalid"),
        (b"not json", ["body"], "json_invalid"),
        (b'["high"]', ["body"], "model_attributes_type"),
        (b"\xff\xfe", ["body"], "json_invalid"),
        (b"\x0c", ["body", 0], "json_invalid"),
        (b"{", ["body", 1], "json_invalid"),
        (b" ", ["body", 1], "json_invalid"),
        (b"\x0b{}", ["body", 0], "json_invalid"),
    ],
)
def test_bad_post_body_is_422_and_creates_nothing(sandbox, body, loc_start, error_type):
    answer = call(sandbox, "POST", task_path("tt1"), data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["type"] == error_type
    assert error["loc"][: len(loc_start)] == loc_start
    assert call(sandbox, "GET", task_path("tt1")).status_code == 404


def test_post_without_a_body_creates_a_task(sandbox):
    answer = call(sandbox, "POST", task_path("tt1"))
    assert answer.status_code == 200
    assert answer.json()["status"] == "pending"


# -- auth -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "wrong", "SANDBOX-KEY", "sandbox-key "])
def test_missing_or_wrong_key_is_401(sandbox, key):
    answer = call(sandbox, "GET", item_path("tt1"), key=key)
    assert answer.status_code == 401
    assert isinstance(answer.json()["detail"], str)


def test_deprecated_header_key_is_accepted(sandbox):
    answer = call(sandbox, "GET", item_path("tt1"), key=None, headers={"X-API-Key": sandbox.api_key})
    assert answer.status_code == 200
    assert call(sandbox, "GET", item_path("tt1"), key=None, headers={"X-API-Key": "nope"}).status_code == 401


def test_query_key_wins_over_the_header(sandbox):
    answer = call(sandbox, "GET", item_path("tt1"), key="wrong", headers={"X-API-Key": sandbox.api_key})
    assert answer.status_code == 401


def test_configured_key_replaces_the_default(sandbox):
    sandbox.configure(api_key="another-key")
    assert call(sandbox, "GET", item_path("tt1"), key="sandbox-key").status_code == 401
    assert call(sandbox, "GET", item_path("tt1"), key="another-key").status_code == 200


def test_a_401_creates_nothing(sandbox):
    assert call(sandbox, "POST", task_path("tt1"), key="wrong").status_code == 401
    assert call(sandbox, "GET", task_path("tt1")).status_code == 404


# -- paths ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("inventory_id", ODD_IDS)
def test_odd_inventory_ids_round_trip_as_exactly_that_id(sandbox, inventory_id):
    created = call(sandbox, "POST", task_path(inventory_id))
    assert created.status_code == 200
    assert created.json()["_links"]["self"]["href"] == sandbox.url + task_path(inventory_id)
    assert list(sandbox.stats()["tasks"]) == [inventory_id]
    assert [entry["id"] for entry in call(sandbox, "GET", "/catalog/v1/item").json()] == [inventory_id]
    assert call(sandbox, "GET", item_path(inventory_id)).json()[0]["product"] == "adbreaks"


def test_path_is_split_before_decoding():
    route = parse_route("/tasks/catalog-item/a%2Fb/product/adbreaks/version/1%2F2")
    assert route.kind == "task"
    assert route.key == ("a/b", "adbreaks", "1/2")
    assert parse_route("/tasks/catalog-item/%252F").item == "%2F"
    assert parse_route("/tasks/catalog-item/a+b").item == "a+b"


def test_unencoded_slash_in_an_id_does_not_reach_a_task(sandbox):
    answer = call(sandbox, "GET", "/tasks/catalog-item/a/b/product/adbreaks/version/1")
    assert answer.status_code == 404
    assert answer.json() == {"detail": "Not Found"}


def test_segment_that_is_not_utf8_is_400(sandbox):
    answer = call(sandbox, "GET", "/tasks/catalog-item/%FF")
    assert answer.status_code == 400
    assert "UTF-8" in answer.json()["detail"]


@pytest.mark.parametrize(
    "path", ["/", "/tasks", "/tasks/catalog-item", "/tasks/catalog-item/", "/tasks/catalog-item/x/"]
)
def test_unknown_paths_are_404(sandbox, path):
    answer = call(sandbox, "GET", path)
    assert answer.status_code == 404
    assert answer.json() == {"detail": "Not Found"}


@pytest.mark.parametrize("method", ["TRACE", "PATCH", "OPTIONS", "PROPFIND", "HEAD"])
def test_an_undeclared_method_is_405_with_the_declared_ones_in_allow(sandbox, method):
    answer = call(sandbox, method, task_path("tt1"))
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET, POST, DELETE"
    if method != "HEAD":
        assert answer.json() == {"detail": "Method Not Allowed"}
    assert call(sandbox, method, item_path("tt1")).headers["Allow"] == "GET"
    assert call(sandbox, method, "/catalog/v1/item").headers["Allow"] == "GET, PUT"
    # The connection stays usable: the next request on a fresh one is answered normally.
    assert call(sandbox, "GET", item_path("tt1")).status_code == 200


def test_a_json_decode_error_has_the_framework_shape(sandbox):
    answer = call(sandbox, "POST", task_path("tt1"), data=b"\x0c")
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["type"] == "json_invalid"
    assert error["loc"] == ["body", 0]
    assert error["msg"] == "JSON decode error"
    assert error["ctx"] == {"error": "Expecting value"}


def test_wrong_method_is_405_with_allow(sandbox):
    answer = call(sandbox, "PUT", task_path("tt1"))
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET, POST, DELETE"
    assert call(sandbox, "POST", item_path("tt1")).status_code == 405


def test_requests_library_sends_an_encoded_id_unchanged(sandbox):
    # requests must not re-normalise %2F or %25 in the path; the client relies on that.
    answer = requests.get(sandbox.url + item_path("%2F/é"), params={"key": sandbox.api_key}, timeout=5)
    assert answer.status_code == 200
    assert sandbox.item_requests("%2F/é") == 1
