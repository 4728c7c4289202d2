"""The client's optional `on_call` observer: told each exchange's endpoint name, outcome and duration."""

from __future__ import annotations

import pytest
import requests
import responses

from dashboard.vionlabs import VionlabsUnavailable
from tests.vionlabs.fakes import TASK_URL, make_client

TASK_OK = {"status": "done", "error": None, "_links": {}}


@responses.activate
def test_every_attempt_is_reported_with_the_endpoint_name_and_outcome():
    seen = []
    client, _ = make_client(max_retries=2, on_call=lambda *call: seen.append(call))
    responses.add(responses.GET, TASK_URL, status=503)
    responses.add(responses.GET, TASK_URL, body=requests.ReadTimeout("slow"))
    responses.add(responses.GET, TASK_URL, json=TASK_OK)

    client.get_task("tt1", "adbreaks", "1.0.1")

    assert [(method, endpoint, outcome) for method, endpoint, outcome, _ in seen] == [
        ("GET", "task.get", "5xx"),
        ("GET", "task.get", "timeout"),
        ("GET", "task.get", "2xx"),
    ]
    assert all(seconds >= 0 for *_, seconds in seen)


@responses.activate
def test_a_failing_observer_does_not_break_the_call():
    def broken(*call):
        raise RuntimeError("metrics are down")

    client, _ = make_client(on_call=broken)
    responses.add(responses.POST, TASK_URL, json=TASK_OK)
    assert client.create_task("tt1", "adbreaks", "1.0.1").status == "done"


@responses.activate
def test_without_an_observer_nothing_changes():
    client, _ = make_client(max_retries=0)
    responses.add(responses.DELETE, TASK_URL, status=500)
    with pytest.raises(VionlabsUnavailable):
        client.deactivate_task("tt1", "adbreaks", "1.0.1")
