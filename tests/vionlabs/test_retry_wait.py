"""max_retry_wait: a client that must answer quickly gives up rather than wait longer than allowed."""

from __future__ import annotations

import pytest
import responses

from dashboard.vionlabs import Throttle, VionlabsClient
from dashboard.vionlabs.errors import VionlabsRateLimited

BASE = "http://vionlabs.test"
URL = f"{BASE}/tasks/catalog-item/tt1/product/adbreaks/version/1"
# The log redactor remembers every key a client was given, for the whole process: a one-letter key would
# blank that letter in every later test's messages ("tas[redacted]s").
KEY = "retry-wait-test-key"


@responses.activate
def test_gives_up_when_the_server_asks_for_a_longer_wait_than_allowed():
    responses.get(URL, status=429, headers={"Retry-After": "30"})
    slept = []
    client = VionlabsClient(base_url=BASE, api_key=KEY, max_retries=3, max_retry_wait=2, sleep=slept.append)
    with pytest.raises(VionlabsRateLimited) as caught:
        client.get_task("tt1", "adbreaks", "1")
    assert caught.value.retry_after == 30
    assert len(responses.calls) == 1
    assert slept == []


@responses.activate
def test_still_retries_when_the_wait_is_short_enough():
    responses.get(URL, status=429, headers={"Retry-After": "1"})
    responses.get(URL, json={"status": "done", "error": None, "_links": {}})
    slept = []
    client = VionlabsClient(base_url=BASE, api_key=KEY, max_retries=3, max_retry_wait=2, sleep=slept.append)
    assert client.get_task("tt1", "adbreaks", "1").status == "done"
    assert slept == [1]


@responses.activate
def test_does_not_queue_behind_a_long_shared_pause():
    throttle = Throttle()
    throttle.pause(60)
    client = VionlabsClient(base_url=BASE, api_key=KEY, max_retry_wait=2, throttle=throttle)
    with pytest.raises(VionlabsRateLimited) as caught:
        client.get_task("tt1", "adbreaks", "1")
    assert len(responses.calls) == 0
    assert "try again in 60 s" in str(caught.value)
