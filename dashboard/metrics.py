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
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
