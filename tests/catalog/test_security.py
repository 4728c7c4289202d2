"""Security headers and the rules that keep the strict CSP true: no inline script, style or handler anywhere."""

from __future__ import annotations

import os
import re
import secrets
import string
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from tests.factories import add_items, add_series

ROOT = Path(__file__).resolve().parents[2]
INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "inline <script>"),
    (re.compile(r"<style\b", re.I), "<style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "on* event handler attribute"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
    (re.compile(r"\shx-on[:-]", re.I), "hx-on (evaluated code)"),
    (re.compile(r"(hx-vals|hx-vars)\s*=\s*['\"]\s*js:", re.I), "evaluated hx-vals"),
]


def inline_violations(html: str) -> list[str]:
    return [f"{label}: {m.group(0)!r}" for pattern, label in INLINE for m in pattern.finditer(html)]


def pages(client, items, tasks, series) -> dict[str, str]:
    htmx = {"HX-Request": "true"}
    urls = {
        "overview": reverse("catalog:overview"),
        "items": reverse("catalog:item-list"),
        "items-fragment": reverse("catalog:item-list") + "?q=item",
        "children": reverse("catalog:item-children", args=[series.pk]),
        "item": reverse("catalog:item-detail", args=[items[1].pk]),
        "tasks": reverse("catalog:task-list"),
        "poll": reverse("catalog:poll") + f"?since=0&items={items[0].pk}&tasks={tasks[1].pk}",
    }
    result = {name: client.get(url, headers=htmx if "fragment" in name else {}) for name, url in urls.items()}
    return result


@pytest.fixture
def rendered(operator_client, products):
    items, tasks = add_items(4)
    series = add_series()
    return pages(operator_client, items, tasks, series)


def test_responses_carry_a_strict_csp(client, rendered):
    for name, response in [*rendered.items(), ("login", client.get(reverse("login")))]:
        csp = response["Content-Security-Policy"]
        directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
        assert directives["object-src"] == ["'none'"], name
        assert directives["base-uri"] == ["'none'"], name
        assert directives["frame-ancestors"] == ["'none'"], name
        assert directives["script-src"] == ["'self'"], name
        assert directives["style-src"] == ["'self'"], name
        assert "unsafe" not in csp, name


def test_pages_and_fragments_have_no_inline_script_or_style(client, rendered):
    for name, response in [*rendered.items(), ("login", client.get(reverse("login")))]:
        assert response.status_code == 200, name
        assert inline_violations(response.content.decode()) == [], name


def test_templates_have_no_inline_script_or_style():
    """Every template of the project, including pages not rendered above (and other people's)."""
    found = {}
    for path in sorted((ROOT / "templates").rglob("*.html")):
        violations = inline_violations(path.read_text())
        if violations:
            found[str(path.relative_to(ROOT))] = violations
    assert found == {}


def test_the_inline_check_catches_what_it_should():
    bad = '<script>alert(1)</script><div style="x" onclick="y"><a href="javascript:z">'
    assert len(inline_violations(bad)) == 4
    assert inline_violations('<script src="/static/x.js" defer></script>') == []


def test_htmx_is_configured_without_eval_or_inline_styles(client):
    html = client.get(reverse("login")).content.decode()
    assert (
        '<meta name="htmx-config" content=\'{"allowEval": false, "includeIndicatorStyles": false}\'>' in html
    )
    assert re.search(r'<script src="/static/django_htmx/htmx-2(\.min)?\.js"', html)
    css = (ROOT / "static" / "css" / "dashboard.css").read_text()
    assert ".htmx-indicator" in css
    assert "prefers-color-scheme: dark" in css
    assert ":focus-visible" in css


def test_body_carries_the_csrf_header_for_htmx(operator_client, products):
    html = operator_client.get(reverse("catalog:overview")).content.decode()
    assert re.search(r"<body hx-headers='\{\"X-CSRFToken\": \"[A-Za-z0-9]+\"\}'>", html)


def test_an_error_message_holding_the_key_is_redacted_on_the_page(
    operator_client, products, settings, monkeypatch
):
    """The client never puts the key in a message; the view's redaction is the second lock on that door."""
    from dashboard.catalog import services
    from dashboard.vionlabs.errors import VionlabsUnavailable

    settings.VIONLABS_API_KEY = "the-secret-key-0123456789"

    def leaky(**kwargs):
        raise VionlabsUnavailable("GET https://v.test/tasks?key=the-secret-key-0123456789 timed out")

    monkeypatch.setattr(services, "task_refresh", leaky)
    _, tasks = add_items(2)
    response = operator_client.post(
        reverse("catalog:task-refresh", args=[tasks[1].pk]), headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "the-secret-key-0123456789" not in html
    assert "key=[redacted] timed out" in html


def test_production_settings_pass_the_deploy_check():
    alphabet = string.ascii_letters + string.digits + "!@%^*-_=+"
    env = {
        key: value
        for key, value in os.environ.items()
        # The test run's own relaxations (tests/settings.py puts them in the environment) must not leak in.
        if not key.startswith(("SECURE_", "SESSION_", "CSRF_", "DJANGO_", "DATABASE_", "TEST_DATABASE"))
        and key not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"}
    }
    env.update(
        DEBUG="false",
        SECRET_KEY="".join(secrets.choice(alphabet) for _ in range(50)),
        ALLOWED_HOSTS="example.com",
        DJANGO_SETTINGS_MODULE="dashboard.settings",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_test_settings_are_not_what_the_deploy_check_saw():
    # Guards the test above: it would prove nothing if it ran with the test suite's relaxed settings.
    assert django_settings.SECURE_SSL_REDIRECT is False
