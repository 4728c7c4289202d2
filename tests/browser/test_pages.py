"""Every page opens as an operator without a CSP violation or a JS error, carries the strict policy, and is
screenshotted into test-artifacts/screenshots/ for a person to look at."""

import datetime as dt
import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from dashboard.catalog.models import (
    CatalogItem,
    EventAction,
    EventSource,
    ItemKind,
    Operation,
    OperationItem,
    OperationItemState,
    OperationKind,
    OperationState,
    ProductTask,
    TaskEvent,
)

from .conftest import login_as, screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def catalog(products, operator):
    """A small catalog in every state the pages distinguish: each status, a failure, a series with episodes."""
    now = timezone.now()
    rows = [
        ("tt0111161", "The Shawshank Redemption", "done", ""),
        ("tt0068646", "The Godfather", "processing", ""),
        ("tt0071562", "The Godfather Part II", "pending", ""),
        ("tt-fail-0468569", "The Dark Knight", "failed", "probe failed: could not decode video stream"),
        ("tt0050083", "12 Angry Men", "deactivated", ""),
    ]
    for inventory_id, title, status, error in rows:
        item = CatalogItem.objects.create(inventory_id=inventory_id, title=title)
        task = ProductTask.objects.create(
            item=item,
            product="adbreaks",
            version="1.0.1",
            status=status,
            error=error,
            requested_by=operator,
            requested_at=now - dt.timedelta(minutes=40),
            last_checked_at=now - dt.timedelta(minutes=2),
            status_changed_at=now - dt.timedelta(minutes=10),
            links=[{"name": "self", "method": "GET", "href": "https://apis.example.com/tasks/x"}],
        )
        TaskEvent.objects.create(
            task=task,
            actor=operator,
            source=EventSource.USER,
            action=EventAction.CREATE,
            status_after="pending",
            created_at=now - dt.timedelta(minutes=40),
        )
        if status != "pending":
            TaskEvent.objects.create(
                task=task,
                source=EventSource.SYNC,
                action=EventAction.REFRESH,
                status_before="pending",
                status_after=status,
                error=error,
                created_at=now - dt.timedelta(minutes=10),
            )
    series = CatalogItem.objects.create(inventory_id="series-dark", title="Dark", kind=ItemKind.SERIES)
    season = CatalogItem.objects.create(
        inventory_id="series-dark/s01", title="Dark, season 1", kind=ItemKind.SEASON, parent=series
    )
    for n, status in enumerate(["done", "done", "failed"], start=1):
        episode = CatalogItem.objects.create(
            inventory_id=f"series-dark/s01/e{n:02d}",
            title=f"Episode {n}",
            kind=ItemKind.EPISODE,
            parent=season,
        )
        ProductTask.objects.create(item=episode, product="adbreaks", version="1.0.1", status=status)
    operation = Operation.objects.create(
        kind=OperationKind.CREATE,
        state=OperationState.DONE,
        created_by=operator,
        reason="Ad breaks for the new season",
        params={"product": "adbreaks", "version": "1.0.1", "priority": "low"},
        total=3,
        done=2,
        failed=1,
        started_at=now - dt.timedelta(minutes=5),
        finished_at=now - dt.timedelta(minutes=4),
    )
    for episode, state, error in zip(
        CatalogItem.objects.filter(kind=ItemKind.EPISODE).order_by("inventory_id"),
        [OperationItemState.DONE, OperationItemState.DONE, OperationItemState.FAILED],
        ["", "", "Vionlabs rejected the request: path.version: String should have at least 1 character"],
        strict=True,
    ):
        OperationItem.objects.create(
            operation=operation, item=episode, state=state, error=error, finished_at=now
        )
    return {
        "item": CatalogItem.objects.get(inventory_id="tt-fail-0468569"),
        "series": series,
        "operation": operation,
    }


def open_page(page, path: str, name: str) -> None:
    response = page.goto(path)
    assert response.status == 200, f"{path} answered {response.status}"
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy, policy
    assert "object-src 'none'" in policy, policy
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    screenshot(page, name)


def test_every_page_renders_cleanly_and_is_screenshotted(page, live_server, operator, catalog):
    login_as(page.context, live_server, operator)
    open_page(page, "/", "overview")
    open_page(page, "/items/", "catalog")
    open_page(page, f"/items/{catalog['item'].pk}/", "item")
    open_page(page, f"/items/{catalog['series'].pk}/", "item-series")
    open_page(page, "/tasks/", "tasks")
    open_page(page, "/operations/", "operations")
    open_page(page, f"/operations/{catalog['operation'].pk}/", "operation")


def test_dark_mode_follows_the_system_setting(page, live_server, operator, catalog):
    login_as(page.context, live_server, operator)
    page.emulate_media(color_scheme="dark")

    open_page(page, f"/items/{catalog['item'].pk}/", "item-dark")
    open_page(page, "/", "overview-dark")

    # rgb(r, g, b) of the page background: dark means every channel is low.
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    channels = [int(n) for n in re.findall(r"\d+", background)[:3]]
    assert max(channels) < 80, background
