#!/usr/bin/env python
"""Count what one bulk run costs per item, in process (a measurement, not a test).

    .venv/bin/python scripts/profile_bulk.py --items 1000 --database postgres://... --port 8241
    .venv/bin/python scripts/profile_bulk.py --items 1000 --kinds create,refresh --threads 8

Starts a sandbox process (tasks held pending), runs an operation of each kind over --items standalone items
in this process (the freeze, then the run, as one `db_worker` job does) and prints per item: the queries
(by statement kind), the commits, the run's CPU of this process (every thread) and its wall time. The
freeze is measured apart from the run. `--sql` prints every distinct statement shape of the run with its count.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statements: collections.Counter[str] = collections.Counter()
        self.commits = 0
        self.db_seconds = 0.0  # wall time in statements and commits, summed over the threads
        self.http_seconds = 0.0  # wall time in HTTP exchanges, summed over the threads
        self.commit_seconds = 0.0  # the part of db_seconds spent in commits

    def reset(self) -> None:
        with self.lock:
            self.statements.clear()
            self.commits = 0
            self.db_seconds = self.http_seconds = self.commit_seconds = 0.0

    def add(self, name: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        with self.lock:
            setattr(self, name, getattr(self, name) + elapsed)

    def shape(self, sql: str) -> str:
        sql = re.sub(r"IN \([^)]*\)", "IN (...)", sql)
        sql = re.sub(r"'[^']*'", "?", sql)
        sql = re.sub(r'"s\d+_x\d+"', "sp", sql)
        return re.sub(r"\b\d+\b", "N", sql)[:300]


COUNTER = Counter()


def install_counters() -> None:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper

    original_execute = CursorWrapper._execute
    original_executemany = CursorWrapper._executemany
    original_commit = BaseDatabaseWrapper.commit

    from dashboard.vionlabs.client import VionlabsClient

    original_exchange = VionlabsClient._exchange

    def execute(self, sql, params, *ignored):  # type: ignore[no-untyped-def]
        with COUNTER.lock:
            COUNTER.statements[COUNTER.shape(sql)] += 1
        started = time.perf_counter()
        try:
            return original_execute(self, sql, params, *ignored)
        finally:
            COUNTER.add("db_seconds", started)

    def executemany(self, sql, param_list, *ignored):  # type: ignore[no-untyped-def]
        with COUNTER.lock:
            COUNTER.statements[COUNTER.shape(sql)] += 1
        started = time.perf_counter()
        try:
            return original_executemany(self, sql, param_list, *ignored)
        finally:
            COUNTER.add("db_seconds", started)

    def commit(self):  # type: ignore[no-untyped-def]
        with COUNTER.lock:
            COUNTER.commits += 1
        started = time.perf_counter()
        try:
            return original_commit(self)
        finally:
            COUNTER.add("db_seconds", started)
            COUNTER.add("commit_seconds", started)

    def exchange(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return original_exchange(self, *args, **kwargs)
        finally:
            COUNTER.add("http_seconds", started)

    VionlabsClient._exchange = exchange  # type: ignore[method-assign]

    CursorWrapper._execute = execute  # type: ignore[method-assign]
    CursorWrapper._executemany = executemany  # type: ignore[method-assign]
    BaseDatabaseWrapper.commit = commit  # type: ignore[method-assign]


class BackendCpu:
    """CPU of this database's PostgreSQL backends (read from /proc: the server runs on this machine), sampled
    while the run goes on, since the pool threads' connections close at its end."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.start: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def pids(self) -> list[int]:
        import psycopg

        with psycopg.connect(self.database, autocommit=True) as conn:
            name = self.database.rsplit("/", 1)[1]
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [name]
            ).fetchall()
        return [row[0] for row in rows]

    def sample(self) -> None:
        import bench_bulk

        for pid in self.pids():
            with contextlib.suppress(OSError):  # a backend that ended meanwhile
                self.last[pid] = bench_bulk.cpu_seconds(pid)

    def __enter__(self) -> BackendCpu:
        self.sample()
        self.start = dict(self.last)

        def loop() -> None:
            while not self.stopping.wait(0.1):
                self.sample()

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self.stopping.set()
        assert self.thread is not None
        self.thread.join()

    @property
    def seconds(self) -> float:
        return sum(cpu - self.start.get(pid, 0.0) for pid, cpu in self.last.items())


def kind_of(shape: str) -> str:
    head = shape.lstrip().split(" ", 1)[0].upper()
    if head == "SELECT" and "FOR UPDATE" in shape:
        return "SELECT FOR UPDATE"
    return head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--kinds", default="create,refresh")
    parser.add_argument("--threads", type=int, default=8, help="BULK_CONCURRENCY")
    parser.add_argument("--database", default="postgres://postgres@127.0.0.1:5432/dashboard_bench_ops")
    parser.add_argument("--port", type=int, default=8181)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--threads-per-call", type=int, default=None, help="operations.THREADS_PER_CALL")
    parser.add_argument("--sql", action="store_true", help="print each statement shape of the run")
    args = parser.parse_args()

    import bench_bulk

    env = {
        **bench_bulk.bench_env(args.database, args.port),
        "BULK_CONCURRENCY": str(args.threads),
        "BULK_FANOUT": "1",
    }
    os.environ.update(env)
    if args.database.startswith("postgres"):
        bench_bulk.ensure_database(args.database)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    bench_bulk.fill(args.items)
    install_counters()

    from dashboard.catalog import operations
    from dashboard.catalog.models import CatalogItem, Operation

    if args.threads_per_call is not None:
        operations.THREADS_PER_CALL = args.threads_per_call
    bench_bulk.reset_rows()
    sandbox_args = ["run_sandbox", "--port", str(args.port), "--latency", str(args.latency)]
    sandbox_args += ["--pending-seconds", "86400", "--processing-seconds", "86400"]
    sandbox = bench_bulk.start(sandbox_args, {**os.environ})
    try:
        bench_bulk.wait_for_port(args.port)
        n = CatalogItem.objects.count()
        for kind in args.kinds.split(","):
            op = operations.operation_start(
                kind=kind, product=bench_bulk.PRODUCT, version=bench_bulk.VERSION, priority="low",
                reason="profile", filter_query="",
            )  # fmt: skip
            COUNTER.reset()
            operations.operation_freeze(operation_id=op.pk)
            freeze_queries = sum(COUNTER.statements.values())
            COUNTER.reset()
            cpu, wall = time.process_time(), time.perf_counter()
            with (
                BackendCpu(args.database)
                if args.database.startswith("postgres")
                else contextlib.nullcontext() as pg
            ):
                operations.operation_run(operation_id=op.pk)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            pg_cpu = f"; PostgreSQL CPU {pg.seconds * 1000 / n:.2f} ms/item" if pg is not None else ""
            op = Operation.objects.get(pk=op.pk)
            statements = sum(COUNTER.statements.values())
            by_kind: collections.Counter[str] = collections.Counter()
            for shape, count in COUNTER.statements.items():
                by_kind[kind_of(shape)] += count
            print(
                f"{kind}: {op.state} done {op.done} skipped {op.skipped} failed {op.failed} of {n}; "
                f"run {wall:.2f} s = {n / wall:.0f} items/s; CPU {cpu * 1000 / n:.2f} ms/item; "
                f"queries {statements / n:.2f}/item ({', '.join(f'{k} {v / n:.2f}' for k, v in by_kind.most_common())}); "
                f"commits {COUNTER.commits / n:.2f}/item{pg_cpu}; freeze {freeze_queries} queries"
            )
            print(
                f"  wall per item and call slot: {args.threads * wall * 1000 / n:.1f} ms, of which in statements "
                f"and commits {COUNTER.db_seconds * 1000 / n:.1f} ms (commits {COUNTER.commit_seconds * 1000 / n:.1f}), "
                f"in HTTP exchanges "
                f"{COUNTER.http_seconds * 1000 / n:.1f} ms"
            )
            if args.sql:
                for shape, count in COUNTER.statements.most_common():
                    print(f"  {count / n:6.3f}  {shape}")
    finally:
        bench_bulk.stop(sandbox)


if __name__ == "__main__":
    main()
