#!/usr/bin/env python
"""Measure the catalog and task exports over a large catalog: time, size and peak memory (a benchmark, not a test).

    .venv/bin/python scripts/bench_export.py --items 1000000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_ui .venv/bin/python scripts/bench_export.py

Uses the database of scripts/bench_catalog_page.py (default /tmp/bench_catalog.sqlite3, filled once and reused).
Each export is requested through Django's test client as a viewer-level superuser, with the whole middleware
stack, and its streamed body is consumed chunk by chunk and thrown away, as a socket would. The peak resident
memory (ru_maxrss) is printed before and after each export: flat memory means it barely moves, whatever the
number of rows.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/bench_catalog.sqlite3")
os.environ.setdefault("LOG_LEVEL", "WARNING")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    args = parser.parse_args()

    import django

    django.setup()
    # After django.setup(): these import models.
    from bench_catalog_page import populate
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from dashboard.catalog.models import CatalogItem

    call_command("migrate", verbosity=0)
    existing = CatalogItem.objects.count()
    if existing < args.items:
        print(f"Filling the catalog to {args.items:,} items (has {existing:,}); done once, then reused.")
        populate(args.items)
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_superuser": True})
    client = Client()
    client.force_login(user)
    print(f"{CatalogItem.objects.count():,} items; peak RSS before any export: {peak_mb():.0f} MB")
    for url in ("/items/export.csv", "/items/export.jsonl", "/tasks/export.csv", "/tasks/export.jsonl"):
        before = peak_mb()
        started = time.perf_counter()
        response = client.get(url)
        size = rows = 0
        for chunk in response.streaming_content:
            size += len(chunk)
            rows += chunk.count(b"\n")
        seconds = time.perf_counter() - started
        print(
            f"{url:22} {rows:>10,} lines {size / 1e6:8.1f} MB in {seconds:6.1f} s "
            f"({rows / seconds:,.0f} lines/s); peak RSS {before:.0f} → {peak_mb():.0f} MB"
        )


if __name__ == "__main__":
    main()
