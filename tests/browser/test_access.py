"""Who may do what, as the browser sees it: a viewer gets no action controls and a 403 when posting anyway,
and an htmx request made after the session ended takes the whole page to the login form."""

from __future__ import annotations

import re

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone
from playwright.sync_api import expect

from dashboard.catalog.models import ProductTask

from .conftest import login_as, screenshot

pytestmark = pytest.mark.browser

ACTION_BUTTONS = re.compile(r"^(Create task|Refresh|Deactivate|Retry)\b")


@pytest.fixture
def done_task(item, operator):
    return ProductTask.objects.create(
        item=item,
        product="adbreaks",
        version="1.0.1",
        status="done",
        requested_by=operator,
        requested_at=timezone.now(),
        last_checked_at=timezone.now(),
    )


@pytest.fixture
def failed_task(item):
    return ProductTask.objects.create(
        item=item, product="markers", version="2", status="failed", error="probe failed: no audio stream"
    )


def test_viewer_sees_no_action_buttons(page, live_server, viewer, item, done_task, failed_task):
    login_as(page.context, live_server, viewer)

    page.goto(f"/items/{item.pk}/")
    expect(page.locator(f"#badge-{done_task.pk}")).to_have_text(re.compile("done"))
    expect(page.locator(f"#badge-{failed_task.pk}")).to_have_text(re.compile("failed"))
    expect(page.get_by_role("button", name=ACTION_BUTTONS)).to_have_count(0)
    expect(page.get_by_role("group", name="Create a task")).to_have_count(0)
    screenshot(page, "item-viewer")

    page.goto("/items/")
    expect(page.get_by_role("link", name=item.inventory_id)).to_be_visible()
    expect(page.get_by_role("button", name=ACTION_BUTTONS)).to_have_count(0)


def test_viewer_posting_an_action_directly_gets_403(page, live_server, viewer, item, done_task, sandbox):
    login_as(page.context, live_server, viewer)
    page.goto(f"/items/{item.pk}/")
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    headers = {"X-CSRFToken": csrf, "Referer": f"{live_server.url}/items/{item.pk}/"}

    posts = {
        "deactivate": page.request.post(f"/tasks/{done_task.pk}/deactivate/", headers=headers),
        "refresh": page.request.post(f"/tasks/{done_task.pk}/refresh/", headers=headers),
        "create": page.request.post(
            f"/items/{item.pk}/tasks/",
            headers=headers,
            form={"product": "markers", "version": "2", "priority": "low"},
        ),
    }

    assert {name: response.status for name, response in posts.items()} == dict.fromkeys(posts, 403)
    # Refused by the permission check, not by CSRF: the token was good.
    assert all("CSRF verification failed" not in response.text() for response in posts.values())
    assert sandbox.stats()["requests"] == 0
    done_task.refresh_from_db()
    assert done_task.status == "done"
    assert not ProductTask.objects.filter(item=item, product="markers").exists()


def test_htmx_request_after_the_session_expired_takes_the_whole_page_to_login(
    page, live_server, operator, item, done_task
):
    login_as(page.context, live_server, operator)
    page.goto(f"/items/{item.pk}/")
    Session.objects.all().delete()  # the session ends on the server, the cookie stays in the browser

    page.get_by_role("button", name="Refresh adbreaks 1.0.1").click()

    expect(page).to_have_url(f"{live_server.url}/login/?next=/items/{item.pk}/")
    expect(page.get_by_role("heading", name="Log in", level=1)).to_be_visible()
    # The login form is the page, not a fragment swapped into the task table.
    expect(page.locator(f"#task-{done_task.pk}")).to_have_count(0)
    expect(page.get_by_label("Username")).to_have_count(1)
