"""Browser tests: Playwright driving Debian's Chromium against pytest-django's live server and the sandbox.

Every page a test opens is watched: console messages, uncaught errors and Content-Security-Policy violations
(reported by the browser as a `securitypolicyviolation` DOM event, which an init script turns into a console
line). A test that leaves any CSP violation or JavaScript error behind fails at teardown.

When Chromium is missing the tests are skipped with the reason and the terminal summary says so in one line;
with REQUIRE_ALL_TESTS=1 (CI) that skip fails the run (tests/conftest.py).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.factories import make_user, rebuild_role_groups

# Playwright's sync API runs an asyncio loop in the test thread; Django's async-safety check would then refuse
# every ORM call the test makes. (Set at import, so for the whole run once browser tests are collected.)
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SKIP_REASON = f"Chromium not found at {CHROMIUM_PATH}: apt-get install chromium (or set CHROMIUM_PATH)"
REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = REPO_ROOT / "test-artifacts" / "screenshots"
# Marks the console line the init script writes for each CSP violation.
CSP_TAG = "[csp-violation]"
# Chromium asks for /favicon.ico by itself on pages that declare no icon (the admin's): the browser's request, not
# the page's, so its 404 is no page error.
BROWSER_OWN_REQUESTS = re.compile(r"Failed to load resource: .*\(\S+/favicon\.ico\)$")
# A laptop screen: the smallest the UI promises to fit.
VIEWPORT = {"width": 1366, "height": 800}
# Long enough for the sandbox's pending → processing → done cycle plus a poll; short enough to fail fast.
EXPECT_TIMEOUT_MS = 10_000

CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP_TAG ${event.effectiveDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile || location.href}:${event.lineNumber} sample=${JSON.stringify(event.sample)}`);
}, true);
""".replace("CSP_TAG", CSP_TAG)


def chromium_available() -> bool:
    return os.access(CHROMIUM_PATH, os.X_OK) or shutil.which(CHROMIUM_PATH) is not None


def pytest_collection_modifyitems(config, items):
    if chromium_available():
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "Chromium not found" in str(report.longrepr)
    ]
    if skipped:
        terminalreporter.write_line(
            f"BROWSER TESTS SKIPPED ({len(skipped)}): {SKIP_REASON}", yellow=True, bold=True
        )


@dataclass
class PageWatch:
    """What the browser said while a test ran: console lines, uncaught errors, CSP violations."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def on_console(self, message) -> None:
        text = message.text
        line = f"{message.type}: {text} ({message.location.get('url', '')})"
        self.console.append(line)
        if CSP_TAG in text or "Content Security Policy" in text:
            self.csp_violations.append(text)
        elif message.type == "error" and not BROWSER_OWN_REQUESTS.search(line):
            self.errors.append(line)

    def on_page_error(self, error) -> None:
        self.errors.append(f"uncaught: {error}")

    def problems(self) -> list[str]:
        return [f"CSP violation: {v}" for v in self.csp_violations] + [f"JS error: {e}" for e in self.errors]


# Package scope: Playwright keeps an asyncio loop "running" in this thread while it is open, which the rest of
# the suite (collected after tests/browser) must not inherit.
@pytest.fixture(scope="package")
def playwright_browser():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_settings(settings, use_sandbox, sandbox, monkeypatch):
    """Point the app at the sandbox, with short task phases and a 1 s poll so live updates show quickly."""
    from dashboard.catalog import client
    from dashboard.vionlabs import Throttle

    settings.DASHBOARD_POLL_INTERVAL = 1
    sandbox.configure(pending_seconds=1.5, processing_seconds=1.5)
    # The process-wide throttle outlives reset_clients(): a 429 provoked by one test would still pause the next.
    client.reset_clients()
    monkeypatch.setattr(client, "_throttle", Throttle())
    yield settings
    client.reset_clients()


@pytest.fixture
def watch():
    return PageWatch()


@pytest.fixture
def context(playwright_browser, live_server, browser_settings, watch):
    context = playwright_browser.new_context(base_url=live_server.url, viewport=VIEWPORT)
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    context.add_init_script(CSP_LISTENER)
    context.on("console", watch.on_console)
    context.on("weberror", lambda web_error: watch.on_page_error(web_error.error))
    yield context
    context.close()
    problems = watch.problems()
    if problems:
        pytest.fail("The browser reported problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def page(context):
    return context.new_page()


class Background:
    """Runs project code in a thread the way a worker process or the scheduler would, next to the live server.

    `every(seconds, fn)` repeats `fn` until the test ends (the scheduler); `once(fn)` runs it one time (a
    worker picking up a job). A failure is kept and fails the test at teardown."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._shared: dict = {}

    def every(self, seconds: float, fn) -> None:
        self._start(fn, seconds)

    def once(self, fn) -> None:
        self._start(fn, None)

    def refresh_item_every(self, item, seconds: float = 0.25) -> None:
        """The scheduler's part for one item: re-read it from Vionlabs through the service the real one uses."""
        from dashboard.catalog import services
        from dashboard.catalog.models import CatalogItem

        self.every(seconds, lambda: services.item_refresh(item=CatalogItem.objects.get(pk=item.pk)))

    def _start(self, fn, interval: float | None) -> None:
        from django.db import connections

        # An in-memory SQLite test database exists only on the test thread's connection: share it, as the live
        # server does (tests/settings.py uses a file, where each thread opens its own connection instead).
        shared = {c.alias: c for c in connections.all() if c.vendor == "sqlite" and c.is_in_memory_db()}
        for connection in shared.values():
            connection.inc_thread_sharing()
        self._shared.update(shared)
        thread = threading.Thread(target=self._run, args=(fn, interval, shared), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _run(self, fn, interval: float | None, shared: dict) -> None:
        from django.db import connections

        for alias, connection in shared.items():
            connections[alias] = connection
        try:
            if interval is None:
                fn()
            else:
                while not self._stop.wait(interval):
                    fn()
        except Exception as error:  # kept for the test's teardown, which then fails
            self.errors.append(error)
        finally:
            if not shared:
                connections.close_all()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        for connection in self._shared.values():
            connection.dec_thread_sharing()


@pytest.fixture
def background(live_server):
    background = Background()
    yield background
    background.stop()
    assert not background.errors, f"background work failed: {background.errors!r}"


def login_as(context, live_server, user) -> None:
    """Give the browser a logged-in session for `user` without going through the form."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/screenshots/ (listed in docs/testing.md)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def operator(django_user_model, live_server):
    rebuild_role_groups()
    return make_user("olivia", role="operator", password="olivia-password-1")


@pytest.fixture
def viewer(django_user_model, live_server):
    rebuild_role_groups()
    return make_user("victor", role="viewer", password="victor-password-1")


@pytest.fixture
def products(live_server):
    """Two enabled products with default versions, as an organisation would configure them."""
    from dashboard.catalog.models import ProductSetting

    return [
        ProductSetting.objects.create(product="adbreaks", default_version="1.0.1", position=0),
        ProductSetting.objects.create(product="markers", default_version="2", position=1),
    ]


@pytest.fixture
def item(products):
    from dashboard.catalog.models import CatalogItem

    return CatalogItem.objects.create(inventory_id="tt0111161/4k", title="The Shawshank Redemption")


@pytest.fixture
def catalog(products, operator):
    """A small catalog in every state the pages distinguish: each status, a failure, a series with episodes."""
    import datetime as dt

    from django.utils import timezone

    from dashboard.catalog.models import (
        CatalogItem,
        EventAction,
        EventSource,
        ItemKind,
        Operation,
        OperationItem,
        OperationItemState,
        OperationKind,
        OperationState,
        ProductTask,
        TaskEvent,
    )

    now = timezone.now()
    rows = [
        ("tt0111161", "The Shawshank Redemption", "done", ""),
        ("tt0068646", "The Godfather", "processing", ""),
        ("tt0071562", "The Godfather Part II", "pending", ""),
        ("tt-fail-0468569", "The Dark Knight", "failed", "probe failed: could not decode video stream"),
        ("tt0050083", "12 Angry Men", "deactivated", ""),
    ]
    for inventory_id, title, status, error in rows:
        item = CatalogItem.objects.create(inventory_id=inventory_id, title=title)
        task = ProductTask.objects.create(
            item=item,
            product="adbreaks",
            version="1.0.1",
            status=status,
            error=error,
            requested_by=operator,
            requested_at=now - dt.timedelta(minutes=40),
            last_checked_at=now - dt.timedelta(minutes=2),
            status_changed_at=now - dt.timedelta(minutes=10),
            links=[{"name": "self", "method": "GET", "href": "https://apis.example.com/tasks/x"}],
        )
        TaskEvent.objects.create(
            task=task,
            actor=operator,
            source=EventSource.USER,
            action=EventAction.CREATE,
            status_after="pending",
            created_at=now - dt.timedelta(minutes=40),
        )
        if status != "pending":
            TaskEvent.objects.create(
                task=task,
                source=EventSource.SYNC,
                action=EventAction.REFRESH,
                status_before="pending",
                status_after=status,
                error=error,
                created_at=now - dt.timedelta(minutes=10),
            )
    series = CatalogItem.objects.create(inventory_id="series-dark", title="Dark", kind=ItemKind.SERIES)
    season = CatalogItem.objects.create(
        inventory_id="series-dark/s01", title="Dark, season 1", kind=ItemKind.SEASON, parent=series
    )
    for n, status in enumerate(["done", "done", "failed"], start=1):
        episode = CatalogItem.objects.create(
            inventory_id=f"series-dark/s01/e{n:02d}",
            title=f"Episode {n}",
            kind=ItemKind.EPISODE,
            parent=season,
        )
        ProductTask.objects.create(item=episode, product="adbreaks", version="1.0.1", status=status)
    operation = Operation.objects.create(
        kind=OperationKind.CREATE,
        state=OperationState.DONE,
        created_by=operator,
        reason="Ad breaks for the new season",
        params={"product": "adbreaks", "version": "1.0.1", "priority": "low"},
        total=3,
        done=2,
        failed=1,
        started_at=now - dt.timedelta(minutes=5),
        finished_at=now - dt.timedelta(minutes=4),
    )
    for episode, state, error in zip(
        CatalogItem.objects.filter(kind=ItemKind.EPISODE).order_by("inventory_id"),
        [OperationItemState.DONE, OperationItemState.DONE, OperationItemState.FAILED],
        ["", "", "Vionlabs rejected the request: path.version: String should have at least 1 character"],
        strict=True,
    ):
        OperationItem.objects.create(
            operation=operation, item=episode, state=state, error=error, finished_at=now
        )
    return {
        "item": CatalogItem.objects.get(inventory_id="tt-fail-0468569"),
        "series": series,
        "operation": operation,
    }
