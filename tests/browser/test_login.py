"""Logging in through the real form, and what an anonymous visitor sees."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .conftest import screenshot

pytestmark = pytest.mark.browser


def test_login_form_logs_in_and_lands_on_the_overview(page, live_server, operator):
    page.goto("/")
    expect(page).to_have_url(f"{live_server.url}/login/?next=/")
    screenshot(page, "login")

    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill("olivia-password-1")
    page.get_by_role("button", name="Log in").click()

    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.get_by_role("heading", level=1)).to_be_visible()


def test_login_form_refuses_a_wrong_password(page, operator):
    page.goto("/login/")
    page.get_by_label("Username").fill("olivia")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()

    expect(page).to_have_url("/login/")
    expect(page.get_by_text("correct username and password")).to_be_visible()
