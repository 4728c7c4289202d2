"""/metrics: only for an allowed address or the bearer token; Vionlabs calls counted by endpoint and outcome."""

from __future__ import annotations

import contextlib
import re

import pytest
import requests
import responses
from prometheus_client import REGISTRY

from dashboard.catalog import client as client_module
from dashboard.catalog.client import get_client, reset_clients
from dashboard.vionlabs import Throttle, VionlabsError

BASE = "http://vionlabs.test"
KEY = "metrics-test-key"
TASK = re.compile(re.escape(f"{BASE}/tasks/catalog-item/tt1/product/adbreaks/version/1.0.1"))

pytestmark = pytest.mark.django_db


@pytest.fixture
def metrics_settings(settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = []
    return settings


def test_nobody_may_read_the_metrics_when_nothing_is_configured(client, metrics_settings):
    assert client.get("/metrics").status_code == 403


def test_an_allowed_address_reads_the_metrics(client, metrics_settings):
    metrics_settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "dashboard_vionlabs_calls_total" in response.content.decode()


def test_an_allowed_network_reads_the_metrics(client, metrics_settings):
    metrics_settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.1").status_code == 403


def test_another_address_is_refused(client, metrics_settings):
    metrics_settings.METRICS_ALLOWED_IPS = ["10.0.0.1", "not-an-address"]
    assert client.get("/metrics").status_code == 403


def test_the_bearer_token_reads_the_metrics(client, metrics_settings):
    metrics_settings.METRICS_TOKEN = "s3cret-token"
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert response.status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic s3cret-token", "s3cret-token"])
def test_a_missing_or_wrong_token_is_401(client, metrics_settings, header):
    metrics_settings.METRICS_TOKEN = "s3cret-token"
    headers = {"Authorization": header} if header else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "s3cret-token" not in response.content.decode()


def test_metrics_answer_a_host_that_is_not_allowed(client, metrics_settings):
    # Prometheus scrapes targets by IP address.
    metrics_settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    assert client.get("/metrics", HTTP_HOST="10.1.2.3").status_code == 200


@pytest.fixture
def api(settings, monkeypatch):
    settings.VIONLABS_API_URL = BASE
    settings.VIONLABS_API_KEY = KEY
    settings.VIONLABS_MAX_RETRIES = 0
    monkeypatch.setattr(client_module, "_throttle", Throttle())
    reset_clients()
    with responses.RequestsMock() as mock:
        yield mock
    reset_clients()


def calls(endpoint: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "dashboard_vionlabs_calls_total", {"endpoint": endpoint, "outcome": outcome}
        )
        or 0.0
    )


def latency_count(endpoint: str) -> float:
    return (
        REGISTRY.get_sample_value("dashboard_vionlabs_call_duration_seconds_count", {"endpoint": endpoint})
        or 0.0
    )


TASK_OK = {"status": "pending", "error": None, "_links": {}}


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ({"status": 200, "json": TASK_OK}, "2xx"),
        ({"status": 404, "json": {"detail": "Not Found"}}, "4xx"),
        ({"status": 429, "headers": {"Retry-After": "1"}}, "429"),
        ({"status": 503}, "5xx"),
        ({"body": requests.ReadTimeout("read timed out")}, "timeout"),
        ({"body": requests.ConnectionError("refused")}, "connection_error"),
    ],
)
def test_each_call_is_counted_by_endpoint_and_outcome(api, answer, outcome):
    api.add(responses.GET, TASK, **answer)
    before, timed_before = calls("task.get", outcome), latency_count("task.get")
    with contextlib.suppress(VionlabsError):
        get_client().get_task("tt1", "adbreaks", "1.0.1")
    assert calls("task.get", outcome) == before + 1
    assert latency_count("task.get") == timed_before + 1


def test_endpoints_are_named_never_paths_or_keys(api):
    api.add(responses.POST, TASK, json=TASK_OK)
    api.add(responses.DELETE, TASK, json=TASK_OK)
    api.add(responses.GET, f"{BASE}/tasks/catalog-item/tt1", json=[])
    client = get_client()
    client.create_task("tt1", "adbreaks", "1.0.1")
    client.deactivate_task("tt1", "adbreaks", "1.0.1")
    client.list_item_tasks("tt1")
    endpoints = {
        sample.labels["endpoint"]
        for metric in REGISTRY.collect()
        if metric.name.startswith("dashboard_vionlabs")
        for sample in metric.samples
    }
    assert {"task.create", "task.deactivate", "item_tasks.list"} <= endpoints
    for endpoint in endpoints:
        assert "/" not in endpoint
        assert "tt1" not in endpoint
        assert KEY not in endpoint
