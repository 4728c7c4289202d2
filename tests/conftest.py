"""Fixtures shared by the whole suite, and the rule that a CI run fails when a required test did not run.

With REQUIRE_ALL_TESTS=1 (set by .ci/run) every skip must be one that is expected for the database in use
(PostgreSQL-only tests on SQLite); any other skip, a browser test without Chromium for one, fails the run.
"""

from __future__ import annotations

import os

import pytest
from django.db import connection

from dashboard.catalog import counts
from tests.factories import make_products, make_user

EXPECTED_SKIP = "[expected on SQLite]"


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow", action="store_true", help="also run tests marked slow (soak, large imports)"
    )


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--run-slow"):
        slow = [item for item in items if item.get_closest_marker("slow")]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if not item.get_closest_marker("slow")]
    is_postgres = connection.vendor == "postgresql"
    for item in items:
        marker = item.get_closest_marker("postgres_only")
        if marker and not is_postgres:
            why = marker.kwargs.get("reason", "needs PostgreSQL row locks and real concurrent transactions")
            item.add_marker(
                pytest.mark.skip(reason=f"{EXPECTED_SKIP} {why}; CI runs it in its PostgreSQL pass")
            )


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    _report_random_order(terminalreporter, config)
    if os.environ.get("REQUIRE_ALL_TESTS") != "1":
        return
    unexpected = [
        (report.nodeid, _skip_reason(report))
        for report in terminalreporter.stats.get("skipped", [])
        if EXPECTED_SKIP not in _skip_reason(report)
    ]
    passed = len(terminalreporter.stats.get("passed", []))
    if unexpected:
        terminalreporter.section("required tests that did not run", sep="=", red=True, bold=True)
        for nodeid, reason in unexpected:
            terminalreporter.write_line(f"{nodeid}: {reason}")
    if passed == 0:
        terminalreporter.write_line("No test passed: a run that tests nothing is a failed run.", red=True)


def _report_random_order(terminalreporter, config) -> None:
    """Name the seed of a shuffled run last, where it survives `-q` and CI logs: an order-dependent failure
    is then one copy-paste away from running again in the same order."""
    if not config.pluginmanager.hasplugin("randomly") or not config.getoption("randomly_reorganize"):
        return
    seed = config.getoption("randomly_seed")
    terminalreporter.write_line(
        f"Tests ran in random order; repeat it with: -p randomly --randomly-seed={seed}"
    )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("REQUIRE_ALL_TESTS") == "1" and exitstatus == 0:
        # The exit status is settled here; the terminal summary above only explains it.
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        stats = reporter.stats if reporter else {}
        skipped = [r for r in stats.get("skipped", []) if EXPECTED_SKIP not in _skip_reason(r)]
        if skipped or not stats.get("passed"):
            session.exitstatus = 1


@pytest.fixture(autouse=True)
def _forget_upstream_health_memo():
    """services remembers for a second that it found Vionlabs healthy; each test has a new database."""
    from dashboard.catalog import services

    services._healthy_checked_at = 0.0
    yield
    services._healthy_checked_at = 0.0


# -- the Vionlabs sandbox on a real port (integration and browser tests) ---------------------------------------

#: Short enough that a test sees a task through pending → processing → done in under a second.
SANDBOX_TEST_OPTIONS = {"pending_seconds": 0.2, "processing_seconds": 0.4}


@pytest.fixture(autouse=True)
def _consistent_counts_after_a_flush(request):
    """A transactional test starts from the counts of an empty database. Django empties the tables between
    such tests with DELETE on SQLite, the count logs first: the task triggers then log the deletions of the
    previous test's tasks as negative counts (PostgreSQL's TRUNCATE is handled by its own trigger)."""
    marker = request.node.get_closest_marker("django_db")
    transactional = (marker is not None and marker.kwargs.get("transaction")) or bool(
        {"live_server", "transactional_db"} & set(request.fixturenames)
    )
    if transactional:
        request.getfixturevalue("transactional_db")
        counts.recount()


@pytest.fixture(scope="session")
def _sandbox_server():
    from dashboard.sandbox import Sandbox

    server = Sandbox(host="127.0.0.1", port=0, **SANDBOX_TEST_OPTIONS).start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(_sandbox_server):
    """The sandbox with no tasks, zeroed counts and the test options (`.configure(**options)` to change them)."""
    _sandbox_server.reset()
    yield _sandbox_server
    _sandbox_server.reset()


@pytest.fixture
def use_sandbox(settings, sandbox):
    """Point the project's Vionlabs settings at the sandbox."""
    settings.VIONLABS_API_URL = sandbox.url
    settings.VIONLABS_API_KEY = sandbox.api_key
    return sandbox


# --- Users in each role, logged-in clients and the products many tests share ---------------------------


@pytest.fixture
def viewer(db):
    return make_user("victor", role="viewer")


@pytest.fixture
def operator(db):
    return make_user("olivia", role="operator")


@pytest.fixture
def nobody(db):
    """Logged in, but in no group: may see nothing."""
    return make_user("nadia")


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def products(db):
    return make_products()
