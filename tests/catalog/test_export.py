"""Catalog and task exports: the on-screen filter, both formats, streamed in batches, viewers and up, CSV cells
safe in a spreadsheet, and the catalog CSV importable back."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from django.urls import reverse
from django.utils import timezone

from dashboard.catalog import exports
from dashboard.catalog.exports import escape_cell, unescape_cell
from dashboard.catalog.imports import import_catalog_file
from dashboard.catalog.models import CatalogItem, ItemKind
from tests.factories import add_series, make_item, make_task

pytestmark = pytest.mark.django_db


def body(response) -> str:
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def csv_rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body(response))))


def test_a_viewer_downloads_the_catalog_as_csv(viewer_client):
    make_item("tt1", "One")
    response = viewer_client.get(reverse("catalog:item-export-csv"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="catalog-')
    assert csv_rows(response) == [
        {"inventory_id": "tt1", "title": "One", "kind": "standalone", "parent_id": ""}
    ]


@pytest.mark.parametrize("name", ["item-export", "task-export"])
def test_a_user_without_a_role_may_not_export(client, nobody, name):
    client.force_login(nobody)
    assert client.get(reverse(f"catalog:{name}-csv")).status_code == 403


def test_an_anonymous_visitor_is_sent_to_log_in(client):
    response = client.get(reverse("catalog:item-export-jsonl"))
    assert response.status_code == 302
    assert "/login" in response["Location"]


def test_the_catalog_export_uses_the_page_filter(viewer_client):
    make_task(make_item("a1", "Alpha"), status="failed")
    make_task(make_item("a2", "Alpha two"), status="done")
    make_item("b1", "Beta")
    response = viewer_client.get(reverse("catalog:item-export-csv"), {"q": "alpha", "status": "failed"})
    assert [row["inventory_id"] for row in csv_rows(response)] == ["a1"]


def test_an_invalid_filter_exports_nothing_and_says_why(viewer_client):
    make_item("a1")
    response = viewer_client.get(reverse("catalog:item-export-csv"), {"kind": "movie"})
    assert response.status_code == 400
    assert b"kind" in response.content


def test_an_unknown_format_is_404(viewer_client):
    url = reverse("catalog:item-export-csv").replace(".csv", ".xlsx")
    assert viewer_client.get(url).status_code == 404


def test_the_catalog_jsonl_has_one_object_per_item(viewer_client):
    series = add_series(seasons=1, episodes=2)
    response = viewer_client.get(reverse("catalog:item-export-jsonl"), {"kind": "episode"})
    lines = [json.loads(line) for line in body(response).splitlines()]
    assert [line["inventory_id"] for line in lines] == ["show-s0e0", "show-s0e1"]
    assert lines[0]["parent_id"] == f"{series.inventory_id}-s0"
    assert set(lines[0]) == {
        "inventory_id",
        "title",
        "kind",
        "parent_id",
        "vionlabs_id",
        "metadata",
        "created_at",
        "updated_at",
    }


def test_the_task_export_uses_the_page_filter_stuck_flag_included(viewer_client, products):
    old = timezone.now() - dt.timedelta(days=2)
    stuck = make_task(make_item("s1"), status="processing", requested_at=old, status_changed_at=old)
    make_task(make_item("f1"), status="processing")
    make_task(make_item("d1"), status="done")
    response = viewer_client.get(reverse("catalog:task-export-csv"), {"stuck": "on"})
    rows = csv_rows(response)
    assert [row["task_id"] for row in rows] == [str(stuck.pk)]
    assert list(rows[0]) == list(exports.TASK_COLUMNS)
    assert rows[0]["requested_at"] == old.isoformat()


def test_the_task_jsonl_is_newest_first(viewer_client):
    first = make_task(make_item("a"), status="done")
    second = make_task(make_item("b"), status="failed", error="boom")
    response = viewer_client.get(reverse("catalog:task-export-jsonl"))
    lines = [json.loads(line) for line in body(response).splitlines()]
    assert [line["task_id"] for line in lines] == [second.pk, first.pk]
    assert lines[0]["error"] == "boom"


def test_rows_are_read_in_batches_without_losing_or_repeating_any(viewer_client, monkeypatch):
    monkeypatch.setattr(exports, "BATCH_SIZE", 3)
    for n in range(10):
        make_task(make_item(f"i{n:02d}"), status="done")
    items = csv_rows(viewer_client.get(reverse("catalog:item-export-csv")))
    tasks = csv_rows(viewer_client.get(reverse("catalog:task-export-csv")))
    assert [row["inventory_id"] for row in items] == [f"i{n:02d}" for n in range(10)]
    assert sorted(row["inventory_id"] for row in tasks) == [f"i{n:02d}" for n in range(10)]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=SUM(A1)", "'=SUM(A1)"),
        ("+1", "'+1"),
        ("-5", "'-5"),
        ("@cmd", "'@cmd"),
        ("'=x", "''=x"),
        ("'Allo 'Allo", "'Allo 'Allo"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_formula_like_cells_are_escaped_and_restored(value, cell):
    assert escape_cell(value) == cell
    assert unescape_cell(cell) == value


def test_the_catalog_csv_imports_back_into_an_empty_catalog(viewer_client):
    series = CatalogItem.objects.create(inventory_id="=show", title="+Show", kind=ItemKind.SERIES)
    make_item(
        "-tt1", '=HYPERLINK("http://x")', kind=ItemKind.EPISODE, parent=series, metadata={"year": "-1999"}
    )
    make_item("tt2", "'Allo 'Allo", metadata={"genre": "@comedy", "note": "'=kept"})
    make_item("tt3", "Plain")

    def snapshot():
        return sorted(
            (i.inventory_id, i.title, i.kind, i.parent.inventory_id if i.parent else "", i.metadata)
            for i in CatalogItem.objects.select_related("parent")
        )

    before = snapshot()
    exported = body(viewer_client.get(reverse("catalog:item-export-csv")))
    assert "'=show" in exported
    assert "'-tt1" in exported
    CatalogItem.objects.all().delete()
    report = import_catalog_file(io.BytesIO(exported.encode()), fmt="csv")
    assert not report.errors
    assert snapshot() == before


def test_both_pages_link_to_the_downloads_with_their_filter(viewer_client):
    page = viewer_client.get(reverse("catalog:item-list"), {"q": "alpha", "sort": "-title"}).content.decode()
    assert f"{reverse('catalog:item-export-csv')}?q=alpha" in page
    assert f"{reverse('catalog:item-export-jsonl')}?q=alpha" in page
    page = viewer_client.get(reverse("catalog:task-list"), {"status": "failed"}).content.decode()
    assert f"{reverse('catalog:task-export-csv')}?status=failed" in page
