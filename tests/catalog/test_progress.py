"""Progress lines of long commands: drawn in place on a terminal, nothing at all when piped."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command

from dashboard.catalog.management.progress import Progress, count_lines
from dashboard.catalog.models import CatalogItem, ProductTask


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_sees_rows_rate_and_time_left_redrawn_in_place():
    out, clock = FakeTty(), Clock()
    progress = Progress(out, label="Importing", total=1000, clock=clock)
    clock.now += 2
    progress.update(200)
    clock.now += 2
    progress.update(400)
    progress.finish()
    text = out.getvalue()
    assert text.startswith("\rImporting: 200 / 1,000 rows (20 %) · 100 rows/s · 8 s left")
    assert "\rImporting: 400 / 1,000 rows (40 %) · 100 rows/s · 6 s left" in text
    assert text.endswith("\n")
    assert text.count("\n") == 1  # one line, redrawn


def test_redraws_are_throttled():
    out, clock = FakeTty(), Clock()
    progress = Progress(out, label="x", total=10, clock=clock)
    for done in range(1, 10):
        progress.update(done)  # no time passes: only the first is drawn
    assert out.getvalue().count("\r") == 1


def test_an_unknown_total_shows_rows_and_rate_only():
    out, clock = FakeTty(), Clock()
    progress = Progress(out, label="Queueing", unit="items", clock=clock)
    clock.now += 4
    progress.update(40)
    assert out.getvalue() == "\rQueueing: 40 items · 10 items/s"


def test_a_shorter_line_blanks_the_rest_of_the_longer_one():
    out, clock = FakeTty(), Clock()
    progress = Progress(out, label="x", clock=clock)
    clock.now += 1
    progress.update(123456)
    clock.now += 1000
    progress.update(123457)
    last = out.getvalue().split("\r")[-1]
    assert len(last) == len(out.getvalue().split("\r")[1])


def test_nothing_is_written_when_the_output_is_not_a_terminal():
    out, clock = io.StringIO(), Clock()
    with Progress(out, label="Importing", total=10, clock=clock) as progress:
        clock.now += 1
        progress.update(5)
        progress.update(10)
    assert out.getvalue() == ""


def test_count_lines_leaves_the_stream_where_it_was(tmp_path: Path):
    path = tmp_path / "f.csv"
    path.write_bytes(b"a\nb\nc")
    with path.open("rb") as stream:
        stream.read(2)
        assert count_lines(stream) == 2  # from the current position: "b\n", then "c" with no newline
        assert stream.read() == b"b\nc"


@pytest.mark.django_db
def test_import_catalog_prints_only_its_summary_when_piped(tmp_path: Path):
    path = tmp_path / "catalog.csv"
    path.write_text("inventory_id,title\n" + "".join(f"id-{i},T{i}\n" for i in range(30)))
    out = io.StringIO()
    call_command("import_catalog", str(path), "--batch-size", "10", stdout=out)
    assert "\r" not in out.getvalue()
    assert out.getvalue().startswith("Imported: 30 created")


@pytest.mark.django_db
def test_import_catalog_shows_progress_on_a_terminal(tmp_path: Path):
    path = tmp_path / "catalog.csv"
    path.write_text("inventory_id,title\n" + "".join(f"id-{i},T{i}\n" for i in range(30)))
    out = FakeTty()
    call_command("import_catalog", str(path), "--batch-size", "10", stdout=out)
    text = out.getvalue()
    assert "\rImporting: 10 / 31 rows" in text
    assert "\rImporting: 30 / 31 rows" in text
    assert "Imported: 30 created" in text
    progress, summary = text.split("\n", 1)
    assert progress.count("\r") >= 2  # redrawn in place: one line, not one per batch
    assert summary.startswith("Imported: 30 created")
    assert CatalogItem.objects.count() == 30


@pytest.mark.django_db
def test_sync_tasks_once_shows_progress_on_a_terminal_only():
    for i in range(3):
        item = CatalogItem.objects.create(inventory_id=f"film-{i}")
        ProductTask.objects.create(item=item, product="adbreaks", version="1", status="pending")
    out = FakeTty()
    call_command("sync_tasks", stdout=out)
    assert out.getvalue().startswith("\rQueueing: 3 / 3 items (100 %)")
    assert out.getvalue().endswith("\n3 item(s) queued for refresh.\n")
    ProductTask.objects.update(next_check_at=None)
    piped = io.StringIO()
    call_command("sync_tasks", stdout=piped)
    assert piped.getvalue() == "3 item(s) queued for refresh.\n"


@pytest.mark.django_db
def test_seed_demo_shows_progress_on_a_terminal(settings):
    out = FakeTty()
    call_command("seed_demo", "--no-api", "--items", "40", stdout=out)
    assert "\rDemo catalog: 40 / 40 items (100 %)" in out.getvalue()
