"""Vionlabs' failures shown where the operator acted, in words to act on, and on the overview's banner."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from dashboard.catalog.models import ProductTask

from .conftest import login_as, screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def done_task(item, operator):
    return ProductTask.objects.create(
        item=item, product="adbreaks", version="1.0.1", status="done", last_checked_at=timezone.now()
    )


@pytest.fixture
def no_retries(settings):
    # Retries are the client's business (tested there); here one answer is enough to show the message.
    settings.VIONLABS_MAX_RETRIES = 0


def test_unreachable_vionlabs_is_reported_in_the_row_and_on_the_overview(
    page, live_server, operator, item, done_task, sandbox, no_retries
):
    sandbox.configure(error_rate=1.0)
    login_as(page.context, live_server, operator)
    page.goto(f"/items/{item.pk}/")

    page.get_by_role("button", name="Refresh adbreaks 1.0.1").click()

    row = page.locator(f"#task-{done_task.pk}")
    expect(row.get_by_role("alert")).to_contain_text("Vionlabs could not be reached")
    expect(row.locator(f"#badge-{done_task.pk}")).to_have_text(re.compile("done"))  # last known status kept
    screenshot(page, "item-unreachable")
    assert sandbox.api_key not in page.content()

    page.goto("/")
    expect(page.get_by_role("alert")).to_contain_text("Vionlabs is not reachable")
    screenshot(page, "overview-unreachable")
    assert sandbox.api_key not in page.content()


def test_rate_limit_says_how_long_to_wait(page, live_server, operator, item, done_task, sandbox, no_retries):
    sandbox.configure(rate_limit_rate=1.0, retry_after=7)
    login_as(page.context, live_server, operator)
    page.goto(f"/items/{item.pk}/")

    page.get_by_role("button", name="Refresh adbreaks 1.0.1").click()

    expect(page.locator(f"#task-{done_task.pk}").get_by_role("alert")).to_contain_text("try again in 7 s")
