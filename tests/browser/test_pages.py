"""Every page opens as an operator without a CSP violation or a JS error, carries the strict policy, and is
screenshotted into test-artifacts/screenshots/ for a person to look at."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import login_as, screenshot

pytestmark = pytest.mark.browser


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


def test_keyboard_focus_is_visible(page, live_server, operator, catalog):
    login_as(page.context, live_server, operator)
    page.goto(f"/items/{catalog['item'].pk}/")

    page.keyboard.press("Tab")
    skip_link = page.get_by_role("link", name="Skip to content")
    expect(skip_link).to_be_focused()
    expect(skip_link).to_be_in_viewport()
    for _ in range(6):  # on through the navigation to the page's controls
        page.keyboard.press("Tab")
        outline = page.evaluate(
            "(() => { const s = getComputedStyle(document.activeElement);"
            " return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()"
        )
        label = page.evaluate("document.activeElement.outerHTML.slice(0, 80)")
        assert outline[0] != "none", label
        assert outline[1] >= 2, label
