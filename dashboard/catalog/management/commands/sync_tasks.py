"""`manage.py sync_tasks [--every SECONDS] [--inline]`: refresh every in-flight task that is due, once or on
a schedule. Any number of these may run at once, on any number of machines (see dashboard.catalog.sync)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection

from dashboard.catalog import alerts, counts, operations, sync
from dashboard.catalog.management.progress import Progress


class Command(BaseCommand):
    help = (
        "Refresh every in-flight task that is due (longest unchecked first, one item-level call per item). "
        "By default each item becomes a job for `manage.py db_worker`; --inline refreshes in this process."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every",
            type=float,
            metavar="SECONDS",
            help="Keep running: start a new cycle this many seconds after the previous one began (Ctrl-C stops).",
        )
        parser.add_argument(
            "--inline",
            action="store_true",
            help="Call Vionlabs from this process instead of enqueueing jobs for the workers (cron, no worker).",
        )
        parser.add_argument(
            "--batch-size", type=int, default=100, help="Items claimed per short transaction (default 100)."
        )

    def handle(self, *args: Any, every: float | None, inline: bool, batch_size: int, **options: Any) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        if every is not None and every <= 0:
            raise CommandError("--every must be a positive number of seconds.")
        if batch_size <= 0:
            raise CommandError("--batch-size must be positive.")
        try:
            while True:
                started = time.monotonic()
                # A long-lived process must not keep a connection the database has since dropped (not
                # inside a caller's transaction, which closing would break).
                if not connection.in_atomic_block:
                    close_old_connections()
                if every is None:
                    # Run once: a progress line on a terminal (nothing when piped).
                    verb = "Refreshing" if inline else "Queueing"
                    with Progress(self.stdout, label=verb, unit="items") as progress:
                        if progress.enabled:
                            progress.total = sync.due_item_count()
                        report = sync.run_cycle(
                            inline=inline, batch_size=batch_size, on_progress=progress.update
                        )
                else:
                    report = sync.run_cycle(inline=inline, batch_size=batch_size)
                self._report(report, inline=inline, quiet_when_idle=every is not None)
                # The scheduler is the one process that always runs: it also rescues bulk operations whose
                # worker went away (a restart mid-run), which django-tasks-db would leave running forever.
                for operation_id in operations.operation_resume_stale():
                    self.stdout.write(f"Operation {operation_id} had stopped making progress: resumed.")
                # Fold the overview's count log (one row per change since the last cycle) back into one row
                # per key, so reading it stays a few milliseconds.
                counts.compact()
                # And the alert digest (at most every ALERT_INTERVAL; once per event across schedulers).
                digest = alerts.send_digest_if_due()
                if digest is not None and self.verbosity >= 1:
                    self.stdout.write(f"Alert sent to {alerts.recipients()}: {digest.subject}.")
                if every is None:
                    return
                time.sleep(max(0.0, every - (time.monotonic() - started)))
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")

    def _report(self, report: sync.CycleReport, *, inline: bool, quiet_when_idle: bool) -> None:
        verb = "refreshed" if inline else "queued for refresh"
        line = f"{report.claimed} item(s) {verb}"
        if inline and report.outcomes:
            line += " (" + ", ".join(f"{n} {what}" for what, n in sorted(report.outcomes.items())) + ")"
        if report.budget_waits:
            line += f"; waited {report.budget_waits} time(s) for the per-minute request budget"
        if report.breaker == "open":
            line += f"; Vionlabs failing, sync paused until {report.paused_until:%Y-%m-%d %H:%M:%S %Z}"
        elif report.breaker == "half-open":
            line += "; Vionlabs was failing: sent one probe"
        # A scheduler running --every says nothing about an idle cycle (one every few seconds), unless -v 2.
        idle = report.claimed == 0 and report.breaker == "closed"
        if self.verbosity >= 2 or (self.verbosity >= 1 and not (quiet_when_idle and idle)):
            self.stdout.write(line + ".")
