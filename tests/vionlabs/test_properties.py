"""Properties of the client, checked by Hypothesis over generated input:

- any inventory id round-trips through the client and the sandbox (on a real port), or the client refuses it
  with its own error before anything is sent;
- any response body either parses or raises the client's own error (a VionlabsError), never another exception.
"""

from __future__ import annotations

import json

import pytest
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.vionlabs import Product, Status, VionlabsClient, VionlabsError

# Every code point, lone surrogates included: ids come from files and other systems, not only from keyboards.
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
IDS = st.one_of(
    ANY_TEXT,
    st.sampled_from(["", ".", "..", "/", "%2F", "a/../b", "?key=x", "#", " ", "\x00", "\ud800", "é✓"]),
    st.text(alphabet="./%?#&= abcAZ09\\", max_size=12),
)
FAST = settings(max_examples=80, deadline=None)


@pytest.fixture(scope="module")
def live_sandbox(_sandbox_server):
    # The session's sandbox on its real port; each example resets it (function fixtures are not re-run).
    return _sandbox_server


@FAST
@given(inventory_id=IDS)
def test_any_inventory_id_round_trips_or_is_refused_before_sending(live_sandbox, inventory_id):
    sandbox = live_sandbox
    sandbox.reset()
    refused: VionlabsError | None = None
    with VionlabsClient(base_url=sandbox.url, api_key=sandbox.api_key, timeout=5, max_retries=0) as client:
        try:
            created = client.create_task(inventory_id, Product.ADBREAKS, "1.0")
        except VionlabsError as error:
            refused = error
        if refused is not None:
            # Refused by the client itself: no status from a server, and nothing reached the sandbox.
            assert refused.status_code is None, refused
            assert sandbox.stats()["requests"] == 0
            return
        assert created.status == Status.PENDING
        # The same task is read back (a wrong id would be a 404). Its status moves on by the sandbox's clock
        # (pending for 0.2 s in the tests), so a loaded machine may already see it processing or done.
        read = client.get_task(inventory_id, Product.ADBREAKS, "1.0")
        assert read.status in (Status.PENDING, Status.PROCESSING, Status.DONE)
        (listed,) = client.list_item_tasks(inventory_id)
        assert (listed.product, listed.version) == (Product.ADBREAKS, "1.0")
        assert sandbox.task_requests(inventory_id, Product.ADBREAKS, "1.0") == 2
        assert client.deactivate_task(inventory_id, Product.ADBREAKS, "1.0").status == Status.DEACTIVATED


BASE = "https://vionlabs.test"
TASK_URL = f"{BASE}/tasks/catalog-item/tt1/product/adbreaks/version/1.0"
ITEM_URL = f"{BASE}/tasks/catalog-item/tt1"

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4),
    max_leaves=12,
)
# Shapes near the real ones, so the parser's deeper branches are reached, not only "expected an object".
TASK_LIKE = st.fixed_dictionaries(
    {"status": JSON_VALUES},
    optional={
        "error": JSON_VALUES,
        "_links": st.one_of(
            JSON_VALUES, st.dictionaries(ANY_TEXT, st.fixed_dictionaries({}, optional={"href": JSON_VALUES}))
        ),
    },
)
ITEM_LIKE = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "task_status": st.one_of(JSON_VALUES, TASK_LIKE),
            "product": JSON_VALUES,
            "version": JSON_VALUES,
        },
    ),
    max_size=4,
)


def _encoded(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


BODIES = st.one_of(
    st.binary(max_size=200),
    JSON_VALUES.map(_encoded),
    TASK_LIKE.map(_encoded),
    ITEM_LIKE.map(_encoded),
    st.sampled_from(
        [b"", b"{", b"\x0c", b"null", b"NaN", b"[" * 5000 + b"]" * 5000, b'{"status": "\\ud800"}']
    ),
)


@settings(max_examples=100, deadline=None)
@given(
    body=BODIES, status=st.sampled_from([200, 200, 200, 404, 422, 429, 500, 503]), item_level=st.booleans()
)
def test_any_response_body_parses_or_raises_the_clients_own_error(body, status, item_level):
    client = VionlabsClient(base_url=BASE, api_key="sk-property-key-123456", timeout=5, max_retries=0)
    with responses.RequestsMock() as mocked:
        mocked.get(ITEM_URL if item_level else TASK_URL, body=body, status=status)
        message = ""
        try:
            if item_level:
                result = client.list_item_tasks("tt1")
                assert all(isinstance(task.status, str) for task in result)
            else:
                assert isinstance(client.get_task("tt1", "adbreaks", "1.0").status, str)
        except VionlabsError as error:
            message = f"{error} {error!r}"
    client.close()
    assert "sk-property-key-123456" not in message


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000])
def test_a_hostile_deeply_nested_body_is_a_bad_response(body):
    client = VionlabsClient(base_url=BASE, api_key="sk-property-key-123456", timeout=5, max_retries=0)
    with responses.RequestsMock() as mocked:
        mocked.get(TASK_URL, body=body)
        with pytest.raises(VionlabsError):
            client.get_task("tt1", "adbreaks", "1.0")
    client.close()
