"""The Vionlabs webhook receiver: secret in constant time, answers at once, one refresh per delivery."""

from __future__ import annotations

import json
import logging

import pytest
from django.test import Client
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from dashboard.catalog.jobs import refresh_item
from dashboard.catalog.models import CatalogItem, EventSource, ProductTask, TaskEvent, WebhookDelivery

SECRET = "hook-secret-for-tests"
URL = "/webhooks/vionlabs/"
PAYLOAD = {
    "inventory_id": "tt0111161/4k",
    "product": "adbreaks",
    "version": "1.0.1",
    "type": "task.completed",
    "timestamp": "2026-11-28T12:00:00+00:00",
}

pytestmark = pytest.mark.django_db


@pytest.fixture
def hook(settings):
    settings.VIONLABS_WEBHOOK_SECRET = SECRET
    # CSRF is enforced as in production: the endpoint must be exempt, not accidentally unchecked.
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def item():
    return CatalogItem.objects.create(inventory_id=PAYLOAD["inventory_id"], title="The Shawshank Redemption")


def post(client, payload=PAYLOAD, secret=SECRET, body=None):
    headers = {"x-api-key": secret} if secret is not None else {}
    data = body if body is not None else json.dumps(payload)
    return client.post(URL, data=data, content_type="application/json", headers=headers)


def jobs():
    return DBTaskResult.objects.filter(task_path=refresh_item.module_path)


def test_url_name_matches_the_contract():
    assert reverse("catalog:webhook-vionlabs") == URL


def test_known_item_gets_202_and_one_refresh_job_with_ids_only(
    hook, item, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(hook)
    assert response.status_code == 202
    assert response.json()["status"] == "refresh enqueued"
    # Ids only, and the request's id so the job's log lines can be traced back to it.
    request_id = response["X-Request-ID"]
    assert [job.args_kwargs for job in jobs()] == [
        {"args": [item.pk, "webhook"], "kwargs": {"request_id": request_id}}
    ]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.item, delivery.refresh_enqueued, delivery.kind) == (item, True, "task.completed")


def test_wrong_or_missing_secret_gets_403_and_enqueues_nothing(
    hook, item, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        wrong = post(hook, secret="not-" + SECRET)
        missing = post(hook, secret=None)
        prefix = post(hook, secret=SECRET[:-1])
    assert (wrong.status_code, missing.status_code, prefix.status_code) == (403, 403, 403)
    assert SECRET not in wrong.content.decode()
    assert not jobs().exists()
    assert not WebhookDelivery.objects.exists()


def test_endpoint_is_off_while_no_secret_is_configured(settings, item, django_capture_on_commit_callbacks):
    settings.VIONLABS_WEBHOOK_SECRET = ""
    with django_capture_on_commit_callbacks(execute=True):
        response = post(Client(), secret="")
    assert response.status_code == 404
    assert not jobs().exists()


def test_unknown_item_gets_202_and_a_log_line_and_no_job(hook, caplog, django_capture_on_commit_callbacks):
    with (
        caplog.at_level(logging.WARNING, logger="dashboard.catalog.views.webhook"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = post(hook, {**PAYLOAD, "inventory_id": "never-imported"})
    assert response.status_code == 202
    assert response.json() == {"status": "unknown item"}
    assert "unknown item 'never-imported'" in caplog.text
    assert not jobs().exists()


def test_duplicate_delivery_causes_one_refresh(hook, item, use_sandbox, django_capture_on_commit_callbacks):
    use_sandbox.state.create(
        (item.inventory_id, "adbreaks", "1.0.1"), priority="low", pending_seconds=0, processing_seconds=0
    )
    task = ProductTask.objects.create(item=item, product="adbreaks", version="1.0.1", status="processing")
    with django_capture_on_commit_callbacks(execute=True):
        first = post(hook)
        second = post(hook)
        third = post(hook)
    assert first.status_code == second.status_code == third.status_code == 202
    assert second.json() == {"status": "duplicate"}
    assert jobs().count() == 1
    assert WebhookDelivery.objects.get().duplicates == 2

    for job in jobs():
        refresh_item.call(*job.task_result.args)
    # Status re-read from Vionlabs (the payload says nothing of success or failure).
    assert use_sandbox.item_requests(item.inventory_id) == 1
    task.refresh_from_db()
    assert task.status == "done"
    event = TaskEvent.objects.get(task=task)
    assert (event.source, event.status_before, event.status_after) == (
        EventSource.WEBHOOK,
        "processing",
        "done",
    )


def test_late_delivery_only_rereads_the_status(hook, item, use_sandbox, django_capture_on_commit_callbacks):
    use_sandbox.state.create(
        (item.inventory_id, "adbreaks", "1.0.1"), priority="low", pending_seconds=0, processing_seconds=0
    )
    task = ProductTask.objects.create(item=item, product="adbreaks", version="1.0.1", status="done")
    with django_capture_on_commit_callbacks(execute=True):
        response = post(hook, {**PAYLOAD, "timestamp": "2020-01-01T00:00:00+00:00"})
    assert response.status_code == 202
    for job in jobs():
        refresh_item.call(*job.task_result.args)
    task.refresh_from_db()
    assert task.status == "done"
    assert not TaskEvent.objects.filter(task=task).exists()  # nothing changed, nothing to record


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({**PAYLOAD, "inventory_id": ""}), "`inventory_id` is required"),
        (json.dumps({k: v for k, v in PAYLOAD.items() if k != "version"}), "`version` is required"),
        (json.dumps({**PAYLOAD, "product": "telepathy"}), "not a known Vionlabs product"),
        (json.dumps({**PAYLOAD, "timestamp": {"at": 1}}), "`timestamp` must be a string or a number"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_payload_gets_400_with_a_clear_message(
    hook, item, body, message, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(hook, body=body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert not jobs().exists()


def test_only_post_is_accepted(hook):
    assert hook.get(URL, headers={"x-api-key": SECRET}).status_code == 405
