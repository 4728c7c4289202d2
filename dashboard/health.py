"""Probes for load balancers and orchestrators: `/healthz` (the process is up) and `/readyz` (the database
answers and every migration is applied; plus the worker's, the scheduler's and Vionlabs' state, for people).

Neither needs a login nor shows a secret. `ProbeMiddleware` answers them (and `/metrics`) before
CommonMiddleware: a load balancer probes by IP, which is not in ALLOWED_HOSTS, and over plain HTTP, which
SecurityMiddleware would redirect (SECURE_REDIRECT_EXEMPT covers the probes too, should the order change).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Max
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from django_tasks_db.models import DBTaskResult

from dashboard import metrics
from dashboard.catalog import sync
from dashboard.catalog.models import SyncBudget

logger = logging.getLogger(__name__)

# Migrations do not un-apply themselves: once the plan is empty this process need not load them again.
_migrations_applied = False


def _age(then: dt.datetime | None, now: dt.datetime) -> float | None:
    return None if then is None else round(max(0.0, (now - then).total_seconds()), 1)


def _iso(then: dt.datetime | None) -> str | None:
    return then.isoformat() if then else None


def _migrations_pending() -> int:
    global _migrations_applied
    if _migrations_applied:
        return 0
    executor = MigrationExecutor(connection)
    pending = len(executor.migration_plan(executor.loader.graph.leaf_nodes()))
    _migrations_applied = pending == 0
    return pending


def _details(now: dt.datetime) -> dict[str, Any]:
    """What a person wants next to "ready": informative only, never what decides 200 or 503."""
    # django-tasks-db keeps no heartbeat row; a worker writes `started_at` when it claims a job. An idle
    # worker writes nothing, so read the age together with the oldest job still waiting.
    last_started = DBTaskResult.objects.aggregate(last=Max("started_at"))["last"]
    oldest_ready = DBTaskResult.objects.ready().order_by("enqueued_at").values_list("enqueued_at", flat=True)
    oldest = oldest_ready.first()
    cycle = SyncBudget.objects.filter(name=sync.BUDGET_NAME).values_list("last_cycle_at", flat=True).first()
    breaker = sync.breaker_status(now)
    return {
        "worker": {
            "last_job_started_at": _iso(last_started),
            "last_job_started_age_seconds": _age(last_started, now),
            "oldest_waiting_job_age_seconds": _age(oldest, now),
        },
        "scheduler": {"last_cycle_at": _iso(cycle), "last_cycle_age_seconds": _age(cycle, now)},
        "vionlabs": {
            "circuit": breaker.state,
            "paused_until": _iso(breaker.paused_until),
            "failing_since": _iso(breaker.failing_since),
        },
    }


@require_safe
@never_cache
@login_not_required
def healthz(request: HttpRequest) -> HttpResponse:
    """200 while the process can answer; touches no database."""
    return JsonResponse({"status": "ok"})


@require_safe
@never_cache
@login_not_required
def readyz(request: HttpRequest) -> HttpResponse:
    """200 when the database answers and no migration is pending, else 503; JSON either way."""
    now = timezone.now()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        pending = _migrations_pending()
        if pending:
            return JsonResponse(
                {"status": "unavailable", "database": "ok", "migrations": f"{pending} pending"}, status=503
            )
        body = {"status": "ok", "database": "ok", "migrations": "applied", **_details(now)}
    except DatabaseError as error:
        # The class only: a driver's message may name the host, the user or the database.
        logger.warning("Readiness check: the database is not usable (%s)", type(error).__name__)
        return JsonResponse({"status": "unavailable", "database": type(error).__name__}, status=503)
    return JsonResponse(body)


PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/metrics": metrics.metrics_view,
}


class ProbeMiddleware:
    """Answers the probe paths directly, before Host validation, sessions, CSRF and login."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = PROBES.get(request.path_info.rstrip("/") or "/")
        if view is None or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        return view(request)
