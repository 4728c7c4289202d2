"""Settings come from the environment and refuse unsafe production defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def _run_settings(env_overrides: dict[str, str], code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL", "SANDBOX"}}
    env.update(env_overrides)
    env["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = _run_settings({"DEBUG": "false"}, "import django; django.setup()")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_allows_the_development_secret_key():
    result = _run_settings(
        {"DEBUG": "true"},
        "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_vionlabs_settings_come_from_the_environment():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.VIONLABS_API_URL, s.VIONLABS_TIMEOUT, s.VIONLABS_API_KEY == 'k-123')"
    )
    result = _run_settings(
        {
            "SECRET_KEY": "x" * 50,
            "VIONLABS_API_URL": "https://apis.example.test",
            "VIONLABS_API_KEY": "k-123",
            "VIONLABS_TIMEOUT": "4.5",
        },
        code,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["https://apis.example.test", "4.5", "True"]


def test_default_database_is_sqlite_in_wal_mode_with_a_busy_timeout(tmp_path):
    db = tmp_path / "wal.sqlite3"
    code = (
        "import django; django.setup(); from django.db import connection; c = connection.cursor(); "
        "c.execute('PRAGMA journal_mode'); print(c.fetchone()[0]); "
        "c.execute('PRAGMA busy_timeout'); print(c.fetchone()[0])"
    )
    result = _run_settings({"SECRET_KEY": "x" * 50, "DATABASE_URL": f"sqlite:///{db}"}, code)
    assert result.returncode == 0, result.stderr
    mode, timeout = result.stdout.split()
    assert mode == "wal"
    assert int(timeout) >= 5000


@pytest.mark.django_db
def test_suite_runs_on_the_database_it_was_given():
    expected = "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    assert connection.vendor == expected


@pytest.mark.parametrize(
    ("env", "installed"),
    [
        ({"SECRET_KEY": "x" * 50}, False),
        ({"SECRET_KEY": "x" * 50, "SANDBOX": "true"}, True),
        ({"DEBUG": "true"}, True),
        ({"DEBUG": "true", "SANDBOX": "false"}, False),
    ],
)
def test_the_sandbox_app_is_installed_only_where_it_is_used(env, installed):
    code = (
        "import django; django.setup(); from django.apps import apps; "
        "print(apps.is_installed('dashboard.sandbox'))"
    )
    result = _run_settings(env, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(installed)


@pytest.mark.postgres_only(reason="a PostgreSQL session setting")
@pytest.mark.parametrize(("value", "expected"), [(None, "1.1"), ("2", "2"), ("", "4")])
def test_postgresql_sessions_plan_for_ssd_page_costs_unless_told_otherwise(value, expected):
    # With PostgreSQL's default random_page_cost (4), a task page filtered by status walked the primary key
    # backwards past 100,000 rows of other statuses (tests/catalog/test_query_plans.py shows the plan).
    server = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    env = {"SECRET_KEY": "x" * 50, "DATABASE_URL": f"{server}/postgres"}
    if value is not None:
        env["DATABASE_RANDOM_PAGE_COST"] = value
    code = (
        "import django; django.setup(); from django.db import connection; c = connection.cursor(); "
        "c.execute('SHOW random_page_cost'); print(c.fetchone()[0])"
    )
    result = _run_settings(env, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
