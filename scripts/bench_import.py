#!/usr/bin/env python
"""Import a generated catalog file and print rows/s and peak memory (a benchmark, not a test).

    .venv/bin/python scripts/bench_import.py --rows 1000000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dashboard_bench_import .venv/bin/python scripts/bench_import.py

The database is emptied of catalog items first (a PostgreSQL database is created if missing). The file is a
CSV of standalone films and series → seasons → episodes (parents before children, as exports list them), with
a metadata column. `manage.py import_catalog` runs in a child process so its peak RSS is its own. The summary
(the last line printed) is also appended to test-artifacts/bench-import.txt, with the date and the database.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/bench_import.sqlite3")
os.environ.setdefault("LOG_LEVEL", "WARNING")

from scripts.bench_catalog_page import ensure_postgres_database  # noqa: E402 (needs sys.path above)


def write_catalog(path: Path, rows: int) -> None:
    """`rows` rows: every 20th row starts a series with 2 seasons of 8 episodes, the rest are films."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["inventory_id", "title", "kind", "parent_id", "year"])
        written = 0
        n = 0
        while written < rows:
            n += 1
            if n % 20:
                writer.writerow([f"mv-{n:08d}", f"Film number {n}", "standalone", "", 1990 + n % 35])
                written += 1
                continue
            series = f"sr-{n:08d}"
            writer.writerow([series, f"Series {n}", "series", "", 2000 + n % 25])
            written += 1
            for s in range(1, 3):
                season = f"{series}/s{s:02d}"
                writer.writerow([season, f"Series {n} season {s}", "season", series, ""])
                written += 1
                for e in range(1, 9):
                    writer.writerow([f"{season}e{e:02d}", f"Episode {e}", "episode", season, ""])
                    written += 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    url = os.environ["DATABASE_URL"]
    if url.startswith(("postgres://", "postgresql://")):
        ensure_postgres_database(url)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    # In SQL, not through the ORM: the child is spawned from this process, whose peak RSS the child's figure
    # would otherwise include (a vfork child's high-water mark starts from its parent's).
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("TRUNCATE catalog_catalogitem CASCADE")
        else:
            cursor.execute("DELETE FROM catalog_catalogitem")
    path = Path(f"/tmp/bench_import_{args.rows}.csv")  # noqa: S108 (a bench's own scratch file)
    if not path.exists():
        write_catalog(path, args.rows)
    size = path.stat().st_size / 1e6
    started = time.perf_counter()
    result = subprocess.run(  # noqa: S603 (our own interpreter and manage.py)
        [sys.executable, str(ROOT / "manage.py"), "import_catalog", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(result.stdout.strip()[-500:] or result.stderr.strip()[-500:])
    summary = (
        f"import of {args.rows:,} rows ({size:.0f} MB CSV, {connection.vendor}): {seconds:.1f} s, "
        f"{args.rows / seconds:,.0f} rows/s, peak RSS {peak_mb:.0f} MB"
    )
    print(f"\n{summary}")
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with (artifacts / "bench-import.txt").open("a") as log:
        log.write(f"{time.strftime('%Y-%m-%d %H:%M')} {summary}\n")


if __name__ == "__main__":
    main()
