"""The admin (superusers only) under the same strict Content-Security-Policy as the dashboard."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .conftest import login_as, screenshot

pytestmark = pytest.mark.browser


def test_admin_pages_open_without_csp_violations(page, live_server, django_user_model, catalog):
    admin = django_user_model.objects.create_superuser(username="ada", password="ada-password-1")
    login_as(page.context, live_server, admin)

    for path, name in [
        ("/admin/", "admin"),
        ("/admin/catalog/catalogitem/", "admin-items"),
        (f"/admin/catalog/catalogitem/{catalog['item'].pk}/change/", "admin-item"),
        ("/admin/catalog/producttask/", "admin-tasks"),
    ]:
        response = page.goto(path)
        assert response.status == 200, f"{path} answered {response.status}"
        expect(page.locator("#content")).to_be_visible()
        screenshot(page, name)
