#!/usr/bin/env python
"""Load benchmark: 100 logged-in operators polling a page of 50 items, on gunicorn and PostgreSQL (not a test).

    make bench-load
    .venv/bin/python scripts/bench_load.py --users 100 --seconds 30 --wait 0

What it does, all on 127.0.0.1 (ports 8160-8179):
1. creates the PostgreSQL database `dashboard_bench` if missing (DATABASE_URL's server, default
   postgres://postgres@127.0.0.1:5432), migrates it, and puts in 50 items with tasks in flight and the
   operators' logins (bench-operator-000 …, in the Operators group);
2. "Vionlabs up": starts the sandbox (8161) and gunicorn (8160) pointed at it, and runs locust headless:
   every user logs in once, then all poll `/poll/?since=…&items=<the 50 ids>` for --seconds; the sandbox's
   request count before and after shows whether a poll called out;
3. "Vionlabs down": stops both, starts a listener (8162) that closes every connection unanswered and counts
   them, restarts gunicorn pointed at it, and runs the same load;
4. prints p50/p90/p99, requests/s and errors for both, and stops every process it started.

`--wait 0` (the default) polls flat out: each user sends its next poll as soon as the last one answered, the
worst case for the server. `--wait page` waits DASHBOARD_POLL_INTERVAL (5 s) between polls, as the page does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
WEB_PORT = 8160
SANDBOX_PORT = 8161
DOWN_PORT = 8162
API_KEY = "bench-sandbox-key"
PASSWORD = "bench-password-not-secret"  # noqa: S105 - local benchmark logins
ITEMS = 50
PRODUCTS = (("adbreaks", "1.0.1"), ("markers", "2"), ("emotions", "3"))
STATUSES = ("pending", "processing", "done", "failed")


def database_url(name: str) -> str:
    server = os.environ.get("BENCH_DATABASE_SERVER", "postgres://postgres@127.0.0.1:5432")
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))


def ensure_database(name: str) -> None:
    import psycopg  # the project's PostgreSQL driver; imported here so --help works without a server

    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def server_env(database: str, vionlabs_url: str) -> dict[str, str]:
    """The environment of the dashboard under test: production settings (DEBUG off), plain HTTP on loopback."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        DATABASE_URL=database_url(database),
        DEBUG="false",
        SECRET_KEY="bench-only-secret-key-" + "x" * 40,
        ALLOWED_HOSTS=HOST,
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        SECURE_HSTS_SECONDS="0",
        LOG_LEVEL="WARNING",
        VIONLABS_API_URL=vionlabs_url,
        VIONLABS_API_KEY=API_KEY,
        VIONLABS_TIMEOUT="5",
    )
    return env


def populate(users: int) -> list[int]:
    """The 50 items (tasks in flight, so the page keeps polling) and the logins; returns the item ids."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User
    from django.db import transaction

    from dashboard.catalog.models import CatalogItem, ProductSetting, ProductTask

    with transaction.atomic():
        for position, (product, version) in enumerate(PRODUCTS):
            ProductSetting.objects.get_or_create(
                product=product, defaults={"default_version": version, "position": position}
            )
        ids = []
        for number in range(ITEMS):
            item, _ = CatalogItem.objects.get_or_create(
                inventory_id=f"bench/{number:03d}", defaults={"title": f"Benchmark item {number}"}
            )
            ids.append(item.pk)
            for offset, (product, version) in enumerate(PRODUCTS):
                ProductTask.objects.get_or_create(
                    item=item,
                    product=product,
                    version=version,
                    defaults={"status": STATUSES[(number + offset) % len(STATUSES)]},
                )
        operators = Group.objects.get(name="Operators")
        password = make_password(PASSWORD)  # hashed once: creating 100 users stays quick
        for number in range(users):
            user, created = User.objects.get_or_create(username=f"bench-operator-{number:03d}")
            if created or not user.check_password(PASSWORD):
                user.password = password
                user.save(update_fields=["password"])
            user.groups.add(operators)
    return ids


def prepare(database: str, users: int) -> list[int]:
    os.environ.update(server_env(database, f"http://{HOST}:{SANDBOX_PORT}"))
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command
    from django.db import connections

    django.setup()
    call_command("migrate", verbosity=0)
    ids = populate(users)
    connections.close_all()
    return ids


def wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - a loopback http URL built here
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up within {timeout:g} s") from None
            time.sleep(0.2)


class Processes:
    """Every process this script starts, each in its own process group, stopped (TERM, then KILL) at the end."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(self, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        out = open(log, "ab")  # noqa: SIM115 - closed with the process below
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and scripts
            args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        process._bench_log = out  # type: ignore[attr-defined]
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        process._bench_log.close()  # type: ignore[attr-defined]
        if process in self.running:
            self.running.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.running)):
            self.stop(process)


class DownListener:
    """Vionlabs down: accepts each connection, counts it and closes it without a word."""

    def __init__(self, port: int) -> None:
        self.connections = 0
        self._sock = socket.create_server((HOST, port))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def __enter__(self) -> DownListener:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


def sandbox_requests() -> int:
    request = urllib.request.Request(f"http://{HOST}:{SANDBOX_PORT}/_sandbox/stats?key={API_KEY}")
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback
        return int(json.load(answer)["requests"])


def start_web(procs: Processes, env: dict[str, str], args: argparse.Namespace, log: Path) -> subprocess.Popen:
    gunicorn = shutil.which("gunicorn", path=str(BIN)) or "gunicorn"
    web = procs.start(
        [
            gunicorn,
            "dashboard.wsgi:application",
            f"--bind={HOST}:{WEB_PORT}",
            f"--workers={args.workers}",
            "--worker-class=gthread",
            f"--threads={args.threads}",
            "--timeout=60",
        ],
        env,
        log,
    )
    wait_for(f"http://{HOST}:{WEB_PORT}/login/")
    return web


def run_locust(args: argparse.Namespace, item_ids: list[int], wait: float, log: Path) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        out_path = Path(out.name)
    env = dict(os.environ)
    env.update(
        BENCH_USERS=str(args.users),
        BENCH_SECONDS=str(args.seconds),
        BENCH_WAIT=str(wait),
        BENCH_POLL_PATH="/poll/?items=" + ",".join(str(pk) for pk in item_ids),
        BENCH_PASSWORD=PASSWORD,
        BENCH_OUT=str(out_path),
    )
    locust = shutil.which("locust", path=str(BIN)) or "locust"
    # The run stops itself once the measurement is over; the time limit only bounds a run whose logins stall.
    limit = int(args.seconds + args.login_allowance)
    with open(log, "ab") as out_log:
        subprocess.run(  # noqa: S603 - our own locustfile
            [
                locust,
                "-f",
                str(ROOT / "scripts" / "locustfile_poll.py"),
                "--headless",
                f"--users={args.users}",
                f"--spawn-rate={args.users}",
                f"--run-time={limit}s",
                f"--host=http://{HOST}:{WEB_PORT}",
                "--only-summary",
                "--loglevel=WARNING",
                "--exit-code-on-error=0",
            ],
            env=env,
            cwd=ROOT,
            stdout=out_log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=limit + 60,
        )
    result = json.loads(out_path.read_text())
    out_path.unlink()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per phase")
    parser.add_argument("--wait", default="0", help="seconds between a user's polls: a number, or 'page'")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--database", default="dashboard_bench")
    parser.add_argument("--login-allowance", type=float, default=240.0, help="upper bound for all logins")
    args = parser.parse_args()

    log_dir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    ensure_database(args.database)
    item_ids = prepare(args.database, args.users)
    poll_interval = int(os.environ.get("DASHBOARD_POLL_INTERVAL", "5"))
    wait = float(poll_interval if args.wait == "page" else args.wait)
    mode = (
        f"every {wait:g} s (the page's interval)"
        if args.wait == "page"
        else ("flat out" if wait == 0 else f"every {wait:g} s")
    )
    print(
        f"{args.users} operators, each polling {len(item_ids)} items {mode} for {args.seconds:g} s; "
        f"gunicorn {args.workers} workers x {args.threads} threads on PostgreSQL ({args.database}); "
        f"logs in {log_dir}"
    )

    rows = []
    procs = Processes()
    try:
        sandbox = procs.start(
            [
                str(BIN / "python"),
                "manage.py",
                "run_sandbox",
                f"--port={SANDBOX_PORT}",
                f"--key={API_KEY}",
            ],
            # The sandbox app is installed for its own process only, as `make prod` does.
            {**server_env(args.database, f"http://{HOST}:{SANDBOX_PORT}"), "SANDBOX": "true"},
            log_dir / "sandbox.log",
        )
        wait_for(f"http://{HOST}:{SANDBOX_PORT}/_sandbox/stats?key={API_KEY}")
        web = start_web(
            procs, server_env(args.database, f"http://{HOST}:{SANDBOX_PORT}"), args, log_dir / "web-up.log"
        )
        before = sandbox_requests()
        up = run_locust(args, item_ids, wait, log_dir / "locust-up.log")
        up["callouts"] = sandbox_requests() - before
        up["load"] = os.getloadavg()[0]
        rows.append(("Vionlabs up", up))
        procs.stop(web)
        procs.stop(sandbox)

        with DownListener(DOWN_PORT) as down_listener:
            web = start_web(
                procs, server_env(args.database, f"http://{HOST}:{DOWN_PORT}"), args, log_dir / "web-down.log"
            )
            down = run_locust(args, item_ids, wait, log_dir / "locust-down.log")
            down["callouts"] = down_listener.connections
            down["load"] = os.getloadavg()[0]
            rows.append(("Vionlabs down", down))
            procs.stop(web)
    finally:
        procs.stop_all()

    print()
    print(f"{'':14} {'polls':>7} {'req/s':>7} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'errors':>6} {'login errors':>12} {'calls to Vionlabs':>17} {'load avg':>8}")  # fmt: skip
    for name, row in rows:
        rate = row["requests"] / row["seconds"] if row["seconds"] else 0.0
        print(
            f"{name:14} {row['requests']:>7} {rate:>7.0f} {row['p50']:>7.0f} {row['p90']:>7.0f} "
            f"{row['p99']:>7.0f} {row['max']:>7.0f} {row['failures']:>6} {row['login_failures']:>12} "
            f"{row['callouts']:>17} {row['load']:>8.1f}"
        )
    print(
        f"(load avg: the machine's 1-minute load average at the end of the phase, on {os.cpu_count()} CPUs)"
    )
    for name, row in rows:
        if row["errors"]:
            print(f"{name}: {row['errors']}")


if __name__ == "__main__":
    main()
