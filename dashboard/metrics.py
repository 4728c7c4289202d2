"""Prometheus metrics: the definitions, the Vionlabs client's call observer and the `/metrics` view.

With PROMETHEUS_MULTIPROC_DIR set (the Procfile and `make prod` set it) every process — each gunicorn worker,
each `db_worker`, the scheduler — writes its samples to files in that directory and `/metrics` adds them up;
without it (runserver, tests) the process's default registry is used. The directory must be emptied before
the stack starts (`make prod` does; see docs/metrics.md).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Iterator

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dashboard.catalog import gauges, selectors, sync

logger = logging.getLogger(__name__)

VIONLABS_CALLS = Counter(
    "dashboard_vionlabs_calls",
    "HTTP exchanges with Vionlabs (each attempt, retries included), by endpoint and outcome.",
    ["endpoint", "outcome"],
)
VIONLABS_CALL_SECONDS = Histogram(
    "dashboard_vionlabs_call_duration_seconds",
    "Time from sending a request to Vionlabs to having read its answer (or given up), by endpoint.",
    ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def observe_vionlabs_call(method: str, endpoint: str, outcome: str, seconds: float) -> None:
    """The client's `on_call` observer: `endpoint` is a name such as "task.get", never a path or a key."""
    VIONLABS_CALLS.labels(endpoint=endpoint, outcome=outcome).inc()
    VIONLABS_CALL_SECONDS.labels(endpoint=endpoint).observe(seconds)


#: The circuit breaker's states, one gauge each (1 for the current one), so a panel can show it as a state.
CIRCUIT_STATES = ("closed", "half-open", "open")


class StateCollector(Collector):
    """The database's state, read at scrape time (never written by the processes): tasks by product and
    status, the circuit breaker, the job queue, the oldest in-flight task, sync lag and running operations."""

    def collect(self) -> Iterator[Metric]:
        tasks = GaugeMetricFamily(
            "dashboard_tasks",
            "Tasks by product and status (status '' is not answered yet); up to 60 s old.",
            labels=["product", "status"],
        )
        for (product, status), n in sorted(selectors.task_counts().items()):
            tasks.add_metric([product, status], n)
        yield tasks

        breaker = sync.breaker_status()
        circuit = GaugeMetricFamily(
            "dashboard_vionlabs_circuit_state",
            "The scheduler's circuit breaker towards Vionlabs: 1 for the current state.",
            labels=["state"],
        )
        for state in CIRCUIT_STATES:
            circuit.add_metric([state], 1 if breaker.state == state else 0)
        yield circuit

        queue = GaugeMetricFamily(
            "dashboard_jobs", "Background jobs by state (django-tasks-db).", labels=["state"]
        )
        for state, n in gauges.queue_depth().items():
            queue.add_metric([state], n)
        yield queue

        yield GaugeMetricFamily(
            "dashboard_oldest_in_flight_task_age_seconds",
            "How long the longest-waiting in-flight task has been in its current status.",
            value=gauges.oldest_in_flight_age(),
        )
        yield GaugeMetricFamily(
            "dashboard_sync_lag_seconds",
            "How long the most overdue in-flight task has waited past its next scheduled check.",
            value=gauges.sync_lag(),
        )

        progress = GaugeMetricFamily(
            "dashboard_operation_items",
            "Items of each unfinished bulk operation, by outcome (total: the operation's size).",
            labels=["operation", "kind", "outcome"],
        )
        for op in gauges.active_operations():
            for outcome, n in (
                ("total", op.total),
                ("done", op.done),
                ("skipped", op.skipped),
                ("failed", op.failed),
            ):
                progress.add_metric([str(op.pk), op.kind, outcome], n)
        yield progress


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def _address_allowed(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for allowed in settings.METRICS_ALLOWED_IPS:
        try:
            if ip in ipaddress.ip_network(allowed, strict=False):
                return True
        except ValueError:
            logger.warning("METRICS_ALLOWED_IPS holds %r, which is not an address or a network", allowed)
    return False


def _token_matches(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@require_safe
@never_cache
@login_not_required
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus' text format, for an allowed address or the bearer token; 401/403 else."""
    token = str(settings.METRICS_TOKEN or "")
    if not _address_allowed(request.META.get("REMOTE_ADDR", "")):
        if not token:
            return HttpResponse("Forbidden: this address may not read the metrics.\n", status=403)
        if not _token_matches(request, token):
            response = HttpResponse("A valid bearer token is required.\n", status=401)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    state = CollectorRegistry(auto_describe=False)
    state.register(StateCollector())
    body = generate_latest(_registry()) + generate_latest(state)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
