"""`make prod` (scripts/run-prod) refuses to start without a reachable PostgreSQL, and says why."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.vionlabs.fakes import closed_port_url

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "run-prod"


def run(database_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "PORT": "8149", "SANDBOX_PORT": "8148"}
    return subprocess.run([SCRIPT], env=env, capture_output=True, text=True, timeout=60)


def test_an_unreachable_postgresql_stops_it_with_a_clear_message():
    port = closed_port_url().rsplit(":", 1)[1]
    done = run(f"postgres://postgres@127.0.0.1:{port}/dashboard")
    assert done.returncode != 0
    assert "make prod needs a reachable PostgreSQL server" in done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert "Dashboard" not in done.stdout  # nothing was started


@pytest.mark.parametrize("url", ["sqlite:///db.sqlite3", "mysql://root@127.0.0.1/dashboard"])
def test_another_database_is_refused(url):
    done = run(url)
    assert done.returncode != 0
    assert "make prod runs on PostgreSQL" in done.stderr
