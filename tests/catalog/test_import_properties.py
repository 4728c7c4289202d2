"""Hypothesis: any generated CSV or JSON Lines catalog ends in a report, never a crash, and imports exactly its
valid rows. The files are built from rows that carry their own label (valid, or invalid and why); the oracle
below knows only the documented rules (docs/catalog.md, imports.py docstring), not how the importer applies them."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.catalog.imports import import_catalog_file
from dashboard.catalog.models import CatalogItem

pytestmark = pytest.mark.django_db

ID_LIMIT = 255  # CatalogItem.inventory_id's documented length
TITLE_LIMIT = 500
NESTING_LIMIT = 64
KINDS = ["", "standalone", "series", "season", "episode"]
PROPERTY = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789-_", min_size=1, max_size=12)
# Text a person may type: no NUL, no unpaired surrogate, no carriage return (a line break in a CSV field is \n).
quoted_titles = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00\r"), max_size=40)
# Nothing csv.writer would quote: no delimiter, quote or line break.
plain_titles = st.text(alphabet=st.characters(codec="utf-8", exclude_characters='\x00\r\n",'), max_size=40)


@dataclass
class Row:
    inventory_id: str | None  # None: the key is missing (JSON Lines only)
    title: str = ""
    kind: str = ""
    parent_id: str = ""
    valid: bool = True
    why: str = ""
    raw: str | None = None  # a line written as is, not through the writer
    extra: object = None  # a metadata value (JSON Lines)


@st.composite
def catalogs(draw, fmt: str):
    """(rows, stray_quotes_allowed): rows in file order, each labelled."""
    # A stray quote is unambiguous only when no later field starts with a quote: either the file may have
    # stray quotes, or its titles may need quoting (commas, quotes, line breaks), not both.
    stray_quotes = fmt == "csv" and draw(st.booleans())
    titles = plain_titles if stray_quotes else quoted_titles
    rows: list[Row] = []
    valid_ids: list[str] = []
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        choice = draw(
            st.sampled_from(
                ["valid"] * 6
                + ["blank_id", "long_id", "bad_kind", "long_title", "duplicate", "wrong_shape"]
                + (["stray_quote"] if stray_quotes else [])
                + (["missing_id", "not_object", "broken_json", "too_deep"] if fmt == "jsonl" else [])
            )
        )
        title = draw(titles)
        kind = draw(st.sampled_from(KINDS))
        if choice == "valid":
            new_id = draw(ids.filter(lambda value: value not in valid_ids))
            parent = draw(st.sampled_from(["", *valid_ids])) if valid_ids else ""
            rows.append(Row(new_id, title, kind, parent))
            valid_ids.append(new_id)
        elif choice == "duplicate" and valid_ids:
            rows.append(Row(draw(st.sampled_from(valid_ids)), title, kind, valid=False, why=choice))
        elif choice == "blank_id":
            rows.append(Row(draw(st.sampled_from(["", " ", "  "])), title, kind, valid=False, why=choice))
        elif choice == "long_id":
            rows.append(Row("x" * (ID_LIMIT + 1), title, kind, valid=False, why=choice))
        elif choice == "bad_kind":
            rows.append(Row(draw(ids), title, "film-noir", valid=False, why=choice))
        elif choice == "long_title":
            rows.append(Row(draw(ids), "t" * (TITLE_LIMIT + 1), kind, valid=False, why=choice))
        elif choice == "wrong_shape":
            raw = "a,b,c,d,e" if fmt == "csv" else "[1, 2]"
            rows.append(Row(None, raw=raw, valid=False, why=choice))
        elif choice == "stray_quote":
            rows.append(
                Row(None, raw=f'{draw(ids)},"never closed {draw(plain_titles)}', valid=False, why=choice)
            )
        elif choice == "missing_id":
            rows.append(Row(None, title, kind, valid=False, why=choice))
        elif choice == "not_object":
            rows.append(
                Row(None, raw=draw(st.sampled_from(['"text"', "42", "null"])), valid=False, why=choice)
            )
        elif choice == "broken_json":
            rows.append(Row(None, raw='{"inventory_id": "x", ', valid=False, why=choice))
        elif choice == "too_deep":
            depth = draw(st.integers(min_value=NESTING_LIMIT + 1, max_value=5000))
            rows.append(Row(draw(ids), title, kind, valid=False, why=choice, extra="[" * depth + "]" * depth))
    return rows


def write_csv(rows: list[Row]) -> tuple[bytes, list[int]]:
    """The file, and each row's line number (a quoted title may span lines)."""
    out = io.StringIO()
    out.write("inventory_id,title,kind,parent_id\n")
    writer = csv.writer(out, lineterminator="\n")
    lines, line = [], 2
    for row in rows:
        lines.append(line)
        before = out.tell()
        if row.raw is not None:
            out.write(row.raw + "\n")
        else:
            writer.writerow([row.inventory_id, row.title, row.kind, row.parent_id])
        out.seek(before)
        line += out.read().count("\n")
    return out.getvalue().encode(), lines


def write_jsonl(rows: list[Row]) -> tuple[bytes, list[int]]:
    parts = []
    for row in rows:
        if row.raw is not None:
            parts.append(row.raw)
            continue
        obj: dict = {"title": row.title, "kind": row.kind, "parent_id": row.parent_id}
        if row.inventory_id is not None:
            obj["inventory_id"] = row.inventory_id
        text = json.dumps(obj, ensure_ascii=False)
        if row.extra is not None:
            text = text[:-1] + f', "extra": {row.extra}}}'
        parts.append(text)
    return ("\n".join(parts) + "\n").encode() if parts else b"\n", list(range(1, len(rows) + 1))


def check(rows: list[Row], content: bytes, lines: list[int], name: str) -> None:
    CatalogItem.objects.all().delete()
    if not content.strip():
        return  # an empty file is refused as a whole (ImportFileError), covered by the example tests
    report = import_catalog_file(io.BytesIO(content), name=name, batch_size=3)

    valid = [row for row in rows if row.valid]
    invalid_lines = [line for row, line in zip(rows, lines, strict=True) if not row.valid]
    assert report.created == len(valid)
    assert report.bad == len(invalid_lines)
    assert [error.line for error in report.errors] == invalid_lines
    stored = dict(CatalogItem.objects.values_list("inventory_id", "title"))
    assert stored == {row.inventory_id: row.title.strip() for row in valid}
    parents = dict(CatalogItem.objects.values_list("inventory_id", "parent__inventory_id"))
    assert parents == {row.inventory_id: row.parent_id or None for row in valid}


@PROPERTY
@given(rows=catalogs("csv"))
def test_any_csv_ends_in_a_report_and_imports_exactly_its_valid_rows(rows):
    content, lines = write_csv(rows)
    check(rows, content, lines, "c.csv")


@PROPERTY
@given(rows=catalogs("jsonl"))
def test_any_json_lines_file_ends_in_a_report_and_imports_exactly_its_valid_rows(rows):
    content, lines = write_jsonl(rows)
    check(rows, content, lines, "c.jsonl")
