"""An API key that Vionlabs echoes back URL-encoded (in an error or a `_links` href) never shows on a rendered
page, with DEBUG off as in production: the overview, the task list, the item page, the poll and the admin
(issue 9, item 1). The answer goes through the real service, so what is stored is what the pages read."""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus

import pytest
import responses

from dashboard.catalog import services
from dashboard.catalog.models import ProductTask, TaskEvent
from dashboard.vionlabs.redaction import REDACTED, key_forms
from tests.factories import make_item

BASE = "https://vionlabs.test"
KEY = "sk/odd key+&=%?#'\"\\x-4711"


def _encodings(key: str) -> dict[str, str]:
    return {
        "quote": quote(key, safe=""),
        "quote_plus": quote_plus(key),
        "lowercase-hex": re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(key, safe="")),
        "path": quote(key),  # `/` left as is, as in a URL path
    }


@pytest.fixture(params=list(_encodings(KEY)))
def leaked_task(request, settings, products):
    """A failed task whose error, links and event carry the key in one encoding, as Vionlabs sent them."""
    settings.DEBUG = False
    settings.VIONLABS_API_URL = BASE
    settings.VIONLABS_API_KEY = KEY
    settings.VIONLABS_MAX_RETRIES = 0
    encoded = _encodings(KEY)[request.param]
    item = make_item("tt-leak", "Leaky")
    body = {
        "status": "failed",
        "error": f"could not fetch https://cdn.test/{encoded}/video.mp4 (key {encoded})",
        "_links": {"result": {"href": f"{BASE}/results/{encoded}/1", "method": "GET"}},
    }
    with responses.RequestsMock() as mock:
        mock.post(re.compile(re.escape(f"{BASE}/tasks/catalog-item/")), json=body)
        task = services.task_create(item=item, product="adbreaks", version="1.0.1")
    return task


def _assert_no_key(name: str, html: str) -> None:
    found = [form for form in key_forms(KEY) if form in html]
    assert not found, f"{name} shows the key as {found}"


def test_no_page_shows_an_encoded_key_vionlabs_echoed(client, operator, leaked_task):
    operator.is_staff = operator.is_superuser = True
    operator.save()
    client.force_login(operator)
    task = leaked_task
    event = TaskEvent.objects.filter(task=task).latest("pk")
    pages = {
        "overview": "/",
        "task list": "/tasks/",
        "failed tasks": "/tasks/?status=failed",
        "item page": f"/items/{task.item_id}/",
        "catalog": "/items/",
        "poll (item rows)": f"/poll/?items={task.item_id}&tasks={task.pk}&rows=item&since=0",
        "poll (task rows)": f"/poll/?tasks={task.pk}&rows=tasks&since=0",
        "admin task list": "/admin/catalog/producttask/",
        "admin task": f"/admin/catalog/producttask/{task.pk}/change/",
        "admin item": f"/admin/catalog/catalogitem/{task.item_id}/change/",
        "admin events": "/admin/catalog/taskevent/",
        "admin event": f"/admin/catalog/taskevent/{event.pk}/change/",
    }
    shown_redacted = []
    for name, path in pages.items():
        response = client.get(path)
        assert response.status_code == 200, (name, response.status_code)
        html = response.content.decode()
        _assert_no_key(name, html)
        if REDACTED in html:
            shown_redacted.append(name)
    # The error is really on these pages (redacted), so the absence above is not for want of showing it.
    assert {"task list", "item page", "admin task"} <= set(shown_redacted), shown_redacted


def test_the_stored_error_is_redacted_where_the_pages_read_it(leaked_task):
    task = ProductTask.objects.get(pk=leaked_task.pk)
    assert REDACTED in task.error
    _assert_no_key("stored error", task.error + str(task.links))
