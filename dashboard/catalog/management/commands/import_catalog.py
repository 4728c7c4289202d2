"""`manage.py import_catalog FILE` (CSV or JSON Lines; `-` reads stdin) or `--from-vionlabs`.

Exit status: 0 when every row imported, 1 when some rows were bad (they are listed; the good ones are in),
2 when the file as a whole cannot be read or Vionlabs failed part-way (what came before is kept).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from dashboard.catalog.client import get_client
from dashboard.catalog.imports import (
    BATCH_SIZE,
    COPY_BATCH_SIZE,
    FORMATS,
    ImportFileError,
    ImportInterrupted,
    ImportReport,
    import_catalog_file,
    import_from_vionlabs,
)
from dashboard.catalog.management.progress import Progress, count_lines


class Command(BaseCommand):
    help = (
        "Import catalog items from a CSV or JSON Lines file (columns inventory_id, title, kind, parent_id; "
        "others go into metadata), or from the Vionlabs Catalog API with --from-vionlabs. Re-running is safe."
    )
    # Tests hand in a binary stream for `-`.
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", help="CSV or JSON Lines file; '-' reads standard input")
        parser.add_argument(
            "--format",
            choices=FORMATS,
            help="default: from the extension (.jsonl/.ndjson are JSON Lines, anything else CSV); "
            "for stdin, JSON Lines when the first character is '{'",
        )
        parser.add_argument(
            "--from-vionlabs",
            action="store_true",
            help="page through the Vionlabs Catalog API instead of reading a file",
        )
        parser.add_argument("--page-size", type=int, default=500, help="Vionlabs listing page size (500)")
        parser.add_argument(
            "--batch-size",
            type=int,
            help=f"rows per transaction ({COPY_BATCH_SIZE:,} on PostgreSQL, {BATCH_SIZE:,} on SQLite)",
        )
        parser.add_argument(
            "--max-errors",
            type=int,
            default=50,
            help="bad rows printed at most (all are counted; default 50)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if (
            (batch_size is not None and batch_size < 1)
            or options["max_errors"] < 0
            or options["page_size"] < 1
        ):
            raise CommandError("--batch-size and --page-size must be positive, --max-errors not negative.")
        if options["from_vionlabs"] and options["file"]:
            raise CommandError("Give either FILE or --from-vionlabs, not both.", returncode=2)
        if not options["from_vionlabs"] and not options["file"]:
            raise CommandError("Give a FILE ('-' for standard input) or --from-vionlabs.", returncode=2)
        try:
            report = self._from_vionlabs(options) if options["from_vionlabs"] else self._from_file(options)
        except DatabaseError as exc:
            raise CommandError(
                f"The database failed: {exc}. Batches written before were kept; run the import again to finish.",
                returncode=2,
            ) from None
        self._print(report)
        if not report.ok:
            raise CommandError(f"{report.bad} bad row(s); the other rows were imported.", returncode=1)

    def _from_file(self, options: dict[str, Any]) -> ImportReport:
        name: str = options["file"]
        kwargs = {
            "fmt": options["format"],
            "batch_size": options["batch_size"],
            "max_errors": options["max_errors"],
        }
        try:
            if name == "-":
                stdin = options.get("stdin") or sys.stdin.buffer
                with Progress(self.stdout, label="Importing") as progress:
                    return import_catalog_file(stdin, name=None, on_batch=progress.update, **kwargs)
            path = Path(name)
            try:
                stream = path.open("rb")
            except OSError as exc:
                raise CommandError(f"Cannot open {name}: {exc.strerror}.", returncode=2) from None
            with stream, Progress(self.stdout, label="Importing") as progress:
                if progress.enabled:
                    progress.total = count_lines(stream)  # about the rows: a CSV header counts too
                return import_catalog_file(stream, name=name, on_batch=progress.update, **kwargs)
        except ImportFileError as exc:
            raise CommandError(f"{name}: {exc}", returncode=2) from None

    def _from_vionlabs(self, options: dict[str, Any]) -> ImportReport:
        entries = get_client().iter_catalog_items(page_size=options["page_size"])
        try:
            with Progress(self.stdout, label="Importing from Vionlabs", unit="items") as progress:
                return import_from_vionlabs(
                    entries,
                    batch_size=options["batch_size"] or BATCH_SIZE,
                    max_errors=options["max_errors"],
                    on_batch=progress.update,
                )
        except ImportInterrupted as exc:
            self._print(exc.report)
            raise CommandError(
                f"{exc} The items imported before the failure were kept.", returncode=2
            ) from None

    def _print(self, report: ImportReport) -> None:
        for error in report.errors:
            self.stderr.write(str(error))
        if report.errors_not_shown:
            self.stderr.write(
                f"… and {report.errors_not_shown} more bad row(s) (raise --max-errors to see them)"
            )
        style = self.style.SUCCESS if report.ok else self.style.WARNING
        self.stdout.write(style(f"Imported: {report.summary()}"))
