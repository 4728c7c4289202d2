"""`make smoke`: the production stack end to end, on a fresh PostgreSQL database, driven as an operator would.

gunicorn (2 workers), 2 `db_worker` processes, `sync_tasks --every 2` and the sandbox answering 20 % of requests
with 503 and 10 % with 429, DEBUG off. It imports 500 items, logs in over HTTP (CSRF token and all), creates a
task for every item through the catalog filter → preview → confirm pages, and waits until every task is
terminal. Then it checks that nothing was lost (each item exactly one task, done or visibly failed), that the
sandbox saw no second applied POST for any task, that /readyz is 200, that /metrics counts the calls and the
429s, and that the hashed CSS of the login page is served. It prints the figures and stops every process it
started, whatever happens. Exit status 0 only when every check holds.

Only pages and forms are used to start the work, so the bulk operations' internals may change freely.
Environment: SMOKE_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/dashboard_smoke, dropped and
created), SMOKE_PORT (default 8230; the sandbox uses the next port), SMOKE_ITEMS (500), SMOKE_BUDGET (120 s,
the whole run).
"""

from __future__ import annotations

import html.parser
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import psycopg
import requests
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
DATABASE_URL = os.environ.get("SMOKE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dashboard_smoke")
PORT = int(os.environ.get("SMOKE_PORT", "8230"))
SANDBOX_PORT = PORT + 1
ITEMS = int(os.environ.get("SMOKE_ITEMS", "500"))
#: The whole run, start-up included, must fit in this many seconds (CI: 2 minutes).
BUDGET = float(os.environ.get("SMOKE_BUDGET", "120"))
BASE = f"http://127.0.0.1:{PORT}"
USERNAME, PASSWORD = "smoke-operator", secrets.token_urlsafe(16)
PRODUCT, VERSION = "adbreaks", "1.0.1"
#: Every 25th item has "fail" in its id: the sandbox fails those tasks, so "visibly failed" is exercised.
FAIL_EVERY = 25


class Failed(Exception):
    pass


def check(condition: bool, what: str) -> None:
    print(f"  {'ok  ' if condition else 'FAIL'} {what}", flush=True)
    if not condition:
        raise Failed(what)


# --- processes --------------------------------------------------------------------------------------------


class Stack:
    """Every process started here, each in its own process group, all stopped by `stop()`."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str, extra: dict[str, str] | None = None) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and commands
            args,
            cwd=ROOT,
            env={**self.env, **(extra or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append((name, process))

    def manage(self, *args: str, extra: dict[str, str] | None = None) -> str:
        done = subprocess.run(  # noqa: S603 - our own interpreter and commands
            [PY, "manage.py", *args],
            cwd=ROOT,
            env={**self.env, **(extra or {})},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode:
            raise Failed(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and commands
            [PY, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def finish(self, process: subprocess.Popen[str]) -> None:
        output, _ = process.communicate(timeout=120)
        if process.returncode:
            raise Failed(f"{' '.join(map(str, process.args))} failed:\n{output}")

    def dead(self) -> list[str]:
        return [name for name, process in self.processes if process.poll() is not None]

    def stop(self) -> None:
        for _, process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def fresh_database(url: str) -> None:
    params = conninfo_to_dict(url)
    name = params["dbname"]
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def wait_for(url: str, *, seconds: float, status: int = 200) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == status:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise Failed(f"{url} did not answer {status} within {seconds:.0f} s")


# --- HTML forms ---------------------------------------------------------------------------------------------


class Forms(html.parser.HTMLParser):
    """The forms of a page: attributes, and the values a browser would submit (first option of a select)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.links: list[dict[str, str]] = []
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "link":
            self.links.append(a)
        if tag == "form":
            self.forms.append({"attrs": a, "fields": {}, "checkboxes": {}})
            return
        if not self.forms:
            return
        fields = self.forms[-1]["fields"]
        if tag == "input" and a.get("name"):
            if a.get("type") == "checkbox":
                self.forms[-1]["checkboxes"][a["name"]] = a.get("value", "on")
            elif a.get("type") not in ("submit", "button"):
                fields[a["name"]] = a.get("value", "")
        elif tag == "select" and a.get("name"):
            self._select = a["name"]
        elif tag == "option" and self._select:
            if self._select not in fields or "selected" in a:
                fields[self._select] = a.get("value", "")
        elif tag == "textarea" and a.get("name"):
            self._textarea = a["name"]
            fields[a["name"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        if tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea and self.forms:
            self.forms[-1]["fields"][self._textarea] += data

    def find(self, **attrs: str) -> dict[str, Any]:
        for form in self.forms:
            if all(
                value in form["attrs"].get(name, "").split() or form["attrs"].get(name) == value
                for name, value in attrs.items()
            ):
                return form
        raise Failed(f"no form with {attrs} on the page")


def parse(page: str) -> Forms:
    forms = Forms()
    forms.feed(page)
    return forms


def post_form(
    session: requests.Session, page_url: str, form: dict[str, Any], **values: str
) -> requests.Response:
    data = {**form["fields"], **values}
    action = urljoin(page_url, form["attrs"].get("action") or page_url)
    return session.post(action, data=data, headers={"Referer": page_url}, timeout=60)


# --- the run ------------------------------------------------------------------------------------------------


def setup_data(stack: Stack, work: Path) -> None:
    """The catalog file imported by `import_catalog`, the product and an operator (one Django start-up)."""
    catalog = work / "catalog.csv"
    with catalog.open("w") as out:
        out.write("inventory_id,title\n")
        for n in range(ITEMS):
            suffix = "-fail" if n % FAIL_EVERY == 0 else ""
            out.write(f"smoke-{n:04d}{suffix},Smoke item {n}\n")
    stack.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import Group, User\n"
        "from django.core.management import call_command\n"
        "from dashboard.catalog.models import ProductSetting\n"
        "from dashboard.catalog.permissions import OPERATORS\n"
        f"call_command('import_catalog', {str(catalog)!r}, verbosity=0)\n"
        f"ProductSetting.objects.create(product={PRODUCT!r}, default_version={VERSION!r})\n"
        f"user = User.objects.create_user({USERNAME!r}, password={PASSWORD!r})\n"
        "user.groups.add(Group.objects.get(name=OPERATORS))\n",
    )


def log_in(session: requests.Session) -> str:
    login_url = f"{BASE}/login/"
    page = session.get(login_url, timeout=10)
    check(page.status_code == 200, "the login page answers 200")
    form = parse(page.text).find(method="post")
    answer = post_form(session, login_url, form, username=USERNAME, password=PASSWORD)
    check(
        answer.status_code == 200 and "/login/" not in answer.url, "the operator logs in over HTTP with CSRF"
    )
    return page.text


def check_css(session: requests.Session, login_html: str) -> None:
    sheets = [link["href"] for link in parse(login_html).links if "stylesheet" in link.get("rel", "")]
    check(bool(sheets), "the login page links a stylesheet")
    href = sheets[0]
    check(bool(re.search(r"\.[0-9a-f]{12}\.css$", href)), f"its name carries a content hash ({href})")
    css = session.get(urljoin(BASE, href), timeout=10)
    check(
        css.status_code == 200 and css.headers.get("Content-Type", "").startswith("text/css"),
        "the hashed CSS is served as text/css with DEBUG off",
    )


def start_bulk_create(session: requests.Session) -> str:
    catalog_url = f"{BASE}/items/?q=smoke-"
    page = session.get(catalog_url, timeout=30)
    check(page.status_code == 200, "the filtered catalog page answers 200")
    bulk = parse(page.text).find(id="bulk-form")
    check("filter" in bulk["checkboxes"], "the bulk form offers 'all matching this filter'")
    preview = post_form(
        session,
        catalog_url,
        bulk,
        filter=bulk["checkboxes"]["filter"],
        kind="create",
        product=PRODUCT,
        version="",
        priority="",
    )
    check(preview.status_code == 200, "the preview answers 200")
    check(f"{ITEMS}" in preview.text, f"the preview counts {ITEMS} items")
    confirm = parse(preview.text).find(**{"class": "operation-confirm"})
    started = post_form(session, preview.url, confirm, reason="smoke test: bulk create")
    check(
        started.status_code == 200 and "/operations/" in started.url, f"the operation starts ({started.url})"
    )
    return started.url


def task_figures(conn: psycopg.Connection[Any]) -> dict[str, int]:
    row = conn.execute(
        """
        SELECT
          (SELECT count(*) FROM catalog_catalogitem),
          (SELECT count(*) FROM catalog_producttask),
          (SELECT count(*) FROM catalog_producttask WHERE status = 'done'),
          (SELECT count(*) FROM catalog_producttask WHERE status = 'failed'),
          (SELECT count(*) FROM catalog_producttask WHERE status = '' AND sync_error <> ''
              AND action_in_progress = ''),
          (SELECT count(*) FROM catalog_catalogitem i WHERE (SELECT count(*) FROM catalog_producttask t
              WHERE t.item_id = i.id) <> 1),
          (SELECT count(*) FROM catalog_operation WHERE state IN ('queued', 'running', 'cancelling')),
          (SELECT count(*) FROM catalog_operationitem WHERE state = 'failed')
        """
    ).fetchone()
    assert row is not None
    keys = (
        "items",
        "tasks",
        "done",
        "failed",
        "sync_failed",
        "not_one_task",
        "active_operations",
        "op_failed",
    )
    return dict(zip(keys, row, strict=True))


def terminal(f: dict[str, int]) -> bool:
    """Every item has its task, and each task is done, failed, or visibly not created (no status, the error
    shown on the task and the operation's page)."""
    return (
        f["active_operations"] == 0
        and f["not_one_task"] == 0
        and f["done"] + f["failed"] + f["sync_failed"] == f["items"]
    )


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@contextmanager
def stopped_on_signal(stack: Stack) -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)


def main() -> int:
    begun = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="dashboard-smoke-"))
    multiproc = work / "prometheus"
    multiproc.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": DATABASE_URL,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        # No TLS proxy locally, as `make prod`: only these are turned off.
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "STATIC_ROOT": str(work / "static"),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "METRICS_ALLOWED_IPS": "127.0.0.1",
        "VIONLABS_API_URL": f"http://127.0.0.1:{SANDBOX_PORT}",
        "VIONLABS_API_KEY": "sandbox-key",
        "PORT": str(PORT),
        "BIND_HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "BULK_CONCURRENCY": "8",
        "SYNC_MIN_INTERVAL": "1",
        "SYNC_REQUESTS_PER_MINUTE": "6000",
        "SYNC_BREAKER_PAUSE": "3",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("SANDBOX", None)
    stack = Stack(env, work)
    print(
        f"smoke: {ITEMS} items, PostgreSQL {DATABASE_URL}, web :{PORT}, sandbox :{SANDBOX_PORT}, logs {work}"
    )
    try:
        with stopped_on_signal(stack):
            fresh_database(DATABASE_URL)
            # The sandbox and collectstatic need no database: they run while the migrations do.
            stack.start(
                "sandbox",
                PY,
                "manage.py",
                "run_sandbox",
                "--port",
                str(SANDBOX_PORT),
                "--error-rate",
                "0.2",
                "--rate-limit-rate",
                "0.1",
                # Retry-After: 0. A 429 pauses every thread of the process for Retry-After seconds: at 1 s, the
                # ~60 429s of a run would be a minute of waiting, over the 2-minute budget. The 429s are still
                # answered, counted and retried.
                "--retry-after",
                "0",
                "--pending-seconds",
                "2",
                "--processing-seconds",
                "3",
                "--seed",
                "12",
                extra={"SANDBOX": "true"},
            )
            collect = stack.background("collectstatic", "--no-input", "-v", "0")
            stack.manage("migrate", "--no-input", "-v", "0")
            setup_data(stack, work)
            stack.finish(collect)
            stack.start(
                "web",
                str(ROOT / ".venv/bin/gunicorn"),
                "dashboard.wsgi:application",
                "--config",
                "gunicorn.conf.py",
            )
            for n in (1, 2):
                stack.start(f"worker{n}", PY, "manage.py", "db_worker", "--interval", "0.5")
            stack.start("scheduler", PY, "manage.py", "sync_tasks", "--every", "2")
            wait_for(f"http://127.0.0.1:{SANDBOX_PORT}/_sandbox/stats?key=sandbox-key", seconds=20)
            wait_for(f"{BASE}/healthz", seconds=30)
            print(f"smoke: stack up after {time.monotonic() - begun:.1f} s")

            session = requests.Session()
            login_html = log_in(session)
            check_css(session, login_html)
            started_at = time.monotonic()
            start_bulk_create(session)

            figures: dict[str, int] = {}
            with psycopg.connect(make_conninfo(DATABASE_URL), autocommit=True) as conn:
                deadline = begun + BUDGET
                while time.monotonic() < deadline:
                    figures = task_figures(conn)
                    if terminal(figures):
                        break
                    if stack.dead():
                        raise Failed(f"process(es) stopped: {', '.join(stack.dead())} (see {work})")
                    time.sleep(1)
            elapsed = time.monotonic() - started_at
            print(f"smoke: {figures}")
            check(
                terminal(figures), f"every item reached a terminal state ({elapsed:.1f} s after the confirm)"
            )
            check(figures["items"] == ITEMS, f"{ITEMS} items, none lost")
            check(figures["not_one_task"] == 0, "every item has exactly one task")
            check(figures["failed"] > 0, "the sandbox's failing tasks show as failed")

            stats = requests.get(
                f"http://127.0.0.1:{SANDBOX_PORT}/_sandbox/stats?key=sandbox-key", timeout=10
            ).json()
            applied_posts = [
                methods.get("POST", 0)
                for products in stats["applied"].values()
                for versions in products.values()
                for methods in versions.values()
            ]
            check(max(applied_posts, default=0) <= 1, "no task got a second applied POST at the sandbox")
            # Entries without a POST are the follow-up reads of creates that never reached Vionlabs.
            created = sum(1 for posts in applied_posts if posts == 1)
            check(
                created == figures["tasks"] - figures["sync_failed"],
                f"every created task was POSTed once ({created})",
            )

            ready = requests.get(f"{BASE}/readyz", timeout=10)
            check(ready.status_code == 200, "/readyz is 200")
            metrics = requests.get(f"{BASE}/metrics", timeout=10)
            check(metrics.status_code == 200, "/metrics is 200")
            calls = metric_sum(metrics.text, "dashboard_vionlabs_calls_total")
            limited = metric_sum(metrics.text, "dashboard_vionlabs_calls_total", outcome="429")
            errors = metric_sum(metrics.text, "dashboard_vionlabs_calls_total", outcome="5xx")
            check(calls > 0, f"/metrics counts the Vionlabs calls ({calls:.0f})")
            check(limited > 0, f"/metrics counts the 429s ({limited:.0f})")
            check(metric_sum(metrics.text, "dashboard_tasks") > 0, "/metrics reports the tasks by status")

            print(
                "smoke: figures\n"
                f"  items                 {figures['items']}\n"
                f"  time to terminal      {elapsed:.1f} s\n"
                f"  tasks done / failed   {figures['done']} / {figures['failed']}"
                f" (+{figures['sync_failed']} not created: their POST met a 503; shown as failed)\n"
                f"  Vionlabs calls        {calls:.0f} (/metrics), {stats['requests']} at the sandbox\n"
                f"  429s                  {limited:.0f} (/metrics), {stats['faults']['429']} injected\n"
                f"  503s                  {errors:.0f} (/metrics), {stats['faults']['503']} injected\n"
                f"  whole run             {time.monotonic() - begun:.1f} s"
            )
    except (Failed, KeyboardInterrupt) as problem:
        print(f"smoke: FAILED: {problem or 'interrupted'} (logs in {work})", file=sys.stderr)
        return 1
    total = time.monotonic() - begun
    if total > BUDGET:
        print(f"smoke: FAILED: the run took {total:.0f} s, over its {BUDGET:.0f} s budget", file=sys.stderr)
        return 1
    print(f"smoke: passed in {total:.0f} s; every process it started is stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
