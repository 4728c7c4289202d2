"""Unit tests of VionlabsClient at the HTTP boundary, with `responses`."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
import responses
from responses import matchers

from dashboard.vionlabs import (
    CatalogEntry,
    FieldError,
    ItemTask,
    Link,
    Product,
    TaskState,
    VionlabsBadResponse,
    VionlabsClient,
    VionlabsError,
    VionlabsNotFound,
    VionlabsRateLimited,
    VionlabsRejected,
    VionlabsUnauthorized,
    VionlabsUnavailable,
)
from dashboard.vionlabs.client import _parse_retry_after
from tests.vionlabs.fakes import BASE, FAILURES, KEY, TASK_URL, make_client

TASK_BODY = {
    "status": "processing",
    "error": None,
    "_links": {
        "self": {"href": "/tasks/catalog-item/tt1/product/adbreaks/version/1.0.1", "method": "GET"},
        "deactivate": {"href": "/tasks/catalog-item/tt1/product/adbreaks/version/1.0.1", "method": "DELETE"},
    },
}


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def query_of(call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query, keep_blank_values=True)


# --- endpoints -------------------------------------------------------------------------------------------


def test_get_task_returns_a_task_state_with_links(mocked):
    mocked.get(TASK_URL, json=TASK_BODY)
    client, _ = make_client()
    state = client.get_task("tt1", Product.ADBREAKS, "1.0.1")
    assert state == TaskState(
        status="processing",
        error=None,
        links=(
            Link(name="self", method="GET", href="/tasks/catalog-item/tt1/product/adbreaks/version/1.0.1"),
            Link(
                name="deactivate",
                method="DELETE",
                href="/tasks/catalog-item/tt1/product/adbreaks/version/1.0.1",
            ),
        ),
    )
    assert mocked.calls[0].request.method == "GET"
    assert query_of(mocked.calls[0]) == {"key": [KEY]}


def test_create_task_posts_the_priority(mocked):
    mocked.post(
        TASK_URL,
        json={"status": "pending", "error": None},
        match=[matchers.json_params_matcher({"priority": "high"})],
    )
    client, _ = make_client()
    assert client.create_task("tt1", "adbreaks", "1.0.1", priority="high").status == "pending"
    assert mocked.calls[0].request.headers["Content-Type"] == "application/json"


def test_create_task_defaults_to_low_priority(mocked):
    mocked.post(
        TASK_URL, json={"status": "pending"}, match=[matchers.json_params_matcher({"priority": "low"})]
    )
    client, _ = make_client()
    assert client.create_task("tt1", "adbreaks", "1.0.1") == TaskState(status="pending")


def test_deactivate_task_sends_delete(mocked):
    mocked.delete(TASK_URL, json={"status": "deactivated", "error": None, "_links": {}})
    client, _ = make_client()
    assert client.deactivate_task("tt1", "adbreaks", "1.0.1") == TaskState(status="deactivated")
    assert mocked.calls[0].request.body is None


def test_list_item_tasks_parses_each_task(mocked):
    mocked.get(
        BASE + "/tasks/catalog-item/tt1",
        json=[
            {"task_status": {"status": "done", "error": None}, "product": "adbreaks", "version": "1.0.1"},
            {
                "task_status": {"status": "failed", "error": "source asset not found"},
                "product": "nudity",
                "version": 6,
            },
        ],
    )
    client, _ = make_client()
    assert client.list_item_tasks("tt1") == [
        ItemTask(product="adbreaks", version="1.0.1", status="done", error=None),
        ItemTask(product="nudity", version="6", status="failed", error="source asset not found"),
    ]


def test_list_catalog_items_sends_paging_and_only_our_key(mocked):
    mocked.get(BASE + "/catalog/v1/item", json=[{"id": "tt1", "vionlabs_id": "v-1", "type": "standalone"}])
    client, _ = make_client()
    assert client.list_catalog_items(page_num=2, page_size=50) == [
        CatalogEntry(id="tt1", vionlabs_id="v-1", type="standalone")
    ]
    assert query_of(mocked.calls[0]) == {"page_num": ["2"], "page_size": ["50"], "key": [KEY]}


def test_iter_catalog_items_reads_until_a_short_page(mocked):
    pages = [
        [{"id": f"p{p}-{i}", "vionlabs_id": None, "type": "episode"} for i in range(n)]
        for p, n in enumerate([2, 2, 1])
    ]
    for page in pages:
        mocked.get(BASE + "/catalog/v1/item", json=page)
    client, _ = make_client()
    ids = [entry.id for entry in client.iter_catalog_items(page_size=2)]
    assert ids == ["p0-0", "p0-1", "p1-0", "p1-1", "p2-0"]
    assert [query_of(call)["page_num"] for call in mocked.calls] == [["0"], ["1"], ["2"]]


def test_iter_catalog_items_stops_on_an_empty_page_after_a_full_one(mocked):
    mocked.get(BASE + "/catalog/v1/item", json=[{"id": "a", "vionlabs_id": "1", "type": "series"}])
    mocked.get(BASE + "/catalog/v1/item", json=[])
    client, _ = make_client()
    assert [entry.id for entry in client.iter_catalog_items(page_size=1)] == ["a"]
    assert len(mocked.calls) == 2


def test_iter_catalog_items_refuses_a_server_that_ignores_page_num(mocked):
    mocked.get(BASE + "/catalog/v1/item", json=[{"id": "a", "vionlabs_id": "1", "type": "series"}])
    client, _ = make_client()
    with pytest.raises(VionlabsBadResponse, match="same catalog page"):
        list(client.iter_catalog_items(page_size=1))
    assert len(mocked.calls) == 2


# --- parsing ----------------------------------------------------------------------------------------------


def test_unknown_status_and_link_without_method_pass_through(mocked):
    mocked.get(
        TASK_URL, json={"status": "queued_for_review", "error": "x", "_links": {"next": {"href": "/n"}}}
    )
    client, _ = make_client()
    assert client.get_task("tt1", "adbreaks", "1.0.1") == TaskState(
        status="queued_for_review", error="x", links=(Link(name="next", method="GET", href="/n"),)
    )


def test_structured_error_is_kept_as_json_text(mocked):
    mocked.get(TASK_URL, json={"status": "failed", "error": {"code": 7, "reason": "probe failed"}})
    client, _ = make_client()
    assert client.get_task("tt1", "adbreaks", "1.0.1").error == '{"code": 7, "reason": "probe failed"}'


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"<html>Bad gateway</html>", "text/html", "not JSON"),
        (b"", "application/json", "not JSON"),
        (json.dumps({"error": None}).encode(), "application/json", "'status' is missing"),
        (json.dumps({"status": 3}).encode(), "application/json", "'status' is missing"),
        (
            json.dumps({"status": "done", "_links": ["self"]}).encode(),
            "application/json",
            "'_links' is not an object",
        ),
        (json.dumps({"status": "done", "_links": {"self": "/x"}}).encode(), "application/json", "no 'href'"),
        (json.dumps(["done"]).encode(), "application/json", "expected an object"),
    ],
)
def test_wrong_shapes_of_a_task_are_bad_responses(mocked, body, content_type, reason):
    mocked.get(TASK_URL, body=body, content_type=content_type)
    client, sleeps = make_client()
    with pytest.raises(VionlabsBadResponse, match=reason):
        client.get_task("tt1", "adbreaks", "1.0.1")
    assert len(mocked.calls) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "body",
    [
        {"task_status": {"status": "done"}},
        [{"product": "adbreaks", "version": "1"}],
        [{"task_status": {"error": None}, "product": "adbreaks", "version": "1"}],
        [{"task_status": {"status": "done"}, "product": None, "version": "1"}],
    ],
)
def test_wrong_shapes_of_an_item_listing_are_bad_responses(mocked, body):
    mocked.get(BASE + "/tasks/catalog-item/tt1", json=body)
    client, _ = make_client()
    with pytest.raises(VionlabsBadResponse):
        client.list_item_tasks("tt1")


def test_wrong_shape_of_a_catalog_page_is_a_bad_response(mocked):
    mocked.get(BASE + "/catalog/v1/item", json={"items": []})
    client, _ = make_client()
    with pytest.raises(VionlabsBadResponse, match="expected a list"):
        client.list_catalog_items(page_num=0)


# --- error kinds -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_say_to_check_the_key(mocked, status):
    mocked.get(TASK_URL, status=status, json={"detail": "Not authenticated"})
    client, _ = make_client()
    with pytest.raises(VionlabsUnauthorized) as caught:
        client.get_task("tt1", "adbreaks", "1.0.1")
    assert caught.value.status_code == status
    assert "VIONLABS_API_KEY" in str(caught.value)
    assert "Tasks API" in str(caught.value)


def test_404_is_not_found_and_names_the_item(mocked):
    mocked.get(TASK_URL, status=404, json={"detail": "Not Found"})
    client, _ = make_client()
    with pytest.raises(VionlabsNotFound, match="'tt1'") as caught:
        client.get_task("tt1", "adbreaks", "1.0.1")
    assert caught.value.status_code == 404


def test_422_details_are_location_message_pairs(mocked):
    mocked.post(
        TASK_URL,
        status=422,
        json={
            "detail": [
                {
                    "loc": ["path", "product"],
                    "msg": "Input should be 'adbreaks', ...",
                    "type": "enum",
                    "input": "x",
                },
                {
                    "loc": ["body", "priority"],
                    "msg": "Input should be 'low', 'medium' or 'high'",
                    "type": "enum",
                },
            ]
        },
    )
    client, _ = make_client()
    with pytest.raises(VionlabsRejected) as caught:
        client.create_task("tt1", "adbreaks", "1.0.1", priority="urgent")
    error = caught.value
    assert error.status_code == 422
    assert error.details == (
        FieldError(loc="path.product", msg="Input should be 'adbreaks', ..."),
        FieldError(loc="body.priority", msg="Input should be 'low', 'medium' or 'high'"),
    )
    assert "path.product: Input should be 'adbreaks', ..." in str(error)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"detail": "version must not be blank"}, "version must not be blank"),
        ({"message": "nope"}, "Unprocessable"),
        ("plain text", "Unprocessable"),
    ],
)
def test_422_without_a_detail_list_still_reads_well(mocked, body, expected):
    mocked.get(TASK_URL, status=422, **({"json": body} if isinstance(body, dict) else {"body": body}))
    client, _ = make_client()
    with pytest.raises(VionlabsRejected, match=expected) as caught:
        client.get_task("tt1", "adbreaks", "1.0.1")
    assert "HTTP 422" in str(caught.value)


@pytest.mark.parametrize("status", [400, 409, 410, 418])
def test_other_4xx_are_rejected_with_their_status(mocked, status):
    mocked.post(TASK_URL, status=status, json={"detail": "task exists"})
    client, _ = make_client()
    with pytest.raises(VionlabsRejected, match="task exists") as caught:
        client.create_task("tt1", "adbreaks", "1.0.1")
    assert caught.value.status_code == status


def test_5xx_says_to_try_again_later(mocked):
    mocked.get(TASK_URL, status=503)
    client, _ = make_client(max_retries=0)
    with pytest.raises(VionlabsUnavailable, match="try again in a minute") as caught:
        client.get_task("tt1", "adbreaks", "1.0.1")
    assert caught.value.status_code == 503
    assert caught.value.outcome_unknown is False


def test_read_timeout_message_names_the_timeout(mocked):
    mocked.get(TASK_URL, body=FAILURES["read timeout"]("GET", TASK_URL, KEY))
    client, _ = make_client(timeout=10, max_retries=0)
    with pytest.raises(VionlabsUnavailable, match=r"did not answer in 10 s; try again in a minute"):
        client.get_task("tt1", "adbreaks", "1.0.1")


def test_429_message_says_when_to_try_again(mocked):
    mocked.post(TASK_URL, status=429, headers={"Retry-After": "30"})
    client, _ = make_client()
    with pytest.raises(VionlabsRateLimited, match=r"slow down; try again in 30 s\.") as caught:
        client.create_task("tt1", "adbreaks", "1.0.1")
    assert caught.value.retry_after == 30
    assert caught.value.status_code == 429


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(mocked, status):
    mocked.get(TASK_URL, status=status, headers={"Location": BASE + "/elsewhere"})
    elsewhere = mocked.get(BASE + "/elsewhere", json=TASK_BODY)
    client, _ = make_client()
    with pytest.raises(VionlabsBadResponse, match=f"redirects \\(HTTP {status}\\)"):
        client.get_task("tt1", "adbreaks", "1.0.1")
    assert elsewhere.call_count == 0
    assert len(mocked.calls) == 1


def test_every_error_kind_is_a_vionlabs_error():
    for kind in (
        VionlabsUnavailable,
        VionlabsRateLimited,
        VionlabsUnauthorized,
        VionlabsNotFound,
        VionlabsRejected,
        VionlabsBadResponse,
    ):
        assert issubclass(kind, VionlabsError)


# --- path encoding ----------------------------------------------------------------------------------------

AWKWARD_IDS = ["a/b", "a b", "é✓", "x?key=evil", "x#frag", "%2F", "tt0111161/4k", "..a", "a..", "+", "a;b=c"]


@pytest.mark.parametrize("inventory_id", AWKWARD_IDS)
def test_awkward_inventory_ids_arrive_as_exactly_that_id(mocked, inventory_id):
    mocked.add(
        responses.GET, url=__import__("re").compile(r"https://vionlabs\.test/tasks/.*"), json=TASK_BODY
    )
    client, _ = make_client()
    client.get_task(inventory_id, "adbreaks", "1.0.1")
    url = urlsplit(mocked.calls[0].request.url)
    segments = [unquote(segment) for segment in url.path.split("/")]
    assert segments == ["", "tasks", "catalog-item", inventory_id, "product", "adbreaks", "version", "1.0.1"]
    assert parse_qs(url.query) == {"key": [KEY]}
    assert url.fragment == ""


@pytest.mark.parametrize("inventory_id", AWKWARD_IDS)
def test_awkward_ids_arrive_intact_in_the_item_listing(mocked, inventory_id):
    mocked.add(responses.GET, url=__import__("re").compile(r"https://vionlabs\.test/tasks/.*"), json=[])
    client, _ = make_client()
    client.list_item_tasks(inventory_id)
    url = urlsplit(mocked.calls[0].request.url)
    assert [unquote(segment) for segment in url.path.split("/")] == [
        "",
        "tasks",
        "catalog-item",
        inventory_id,
    ]
    assert parse_qs(url.query) == {"key": [KEY]}


def test_product_and_version_are_encoded_too(mocked):
    mocked.add(
        responses.POST, url=__import__("re").compile(r"https://vionlabs\.test/tasks/.*"), json=TASK_BODY
    )
    client, _ = make_client()
    client.create_task("tt1", "ad/breaks", "op-adbreak v6/1")
    path = urlsplit(mocked.calls[0].request.url).path
    assert [unquote(segment) for segment in path.split("/")][4:] == [
        "product",
        "ad/breaks",
        "version",
        "op-adbreak v6/1",
    ]


@pytest.mark.parametrize("bad", ["", ".", ".."])
@pytest.mark.parametrize("parameter", ["inventory_id", "product", "version"])
def test_dot_and_empty_segments_are_refused_before_sending(mocked, bad, parameter):
    client, _ = make_client()
    arguments = {"inventory_id": "tt1", "product": "adbreaks", "version": "1.0.1", parameter: bad}
    for call in (client.get_task, client.create_task, client.deactivate_task):
        with pytest.raises(VionlabsRejected) as caught:
            call(**arguments)
        assert caught.value.status_code is None
        assert caught.value.details == (
            FieldError(loc=f"path.{parameter}", msg="must not be empty, '.' or '..'"),
        )
        assert parameter in str(caught.value)
    if parameter == "inventory_id":
        with pytest.raises(VionlabsRejected):
            client.list_item_tasks(bad)
    assert len(mocked.calls) == 0


# --- transport configuration --------------------------------------------------------------------------------


def test_one_session_with_a_sized_pool_and_no_urllib3_retries():
    client, _ = make_client(pool_size=7)
    adapter = client._session.get_adapter(BASE)
    assert adapter.max_retries.total == 0
    assert adapter.max_retries.read is False
    assert adapter._pool_maxsize == 7
    assert client._session.get_adapter("http://other.test") is adapter


def test_every_request_has_a_connect_and_read_timeout_and_streams(mocked):
    mocked.get(TASK_URL, json=TASK_BODY)
    mocked.post(TASK_URL, json=TASK_BODY)
    mocked.delete(TASK_URL, json=TASK_BODY)
    client, _ = make_client(timeout=4.5)
    client.get_task("tt1", "adbreaks", "1.0.1")
    client.create_task("tt1", "adbreaks", "1.0.1")
    client.deactivate_task("tt1", "adbreaks", "1.0.1")
    for call in mocked.calls:
        assert call.request.req_kwargs["timeout"] == (4.5, 4.5)
        assert call.request.req_kwargs["stream"] is True


def test_the_key_is_sent_once_even_with_other_query_parameters(mocked):
    mocked.get(BASE + "/catalog/v1/item", json=[])
    client, _ = make_client(api_key="k&key=other")
    client.list_catalog_items(page_num=0, page_size=10)
    assert query_of(mocked.calls[0])["key"] == ["k&key=other"]


@pytest.mark.parametrize(
    "base_url",
    ["ftp://vionlabs.test", "vionlabs.test", "https://vionlabs.test/?key=x", "https://vionlabs.test/#k"],
)
def test_base_url_must_be_plain_http(base_url):
    with pytest.raises(ValueError, match="base_url") as caught:
        VionlabsClient(base_url=base_url, api_key=KEY)
    assert "key=x" not in str(caught.value)


def test_base_url_may_carry_a_path_prefix(mocked):
    mocked.get("https://vionlabs.test/v2/tasks/catalog-item/tt1", json=[])
    client, _ = make_client(base_url="https://vionlabs.test/v2/")
    assert client.list_item_tasks("tt1") == []


# --- retries ------------------------------------------------------------------------------------------------

HTTP_OUTCOMES = {
    500: VionlabsUnavailable,
    502: VionlabsUnavailable,
    503: VionlabsUnavailable,
    504: VionlabsUnavailable,
    429: VionlabsRateLimited,
    400: VionlabsRejected,
    401: VionlabsUnauthorized,
    403: VionlabsUnauthorized,
    404: VionlabsNotFound,
    409: VionlabsRejected,
    422: VionlabsRejected,
}
TRANSPORT = ["connection refused", "reset after sending", "read timeout"]
ATTEMPTS = 4  # max_retries=3


def _expected_count(method: str, failure: str | int) -> int:
    if failure == "connection refused":
        return ATTEMPTS  # nothing was sent: safe to repeat for every method
    if method == "POST":
        return 1  # once sent, a POST is never repeated: the caller re-reads the task instead
    if failure in TRANSPORT or failure in (500, 502, 503, 504, 429):
        return ATTEMPTS
    return 1


RETRY_TABLE = [
    (method, failure, _expected_count(method, failure))
    for method in ("GET", "DELETE", "POST")
    for failure in [*TRANSPORT, *HTTP_OUTCOMES]
]


@pytest.mark.parametrize(("method", "failure", "expected_requests"), RETRY_TABLE)
def test_requests_sent_per_method_and_failure(mocked, method, failure, expected_requests):
    if isinstance(failure, int):
        mocked.add(method, TASK_URL, status=failure, json={"detail": "x"})
        expected_error = HTTP_OUTCOMES[failure]
    else:
        mocked.add(method, TASK_URL, body=FAILURES[failure](method, TASK_URL, KEY))
        expected_error = VionlabsUnavailable
    client, sleeps = make_client(max_retries=3)
    call = {"GET": client.get_task, "DELETE": client.deactivate_task, "POST": client.create_task}[method]
    with pytest.raises(expected_error) as caught:
        call("tt1", "adbreaks", "1.0.1")
    assert type(caught.value) is expected_error
    assert len(mocked.calls) == expected_requests
    assert len(sleeps) == expected_requests - 1
    if isinstance(caught.value, VionlabsUnavailable):
        sent = failure != "connection refused"
        assert caught.value.outcome_unknown is (sent and method != "GET")


@pytest.mark.parametrize("failure", ["dns failure", "connect timeout"])
def test_post_is_retried_when_the_connection_never_opened(mocked, failure):
    mocked.post(TASK_URL, body=FAILURES[failure]("POST", TASK_URL, KEY))
    mocked.post(TASK_URL, json={"status": "pending"})
    client, sleeps = make_client()
    assert client.create_task("tt1", "adbreaks", "1.0.1").status == "pending"
    assert len(mocked.calls) == 2
    assert len(sleeps) == 1


def test_a_retry_that_succeeds_returns_the_answer(mocked):
    mocked.get(TASK_URL, status=502)
    mocked.get(TASK_URL, body=FAILURES["reset after sending"]("GET", TASK_URL, KEY))
    mocked.get(TASK_URL, json=TASK_BODY)
    client, sleeps = make_client()
    assert client.get_task("tt1", "adbreaks", "1.0.1").status == "processing"
    assert len(mocked.calls) == 3
    assert len(sleeps) == 2


def test_backoff_is_capped_exponential_with_full_jitter(mocked, monkeypatch):
    bounds: list[tuple[float, float]] = []

    def fake_uniform(low, high):
        bounds.append((low, high))
        return high

    monkeypatch.setattr("dashboard.vionlabs.client.random.uniform", fake_uniform)
    mocked.get(TASK_URL, status=503)
    client, sleeps = make_client(max_retries=6, backoff=0.5, backoff_cap=5.0)
    with pytest.raises(VionlabsUnavailable):
        client.get_task("tt1", "adbreaks", "1.0.1")
    assert bounds == [(0, 0.5), (0, 1.0), (0, 2.0), (0, 4.0), (0, 5.0), (0, 5.0)]
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_real_jitter_stays_within_the_bound(mocked):
    mocked.get(TASK_URL, status=500)
    client, sleeps = make_client(max_retries=8, backoff=1.0, backoff_cap=3.0)
    with pytest.raises(VionlabsUnavailable):
        client.get_task("tt1", "adbreaks", "1.0.1")
    assert len(sleeps) == 8
    assert all(0 <= delay <= min(3.0, 2**n) for n, delay in enumerate(sleeps))


def test_max_retries_zero_sends_once(mocked):
    mocked.get(TASK_URL, status=503)
    client, sleeps = make_client(max_retries=0)
    with pytest.raises(VionlabsUnavailable):
        client.get_task("tt1", "adbreaks", "1.0.1")
    assert len(mocked.calls) == 1
    assert sleeps == []


# --- Retry-After and the throttle ------------------------------------------------------------------------

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("  12 ", 12.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-5", 0.0),
        ("999999", 120.0),
        ("1e400", 120.0),
        (format_datetime(datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=45), usegmt=True), 45.0),
        (format_datetime(datetime.fromtimestamp(NOW, UTC) - timedelta(seconds=45), usegmt=True), 0.0),
        (format_datetime(datetime.fromtimestamp(NOW, UTC) + timedelta(days=3), usegmt=True), 120.0),
        ("Wed, 21 Oct 2015 07:28:00", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("Fri, 99 Foo 2015 99:99:99 GMT", None),
        ("0x10", None),
        ("Mon, 01 Jan 99999 00:00:00 GMT", None),
    ],
)
def test_retry_after_parsing(header, expected):
    assert _parse_retry_after(header, cap=120.0, now=NOW) == expected


def test_retry_after_seconds_are_slept_on_a_get(mocked):
    mocked.get(TASK_URL, status=429, headers={"Retry-After": "7"})
    mocked.get(TASK_URL, json=TASK_BODY)
    client, sleeps = make_client()
    client.get_task("tt1", "adbreaks", "1.0.1")
    assert sleeps == [7.0]


def test_retry_after_date_is_slept_on_a_503(mocked):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    mocked.get(TASK_URL, status=503, headers={"Retry-After": when})
    mocked.get(TASK_URL, json=TASK_BODY)
    client, sleeps = make_client()
    client.get_task("tt1", "adbreaks", "1.0.1")
    assert 55 <= sleeps[0] <= 60


def test_huge_retry_after_is_clamped(mocked):
    mocked.get(TASK_URL, status=429, headers={"Retry-After": "86400"})
    client, sleeps = make_client(max_retries=1, retry_after_cap=20)
    with pytest.raises(VionlabsRateLimited) as caught:
        client.get_task("tt1", "adbreaks", "1.0.1")
    assert sleeps == [20]
    assert caught.value.retry_after == 20


@pytest.mark.parametrize("header", ["soon", "-", "1,2", "Fri, 99 Foo 2015", "\x00"])
def test_malformed_retry_after_falls_back_to_backoff(mocked, header):
    mocked.get(TASK_URL, status=429, headers={"Retry-After": header})
    client, sleeps = make_client(max_retries=2, backoff=0.5, backoff_cap=30)
    with pytest.raises(VionlabsRateLimited, match="try again in a minute") as caught:
        client.get_task("tt1", "adbreaks", "1.0.1")
    assert caught.value.retry_after is None
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5
    assert 0 <= sleeps[1] <= 1.0


class RecordingThrottle:
    def __init__(self):
        self.events: list[tuple[str, float | None]] = []

    def wait(self) -> None:
        self.events.append(("wait", None))

    def pause(self, seconds: float) -> None:
        self.events.append(("pause", seconds))


def test_throttle_is_waited_before_each_attempt_and_paused_on_429(mocked):
    mocked.get(TASK_URL, status=429, headers={"Retry-After": "3"})
    mocked.get(TASK_URL, status=503)
    mocked.get(TASK_URL, json=TASK_BODY)
    throttle = RecordingThrottle()
    client, sleeps = make_client(throttle=throttle)
    client.get_task("tt1", "adbreaks", "1.0.1")
    assert throttle.events == [("wait", None), ("pause", 3.0), ("wait", None), ("wait", None)]
    assert sleeps[0] == 3.0


def test_429_on_post_pauses_the_throttle_but_is_not_retried(mocked):
    mocked.post(TASK_URL, status=429, headers={"Retry-After": "9"})
    throttle = RecordingThrottle()
    client, sleeps = make_client(throttle=throttle)
    with pytest.raises(VionlabsRateLimited) as caught:
        client.create_task("tt1", "adbreaks", "1.0.1")
    assert caught.value.retry_after == 9
    assert throttle.events == [("wait", None), ("pause", 9.0)]
    assert sleeps == []
    assert len(mocked.calls) == 1


# --- odds and ends ------------------------------------------------------------------------------------------


def test_client_closes_its_session():
    client, _ = make_client()
    adapter = client._session.get_adapter(BASE)
    adapter.poolmanager.connection_from_url(BASE)
    with client:
        assert len(adapter.poolmanager.pools) == 1
    assert len(adapter.poolmanager.pools) == 0


def test_errors_survive_pickling():
    # Round trip of our own objects (a job queue may pickle them); nothing untrusted is loaded.
    error = VionlabsRejected("bad", status_code=422, details=(FieldError("path.version", "blank"),))
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301
    assert (str(copy), copy.status_code, copy.details) == ("bad", 422, error.details)
    unavailable = VionlabsUnavailable("down", status_code=503, outcome_unknown=True)
    assert pickle.loads(pickle.dumps(unavailable)).outcome_unknown is True  # noqa: S301


def test_an_oversized_answer_is_a_bad_response(mocked, monkeypatch):
    monkeypatch.setattr("dashboard.vionlabs.client._MAX_BODY", 100)
    mocked.get(TASK_URL, json={"status": "done", "error": "x" * 500})
    client, sleeps = make_client()
    with pytest.raises(VionlabsBadResponse, match="larger than"):
        client.get_task("tt1", "adbreaks", "1.0.1")
    assert sleeps == []


def test_a_gzipped_answer_is_decoded(mocked):
    import gzip

    body = gzip.compress(json.dumps(TASK_BODY).encode())
    mocked.get(TASK_URL, body=body, headers={"Content-Encoding": "gzip"}, content_type="application/json")
    client, _ = make_client()
    assert client.get_task("tt1", "adbreaks", "1.0.1").status == "processing"


def test_an_unexpected_requests_error_becomes_unavailable(mocked):
    mocked.get(TASK_URL, body=requests.exceptions.InvalidHeader("bad header in answer"))
    client, _ = make_client(max_retries=0)
    with pytest.raises(VionlabsUnavailable):
        client.get_task("tt1", "adbreaks", "1.0.1")


def test_messages_name_the_call_but_not_the_url(mocked):
    mocked.get(TASK_URL, status=404)
    client, _ = make_client()
    with pytest.raises(VionlabsNotFound) as caught:
        client.get_task("tt1", "adbreaks", "1.0.1")
    message = str(caught.value)
    assert "[GET /tasks/catalog-item/{inventory_id}/product/{product}/version/{version}" in message
    assert "inventory_id 'tt1', product 'adbreaks', version '1.0.1'" in message
    assert "?" not in message
    assert BASE not in message
    assert caught.value.args == (message,)


@pytest.mark.parametrize(("header", "shown"), [("0", "1 s"), ("1.2", "2 s"), ("45", "45 s")])
def test_429_message_rounds_the_wait_up_to_whole_seconds(mocked, header, shown):
    mocked.post(TASK_URL, status=429, headers={"Retry-After": header})
    client, _ = make_client()
    with pytest.raises(VionlabsRateLimited, match=f"try again in {shown}\\."):
        client.create_task("tt1", "adbreaks", "1.0.1")


def test_proxy_settings_are_read_from_the_environment_once_when_the_client_is_made(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "")
    client, _ = make_client(base_url="https://apis.example.invalid")
    assert client._session.proxies == {"https": "http://proxy.internal.invalid:3128"}
    # A later change of the environment is not looked up again on every call (it cost CPU per request).
    monkeypatch.setenv("HTTPS_PROXY", "http://other.invalid:3128")
    assert client._session.trust_env is False
    assert client._session.proxies["https"] == "http://proxy.internal.invalid:3128"


def test_no_proxy_excludes_the_api_host(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "apis.example.invalid")
    client, _ = make_client(base_url="https://apis.example.invalid")
    assert "https" not in client._session.proxies
