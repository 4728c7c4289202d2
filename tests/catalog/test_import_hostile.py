"""Files that used to lose rows silently or crash the import: a stray quote in a CSV, a deeply nested JSON
Lines row. Each ends in a report that names the line, and every other row is imported."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from dashboard.catalog import imports
from dashboard.catalog.imports import import_catalog_file
from dashboard.catalog.models import CatalogItem

pytestmark = pytest.mark.django_db

HEADER = "inventory_id,title,kind,parent_id"
IMPORT_URL = "/admin/catalog/catalogitem/import/"


def run(path):
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_catalog", str(path), stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue() + str(exc)
    return 0, out.getvalue(), err.getvalue()


def csv_with_stray_quote(rows: int, bad_at: int) -> str:
    lines = [HEADER]
    for n in range(rows):
        title = f'"Unclosed title {n}' if n == bad_at else f"Title {n}"
        lines.append(f"mv-{n:05d},{title},,")
    return "\n".join(lines) + "\n"


def test_an_unclosed_quote_is_reported_and_the_rest_of_the_file_imported(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text(csv_with_stray_quote(3000, bad_at=1))

    code, out, err = run(path)

    assert code == 1
    assert "line 3: a quote opened on this line is never closed" in err
    assert "2999 created, 0 updated, 0 unchanged, 1 bad (3000 rows)" in out
    assert not CatalogItem.objects.filter(inventory_id="mv-00001").exists()
    assert CatalogItem.objects.count() == 2999
    assert CatalogItem.objects.get(inventory_id="mv-02999").title == "Title 2999"


def test_a_stray_quote_closed_further_down_loses_no_row_in_between(tmp_path):
    # Line 3 opens a quote that line 6 closes: the four lines came out as one row of the wrong shape.
    content = f'{HEADER}\nmv-1,A,,\nmv-2,"B,,\nmv-3,C,,\nmv-4,D,,\nmv-5,E" x,,\nmv-6,F,,\n'
    path = tmp_path / "catalog.csv"
    path.write_text(content)

    code, _, err = run(path)

    assert code == 1
    assert "line 3: a quote opened on this line is never closed" in err
    assert "1 bad row(s)" in err
    assert sorted(CatalogItem.objects.values_list("inventory_id", flat=True)) == [
        "mv-1",
        "mv-3",
        "mv-4",
        "mv-5",
        "mv-6",
    ]
    assert CatalogItem.objects.get(inventory_id="mv-5").title == 'E" x'  # read on its own, quote kept as text


def test_a_quoted_field_with_line_breaks_is_still_one_row():
    content = f'{HEADER},synopsis\nmv-1,A,,,"two\nlines"\nmv-2,B,,,plain\n'.encode()
    report = import_catalog_file(io.BytesIO(content), name="c.csv")
    assert report.ok
    assert report.created == 2
    assert CatalogItem.objects.get(inventory_id="mv-1").metadata == {"synopsis": "two\nlines"}


def test_a_record_longer_than_the_field_limit_is_cut_off_and_the_lines_after_it_read(monkeypatch):
    monkeypatch.setattr(imports, "MAX_FIELD_CHARS", 200)
    rows = [f"mv-{n:03d},Title {n},," for n in range(40)]
    rows[0] = 'mv-000,"never closed,,'
    report = import_catalog_file(io.BytesIO(("\n".join([HEADER, *rows]) + "\n").encode()), name="c.csv")
    assert report.bad == 1
    assert report.errors[0].line == 2
    assert "grows past 200 characters" in report.errors[0].reason
    assert report.created == 39


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [100, 100_000])
def test_a_deeply_nested_json_line_is_a_bad_row_and_the_import_goes_on(tmp_path, depth):
    path = tmp_path / "catalog.jsonl"
    path.write_text(
        '{"inventory_id": "a"}\n'
        f'{{"inventory_id": "deep", "extra": {nested(depth)}}}\n'
        '{"inventory_id": "b", "ok": {"x": [1, {"y": 2}]}}\n'
    )

    code, _, err = run(path)

    assert code == 1
    assert "line 2:" in err
    assert "nested" in err
    assert sorted(CatalogItem.objects.values_list("inventory_id", flat=True)) == ["a", "b"]


def test_metadata_nested_up_to_the_limit_is_imported():
    value: object = "leaf"
    for _ in range(imports.MAX_NESTING - 1):
        value = [value]
    line = json.dumps({"inventory_id": "a", "deep": value}).encode()
    report = import_catalog_file(io.BytesIO(line + b"\n"), name="c.jsonl")
    assert report.ok
    assert CatalogItem.objects.get(inventory_id="a").metadata == {"deep": value}


def test_the_admin_upload_reports_a_stray_quote_and_a_deep_row_without_an_error(admin_client):
    response = admin_client.post(
        IMPORT_URL, {"file": SimpleUploadedFile("c.csv", csv_with_stray_quote(50, bad_at=10).encode())}
    )
    assert response.status_code == 200
    assert "49 created, 0 updated, 0 unchanged, 1 bad" in " ".join(response.text.split())
    assert "never closed" in response.text

    content = f'{{"inventory_id": "deep", "x": {nested(50_000)}}}\n{{"inventory_id": "ok"}}\n'.encode()
    response = admin_client.post(IMPORT_URL, {"file": SimpleUploadedFile("c.jsonl", content)})
    assert response.status_code == 200
    assert "1 created, 0 updated, 0 unchanged, 1 bad" in " ".join(response.text.split())
    assert "nested" in response.text
