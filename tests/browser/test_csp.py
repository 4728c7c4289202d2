"""The CSP watch itself: a test that could never see a violation would prove nothing about the pages."""

from __future__ import annotations

import pytest

from .conftest import CSP_TAG, login_as

pytestmark = pytest.mark.browser


def test_inline_script_is_blocked_and_reported(page, watch, live_server, operator):
    login_as(page.context, live_server, operator)
    response = page.goto("/")
    assert "script-src 'self'" in response.headers["content-security-policy"]

    page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.inlineRan = true";
          document.head.append(script);
        }"""
    )

    assert page.evaluate("window.inlineRan === undefined")
    # The event reaches Python through the console asynchronously.
    for _ in range(40):
        if watch.csp_violations:
            break
        page.wait_for_timeout(50)
    assert any(CSP_TAG in line and "script-src" in line for line in watch.csp_violations), watch.console
    # Provoked on purpose: clear it so that the teardown check, which fails on any violation, stays quiet.
    watch.csp_violations.clear()
