"""A terminal a person can read: one line per job outcome, per-item job lines only with LOG_LEVEL=DEBUG, and
no line printed twice (Django's own console handler under DEBUG used to repeat every one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What django.tasks logs around two jobs: a bulk operation and a per-item refresh, each started and ended.
SCRIPT = """
import logging, django
django.setup()
log = logging.getLogger("django.tasks")
for path in ("dashboard.catalog.jobs.run_operation", "dashboard.catalog.jobs.refresh_item"):
    log.info("Task id=%s path=%s state=%s", "t1", path, "RUNNING")
    log.info("Task id=%s path=%s state=%s", "t1", path, "SUCCESSFUL")
log.error("Task id=%s path=%s state=%s", "t2", "dashboard.catalog.jobs.refresh_item", "FAILED")
logging.getLogger("django.request").warning("Not Found: /nope")
"""


def run(level: str) -> list[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "dashboard.settings", "DEBUG": "true", "LOG_LEVEL": level}
    env.pop("LOG_FORMAT", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


def test_one_line_per_job_outcome_and_per_item_jobs_only_when_they_fail():
    lines = run("INFO")
    assert len(lines) == 3, lines
    assert "run_operation state=SUCCESSFUL" in lines[0]
    assert "refresh_item state=FAILED" in lines[1]
    assert "Not Found: /nope" in lines[2]
    assert not any("RUNNING" in line for line in lines)


@pytest.mark.parametrize("level", ["DEBUG"])
def test_debug_shows_every_job_line_once(level):
    lines = [line for line in run(level) if "django.tasks" in line]
    assert len(lines) == 5, lines
    assert sum("refresh_item state=SUCCESSFUL" in line for line in lines) == 1
