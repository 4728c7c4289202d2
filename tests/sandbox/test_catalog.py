"""The sandbox's Catalog API: paged listing, PUT, items registered by tasks, the preload file."""

from __future__ import annotations

import json

import pytest

from dashboard.sandbox import Sandbox, read_catalog_file

from .helpers import call, task_path


def test_listing_pages_through_items_in_the_order_they_were_added(sandbox):
    for number in range(5):
        assert call(sandbox, "PUT", "/catalog/v1/item", json={"id": f"item-{number}", "type": "episode"}).ok
    pages = [
        call(sandbox, "GET", "/catalog/v1/item", params={"page_num": page, "page_size": 2}).json()
        for page in range(4)
    ]
    assert [[entry["id"] for entry in page] for page in pages] == [
        ["item-0", "item-1"],
        ["item-2", "item-3"],
        ["item-4"],
        [],
    ]
    entry = pages[0][0]
    assert set(entry) == {"id", "vionlabs_id", "type"}
    assert entry["type"] == "episode"
    assert entry["vionlabs_id"]


def test_put_returns_the_entry_and_updates_the_type_of_an_existing_item(sandbox):
    first = call(sandbox, "PUT", "/catalog/v1/item", json={"id": "show", "type": "series"}).json()
    second = call(sandbox, "PUT", "/catalog/v1/item", json={"id": "show", "type": "season"}).json()
    assert second == first | {"type": "season"}
    assert call(sandbox, "GET", "/catalog/v1/item").json() == [second]


def test_creating_a_task_registers_the_item(sandbox):
    call(sandbox, "POST", task_path("new/one"))
    assert [(entry["id"], entry["type"]) for entry in call(sandbox, "GET", "/catalog/v1/item").json()] == [
        ("new/one", "standalone")
    ]


@pytest.mark.parametrize(
    ("params", "loc", "error_type"),
    [
        ({"page_num": "-1"}, ["query", "page_num"], "greater_than_equal"),
        ({"page_num": "two"}, ["query", "page_num"], "int_parsing"),
        ({"page_size": "0"}, ["query", "page_size"], "greater_than_equal"),
        ({"page_size": "5000"}, ["query", "page_size"], "less_than_equal"),
    ],
)
def test_bad_paging_is_422(sandbox, params, loc, error_type):
    answer = call(sandbox, "GET", "/catalog/v1/item", params=params)
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert (error["loc"], error["type"]) == (loc, error_type)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"type": "series"}, ["body", "id"]),
        ({"id": " "}, ["body", "id"]),
        ({"id": "x", "type": "movie"}, ["body", "type"]),
    ],
)
def test_bad_put_is_422_and_adds_nothing(sandbox, body, loc):
    answer = call(sandbox, "PUT", "/catalog/v1/item", json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == loc
    assert call(sandbox, "GET", "/catalog/v1/item").json() == []


def test_preloaded_catalog_survives_reset(tmp_path):
    path = tmp_path / "catalog.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"id": "film-1", "type": "standalone"}),
                "",
                json.dumps({"inventory_id": "series-1", "kind": "series"}),
            ]
        ),
        encoding="utf-8",
    )
    with Sandbox(catalog=read_catalog_file(path)) as server:
        call(server, "PUT", "/catalog/v1/item", json={"id": "later"})
        server.reset()
        listed = call(server, "GET", "/catalog/v1/item").json()
    assert [(entry["id"], entry["type"]) for entry in listed] == [
        ("film-1", "standalone"),
        ("series-1", "series"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"id": "ok"}\n{"id": ', "line 2: not valid JSON"),
        ('{"id": "ok"}\n["x"]', "line 2: expected a JSON object"),
        ('{"type": "series"}', "line 1: missing id"),
        ('{"id": "a", "type": "movie"}', "line 1: type must be one of"),
    ],
)
def test_bad_catalog_file_names_the_line(tmp_path, text, message):
    path = tmp_path / "catalog.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_catalog_file(path)
