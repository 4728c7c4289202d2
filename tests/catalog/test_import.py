"""import_catalog: CSV and JSON Lines files, stdin, bad rows, re-runs, parents, memory, and --from-vionlabs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import responses as responses_lib
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection

from dashboard.catalog.imports import ImportInterrupted, import_catalog_file, import_from_vionlabs
from dashboard.catalog.models import CatalogItem
from dashboard.vionlabs import CatalogEntry
from dashboard.vionlabs.errors import VionlabsUnavailable

pytestmark = pytest.mark.django_db

HEADER = "inventory_id,title,kind,parent_id"


def run(path, *args, stdin=None):
    """Run the command; returns (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_catalog", str(path), *args, stdout=out, stderr=err, stdin=stdin)
    except CommandError as exc:
        err.write(str(exc))
        return exc.returncode, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


@pytest.fixture
def write(tmp_path):
    def _write(content, name="catalog.csv"):
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return _write


def ids():
    return list(CatalogItem.objects.order_by("inventory_id").values_list("inventory_id", flat=True))


def test_csv_with_bom_reads_the_first_column_as_inventory_id(write):
    path = write("\ufeff" + HEADER + ",year\nmv-1,Arrival,standalone,,2016\n")

    code, out, _ = run(path)

    assert code == 0
    item = CatalogItem.objects.get()
    assert (item.inventory_id, item.title, item.kind, item.metadata) == (
        "mv-1",
        "Arrival",
        "standalone",
        {"year": "2016"},
    )
    assert "1 created, 0 updated, 0 unchanged, 0 bad" in out


def test_csv_without_bom_and_blank_kind_is_standalone(write):
    path = write(HEADER + "\nmv-1,Arrival,,\nsr-1,Dark,SERIES,\n")

    code, _, _ = run(path)

    assert code == 0
    assert dict(CatalogItem.objects.values_list("inventory_id", "kind")) == {
        "mv-1": "standalone",
        "sr-1": "series",
    }


def test_inventory_ids_are_stored_exactly_as_given(write):
    weird = ["a/b", " a b ", "é✓", "x?key=evil", "tt0111161/4k", '"quoted", id']
    lines = [HEADER] + [f'"{i.replace(chr(34), chr(34) * 2)}",t,,' for i in weird]
    code, _, _ = run(write("\n".join(lines) + "\n"))

    assert code == 0
    assert sorted(ids()) == sorted(weird)


def test_jsonl_imports_with_nested_metadata(write):
    rows = [
        {"inventory_id": "sr-1", "title": "Dark", "kind": "series", "genres": ["drama", "sci-fi"]},
        {"inventory_id": "sr-1/s01", "kind": "season", "parent_id": "sr-1", "extra": {"n": 1}},
    ]
    path = write("\n".join(json.dumps(r) for r in rows) + "\n", "catalog.jsonl")

    code, _, _ = run(path)

    assert code == 0
    season = CatalogItem.objects.get(inventory_id="sr-1/s01")
    assert season.parent.inventory_id == "sr-1"
    assert season.metadata == {"extra": {"n": 1}}
    assert CatalogItem.objects.get(inventory_id="sr-1").metadata == {"genres": ["drama", "sci-fi"]}


def test_a_200_kb_field_imports_into_metadata_and_a_full_length_title_fits(write):
    big = "x" * 200_000
    title = "T" * 500
    code, _, _ = run(write(f"{HEADER},synopsis\nmv-1,{title},,,{big}\n"))

    assert code == 0
    item = CatalogItem.objects.get()
    assert item.metadata["synopsis"] == big
    assert item.title == title


def test_a_200_kb_field_in_json_lines(write):
    big = "é" * 200_000
    code, _, _ = run(write(json.dumps({"inventory_id": "mv-1", "notes": big}) + "\n", "c.ndjson"))

    assert code == 0
    assert CatalogItem.objects.get().metadata["notes"] == big


def test_a_title_longer_than_500_characters_is_a_bad_row_not_truncated(write):
    code, _, err = run(write(f"{HEADER}\nmv-1,{'T' * 501},,\nmv-2,ok,,\n"))

    assert code == 1
    assert "line 2: title is 501 characters long; the limit is 500" in err
    assert ids() == ["mv-2"]


def test_unknown_kind_is_reported_and_the_other_rows_are_imported(write):
    code, out, err = run(write(f"{HEADER}\nmv-1,A,,\nmv-2,B,movie,\nmv-3,C,episode,\n"))

    assert code == 1
    assert "line 3: unknown kind 'movie'" in err
    assert ids() == ["mv-1", "mv-3"]
    assert "2 created, 0 updated, 0 unchanged, 1 bad" in out


def test_bad_inventory_ids_are_reported_with_their_line(write):
    content = f"{HEADER}\n,blank,,\n{'x' * 256},long,,\nctl\x07id,bell,,\n..,dots,,\nok,fine,,\n"
    code, _, err = run(write(content))

    assert code == 1
    assert "line 2: inventory_id is blank" in err
    assert "line 3: inventory_id is 256 characters long; the limit is 255" in err
    assert "line 4: An inventory id cannot contain control characters (found U+0007)" in err
    assert "line 5:" in err
    assert ids() == ["ok"]


def test_duplicate_ids_in_one_file_keep_the_first_row_and_report_the_rest(write):
    code, out, err = run(write(f"{HEADER}\nmv-1,First,,\nmv-2,Other,,\nmv-1,Second,,\n"))

    assert code == 1
    assert "line 4: duplicate inventory id (first seen on line 2; the first row wins)" in err
    assert CatalogItem.objects.get(inventory_id="mv-1").title == "First"
    assert CatalogItem.objects.count() == 2
    assert "2 created, 0 updated, 0 unchanged, 1 bad" in out


def test_duplicates_across_batches_are_found(write):
    rows = "\n".join(f"mv-{i},T{i},," for i in range(10))
    code, _, err = run(write(f"{HEADER}\n{rows}\nmv-0,again,,\n"), "--batch-size", "3")

    assert code == 1
    assert "line 12: duplicate inventory id (first seen on line 2" in err
    assert CatalogItem.objects.get(inventory_id="mv-0").title == "T0"


def test_a_rerun_changes_nothing(write):
    path = write(f"{HEADER},year\nsr-1,Dark,series,,2017\nsr-1/s01,S1,season,sr-1,\nmv-1,A,,,1999\n")
    assert run(path)[0] == 0
    before = dict(CatalogItem.objects.values_list("inventory_id", "updated_at"))
    time.sleep(0.01)

    code, out, _ = run(path)

    assert code == 0
    assert "0 created, 0 updated, 3 unchanged, 0 bad" in out
    assert CatalogItem.objects.count() == 3
    assert dict(CatalogItem.objects.values_list("inventory_id", "updated_at")) == before


def test_a_changed_row_is_updated_and_its_metadata_replaced(write):
    assert run(write(f"{HEADER},year,rating\nmv-1,Old,,,1999,PG\nmv-2,Same,,,,\n"))[0] == 0
    before = CatalogItem.objects.get(inventory_id="mv-1").updated_at

    code, out, _ = run(write(f"{HEADER},year\nmv-1,New,,,2000\nmv-2,Same,,,\n"))

    assert code == 0
    assert "0 created, 1 updated, 1 unchanged, 0 bad" in out
    item = CatalogItem.objects.get(inventory_id="mv-1")
    assert (item.title, item.metadata) == ("New", {"year": "2000"})
    assert item.updated_at > before


def test_a_file_import_keeps_the_vionlabs_id(write):
    CatalogItem.objects.create(inventory_id="mv-1", vionlabs_id="vl-123")

    assert run(write(f"{HEADER}\nmv-1,Title,,\n"))[0] == 0

    assert CatalogItem.objects.get().vionlabs_id == "vl-123"


def test_a_malformed_json_line_is_reported_and_the_rest_imported(write):
    content = (
        '{"inventory_id": "a"}\n{"inventory_id": "b",\n[1, 2]\n{"title": "no id"}\n{"inventory_id": "c"}\n'
    )
    code, _, err = run(write(content, "c.jsonl"))

    assert code == 1
    assert "line 2: malformed JSON" in err
    assert "line 3: expected a JSON object, found list" in err
    assert "line 4: inventory_id is missing" in err
    assert ids() == ["a", "c"]


def test_a_malformed_csv_row_is_reported(write):
    code, _, err = run(write(f"{HEADER}\nmv-1,A,,\nmv-2,B\nmv-3,C,,,extra\nmv-4,D,,\n"))

    assert code == 1
    assert "line 3: 2 fields, but the header has 4" in err
    assert "line 4: 5 fields, but the header has 4" in err
    assert ids() == ["mv-1", "mv-4"]


def test_a_missing_parent_is_reported_and_the_item_still_imported(write):
    code, _, err = run(write(f"{HEADER}\nsr-1/s01,S1,season,sr-nope\nmv-1,A,,\n"))

    assert code == 1
    assert "line 2: parent 'sr-nope' is neither in the file nor in the catalog" in err
    season = CatalogItem.objects.get(inventory_id="sr-1/s01")
    assert season.parent is None


def test_an_item_cannot_be_its_own_parent(write):
    code, _, err = run(write(f"{HEADER}\nsr-1,Loop,series,sr-1\n"))

    assert code == 1
    assert "line 2: the item names itself as its parent" in err
    assert ids() == []


def test_a_parent_defined_later_in_the_file_is_resolved(write):
    content = f"{HEADER}\nsr-1/s01/e01,E1,episode,sr-1/s01\nmv-1,A,,\nmv-2,B,,\nsr-1/s01,S1,season,sr-1\nsr-1,Dark,series,\n"

    code, out, _ = run(write(content), "--batch-size", "2")

    assert code == 0
    assert CatalogItem.objects.get(inventory_id="sr-1/s01/e01").parent.inventory_id == "sr-1/s01"
    assert CatalogItem.objects.get(inventory_id="sr-1/s01").parent.inventory_id == "sr-1"
    assert "5 created" in out


def test_a_parent_already_in_the_catalog_is_used(write):
    CatalogItem.objects.create(inventory_id="sr-1", kind="series")

    assert run(write(f"{HEADER}\nsr-1/s01,S1,season,sr-1\n"))[0] == 0

    assert CatalogItem.objects.get(inventory_id="sr-1/s01").parent.inventory_id == "sr-1"


def test_moving_an_item_to_another_parent_counts_as_an_update(write):
    assert run(write(f"{HEADER}\nsr-1,A,series,\nsr-2,B,series,\nsr-1/s01,S,season,sr-1\n"))[0] == 0

    code, out, _ = run(write(f"{HEADER}\nsr-1,A,series,\nsr-2,B,series,\nsr-1/s01,S,season,sr-2\n"))

    assert code == 0
    assert "0 created, 1 updated, 2 unchanged" in out
    assert CatalogItem.objects.get(inventory_id="sr-1/s01").parent.inventory_id == "sr-2"


def test_nul_characters_are_refused_per_row(write):
    code, _, err = run(write(f"{HEADER},note\nmv-1,A\x00B,,,\nmv-2,B,,,x\x00y\nmv-3,C,,,\n"))

    assert code == 1
    assert "line 2: title contains a NUL character" in err
    assert "line 3: a metadata value contains a NUL character" in err
    assert ids() == ["mv-3"]


def test_invalid_utf8_after_the_first_block_is_a_bad_row(write):
    filler = "".join(f"mv-{i:05},Title {i},,\n" for i in range(4000))  # well past the strictly checked head
    content = (HEADER + "\n" + filler).encode() + b"mv-bad,Caf\xe9,,\nmv-last,ok,,\n"

    code, _, err = run(write(content))

    assert code == 1
    assert "line 4002: title is not valid UTF-8" in err
    assert CatalogItem.objects.count() == 4001


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty."),
        (b"\xef\xbb\xbf\n\n", "The file is empty."),
        ("inventory_id,title\n".encode("utf-16"), "The file is UTF-16 text"),
        ("inventory_id,title\nmv-1,Café\n".encode("latin-1"), "The file is not UTF-8 text"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xff\xfe", "it looks like a spreadsheet"),
        (b"id,title\nmv-1,A\n", "The header (line 1) has no inventory_id column; found 'id', 'title'."),
        (b"inventory_id;title\nmv-1;A\n", "The file must be comma-separated."),
        (b"inventory_id,title,title\nmv-1,A,B\n", "The header repeats column(s) title."),
    ],
)
def test_a_malformed_file_is_refused_with_one_message_and_exit_status_2(write, content, message):
    code, _, err = run(write(content))

    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert CatalogItem.objects.count() == 0


def test_a_missing_file_is_refused_with_exit_status_2(tmp_path):
    code, _, err = run(tmp_path / "nope.csv")

    assert code == 2
    assert "Cannot open" in err


def test_stdin_csv(write):
    code, _, _ = run("-", stdin=io.BytesIO(f"\ufeff{HEADER}\nmv-1,A,,\n".encode()))

    assert code == 0
    assert ids() == ["mv-1"]


def test_stdin_json_lines_is_recognised_by_its_first_character():
    code, _, _ = run("-", stdin=io.BytesIO(b'\n  {"inventory_id": "mv-1", "title": "A"}\n'))

    assert code == 0
    assert CatalogItem.objects.get().title == "A"


@pytest.mark.django_db(transaction=True)
def test_stdin_in_a_real_process_with_format(tmp_path):
    # The command really reads sys.stdin.buffer: run it as a process (on PostgreSQL against the test database,
    # hence a transactional test: what the child commits is flushed afterwards).
    env = _subprocess_env(tmp_path)
    _migrate(env)
    proc = subprocess.run(
        [sys.executable, "manage.py", "import_catalog", "-", "--format", "jsonl"],
        input=b'{"inventory_id": "mv-1"}\n{"inventory_id": "mv-2"}\n',
        capture_output=True,
        env=env,
        cwd=settings.BASE_DIR,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"2 created" in proc.stdout
    assert _count_items(env) == 2


def test_max_errors_limits_the_lines_printed_but_counts_every_bad_row(write):
    rows = "\n".join(f"mv-{i},T,bogus," for i in range(30))
    code, out, err = run(write(f"{HEADER}\n{rows}\n"), "--max-errors", "5")

    assert code == 1
    assert err.count("unknown kind") == 5
    assert "… and 25 more bad row(s)" in err
    assert "30 bad" in out


def test_the_importer_reads_a_stream_without_a_name():
    report = import_catalog_file(io.BytesIO(f"{HEADER}\nmv-1,A,,\n".encode()), fmt="csv")

    assert (report.created, report.bad, report.ok) == (1, 0, True)


# --- the Vionlabs Catalog API ------------------------------------------------------------------------------


def test_from_vionlabs_upserts_kind_and_vionlabs_id_and_keeps_titles():
    CatalogItem.objects.create(inventory_id="sr-1", title="Dark", kind="standalone")
    entries = [
        CatalogEntry(id="sr-1", vionlabs_id="vl-1", type="series"),
        CatalogEntry(id="mv-1", vionlabs_id=None, type="standalone"),
        CatalogEntry(id="mv-2", vionlabs_id="vl-2", type="trailer"),
    ]

    report = import_from_vionlabs(entries)

    assert (report.created, report.updated, report.bad) == (1, 1, 1)
    assert str(report.errors[0]) == "item 3: unknown type 'trailer'"
    series = CatalogItem.objects.get(inventory_id="sr-1")
    assert (series.title, series.kind, series.vionlabs_id) == ("Dark", "series", "vl-1")
    assert import_from_vionlabs(entries[:2]).unchanged == 2


def test_from_vionlabs_keeps_what_was_imported_before_an_upstream_failure():
    def listing():
        for i in range(5):
            yield CatalogEntry(id=f"mv-{i}", vionlabs_id=f"vl-{i}", type="standalone")
        raise VionlabsUnavailable("Vionlabs did not answer in time; try again later.")

    with pytest.raises(ImportInterrupted) as info:
        import_from_vionlabs(listing(), batch_size=2)

    assert "failed after 5 items: Vionlabs did not answer in time" in str(info.value)
    assert info.value.report.created == 5
    assert CatalogItem.objects.count() == 5


# --- memory --------------------------------------------------------------------------------------------


def _subprocess_env(tmp_path: Path) -> dict[str, str]:
    """Settings for a child process: the test database on PostgreSQL, a fresh SQLite file otherwise."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(settings.BASE_DIR)}
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}{':' + db['PASSWORD'] if db['PASSWORD'] else ''}"
            f"@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    else:
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'import.sqlite3'}"
    env.pop("TEST_DATABASE_NAME", None)
    return env


def _migrate(env: dict[str, str]) -> None:
    if env["DATABASE_URL"].startswith("sqlite"):
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            env=env,
            cwd=settings.BASE_DIR,
            check=True,
            timeout=300,
        )


def _count_items(env: dict[str, str]) -> int:
    if env["DATABASE_URL"].startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///")) as db:
            return db.execute("SELECT COUNT(*) FROM catalog_catalogitem").fetchone()[0]
    return CatalogItem.objects.count()


def _peak_rss_import(path: Path, env: dict[str, str]) -> tuple[int, float, str]:
    """Run import_catalog as a child process; its own peak RSS (MB) from wait4, and the wall time."""
    started = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "manage.py", "import_catalog", str(path)],
        env=env,
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as proc:
        output = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, output
    return usage.ru_maxrss // 1024, time.monotonic() - started, output


def _write_big_file(path: Path, rows: int) -> None:
    # Series with seasons and episodes (parents resolved) plus movies with a metadata column or two.
    with path.open("w", encoding="utf-8") as f:
        f.write("inventory_id,title,kind,parent_id,year,genre\n")
        n = 0
        series = 0
        while n < rows:
            if series % 2 == 0:
                f.write(f"mv-{n:07},Movie number {n},standalone,,{1950 + n % 75},drama\n")
                n += 1
            else:
                sid = f"sr-{n:07}"
                f.write(f"{sid},Series {n},series,,{2000 + n % 25},\n")
                n += 1
                for s in range(1, 3):
                    f.write(f"{sid}/s{s:02},Season {s},season,{sid},,\n")
                    n += 1
                    for e in range(1, 9):
                        f.write(f"{sid}/s{s:02}/e{e:02},Episode {e},episode,{sid}/s{s:02},,\n")
                        n += 1
            series += 1


def _check_memory(tmp_path: Path, rows: int) -> None:
    path = tmp_path / "big.csv"
    _write_big_file(path, rows)
    with path.open() as f:
        expected = sum(1 for _ in f) - 1
    env = _subprocess_env(tmp_path)
    _migrate(env)

    peak_mb, seconds, output = _peak_rss_import(path, env)

    print(f"\nimport_catalog {expected} rows ({connection.vendor}): peak RSS {peak_mb} MB, {seconds:.1f} s")
    assert f"{expected} created, 0 updated, 0 unchanged, 0 bad" in output
    assert _count_items(env) == expected
    assert peak_mb < 150


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_100k_row_file_imports_with_peak_memory_under_150_mb(tmp_path):
    _check_memory(tmp_path, 100_000)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_million_row_file_imports_with_memory_as_flat_as_for_100k(tmp_path):
    _check_memory(tmp_path, 1_000_000)


def test_from_vionlabs_pages_through_the_sandbox_catalog(use_sandbox):
    for i in range(1203):
        use_sandbox.state.catalog_put(f"mv-{i:04}", "standalone" if i % 3 else "series")

    code, out, _ = run_from_vionlabs("--page-size", "500")

    assert code == 0
    assert "1203 created, 0 updated, 0 unchanged, 0 bad" in out
    assert CatalogItem.objects.count() == 1203
    assert CatalogItem.objects.get(inventory_id="mv-0000").kind == "series"
    assert CatalogItem.objects.exclude(vionlabs_id="").count() == 1203
    assert use_sandbox.stats()["endpoints"]["GET catalog"] == 3
    assert "0 created, 0 updated, 1203 unchanged" in run_from_vionlabs("--page-size", "500")[1]


def test_from_vionlabs_unreachable_ends_with_a_clear_message(use_sandbox, settings):
    settings.VIONLABS_MAX_RETRIES = 0
    use_sandbox.configure(error_rate=1.0)

    code, _, err = run_from_vionlabs()

    assert code == 2
    assert "The Vionlabs catalog listing failed after 0 items" in err
    assert "Traceback" not in err
    assert settings.VIONLABS_API_KEY not in err


@responses_lib.activate
def test_from_vionlabs_keeps_the_pages_read_before_a_failure(settings):
    settings.VIONLABS_API_URL = "https://vionlabs.example"
    settings.VIONLABS_API_KEY = "k-canary<&>\"'"
    settings.VIONLABS_MAX_RETRIES = 0
    url = "https://vionlabs.example/catalog/v1/item"
    page = [{"id": f"mv-{i}", "vionlabs_id": f"vl-{i}", "type": "standalone"} for i in range(2)]
    responses_lib.get(url, json=page)
    responses_lib.get(url, status=503)

    code, out, err = run_from_vionlabs("--page-size", "2")

    assert code == 2
    assert "failed after 2 items" in err
    assert "2 created" in out
    assert CatalogItem.objects.count() == 2
    assert "canary" not in err + out


def run_from_vionlabs(*args):
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_catalog", "--from-vionlabs", *args, stdout=out, stderr=err)
    except CommandError as exc:
        err.write(str(exc))
        return exc.returncode, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


# --- the upload page in Django admin ----------------------------------------------------------------------

IMPORT_URL = "/admin/catalog/catalogitem/import/"


def _upload(client, content, name="catalog.csv", **data):
    return client.post(IMPORT_URL, {"file": SimpleUploadedFile(name, content), **data})


def test_admin_changelist_links_to_the_upload_page(admin_client):
    response = admin_client.get("/admin/catalog/catalogitem/")

    assert response.status_code == 200
    assert IMPORT_URL in response.text


def test_admin_upload_imports_and_reports_each_bad_row(admin_client):
    content = f"\ufeff{HEADER}\nmv-1,A,,\nmv-2,B,movie,\nsr-1/s01,S,season,sr-nope\n".encode()

    response = _upload(admin_client, content)

    assert response.status_code == 200
    # The missing-parent row counts as bad (each row is counted once), though its item was imported.
    assert "1 created, 0 updated, 0 unchanged, 2 bad" in " ".join(response.text.split())
    assert "unknown kind &#x27;movie&#x27;" in response.text
    assert "<td>4</td>" in response.text  # the line of the missing parent
    assert ids() == ["mv-1", "sr-1/s01"]


def test_admin_upload_of_json_lines_by_the_chosen_format(admin_client):
    response = _upload(admin_client, b'{"inventory_id": "mv-1"}\n', name="export.txt", format="jsonl")

    assert response.status_code == 200
    assert ids() == ["mv-1"]


def test_admin_upload_over_the_size_limit_is_refused_and_nothing_imported(admin_client, settings):
    settings.IMPORT_MAX_UPLOAD_BYTES = 1000
    content = (HEADER + "\n" + "".join(f"mv-{i:04},Title,,\n" for i in range(200))).encode()
    assert len(content) > 1000

    response = _upload(admin_client, content)

    assert response.status_code == 400
    assert "The file is larger than the upload limit of 1000" in response.text
    assert CatalogItem.objects.count() == 0


def test_admin_upload_of_a_malformed_file_shows_one_message(admin_client):
    response = _upload(admin_client, b"id,title\nmv-1,A\n")

    assert response.status_code == 400
    assert "has no inventory_id column" in response.text
    assert CatalogItem.objects.count() == 0


def test_admin_upload_needs_the_add_permission(client, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)

    assert client.get(IMPORT_URL).status_code == 403
    assert _upload(client, f"{HEADER}\nmv-1,A,,\n".encode()).status_code == 403
    assert CatalogItem.objects.count() == 0

    staff.user_permissions.add(Permission.objects.get(codename="add_catalogitem"))
    staff = django_user_model.objects.get(pk=staff.pk)
    client.force_login(staff)
    assert _upload(client, f"{HEADER}\nmv-1,A,,\n".encode()).status_code == 200
    assert ids() == ["mv-1"]


def test_admin_upload_checks_the_csrf_token(django_user_model):
    from django.test import Client

    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)

    response = _upload(client, f"{HEADER}\nmv-1,A,,\n".encode())

    assert response.status_code == 403
    assert CatalogItem.objects.count() == 0


def test_non_finite_numbers_in_json_lines_are_bad_rows(write):
    content = '{"inventory_id": "a", "score": NaN}\n{"inventory_id": "b", "big": 1e999}\n{"inventory_id": "c", "n": 1.5}\n'

    code, _, err = run(write(content, "c.jsonl"))

    assert code == 1
    assert "line 1: a metadata value is not a finite number" in err
    assert "line 2: a metadata value is not a finite number" in err
    assert ids() == ["c"]
