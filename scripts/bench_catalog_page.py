#!/usr/bin/env python
"""Measure every page over a large catalog beside Django admin and the login page, and print one table
(a benchmark, not a test).

    .venv/bin/python scripts/bench_catalog_page.py --items 1000000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dashboard_bench .venv/bin/python scripts/bench_catalog_page.py

The database (default: /tmp/bench_catalog.sqlite3; a PostgreSQL database is created if missing) is migrated and
filled once, server-side (`generate_series` on PostgreSQL, a recursive CTE on SQLite), then reused while it holds
the requested number of items: n items, 1.5 n tasks (adbreaks on every item in a mix of statuses, markers done on
every other one). Each page is requested through Django's test client as a superuser, with the whole middleware
stack; the median of `--runs` requests is printed with the worst, the query count and the ratios to the matching
admin changelist and to the login page (the floor: requested as the superuser, it reads the session and the user).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/bench_catalog.sqlite3")
os.environ.setdefault("LOG_LEVEL", "WARNING")

# Statuses of the adbreaks tasks, by item number modulo 18: 14 done, then pending, processing, failed, deactivated.
STATUS_SQL = (
    "CASE WHEN {i} % 18 < 14 THEN 'done' WHEN {i} % 18 = 14 THEN 'pending' "
    "WHEN {i} % 18 = 15 THEN 'processing' WHEN {i} % 18 = 16 THEN 'failed' ELSE 'deactivated' END"
)
#: Items per transaction while filling (progress is printed after each).
FILL_BATCH = 200_000


def ensure_postgres_database(url: str) -> None:
    """Create the PostgreSQL database named in `url` if it does not exist (connects to `postgres`)."""
    import environ
    import psycopg

    config = environ.Env.db_url_config(url)
    name = config["NAME"]
    dsn = {"host": config.get("HOST") or None, "port": config.get("PORT") or None}
    dsn |= {"user": config.get("USER") or None, "password": config.get("PASSWORD") or None}
    with psycopg.connect(dbname="postgres", autocommit=True, **{k: v for k, v in dsn.items() if v}) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"Created PostgreSQL database {name}.")


def fill_sql(vendor: str, low: int, high: int) -> list[str]:
    """Statements that add items numbered [low, high) and their tasks, computed by the database itself (the
    bounds are integers, written into the SQL; there are no parameters)."""
    low, high = int(low), int(high)
    if vendor == "postgresql":
        numbers = f"generate_series({low}::bigint, {high - 1}::bigint) AS s(i)"
        inventory = "'tt' || lpad(i::text, 8, '0') || '/' || CASE WHEN i % 3 <> 0 THEN '4k' ELSE 'hd' END"
        item_number = "substring(inventory_id from 3 for 8)::bigint"
        now, empty_json, empty_list = "now()", "'{}'::jsonb", "'[]'::jsonb"
        prefix = ""
    else:
        numbers = "s"
        inventory = "'tt' || printf('%08d', i) || '/' || CASE WHEN i % 3 <> 0 THEN '4k' ELSE 'hd' END"
        item_number = "CAST(substr(inventory_id, 3, 8) AS INTEGER)"
        now, empty_json, empty_list = "strftime('%Y-%m-%d %H:%M:%f', 'now')", "'{}'", "'[]'"
        prefix = f"WITH RECURSIVE s(i) AS (SELECT {low} UNION ALL SELECT i + 1 FROM s WHERE i + 1 < {high}) "
    items = (
        f"{prefix}INSERT INTO catalog_catalogitem "
        "(inventory_id, title, kind, vionlabs_id, metadata, created_at, updated_at) "
        f"SELECT {inventory}, 'Title number ' || i, "
        "CASE WHEN i % 10 = 0 THEN 'episode' ELSE 'standalone' END, '', "
        f"{empty_json}, {now}, {now} FROM {numbers}"
    )
    task_columns = (
        "item_id, product, version, priority, status, error, links, requested_at, last_checked_at, "
        "status_changed_at, sync_error, action_in_progress, created_at, updated_at"
    )
    bounds = f"inventory_id >= 'tt{low:08d}' AND inventory_id < 'tt{high:08d}'"
    adbreaks = (
        f"INSERT INTO catalog_producttask ({task_columns}) "
        f"SELECT id, 'adbreaks', '1.0.1', 'low', {STATUS_SQL.format(i=item_number)}, '', {empty_list}, "
        f"{now}, {now}, {now}, '', '', {now}, {now} FROM catalog_catalogitem WHERE {bounds}"
    )
    markers = (
        f"INSERT INTO catalog_producttask ({task_columns}) "
        f"SELECT id, 'markers', '2', 'low', 'done', '', {empty_list}, "
        f"{now}, {now}, {now}, '', '', {now}, {now} FROM catalog_catalogitem "
        f"WHERE {bounds} AND {item_number} % 2 = 0"
    )
    return [items, adbreaks, markers]


def populate(n_items: int) -> float:
    """Fill the catalog up to `n_items` items; returns the seconds it took."""
    from django.db import connection, transaction

    from dashboard.catalog.models import CatalogItem, ProductSetting

    ProductSetting.objects.get_or_create(product="adbreaks", defaults={"default_version": "1.0.1"})
    ProductSetting.objects.get_or_create(product="markers", defaults={"default_version": "2"})
    ProductSetting.objects.get_or_create(product="emotions", defaults={"default_version": "3"})
    start = CatalogItem.objects.count()
    started = time.perf_counter()
    for low in range(start, n_items, FILL_BATCH):
        high = min(n_items, low + FILL_BATCH)
        with transaction.atomic(), connection.cursor() as cursor:
            for sql in fill_sql(connection.vendor, low, high):
                cursor.execute(sql)
        elapsed = time.perf_counter() - started
        rate = (high - start) / elapsed if elapsed else 0
        print(f"  filled {high:,} items ({elapsed:.0f} s, {rate:,.0f} items/s)", flush=True)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


class QueryTimer:
    """Sums the wall time of every query run while it is installed (connection.execute_wrapper)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.count += 1


def measure(client, url: str, runs: int) -> tuple[float, float, int, int, float]:
    """(median ms, worst ms, queries, HTTP status, median ms spent in the database)."""
    from django.db import connection

    client.get(url)  # warm caches (sessions, permissions, the database's pages)
    timings, db_timings = [], []
    queries = 0
    status = 0
    for _ in range(runs):
        timer = QueryTimer()
        with connection.execute_wrapper(timer):
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
        db_timings.append(timer.seconds * 1000)
        queries = timer.count
        status = response.status_code
    return statistics.median(timings), max(timings), queries, status, statistics.median(db_timings)


def bench_scheduler(in_flight: int) -> list[tuple[str, str]]:
    """Claims and one sync cycle with `in_flight` tasks in flight (markers tasks are set pending inside a
    transaction that is rolled back, so the bench data is left as it was). Rows for the table."""
    from django.db import connection, transaction
    from django.db.models import F
    from django.test import override_settings
    from django.utils import timezone

    from dashboard.catalog import sync
    from dashboard.catalog.models import ProductTask, SyncBudget

    class BudgetSpent(Exception):
        pass

    def stop(_seconds: float) -> None:
        raise BudgetSpent

    rows = []
    with transaction.atomic():
        now_in_flight = ProductTask.objects.in_flight().count()
        extra = max(0, in_flight - now_in_flight)
        if extra:
            started = time.perf_counter()
            chosen = ProductTask.objects.filter(product="markers").order_by("pk").values("pk")[:extra]
            ProductTask.objects.filter(pk__in=chosen).update(status="pending", next_check_at=None)
            print(
                f"  put {extra:,} more tasks in flight ({time.perf_counter() - started:.0f} s, rolled back at the end)"
            )
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE catalog_producttask")
        total = ProductTask.objects.in_flight().count()
        due = ProductTask.objects.in_flight().filter(sync._due(timezone.now()))
        candidates = due.order_by(F("last_checked_at").asc(nulls_first=True), "pk").values_list("item_id")[
            :400
        ]
        sql, params = candidates.query.sql_with_params()
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"EXPLAIN {sql}", params)
                plan = "\n".join(str(row[0]) for row in cursor.fetchall())
                walks = "task_inflight_check_idx" in plan and "Sort" not in plan
            else:
                cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
                plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
                walks = "TEMP B-TREE" not in plan
        how = "index walk" if walks else "SORT of every due row"
        timings = []
        with override_settings(SYNC_REQUESTS_PER_MINUTE=1_000_000):
            for _ in range(5):
                started = time.perf_counter()
                sync.claim_due_items(limit=100, cycle_start=timezone.now())
                timings.append((time.perf_counter() - started) * 1000)
        rows.append(
            (f"scheduler: claim 100 of {total:,} in flight", f"{statistics.median(timings):.1f} ms ({how})")
        )
        # One cycle as `sync_tasks` runs it: claim batches until the per-minute budget is spent (a fresh window).
        SyncBudget.objects.filter(name=sync.BUDGET_NAME).delete()
        timer = QueryTimer()
        started = time.perf_counter()
        with connection.execute_wrapper(timer), contextlib.suppress(BudgetSpent):
            sync.run_cycle(sleep=stop)
        wall = (time.perf_counter() - started) * 1000
        claimed = SyncBudget.objects.get(name=sync.BUDGET_NAME).used
        rows.append(
            (
                f"scheduler: one sync_tasks cycle ({claimed} items claimed)",
                f"{timer.seconds * 1000:.0f} ms in the database, {timer.count} queries, {wall:.0f} ms wall",
            )
        )
        transaction.set_rollback(True)
    if connection.vendor == "postgresql":
        # The rolled-back update left 400,000 dead row versions; without this the next run's pages would
        # step over them (one run measured the overview at 500 ms instead of 35 ms that way).
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE catalog_producttask")
    return rows


@dataclass
class Case:
    label: str
    url: str
    #: The admin changelist showing the same rows, if there is one.
    admin_url: str | None = None
    anonymous: bool = False


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000, help="catalog size (10,000,000 works)")
    parser.add_argument("--runs", type=int, default=7, help="requests per page; the median is printed")
    parser.add_argument("--fill-only", action="store_true", help="fill the database and stop")
    parser.add_argument(
        "--in-flight", type=int, default=500_000, help="tasks in flight for the scheduler rows (0: skip them)"
    )
    parser.add_argument("--import-rows", type=int, default=0, help="also time an import of this many rows")
    args = parser.parse_args()

    if os.environ["DATABASE_URL"].startswith(("postgres://", "postgresql://")):
        ensure_postgres_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from dashboard.catalog.models import CatalogItem, ProductTask
    from dashboard.catalog.pagination import encode_cursor

    call_command("migrate", verbosity=0)
    existing = CatalogItem.objects.count()
    if existing < args.items:
        print(f"Filling the catalog to {args.items:,} items (has {existing:,}); done once, then reused.")
        seconds = populate(args.items)
        print(f"Filled in {seconds:.0f} s ({seconds / 60:.1f} min).")
    if args.fill_only:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_superuser": True, "is_staff": True}
    )
    client = Client()
    client.force_login(user)
    anonymous = Client()

    last = CatalogItem.objects.order_by("-inventory_id").values_list("inventory_id", "pk")[60]
    deep = encode_cursor(list(last))
    item_pk = CatalogItem.objects.order_by("pk").values_list("pk", flat=True)[args.items // 2]
    poll_items = ",".join(
        str(pk) for pk in CatalogItem.objects.order_by("pk").values_list("pk", flat=True)[:50]
    )
    since = f"{timezone.now().timestamp():.6f}"
    admin_items, admin_tasks = "/admin/catalog/catalogitem/", "/admin/catalog/producttask/"
    cases = [
        # The floor, as the issue measured it: the login page requested as the superuser (it reads the session
        # and the user, as every page does). The anonymous form reads nothing and is shown for reference.
        Case("login page (floor, as the superuser)", "/login/"),
        Case("login page, anonymous (reads nothing)", "/login/", anonymous=True),
        Case("overview (matrix, stuck, failures)", "/"),
        Case("catalog, first page", "/items/", admin_items),
        Case("catalog, page next to the end (keyset)", f"/items/?after={deep}"),
        Case("catalog, sorted by title desc", "/items/?sort=-title", f"{admin_items}?o=-2"),
        Case("catalog, search 'number 99999'", "/items/?q=number+99999", f"{admin_items}?q=number+99999"),
        Case("catalog, search inventory id 'tt00123'", "/items/?q=tt00123", f"{admin_items}?q=tt00123"),
        Case("catalog, product=adbreaks&status=failed", "/items/?product=adbreaks&status=failed"),
        Case("catalog, missing markers", "/items/?missing=markers"),
        Case("catalog, has failures", "/items/?failures=on"),
        Case("catalog, kind=episode", "/items/?kind=episode", f"{admin_items}?kind__exact=episode"),
        Case("tasks, first page", "/tasks/", admin_tasks),
        Case("tasks, status failed", "/tasks/?status=failed", f"{admin_tasks}?status__exact=failed"),
        Case(
            "tasks, adbreaks pending",
            "/tasks/?product=adbreaks&status=pending",
            f"{admin_tasks}?product__exact=adbreaks&status__exact=pending",
        ),
        Case("item page", f"/items/{item_pk}/"),
        Case("poll of 50 items", f"/poll/?since={since}&items={poll_items}"),
    ]
    total = CatalogItem.objects.count()
    tasks = (
        ProductTask.objects.count() if connection.vendor != "postgresql" else _estimate("catalog_producttask")
    )
    print(f"\n{connection.vendor}, {total:,} items, ~{tasks:,} tasks, median of {args.runs} requests (ms)\n")
    header = f"{'page':42} {'median':>8} {'worst':>8} {'db':>7} {'queries':>7} {'admin':>8} {'xadmin':>7} {'xlogin':>7}"
    print(header)
    print("-" * len(header))
    floor = None
    for case in cases:
        median, worst, queries, status, db = measure(
            anonymous if case.anonymous else client, case.url, args.runs
        )
        if status != 200:
            print(f"{case.label:42} HTTP {status}")
            continue
        floor = floor or median
        admin, faster = "", ""
        if case.admin_url:
            admin_median, _, _, admin_status, _ = measure(client, case.admin_url, args.runs)
            admin = f"{admin_median:8.1f}" if admin_status == 200 else f"HTTP {admin_status}"
            faster = f"{admin_median / median:6.1f}x" if admin_status == 200 else ""
        print(
            f"{case.label:42} {median:8.1f} {worst:8.1f} {db:7.1f} {queries:7d} {admin:>8} {faster:>7} "
            f"{median / floor:6.1f}x"
        )
    extra = bench_scheduler(args.in_flight) if args.in_flight else [("scheduler", "skipped (--in-flight 0)")]
    extra.append(("import (scripts/bench_import.py)", import_row(args.import_rows)))
    extra.append(("bulk operations (make bench-bulk)", bulk_row()))
    for label, value in extra:
        print(f"{label:42} {value}")
    print(
        "\ndb: median ms spent in the database; xadmin: how many times faster than the admin changelist; "
        "xlogin: cost relative to the login page requested as the superuser (the floor)."
    )


def import_row(rows: int) -> str:
    """Run the import benchmark in its own database (`--import-rows`), or say how to."""
    if not rows:
        return "not run here: --import-rows 1000000 (its own database)"
    url = os.environ["DATABASE_URL"]
    import_url = (
        url.rsplit("/", 1)[0] + "/dashboard_bench_import"
        if url.startswith("postgres")
        else ("sqlite:////tmp/bench_import.sqlite3")
    )
    result = subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, str(ROOT / "scripts" / "bench_import.py"), "--rows", str(rows)],
        env={**os.environ, "DATABASE_URL": import_url},
        capture_output=True,
        text=True,
        check=False,
    )
    last = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
    return last.removeprefix("import of ")


def bulk_row() -> str:
    """The bulk benchmark's last summary, when `make bench-bulk` left one (test-artifacts/bench-bulk.txt)."""
    path = ROOT / "test-artifacts" / "bench-bulk.txt"
    if path.exists():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        return lines[-1] if lines else "(empty)"
    return "not run: make bench-bulk"


def _estimate(table: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [table])
        return int(cursor.fetchone()[0])


if __name__ == "__main__":
    main()
