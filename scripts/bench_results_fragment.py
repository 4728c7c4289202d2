#!/usr/bin/env python
"""Measure the result fragment of a done task (issue 13): read from the saved copy, and fetched from the sandbox
(a benchmark that prints numbers, not a test).

    .venv/bin/python scripts/bench_results_fragment.py [--runs 30] [--port 8210] [--latency 0]

Starts the sandbox on `--port` (with `--latency` seconds added to each answer), migrates a scratch SQLite
database, makes an operator and one done task per product, then requests the fragment through Django's test
client with the whole middleware stack: GET (the saved copy) and POST refresh (a fetch from the sandbox).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB = os.path.join(tempfile.gettempdir(), "bench_results.sqlite3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--port", type=int, default=8210)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()

    from dashboard.sandbox import Sandbox

    sandbox = Sandbox(host="127.0.0.1", port=args.port, pending_seconds=0, processing_seconds=0).start()
    if args.latency:
        sandbox.configure(latency=args.latency)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        DEBUG="true",
        ALLOWED_HOSTS="testserver",
        DATABASE_URL=f"sqlite:///{DB}",
        LOG_LEVEL="WARNING",
        VIONLABS_API_URL=sandbox.url,
        VIONLABS_API_KEY=sandbox.api_key,
    )
    Path(DB).unlink(missing_ok=True)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from dashboard.catalog import services
    from dashboard.catalog.models import CatalogItem, ProductSetting
    from dashboard.catalog.permissions import OPERATORS

    call_command("migrate", verbosity=0)
    ProductSetting.objects.create(product="adbreaks", default_version="1.0.1")
    user = get_user_model().objects.create_user("bench")
    from django.contrib.auth.models import Group

    user.groups.add(Group.objects.get(name=OPERATORS))
    item = CatalogItem.objects.create(inventory_id="tt1000004", metadata={"runtime_seconds": 3421})
    client = Client(headers={"HX-Request": "true"})
    client.force_login(user)

    print(f"sandbox {sandbox.url}, latency {args.latency:g} s, {args.runs} runs each, SQLite")
    print(f"{'product':<20} {'how':<22} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'queries':>8}")
    for product, version in (("adbreaks", "1.0.1"), ("markers", "2"), ("contextual_adbreak", "1")):
        task = services.task_create(item=item, product=product, version=version)
        url = reverse("catalog:task-result", args=[task.pk])
        refresh = reverse("catalog:task-result-refresh", args=[task.pk])
        for how, call in (
            ("fetched from sandbox", lambda refresh=refresh: client.post(refresh)),
            ("saved copy (GET)", lambda url=url: client.get(url)),
        ):
            timings = []
            for _ in range(args.runs):
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    response = call()
                    timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.status_code
                assert b"timeline-svg" in response.content
            p95 = sorted(timings)[max(0, int(len(timings) * 0.95) - 1)]
            print(
                f"{product:<20} {how:<22} {statistics.median(timings):>10.1f} {p95:>8.1f} {max(timings):>8.1f}"
                f" {len(queries):>8}"
            )
    print(f"sandbox result requests: {sandbox.stats()['endpoints'].get('GET results', 0)}")
    sandbox.stop()


if __name__ == "__main__":
    main()
