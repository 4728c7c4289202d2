"""`manage.py recount_tasks`: rebuild the overview's task and item counts from the tasks themselves."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand

from dashboard.catalog import counts


class Command(BaseCommand):
    help = (
        "Rebuild the task and item counts the overview reads (kept by database triggers; this is the repair "
        "path, e.g. after restoring a table by hand). Writes to tasks wait while it runs."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        rebuilt = counts.recount()
        tasks = sum(rebuilt.tasks.values())
        items = sum(rebuilt.items.values())
        self.stdout.write(
            f"Counted {tasks:,} tasks on {items:,} items in {time.perf_counter() - started:.1f} s."
        )
