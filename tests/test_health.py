"""/healthz and /readyz: no login, no secret, no redirect, any Host; 503 when the database is not usable."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from dashboard import health
from dashboard.catalog import sync
from dashboard.catalog.jobs import refresh_item
from dashboard.catalog.models import UpstreamHealth

PROBES = ("/healthz", "/readyz", "/metrics")


def test_healthz_answers_without_touching_the_database(client):
    # No django_db mark: any query (sessions, auth, anything) would raise here.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.django_db
def test_readyz_reports_database_migrations_worker_scheduler_and_circuit(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["migrations"] == "applied"
    assert body["worker"]["last_job_started_at"] is None
    assert body["scheduler"]["last_cycle_at"] is None
    assert body["vionlabs"]["circuit"] == "closed"


@pytest.mark.django_db
def test_readyz_shows_the_last_job_start_and_the_oldest_waiting_job(client):
    now = timezone.now()
    refresh_item.enqueue(1, "sync")
    refresh_item.enqueue(2, "sync")
    started, waiting = DBTaskResult.objects.order_by("enqueued_at")
    DBTaskResult.objects.filter(pk=started.pk).update(
        status="RUNNING", started_at=now - dt.timedelta(seconds=30)
    )
    DBTaskResult.objects.filter(pk=waiting.pk).update(enqueued_at=now - dt.timedelta(seconds=90))

    worker = client.get("/readyz").json()["worker"]

    assert worker["last_job_started_age_seconds"] >= 30
    assert worker["oldest_waiting_job_age_seconds"] >= 90


@pytest.mark.django_db
def test_readyz_shows_the_schedulers_last_cycle(client):
    sync.run_cycle()
    scheduler = client.get("/readyz").json()["scheduler"]
    assert scheduler["last_cycle_at"] is not None
    assert scheduler["last_cycle_age_seconds"] < 60


@pytest.mark.django_db
def test_readyz_shows_an_open_circuit(client):
    UpstreamHealth.objects.create(
        name=sync.UPSTREAM_NAME,
        consecutive_failures=9,
        failing_since=timezone.now(),
        paused_until=timezone.now() + dt.timedelta(minutes=1),
    )
    vionlabs = client.get("/readyz").json()["vionlabs"]
    assert vionlabs["circuit"] == "open"
    assert vionlabs["paused_until"] is not None


@pytest.fixture
def broken_database(transactional_db):
    """The real connection, pointed at a database that cannot be opened (a real failure, no mock)."""
    connection.close()
    saved = dict(connection.settings_dict)
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-directory/secret-db-name.sqlite3"
    else:
        connection.settings_dict["HOST"], connection.settings_dict["PORT"] = "127.0.0.1", "1"
        connection.settings_dict["NAME"] = "secret-db-name"
    yield
    connection.close()
    connection.settings_dict.clear()
    connection.settings_dict.update(saved)


def test_readyz_is_503_when_the_database_cannot_be_reached(client, broken_database):
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == "OperationalError"
    assert "secret-db-name" not in response.content.decode()


def test_healthz_stays_200_when_the_database_cannot_be_reached(client, broken_database):
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_readyz_is_503_while_a_migration_is_pending(client, settings, monkeypatch):
    # A real extra migration, from a package the test adds to the catalog's history.
    settings.MIGRATION_MODULES = {"sandbox": "tests.pending_migrations"}
    monkeypatch.setattr(health, "_migrations_applied", False)  # the module remembers "applied" once seen
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["migrations"] == "1 pending"


@pytest.mark.django_db
@pytest.mark.parametrize("path", PROBES)
def test_probes_are_not_redirected_to_https(client, settings, path):
    settings.SECURE_SSL_REDIRECT = True
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    assert client.get(path).status_code == 200
    # The same setting does redirect the rest of the site.
    assert client.get("/login/").status_code == 301


@pytest.mark.django_db
def test_without_the_exemption_the_probe_would_be_redirected(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = []
    assert client.get("/healthz").status_code == 301


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_a_host_that_is_not_allowed(client, path):
    # Load balancers probe by IP address, which ALLOWED_HOSTS does not list.
    assert client.get(path, HTTP_HOST="10.1.2.3").status_code == 200
    assert client.get("/login/", HTTP_HOST="10.1.2.3").status_code == 400


@pytest.mark.django_db
def test_probes_need_no_login_and_show_no_secret(client, settings):
    settings.VIONLABS_API_KEY = "probe-secret-key"
    settings.SECRET_KEY = "probe-secret-django-key-0123456789-0123456789-0123456789"
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        assert response.status_code == 200
        text = response.content.decode()
        assert "probe-secret" not in text
        json.loads(text)


@pytest.mark.django_db
def test_a_post_to_a_probe_is_refused(client):
    assert client.post("/healthz").status_code == 405
