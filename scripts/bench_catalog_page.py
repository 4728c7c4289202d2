#!/usr/bin/env python
"""Measure the catalog and tasks pages over a large catalog and print the numbers (a benchmark, not a test).

    .venv/bin/python scripts/bench_catalog_page.py --items 1000000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_ui .venv/bin/python scripts/bench_catalog_page.py

The database (default: /tmp/bench_catalog.sqlite3) is migrated and filled once, then reused while it holds
the requested number of items. Each page is requested through Django's test client as an operator, with the
whole middleware stack, and the median and worst of several runs are printed with the query count.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/bench_catalog.sqlite3")
os.environ.setdefault("LOG_LEVEL", "WARNING")

STATUSES = ["done"] * 14 + ["pending", "processing", "failed", "deactivated"]


def populate(n_items: int, batch: int = 10_000) -> None:
    from django.db import transaction

    from dashboard.catalog.models import CatalogItem, ItemKind, ProductSetting, ProductTask

    ProductSetting.objects.get_or_create(product="adbreaks", defaults={"default_version": "1.0.1"})
    ProductSetting.objects.get_or_create(product="markers", defaults={"default_version": "2"})
    ProductSetting.objects.get_or_create(product="emotions", defaults={"default_version": "3"})
    start = CatalogItem.objects.count()
    started = time.perf_counter()
    for low in range(start, n_items, batch):
        high = min(n_items, low + batch)
        with transaction.atomic():
            items = CatalogItem.objects.bulk_create(
                [
                    CatalogItem(
                        inventory_id=f"tt{i:08d}/{'4k' if i % 3 else 'hd'}",
                        title=f"Title number {i}",
                        kind=ItemKind.EPISODE if i % 10 == 0 else ItemKind.STANDALONE,
                    )
                    for i in range(low, high)
                ],
                batch_size=2000,
            )
            if items[0].pk is None:  # backends that do not return ids
                items = list(
                    CatalogItem.objects.filter(inventory_id__gte=items[0].inventory_id).order_by("pk")[
                        : high - low
                    ]
                )
            tasks = []
            for offset, item in enumerate(items):
                i = low + offset
                tasks.append(
                    ProductTask(
                        item=item, product="adbreaks", version="1.0.1", status=STATUSES[i % len(STATUSES)]
                    )
                )
                if i % 2 == 0:
                    tasks.append(ProductTask(item=item, product="markers", version="2", status="done"))
            ProductTask.objects.bulk_create(tasks, batch_size=2000)
        if (high // batch) % 10 == 0:
            print(f"  filled {high:,} items ({time.perf_counter() - started:.0f} s)", flush=True)


def measure(client, url: str, runs: int) -> tuple[float, float, int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm caches (sessions, permissions, the database's pages)
    timings = []
    queries = 0
    status = 0
    for _ in range(runs):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
        queries = len(captured)
        status = response.status_code
    return statistics.median(timings), max(timings), queries, status


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from dashboard.catalog.models import CatalogItem
    from dashboard.catalog.pagination import encode_cursor

    call_command("migrate", verbosity=0)
    existing = CatalogItem.objects.count()
    if existing < args.items:
        print(f"Filling the catalog to {args.items:,} items (has {existing:,}); done once, then reused.")
        populate(args.items)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_superuser": True})
    client = Client()
    client.force_login(user)

    last = CatalogItem.objects.order_by("-inventory_id").values_list("inventory_id", "pk")[60]
    deep = encode_cursor(list(last))
    cases = [
        ("catalog, first page", "/items/"),
        ("catalog, page next to the end (keyset)", f"/items/?after={deep}"),
        ("catalog, sorted by title desc", "/items/?sort=-title"),
        ("catalog, product+status filter (failed)", "/items/?product=adbreaks&status=failed"),
        ("catalog, missing markers", "/items/?missing=markers"),
        ("catalog, has failures", "/items/?failures=on"),
        ("catalog, search 'number 99999'", "/items/?q=number+99999"),
        ("tasks, first page", "/tasks/"),
        ("tasks, status failed", "/tasks/?status=failed"),
        ("overview (matrix, stuck, failures)", "/"),
    ]
    total = CatalogItem.objects.count()
    print(f"\n{connection.vendor}, {total:,} items, {args.runs} runs each (ms)\n")
    print(f"{'page':45} {'median':>8} {'worst':>8} {'queries':>8} {'status':>7}")
    for label, url in cases:
        median, worst, queries, status = measure(client, url, args.runs)
        print(f"{label:45} {median:8.1f} {worst:8.1f} {queries:8d} {status:7d}")


if __name__ == "__main__":
    main()
