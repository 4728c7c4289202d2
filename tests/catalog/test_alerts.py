"""Alert digests: what goes in, by mail and webhook, the interval, once per event, and on the overview."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
import responses
from django.core import mail
from django.core.management import call_command
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from dashboard.catalog import alerts
from dashboard.catalog.models import AlertCursor, CatalogItem, TaskEvent
from dashboard.catalog.services import HttpInsideTransaction
from tests.factories import make_item, make_task

HOOK = "https://hooks.example.test/services/T0/B0/secret-path"
KEY = "alert-test-vionlabs-key-123"


@pytest.fixture
def alert_settings(settings):
    settings.ALERT_EMAILS = ["ops@example.test"]
    settings.ALERT_WEBHOOK_URL = ""
    settings.ALERT_INTERVAL = 900
    settings.SITE_URL = "https://dash.example.test"
    settings.VIONLABS_API_KEY = KEY
    return settings


def fail(inventory_id: str, *, product: str = "adbreaks", error: str = "Video could not be decoded"):
    task = make_task(make_item(inventory_id), product=product, status="failed", error=error)
    TaskEvent.objects.create(
        task=task, action="refresh", status_before="processing", status_after="failed", error=error
    )
    return task


def started(now):
    """The first run only sets the cursor: history from before alerts were configured is not news."""
    assert alerts.send_digest_if_due(now) is None
    return now


@pytest.mark.django_db
def test_the_first_run_reports_nothing_old(alert_settings):
    fail("old-1")
    assert alerts.send_digest_if_due() is None
    assert mail.outbox == []
    assert AlertCursor.objects.get().last_event_id == TaskEvent.objects.get().pk


@pytest.mark.django_db
def test_new_failures_are_mailed_per_product_with_links(alert_settings):
    now = started(timezone.now())
    for n in range(7):
        fail(f"tt{n}")
    fail("mk1", product="markers")
    TaskEvent.objects.create(task=make_task(make_item("ok")), action="refresh", status_after="done")
    digest = alerts.send_digest_if_due(now + dt.timedelta(seconds=1))
    assert digest is not None
    assert (digest.failed, digest.stuck) == (8, 0)
    [message] = mail.outbox
    assert message.to == ["ops@example.test"]
    assert message.subject == "Vionlabs dashboard: 8 new failure(s), 0 newly stuck task(s)"
    assert "adbreaks: 7 failed, 0 stuck" in message.body
    assert "markers: 1 failed, 0 stuck" in message.body
    item = CatalogItem.objects.get(inventory_id="tt0")
    assert (
        f"Failed: tt0 (Video could not be decoded) https://dash.example.test/items/{item.pk}/" in message.body
    )
    assert "tt5" not in message.body
    assert "… and 2 more failed" in message.body


@pytest.mark.django_db
def test_newly_stuck_tasks_are_reported_once(alert_settings, products):
    now = started(timezone.now())
    # Past the 6-hour default threshold only after the cursor's moment: newly stuck.
    make_task(make_item("slow"), status="processing", requested_at=now - dt.timedelta(hours=6, minutes=-5))
    # Already stuck before the cursor: not news.
    make_task(make_item("ancient"), status="processing", requested_at=now - dt.timedelta(days=2))
    later = now + dt.timedelta(minutes=20)
    digest = alerts.send_digest_if_due(later)
    assert digest is not None
    assert (digest.failed, digest.stuck) == (0, 1)
    assert "Stuck: slow (processing)" in mail.outbox[0].body
    assert "ancient" not in mail.outbox[0].body
    assert alerts.send_digest_if_due(later + dt.timedelta(hours=1)) is None
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_nothing_new_sends_nothing(alert_settings):
    now = started(timezone.now())
    assert alerts.send_digest_if_due(now + dt.timedelta(hours=1)) is None
    assert mail.outbox == []
    assert AlertCursor.objects.get().last_sent_at is None


@pytest.mark.django_db
def test_at_most_one_digest_per_interval_and_no_event_twice(alert_settings):
    now = started(timezone.now())
    fail("a")
    assert alerts.send_digest_if_due(now + dt.timedelta(seconds=1)) is not None
    fail("b")
    # Within the interval: held back, and not lost.
    assert alerts.send_digest_if_due(now + dt.timedelta(minutes=5)) is None
    digest = alerts.send_digest_if_due(now + dt.timedelta(minutes=16))
    assert digest is not None
    assert [e.inventory_id for s in digest.sections for e in s.failed_items] == ["b"]
    assert alerts.send_digest_if_due(now + dt.timedelta(minutes=40)) is None
    assert len(mail.outbox) == 2


@pytest.mark.django_db
def test_two_scheduler_cycles_send_one_digest(alert_settings, settings):
    settings.SYNC_REQUESTS_PER_MINUTE = 600
    call_command("sync_tasks", verbosity=0)
    fail("a")
    call_command("sync_tasks", verbosity=0)
    call_command("sync_tasks", verbosity=0)
    assert len(mail.outbox) == 1


@pytest.mark.django_db
@responses.activate
def test_the_webhook_gets_slack_compatible_json_without_the_key(alert_settings):
    alert_settings.ALERT_EMAILS = []
    alert_settings.ALERT_WEBHOOK_URL = HOOK
    alert_settings.ALERT_WEBHOOK_TIMEOUT = 3
    hook = responses.post(HOOK, status=200)
    now = started(timezone.now())
    fail("a", error=f"upstream said key={KEY} was bad {KEY}")
    alerts.send_digest_if_due(now + dt.timedelta(seconds=1))
    assert hook.call_count == 1
    payload = json.loads(hook.calls[0].request.body)
    assert payload["text"].startswith("Vionlabs dashboard: 1 new failure(s)")
    assert payload["products"]["adbreaks"]["failed_items"] == ["a"]
    assert KEY not in hook.calls[0].request.body.decode()
    assert hook.calls[0].request.req_kwargs["timeout"] == 3
    cursor = AlertCursor.objects.get()
    assert cursor.last_sent_to == "webhook (hooks.example.test)"
    assert cursor.last_error == ""


@pytest.mark.django_db
@responses.activate
def test_a_failing_webhook_is_noted_without_its_url_and_the_mail_still_goes(alert_settings, caplog):
    alert_settings.ALERT_WEBHOOK_URL = HOOK
    responses.post(HOOK, status=500)
    now = started(timezone.now())
    fail("a")
    alerts.send_digest_if_due(now + dt.timedelta(seconds=1))
    assert len(mail.outbox) == 1
    assert AlertCursor.objects.get().last_error == "webhook: HTTP 500"
    assert "secret-path" not in caplog.text


@pytest.mark.django_db
def test_the_digest_is_not_sent_inside_a_transaction(alert_settings):
    digest = alerts.Digest([alerts.Section("adbreaks", failed=1)])
    with pytest.raises(HttpInsideTransaction), transaction.atomic():
        alerts.deliver(digest)


@pytest.mark.django_db
def test_the_overview_says_when_and_where_the_last_alert_went(alert_settings, viewer_client):
    now = started(timezone.now())
    page = viewer_client.get(reverse("catalog:overview")).content.decode()
    assert "no digest sent yet" in page
    fail("a")
    alerts.send_digest_if_due(now + dt.timedelta(seconds=1))
    page = viewer_client.get(reverse("catalog:overview")).content.decode()
    assert "last digest sent" in page
    assert "to ops@example.test: Vionlabs dashboard: 1 new failure(s)" in page


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_schedulers_send_one_digest(alert_settings):
    now = started(timezone.now())
    fail("a")
    barrier = threading.Barrier(4)
    sent = []

    def scheduler():
        try:
            barrier.wait()
            sent.append(alerts.send_digest_if_due(now + dt.timedelta(seconds=1)))
        finally:
            connection.close()

    threads = [threading.Thread(target=scheduler) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([digest for digest in sent if digest is not None]) == 1
    assert len(mail.outbox) == 1
