"""get_client(): one client per settings, and fail-fast clients for calls made while a person waits."""

from __future__ import annotations

import re

import pytest
import responses
from django.test import RequestFactory

from dashboard.catalog import client as client_module
from dashboard.catalog.client import get_client, interactive_calls, reset_clients
from dashboard.catalog.middleware import InteractiveVionlabsMiddleware
from dashboard.vionlabs import Throttle
from dashboard.vionlabs.errors import VionlabsRateLimited, VionlabsUnavailable

BASE = "http://vionlabs.test"
TASK = re.compile(re.escape(f"{BASE}/tasks/catalog-item/tt1/product/adbreaks/version/1"))


@pytest.fixture
def api(settings, monkeypatch):
    settings.VIONLABS_API_URL = BASE
    settings.VIONLABS_API_KEY = "factory-test-key"
    settings.VIONLABS_MAX_RETRIES = 3
    # A 429 pauses the process-wide throttle; give these tests their own so no other test waits for it.
    monkeypatch.setattr(client_module, "_throttle", Throttle())
    reset_clients()
    with responses.RequestsMock() as mock:
        yield mock
    reset_clients()


def test_same_settings_share_one_client(api):
    assert get_client() is get_client()


def test_changed_settings_get_a_new_client(api, settings):
    first = get_client()
    settings.VIONLABS_TIMEOUT = 3
    assert get_client() is not first


def test_interactive_call_does_not_sleep_through_a_long_retry_after(api):
    api.get(TASK, status=429, headers={"Retry-After": "30"})
    with interactive_calls(), pytest.raises(VionlabsRateLimited) as caught:
        get_client().get_task("tt1", "adbreaks", "1")
    assert len(api.calls) == 1
    assert "try again in 30 s" in str(caught.value)


def test_interactive_call_retries_a_failure_once_at_most(api):
    api.get(TASK, status=503)
    with interactive_calls(), pytest.raises(VionlabsUnavailable):
        get_client().get_task("tt1", "adbreaks", "1")
    assert len(api.calls) == 2


def test_background_call_keeps_the_full_retry_policy(api):
    api.get(TASK, status=503, headers={"Retry-After": "0"})
    with pytest.raises(VionlabsUnavailable):
        get_client().get_task("tt1", "adbreaks", "1")
    assert len(api.calls) == 4


def test_web_requests_are_interactive(api):
    seen = []
    middleware = InteractiveVionlabsMiddleware(lambda request: seen.append(get_client()) or "response")
    assert middleware(RequestFactory().get("/")) == "response"
    assert seen[0] is not get_client()
    with interactive_calls():
        assert seen[0] is get_client()


def test_reset_forgets_a_pause_left_by_an_earlier_429(api):
    api.get(TASK, status=429, headers={"Retry-After": "60"})
    with interactive_calls(), pytest.raises(VionlabsRateLimited):
        get_client().get_task("tt1", "adbreaks", "1")
    assert client_module._throttle.remaining() > 50

    reset_clients()

    assert client_module._throttle.remaining() == 0


def test_max_timeout_caps_the_timeout_but_never_raises_it(api, settings):
    settings.VIONLABS_TIMEOUT = 10
    assert "timeout=4," in repr(get_client(max_timeout=4))
    assert get_client(max_timeout=4) is get_client(max_timeout=4)
    settings.VIONLABS_TIMEOUT = 2
    assert "timeout=2," in repr(get_client(max_timeout=4))
