#!/usr/bin/env python
"""Measure a bulk create on PostgreSQL against the local sandbox and print the numbers (a benchmark, not a test).

    .venv/bin/python scripts/bench_bulk.py                       # 100,000 items, 1 and 2 workers, latency 0 and 0.05
    .venv/bin/python scripts/bench_bulk.py --items 3000          # the quick form
    .venv/bin/python scripts/bench_bulk.py --workers 2 --latency 0

Everything listens on 127.0.0.1 only. The script creates its own database (`dashboard_bench_ops` unless
--database says otherwise) when it is missing, migrates it, fills it with --items standalone items once, then
for every (latency, workers) pair: empties the tasks and operations, starts a sandbox (`run_sandbox`, tasks
held pending so nothing changes under the run) and that many `db_worker` processes, confirms a "create" over
every item, waits for the operation to end and stops the processes it started.

Printed per run: items/s from the confirmation to the end, the time the confirmation took, the workers' CPU
per item (utime + stime from /proc/<pid>/stat, summed over the workers), their peak RSS (VmHWM), and the
sandbox's CPU. Then the ratios the scale issue asks for.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
TICKS = os.sysconf("SC_CLK_TCK")
PRODUCT, VERSION = "adbreaks", "bench-1"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_env(database: str, port: int) -> dict[str, str]:
    """The environment of the processes a bulk benchmark runs: production settings against the sandbox."""
    return {
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DATABASE_URL": database,
        "DEBUG": "false",
        "SECRET_KEY": "bench-only-not-secret",
        "LOG_LEVEL": "WARNING",
        "VIONLABS_API_URL": f"http://127.0.0.1:{port}",
        "VIONLABS_API_KEY": "sandbox-key",
        "SANDBOX": "true",  # `run_sandbox` is a command of the sandbox app, installed only when asked for
    }


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def fill(n_items: int) -> None:
    from django.db import transaction

    from dashboard.catalog.models import CatalogItem, ProductSetting

    ProductSetting.objects.update_or_create(
        product=PRODUCT, defaults={"enabled": True, "default_version": VERSION}
    )
    if CatalogItem.objects.count() == n_items:
        return
    CatalogItem.objects.all().delete()
    started = time.perf_counter()
    for low in range(0, n_items, 10_000):
        with transaction.atomic():
            CatalogItem.objects.bulk_create(
                (
                    CatalogItem(inventory_id=f"bench-{i:08d}", title=f"Bench {i}")
                    for i in range(low, min(n_items, low + 10_000))
                ),
                batch_size=5000,
            )
    print(f"filled {n_items:,} items in {time.perf_counter() - started:.1f} s")


def reset_rows() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        tables = [
            "catalog_taskevent", "catalog_producttask", "catalog_operationitem", "catalog_operation",
            "django_tasks_database_dbtaskresult",
        ]  # fmt: skip
        existing = set(connection.introspection.table_names(cursor))
        extra = [name for name in ("catalog_operationchunk",) if name in existing]
        cursor.execute(f"TRUNCATE {', '.join(tables + extra)} CASCADE")


@dataclass
class Result:
    latency: float
    workers: int
    items: int
    seconds: float
    confirm_seconds: float
    worker_cpu: float
    peak_rss: float
    sandbox_cpu: float
    state: str

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    # Our own interpreter and manage.py with arguments built here: nothing untrusted.
    log = open(Path(tempfile.gettempdir()) / f"bench_bulk-{args[0]}.log", "ab")  # noqa: SIM115 (kept open for the process's life)
    return subprocess.Popen(  # noqa: S603
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/stats?key=sandbox-key", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the sandbox did not start on port {port}")


def sandbox_posts(port: int) -> int | None:
    """The sandbox's count of task POSTs (None if it does not answer in time on a busy machine)."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/_sandbox/stats?key=sandbox-key", timeout=30
        ) as r:
            return json.load(r)["endpoints"].get("POST task", 0)
    except OSError:
        return None


def run_once(*, latency: float, workers: int, port: int, env: dict[str, str], concurrency: int) -> Result:
    from dashboard.catalog import operations
    from dashboard.catalog.models import CatalogItem, Operation

    reset_rows()
    sandbox_args = ["run_sandbox", "--port", str(port), "--latency", str(latency)]
    # Tasks stay pending for the whole run: nothing changes under it.
    sandbox_args += ["--pending-seconds", "86400", "--processing-seconds", "86400"]
    sandbox = start(sandbox_args, env)
    procs: list[subprocess.Popen] = []
    try:
        wait_for_port(port)
        worker_env = {
            **env,
            "BULK_CONCURRENCY": str(concurrency),
            "VIONLABS_API_URL": f"http://127.0.0.1:{port}",
        }
        procs = [
            start(["db_worker", "--no-startup-delay", "--interval", "0.2", "--no-reload"], worker_env)
            for _ in range(workers)
        ]
        time.sleep(3)  # imports and the first poll of the queue
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(
                    "a worker exited at start: see bench_bulk-db_worker.log in the temporary directory"
                )
        cpu_before = [cpu_seconds(proc.pid) for proc in procs]
        sandbox_before = cpu_seconds(sandbox.pid)
        n = CatalogItem.objects.count()
        kwargs = {
            "kind": "create",
            "product": PRODUCT,
            "version": VERSION,
            "priority": "low",
            "reason": "benchmark",
        }
        started = time.perf_counter()
        if "filter_query" in inspect.signature(operations.operation_start).parameters:
            operation = operations.operation_start(filter_query="", expected_count=n, **kwargs)
        else:  # main before the background freeze: the set is written inside the confirmation
            operation = operations.operation_start(items=CatalogItem.objects.all(), **kwargs)
        confirm = time.perf_counter() - started
        while True:
            operation.refresh_from_db()
            if operation.state not in {"queued", "freezing", "running", "cancelling"}:
                break
            if all(proc.poll() is not None for proc in procs):
                raise SystemExit("every worker exited")
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        worker_cpu = sum(
            cpu_seconds(proc.pid) - before for proc, before in zip(procs, cpu_before, strict=True)
        )
        result = Result(
            latency=latency,
            workers=workers,
            items=operation.done + operation.skipped + operation.failed,
            seconds=elapsed,
            confirm_seconds=confirm,
            worker_cpu=worker_cpu,
            peak_rss=max(peak_rss_mb(proc.pid) for proc in procs),
            sandbox_cpu=cpu_seconds(sandbox.pid) - sandbox_before,
            state=f"{operation.state} ({operation.done} done, {operation.failed} failed)",
        )
        posts = sandbox_posts(port)
        if posts is not None and posts != operation.done:
            print(f"  note: the sandbox saw {posts} POSTs for {operation.done} items done")
        Operation.objects.all().delete()
        return result
    finally:
        for proc in procs:
            stop(proc)
        stop(sandbox)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2", help="comma-separated numbers of db_worker processes")
    parser.add_argument("--latency", default="0,0.05", help="comma-separated sandbox latencies (seconds)")
    parser.add_argument("--concurrency", type=int, default=8, help="BULK_CONCURRENCY of each worker")
    parser.add_argument("--database", default="postgres://postgres@127.0.0.1:5432/dashboard_bench_ops")
    parser.add_argument("--port", type=int, default=8180, help="the sandbox's port (127.0.0.1)")
    args = parser.parse_args()

    env = {**os.environ, **bench_env(args.database, args.port)}
    os.environ.update(env)
    ensure_database(args.database)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    fill(args.items)

    results = []
    for latency in [float(x) for x in args.latency.split(",")]:
        for workers in [int(x) for x in args.workers.split(",")]:
            result = run_once(
                latency=latency, workers=workers, port=args.port, env=env, concurrency=args.concurrency
            )
            results.append(result)
            print(
                f"latency {latency:<5} workers {workers}: {result.items:,} items in {result.seconds:.1f} s = "
                f"{result.rate:.0f} items/s; confirm {result.confirm_seconds * 1000:.0f} ms; worker CPU "
                f"{result.worker_cpu * 1000 / max(result.items, 1):.2f} ms/item; peak RSS {result.peak_rss:.0f} MB; "
                f"sandbox CPU {result.sandbox_cpu:.1f} s; {result.state}; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    by = {(r.latency, r.workers): r for r in results}
    lines = ["targets"]
    short = []
    if (0.0, 2) in by:
        lines.append(f"  2 workers, no latency: {by[0.0, 2].rate:.0f} items/s (target >= 250)")
        short.append(f"2 workers {by[0.0, 2].rate:.0f} items/s")
    for latency in sorted({r.latency for r in results if r.latency > 0}):
        for workers in (1, 2):
            if (latency, workers) in by:
                ideal = args.concurrency * workers / latency
                share = by[latency, workers].rate / ideal
                lines.append(
                    f"  latency {latency}, {workers} worker(s): {by[latency, workers].rate:.0f} items/s = "
                    f"{share:.0%} of concurrency x processes / latency ({ideal:.0f}; target >= 80%)"
                )
                short.append(f"latency {latency} x{workers} {share:.0%}")
    for latency in sorted({r.latency for r in results}):
        if (latency, 1) in by and (latency, 2) in by and by[latency, 1].rate:
            ratio = by[latency, 2].rate / by[latency, 1].rate
            lines.append(f"  latency {latency}: 2 processes / 1 = {ratio:.2f}x (target >= 1.7)")
            short.append(f"2/1 {ratio:.2f}x at {latency}")
    cpu = [r.worker_cpu * 1000 / max(r.items, 1) for r in results]
    lines.append(f"  worker CPU per item: {', '.join(f'{c:.2f} ms' for c in cpu)} (target <= 5)")
    short.append(f"CPU {min(cpu):.1f}-{max(cpu):.1f} ms/item")
    load = os.getloadavg()[0]
    stamp = time.strftime("%Y-%m-%d %H:%M")
    print("\n" + "\n".join(lines))
    # The last summary, for `make bench` (scripts/bench_catalog_page.py prints its last line).
    artifact = ROOT / "test-artifacts" / "bench-bulk.txt"
    artifact.parent.mkdir(exist_ok=True)
    header = f"bench_bulk.py --items {args.items:,} --concurrency {args.concurrency}, {stamp}, load average {load:.1f}"
    artifact.write_text(
        "\n".join([header, *lines, f"{stamp}, {args.items:,} items, load {load:.1f}: {'; '.join(short)}"])
        + "\n"
    )
    print(f"written to {artifact.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
