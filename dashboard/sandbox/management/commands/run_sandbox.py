"""`manage.py run_sandbox`: serve the local Vionlabs stand-in until Ctrl-C."""

from __future__ import annotations

import signal
from argparse import ArgumentParser, ArgumentTypeError
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from dashboard.sandbox import Sandbox, SandboxOptions, read_catalog_file
from dashboard.sandbox.state import PRODUCTS


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ArgumentTypeError("must be >= 0")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise ArgumentTypeError("must be between 0 and 1 (a share of requests)")
    return value


def _whole_seconds(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ArgumentTypeError("must be >= 0")
    return value


class Command(BaseCommand):
    help = "Run a local stand-in for the Vionlabs APIs (tasks, item listing, catalog, results) until Ctrl-C."

    def add_arguments(self, parser: ArgumentParser) -> None:
        defaults = SandboxOptions()
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001, help="0 picks a free port (printed at start)")
        parser.add_argument(
            "--key", default=None, help="API key to accept (default: settings.SANDBOX_API_KEY)"
        )
        parser.add_argument("--pending-seconds", type=_seconds, default=defaults.pending_seconds)
        parser.add_argument("--processing-seconds", type=_seconds, default=defaults.processing_seconds)
        parser.add_argument(
            "--latency", type=_seconds, default=0.0, help="seconds added to every API request"
        )
        parser.add_argument("--error-rate", type=_share, default=0.0, help="share of requests answered 503")
        parser.add_argument("--rate-limit-rate", type=_share, default=0.0, help="share answered 429")
        parser.add_argument("--retry-after", type=_whole_seconds, default=defaults.retry_after)
        parser.add_argument("--hang-rate", type=_share, default=0.0, help="share of answers withheld")
        parser.add_argument("--hang-seconds", type=_seconds, default=defaults.hang_seconds)
        parser.add_argument("--hang-mode", choices=("close", "drip"), default=defaults.hang_mode)
        parser.add_argument(
            "--reset-rate", type=_share, default=0.0, help="share of requests whose connection is reset"
        )
        parser.add_argument(
            "--webhook-url", default=None, help="POST here when a task reaches done or failed"
        )
        parser.add_argument("--webhook-secret", default=None, help="sent in the x-api-key header of webhooks")
        parser.add_argument("--catalog-file", default=None, help="JSON Lines of catalog items to preload")
        parser.add_argument("--seed", type=int, default=None, help="seed for reproducible fault injection")
        parser.add_argument(
            "--no-access-product",
            choices=PRODUCTS,
            default=None,
            help="a product whose Results API answers 403 (the key has no access to it)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        catalog = []
        if options["catalog_file"]:
            try:
                catalog = read_catalog_file(options["catalog_file"])
            except (OSError, ValueError) as exc:
                raise CommandError(f"Cannot load the catalog file: {exc}") from None
        try:
            sandbox = Sandbox(
                host=options["host"],
                port=options["port"],
                catalog=catalog,
                api_key=options["key"] or settings.SANDBOX_API_KEY,
                pending_seconds=options["pending_seconds"],
                processing_seconds=options["processing_seconds"],
                latency=options["latency"],
                error_rate=options["error_rate"],
                rate_limit_rate=options["rate_limit_rate"],
                retry_after=options["retry_after"],
                reset_rate=options["reset_rate"],
                hang_rate=options["hang_rate"],
                hang_seconds=options["hang_seconds"],
                hang_mode=options["hang_mode"],
                webhook_url=options["webhook_url"],
                webhook_secret=options["webhook_secret"],
                seed=options["seed"],
                no_access_product=options["no_access_product"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"Cannot listen on {options['host']}:{options['port']}: {exc}") from None

        def stop_on_term(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        # `make run` stops its processes with SIGTERM: leave as cleanly as on Ctrl-C.
        signal.signal(signal.SIGTERM, stop_on_term)
        shown = {name: value for name, value in sandbox.options.public().items() if name != "api_key"}
        self.stdout.write(f"Vionlabs sandbox on {sandbox.url} (Ctrl-C stops it)")
        self.stdout.write(f"Options: {shown}; catalog items preloaded: {len(catalog)}")
        self.stdout.flush()
        try:
            sandbox.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Sandbox stopped.")
