"""Locust users for `scripts/bench_load.py`: logged-in operators polling the live badges of a page of items.

Each user logs in once through /login/ (CSRF token from the form's cookie), then waits until every user has
logged in: the statistics are reset at that moment, so logins (slow on purpose: password hashing) are not mixed
into the poll figures. From then on each user polls `/poll/?since=<now>&items=<50 ids>` (what the catalog
page's poll element asks) every BENCH_WAIT seconds (0: flat out) for BENCH_SECONDS, and the run ends.

Read by locust only; configured through the environment by bench_load.py.
"""

from __future__ import annotations

import itertools
import json
import os
import time

import gevent
from gevent.event import Event
from locust import HttpUser, constant, events, task

USERS = int(os.environ["BENCH_USERS"])
SECONDS = float(os.environ["BENCH_SECONDS"])
WAIT = float(os.environ["BENCH_WAIT"])
POLL_PATH = os.environ["BENCH_POLL_PATH"]
PASSWORD = os.environ["BENCH_PASSWORD"]
USERNAME = os.environ.get("BENCH_USERNAME", "bench-operator-{:03d}")
OUT = os.environ["BENCH_OUT"]

_numbers = itertools.count()
_ready = Event()
_state = {"logged_in": 0, "login_failures": 0, "started": 0.0, "measured": 0.0, "written": False}


class Operator(HttpUser):
    wait_time = constant(WAIT)

    def on_start(self) -> None:
        username = USERNAME.format(next(_numbers))
        self.client.get("/login/", name="login form")
        token = self.client.cookies.get("csrftoken", "")
        with self.client.post(
            "/login/",
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
            name="login",
            allow_redirects=False,
            catch_response=True,
        ) as answer:
            if answer.status_code != 302:
                _state["login_failures"] += 1
                answer.failure(f"login of {username} answered {answer.status_code}, not a redirect")
        _state["logged_in"] += 1
        if _state["logged_in"] == USERS:
            self.environment.runner.stats.reset_all()
            _state["started"] = time.monotonic()
            _ready.set()
            gevent.spawn_later(SECONDS, self._finish)
        _ready.wait()
        # The wait for the last login outlasts gunicorn's keep-alive (2 s): start polling on a fresh
        # connection, as a browser retrying on a closed keep-alive socket would, not on one the server dropped.
        self.client.close()

    def _finish(self) -> None:
        # The figures are taken before quitting: polls cut off by the quit are not errors of the server.
        _state["measured"] = time.monotonic() - _state["started"]
        _write_summary(self.environment)
        self.environment.runner.quit()

    @task
    def poll(self) -> None:
        with self.client.get(
            f"{POLL_PATH}&since={time.time():.6f}", name="poll", allow_redirects=False, catch_response=True
        ) as answer:
            if answer.status_code == 0:
                answer.failure(f"no answer: {type(answer.error).__name__}: {answer.error}")
            elif answer.status_code != 200:
                answer.failure(f"HTTP {answer.status_code}")


@events.quitting.add_listener
def _on_quitting(environment, **_kwargs) -> None:
    # A run that ended before every user logged in (the time limit) still leaves its figures.
    if not _state["written"]:
        _write_summary(environment)


def _write_summary(environment) -> None:
    _state["written"] = True
    entry = environment.stats.get("poll", "GET")
    summary = {
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "p50": entry.get_response_time_percentile(0.5),
        "p90": entry.get_response_time_percentile(0.9),
        "p99": entry.get_response_time_percentile(0.99),
        "max": entry.max_response_time,
        "seconds": _state["measured"],
        "logged_in": _state["logged_in"],
        "login_failures": _state["login_failures"],
        "errors": {str(error.error): error.occurrences for error in environment.stats.errors.values()},
    }
    with open(OUT, "w", encoding="utf-8") as out:
        json.dump(summary, out)
