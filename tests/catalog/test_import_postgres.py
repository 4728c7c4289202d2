"""The PostgreSQL write path of the catalog import (import_copy.py: COPY into a temporary table, set-based SQL).

The other import tests run on both databases and pin the rules; these cover what only the COPY path can get
wrong: COPY's own escaping, a batch that the database refuses part-way, parents resolved inside one COPY
batch, rows left physically untouched when unchanged, the count triggers, and the same outcome as the ORM path
on the same database.
"""

from __future__ import annotations

import io
import json
import random

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from dashboard.catalog import counts, imports
from dashboard.catalog.imports import ImportReport, import_catalog_file
from dashboard.catalog.models import CatalogItem

pytestmark = [
    pytest.mark.postgres_only(reason="tests the COPY write path, which only PostgreSQL has"),
    pytest.mark.django_db,
]

HEADER = "inventory_id,title,kind,parent_id"


def csv_file(rows: list[list[str]], header: list[str] | None = None) -> io.BytesIO:
    import csv

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header or HEADER.split(","))
    writer.writerows(rows)
    return io.BytesIO(out.getvalue().encode())


def jsonl_file(rows: list[dict]) -> io.BytesIO:
    return io.BytesIO(("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n").encode())


def stored() -> dict[str, tuple[str, str, str | None, dict]]:
    return {
        item.inventory_id: (
            item.title,
            item.kind,
            item.parent.inventory_id if item.parent else None,
            item.metadata,
        )
        for item in CatalogItem.objects.select_related("parent")
    }


def assert_counts_exact() -> None:
    assert counts.read_counts().items == counts.full_count().items


HOSTILE = [
    "tab\there",
    "line\nbreak",
    "carriage\rreturn",
    "windows\r\nline",
    "back\\slash",
    "\\N",
    "\\.",
    "ends with a backslash\\",
    "\"double\" and 'single' quotes",
    "unicode: é ✓ 漢字 🎬 \u200b",
    'json-ish {"a": [1, 2]}',
    "\\t\\n written out",
]


def test_tabs_line_breaks_backslashes_quotes_and_unicode_are_stored_exactly():
    # Inventory ids refuse control characters (tab, line breaks): those go in the title and metadata only.
    rows = []
    for n, value in enumerate(HOSTILE):
        safe_id = "".join(ch for ch in value if ch not in "\t\r\n")
        rows.append([f"id-{n}-{safe_id}", f"t {value} t", "", "", value])
    rows.append(["child\\of\\backslashes", "child", "episode", f"id-4-{HOSTILE[4]}", ""])

    report = import_catalog_file(csv_file(rows, [*HEADER.split(","), "no\tte\\"]), name="c.csv")

    assert (report.created, report.bad) == (len(rows), 0), report.errors
    items = stored()
    for n, value in enumerate(HOSTILE):
        safe_id = "".join(ch for ch in value if ch not in "\t\r\n")
        assert items[f"id-{n}-{safe_id}"] == (f"t {value} t", "standalone", None, {"no\tte\\": value})
    assert items["child\\of\\backslashes"][2] == f"id-4-{HOSTILE[4]}"


def test_json_lines_metadata_with_escapes_and_nesting_round_trips():
    metadata = {
        "synopsis": 'a\tb\nc\\d"e',
        "nested": {"list": ["\\", "\n", "✓", 1.5, None, True, 10**30], "empty": {}},
        "key with \t tab\\": "v",
    }
    row = {"inventory_id": "mv-json", "title": "T\tab", **metadata}

    report = import_catalog_file(jsonl_file([row]), name="c.jsonl")

    assert report.ok
    assert stored()["mv-json"] == ("T\tab", "standalone", None, metadata)
    again = import_catalog_file(jsonl_file([row]), name="c.jsonl")
    assert (again.unchanged, again.updated) == (1, 0)


def test_nul_characters_are_refused_with_a_clear_message_before_copy():
    rows = [
        {"inventory_id": "ok-1", "title": "fine"},
        {"inventory_id": "nul-title", "title": "a\u0000b"},
        {"inventory_id": "nul-value", "x": {"deep": ["a\u0000"]}},
        {"inventory_id": "nul-key", "k\u0000": "v"},
        {"inventory_id": "nul\u0000id"},
        {"inventory_id": "ok-2", "parent_id": "ok-1"},
    ]

    report = import_catalog_file(jsonl_file(rows), name="c.jsonl")

    assert [str(error) for error in report.errors] == [
        "line 2: title contains a NUL character",
        "line 3: a metadata value contains a NUL character",
        "line 4: a metadata value contains a NUL character",
        "line 5: inventory_id contains a NUL character",
    ]
    assert (report.created, report.bad) == (2, 4)
    assert sorted(stored()) == ["ok-1", "ok-2"]


def test_a_chain_of_parents_after_their_children_in_one_batch_is_resolved_in_that_batch():
    rows = [
        ["sr-1/s01/e01", "E1", "episode", "sr-1/s01"],
        ["sr-1/s01", "S1", "season", "sr-1"],
        ["mv-1", "Film", "", ""],
        ["sr-1", "Series", "series", ""],
    ]

    report = import_catalog_file(csv_file(rows), name="c.csv")

    assert (report.created, report.updated, report.bad) == (4, 0, 0)
    items = stored()
    assert items["sr-1/s01/e01"][2] == "sr-1/s01"
    assert items["sr-1/s01"][2] == "sr-1"
    # Written once, with their parent: no later UPDATE moved them (created_at == updated_at).
    assert all(item.created_at == item.updated_at for item in CatalogItem.objects.all())
    assert_counts_exact()


def test_parents_across_batches_later_in_the_file_and_already_in_the_catalog():
    CatalogItem.objects.create(inventory_id="sr-old", kind="series")
    rows = [
        ["sr-2/s01", "S", "season", "sr-2"],  # parent two batches later
        ["sr-old/s09", "S9", "season", "sr-old"],  # parent already in the catalog
        ["mv-1", "A", "", ""],
        ["mv-2", "B", "", ""],
        ["sr-2", "Two", "series", ""],
        ["sr-2/s01/e01", "E", "episode", "sr-2/s01"],  # parent in an earlier batch
        ["orphan", "O", "season", "sr-nowhere"],
    ]

    report = import_catalog_file(csv_file(rows), name="c.csv", batch_size=2)

    assert [str(e) for e in report.errors] == [
        "line 8: parent 'sr-nowhere' is neither in the file nor in the catalog "
        "(the item was imported; its parent was left as it was)"
    ]
    assert (report.created, report.updated, report.unchanged, report.bad) == (6, 0, 0, 1)
    items = stored()
    assert items["sr-2/s01"][2] == "sr-2"
    assert items["sr-old/s09"][2] == "sr-old"
    assert items["sr-2/s01/e01"][2] == "sr-2/s01"
    assert items["orphan"][2] is None
    assert_counts_exact()


def ctids() -> dict[str, str]:
    """Where each row physically is: any rewrite of a row (even to the same values) moves it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT inventory_id, ctid::text FROM catalog_catalogitem")
        return dict(cursor.fetchall())


def test_a_reimport_rewrites_nothing_and_a_changed_row_only_itself():
    rows = [
        ["sr-1", "Dark", "series", "", "2017"],
        ["sr-1/s01", "S1", "season", "sr-1", ""],
        ["mv-1", "Film", "standalone", "", "1999"],
    ]
    header = [*HEADER.split(","), "year"]
    import_catalog_file(csv_file(rows, header), name="c.csv")
    before, updated_at = ctids(), dict(CatalogItem.objects.values_list("inventory_id", "updated_at"))

    again = import_catalog_file(csv_file(rows, header), name="c.csv")

    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert ctids() == before
    assert dict(CatalogItem.objects.values_list("inventory_id", "updated_at")) == updated_at

    rows[2] = ["mv-1", "Film", "episode", "sr-1/s01", "1999"]  # kind and parent change
    changed = import_catalog_file(csv_file(rows, header), name="c.csv")

    assert (changed.created, changed.updated, changed.unchanged) == (0, 1, 2)
    after = ctids()
    assert after["mv-1"] != before["mv-1"]
    assert {k: v for k, v in after.items() if k != "mv-1"} == {k: v for k, v in before.items() if k != "mv-1"}
    assert stored()["mv-1"] == ("Film", "episode", "sr-1/s01", {"year": "1999"})
    assert_counts_exact()


@pytest.fixture
def refuse():
    """A trigger that makes the database refuse rows whose title starts with a word, with a chosen error."""

    def install(word: str, errcode: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                CREATE FUNCTION test_refuse_import() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.title LIKE '{word}%' THEN
                        RAISE EXCEPTION 'refused by the test' USING ERRCODE = '{errcode}';
                    END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER refuse_import BEFORE INSERT OR UPDATE ON catalog_catalogitem
                    FOR EACH ROW EXECUTE FUNCTION test_refuse_import();
                """
            )

    return install


def test_a_row_the_database_refuses_is_reported_and_the_rest_of_its_batch_written(refuse):
    refuse("REFUSE", "23514")  # check_violation: an IntegrityError, as a constraint would raise
    rows = [[f"mv-{n}", "REFUSE me" if n == 3 else f"T{n}", "", ""] for n in range(6)]

    report = import_catalog_file(csv_file(rows), name="c.csv", batch_size=4)

    assert [e.line for e in report.errors] == [5]
    assert "the database refused the row" in report.errors[0].reason
    assert (report.created, report.bad) == (5, 1)
    assert sorted(stored()) == ["mv-0", "mv-1", "mv-2", "mv-4", "mv-5"]
    assert_counts_exact()


def test_a_database_failure_mid_way_keeps_earlier_batches_and_nothing_of_the_failing_one(refuse, tmp_path):
    refuse("BREAK", "XX000")  # internal_error: not about one row, so the import stops
    rows = [[f"mv-{n:02}", "BREAK here" if n == 13 else f"T{n}", "", ""] for n in range(20)]
    path = tmp_path / "c.csv"
    path.write_bytes(csv_file(rows).getvalue())
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError) as info:
        call_command("import_catalog", str(path), "--batch-size", "5", stdout=out, stderr=err)

    assert info.value.returncode == 2
    assert "The database failed" in str(info.value)
    assert "Batches written before were kept" in str(info.value)
    # Batches 1-2 (rows 0-9) are in; of batch 3 (rows 10-14), which held the failing row, nothing is.
    assert sorted(stored()) == [f"mv-{n:02}" for n in range(10)]
    assert_counts_exact()


def _import_with(copy: bool, content: bytes, batch_size: int) -> ImportReport:
    text, _ = imports._open_text(io.BytesIO(content))
    report = ImportReport()
    importer = imports._FileImporter(report=report, batch_size=batch_size)
    importer.copy = copy
    importer.run(imports._csv_rows(text))
    return report


def _random_catalog(rng: random.Random, size: int) -> bytes:
    rows = []
    ids = [f"it-{n:03}" for n in range(size)]
    for inventory_id in rng.sample(ids, len(ids)) + rng.sample(ids, 3):  # shuffled, three duplicates
        parent = rng.choice(["", "", "nowhere", *ids]) if rng.random() < 0.6 else ""
        if parent == inventory_id:
            parent = ""
        title = rng.choice(["A", "B", "tab\tC", "back\\slash"])
        rows.append(
            [
                inventory_id,
                title,
                rng.choice(["", "series", "season", "episode"]),
                parent,
                rng.choice(["", "x"]),
            ]
        )
    return csv_file(rows, [*HEADER.split(","), "extra"]).getvalue()


@pytest.mark.parametrize("seed", range(4))
def test_the_copy_path_and_the_orm_path_agree_on_postgresql(seed):
    rng = random.Random(seed)
    files = [(_random_catalog(rng, 40), rng.choice([3, 7, 1000])) for _ in range(3)]
    outcomes = {}
    for copy in (False, True):
        CatalogItem.objects.all().delete()
        reports = [_import_with(copy, content, batch_size) for content, batch_size in files]
        outcomes[copy] = (
            [(r.created, r.updated, r.unchanged, r.bad, [str(e) for e in r.errors]) for r in reports],
            stored(),
        )
        assert_counts_exact()

    assert outcomes[True] == outcomes[False]
