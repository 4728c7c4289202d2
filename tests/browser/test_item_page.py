"""What an operator does on an item page, against the live sandbox: create and watch, deactivate, read a
failure, and Vionlabs' 422 shown where the action was taken."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from dashboard.catalog import services
from dashboard.catalog.models import CatalogItem, ProductTask
from dashboard.sandbox.state import FAILURE_ERRORS

from .conftest import login_as, screenshot

pytestmark = pytest.mark.browser


def open_item(page, live_server, user, item):
    login_as(page.context, live_server, user)
    page.goto(f"/items/{item.pk}/")
    # Survives htmx swaps, not a page load: proves later that nothing reloaded the page.
    page.evaluate("window.sameDocument = true")


def test_created_task_badge_goes_pending_processing_done_without_reload(
    page, live_server, operator, item, sandbox, background
):
    sandbox.configure(pending_seconds=1.5, processing_seconds=2.5)
    open_item(page, live_server, operator, item)
    form = page.get_by_role("group", name="Create a task")
    expect(form.get_by_label("Version")).to_have_value("1.0.1")  # the product's configured default

    form.get_by_role("button", name="Create task").click()

    expect(page.get_by_role("status").filter(has_text="Requested Ad breaks 1.0.1")).to_be_visible()
    task = ProductTask.objects.get(item=item, product="adbreaks", version="1.0.1")
    badge = page.locator(f"#badge-{task.pk}")
    expect(badge).to_have_text(re.compile(r"pending"))
    background.refresh_item_every(item)
    expect(badge).to_have_text(re.compile(r"processing"))
    expect(badge).to_have_text(re.compile(r"done"))
    screenshot(page, "item-task-done")
    assert page.evaluate("window.sameDocument") is True
    assert sandbox.task_requests("tt0111161/4k", "adbreaks", "1.0.1", "POST") == 1


def test_deactivate_asks_for_confirmation_then_deactivates(page, live_server, operator, item, sandbox):
    sandbox.configure(pending_seconds=60)
    task = services.task_create(item=item, product="adbreaks", version="1.0.1", actor=operator)
    open_item(page, live_server, operator, item)
    dialogs = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name="Deactivate adbreaks 1.0.1").click()

    expect(page.locator(f"#badge-{task.pk}")).to_have_text(re.compile(r"deactivated"))
    assert dialogs == ["Deactivate Ad breaks 1.0.1 for tt0111161/4k at Vionlabs?"]
    assert sandbox.task_requests("tt0111161/4k", "adbreaks", "1.0.1", "DELETE") == 1
    assert page.evaluate("window.sameDocument") is True


def test_dismissing_the_confirmation_deactivates_nothing(page, live_server, operator, item, sandbox):
    sandbox.configure(pending_seconds=60)
    task = services.task_create(item=item, product="adbreaks", version="1.0.1", actor=operator)
    open_item(page, live_server, operator, item)

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Deactivate adbreaks 1.0.1").click()

    expect(page.locator(f"#badge-{task.pk}")).to_have_text(re.compile(r"pending"))
    assert sandbox.task_requests("tt0111161/4k", "adbreaks", "1.0.1", "DELETE") == 0


def test_failed_task_shows_the_error_vionlabs_gave(page, live_server, operator, products, sandbox):
    # "fail" in the inventory id makes the sandbox fail the task; with no pending or processing time it has
    # failed by the first answer.
    sandbox.configure(pending_seconds=0, processing_seconds=0)
    item = CatalogItem.objects.create(inventory_id="tt-fail-0468569", title="The Dark Knight")
    task = services.task_create(item=item, product="adbreaks", version="1.0.1", actor=operator)
    assert task.status == "failed"
    assert task.error in {error.format(inventory_id=item.inventory_id) for error in FAILURE_ERRORS}

    open_item(page, live_server, operator, item)

    row = page.locator(f"#task-{task.pk}")
    expect(row.locator(f"#badge-{task.pk}")).to_have_text(re.compile(r"failed"))
    expect(row.get_by_role("cell", name=task.error)).to_be_visible()
    expect(row.get_by_role("button", name="Retry adbreaks 1.0.1")).to_be_visible()
    screenshot(page, "item-failed")


def test_task_failing_while_the_page_is_open_shows_its_error_and_retry(
    page, live_server, operator, products, sandbox, background
):
    sandbox.configure(pending_seconds=0.5, processing_seconds=0.5)
    item = CatalogItem.objects.create(inventory_id="tt-fail-0468569", title="The Dark Knight")
    task = services.task_create(item=item, product="adbreaks", version="1.0.1", actor=operator)
    open_item(page, live_server, operator, item)

    background.refresh_item_every(item)

    row = page.locator(f"#task-{task.pk}")
    expect(row.locator(f"#badge-{task.pk}")).to_have_text(re.compile(r"failed"))
    task.refresh_from_db()
    # The row is swapped with the badge or not at all: a short wait is enough to tell.
    expect(row.get_by_role("cell", name=task.error)).to_be_visible(timeout=3000)
    expect(row.get_by_role("button", name="Retry adbreaks 1.0.1")).to_be_visible(timeout=1000)
    assert page.evaluate("window.sameDocument") is True


def test_blank_version_is_refused_next_to_the_form_before_anything_is_sent(
    page, live_server, operator, item, sandbox
):
    # Issue 4 pictures Vionlabs' 422 here. A blank version cannot be addressed (it would be an empty path
    # segment) and would leave a row for a task that cannot exist, so the service refuses it before sending;
    # Vionlabs' own 422 answers are shown the same way (tests/catalog/test_actions.py).
    open_item(page, live_server, operator, item)
    form = page.get_by_role("group", name="Create a task")

    form.get_by_label("Version").fill("   ")
    form.get_by_role("button", name="Create task").click()

    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("A version is required")
    screenshot(page, "item-blank-version")
    assert sandbox.stats()["endpoints"].get("POST task", 0) == 0
    assert not ProductTask.objects.filter(item=item).exists()
    assert page.evaluate("window.sameDocument") is True


def test_polling_slows_down_once_nothing_on_the_page_is_in_flight(
    page, live_server, operator, item, sandbox, background, settings
):
    settings.DASHBOARD_IDLE_POLL_INTERVAL = 30
    sandbox.configure(pending_seconds=0.5, processing_seconds=0.5)
    task = services.task_create(item=item, product="adbreaks", version="1.0.1", actor=operator)
    polls = []
    page.on("request", lambda request: polls.append(request.url) if "/poll/" in request.url else None)
    open_item(page, live_server, operator, item)
    background.refresh_item_every(item)

    expect(page.locator(f"#badge-{task.pk}")).to_have_text(re.compile(r"done"))
    expect(page.get_by_text("nothing in flight here, checking every 30 s")).to_be_visible()
    polls_when_done = len(polls)
    page.wait_for_timeout(2500)  # two and a half normal intervals: the idle poll waits 30 s

    assert polls_when_done >= 1
    assert len(polls) == polls_when_done, polls
