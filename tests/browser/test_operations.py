"""A bulk operation from the catalog to its result: preview, confirm with a reason, and the detail page's
progress updating in place while a worker runs it against the sandbox."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from dashboard.catalog import operations
from dashboard.catalog.models import CatalogItem, Operation, ProductTask

from .conftest import login_as, screenshot

pytestmark = pytest.mark.browser


def test_confirmed_operation_runs_and_its_progress_updates_in_place(
    page, live_server, operator, products, sandbox, background, settings
):
    # One item at a time, a second each: the run spans the progress poll (every 2 s), so a poll sees it midway.
    settings.BULK_CONCURRENCY = 1
    sandbox.configure(latency=1.0)
    for n in range(1, 4):
        CatalogItem.objects.create(inventory_id=f"bulk-{n:03d}", title=f"Bulk {n}")
    login_as(page.context, live_server, operator)
    page.goto("/items/?q=bulk-")
    bulk = page.get_by_role("group", name="Bulk operation")
    bulk.get_by_label("All 3 matching this filter").check()
    bulk.get_by_label("Action").select_option(label="Create tasks")
    bulk.get_by_label("Product").select_option(label="Ad breaks")
    bulk.get_by_role("button", name="Preview…").click()

    page.get_by_label(re.compile("^Reason")).fill("Ad breaks for the bulk test items")
    page.get_by_role("button", name="Confirm: run over these 3 items").click()

    expect(page).to_have_url(re.compile(r"/operations/\d+/$"))
    progress = page.get_by_role("progressbar", name="Progress")
    expect(progress).to_have_attribute("value", "0")
    page.evaluate("window.sameDocument = true")
    operation = Operation.objects.get()
    assert operation.reason == "Ad breaks for the bulk test items"

    background.once(
        lambda: operations.operation_work(operation_id=operation.pk)
    )  # the worker's part: freeze, run

    expect(progress).to_have_attribute("value", re.compile(r"^[12]$"))
    assert page.evaluate("window.sameDocument") is True  # midway: swapped in place
    expect(page.locator(f"#progress-{operation.pk}")).to_contain_text("Done · 3 of 3 (100%): 3 done")
    expect(progress).to_have_attribute("value", "3")
    assert ProductTask.objects.filter(item__inventory_id__startswith="bulk-", status="pending").count() == 3
    assert [sandbox.task_requests(f"bulk-{n:03d}", "adbreaks", "1.0.1", "POST") for n in (1, 2, 3)] == [
        1,
        1,
        1,
    ]
    screenshot(page, "operation-done")
