"""POST /_sandbox/tasks: tasks that already have a history (the demo's finished tasks) keep their status."""

from __future__ import annotations

from .helpers import call, item_path, task_path, wait_until


def load(sandbox, *tasks, key="default"):
    return call(sandbox, "POST", "/_sandbox/tasks", json={"tasks": list(tasks)}, key=key)


def test_loaded_tasks_answer_with_the_status_they_were_given(sandbox):
    answer = load(
        sandbox,
        {"inventory_id": "mv-1", "product": "adbreaks", "version": "1.0", "status": "done"},
        {
            "inventory_id": "mv-2",
            "product": "adbreaks",
            "version": "1.0",
            "status": "failed",
            "error": "probe failed: could not decode video stream",
        },
        {"inventory_id": "mv-3", "product": "markers", "version": "2", "status": "deactivated"},
    )
    assert answer.status_code == 200
    assert answer.json() == {"loaded": 3}
    assert call(sandbox, "GET", task_path("mv-1")).json()["status"] == "done"
    failed = call(sandbox, "GET", task_path("mv-2")).json()
    assert (failed["status"], failed["error"]) == ("failed", "probe failed: could not decode video stream")
    assert call(sandbox, "GET", task_path("mv-3", "markers", "2")).json()["status"] == "deactivated"
    listed = call(sandbox, "GET", item_path("mv-1")).json()
    assert listed == [
        {"task_status": {"status": "done", "error": None}, "product": "adbreaks", "version": "1.0"}
    ]


def test_a_loaded_failed_task_starts_again_on_post(sandbox):
    load(sandbox, {"inventory_id": "mv-9", "product": "adbreaks", "version": "1.0", "status": "failed"})
    assert call(sandbox, "POST", task_path("mv-9")).json()["status"] == "pending"


def test_a_bad_row_loads_nothing_and_names_the_field(sandbox):
    answer = load(
        sandbox,
        {"inventory_id": "ok", "product": "adbreaks", "version": "1.0", "status": "done"},
        {"inventory_id": "bad", "product": "nope", "version": "1.0", "status": "done"},
    )
    assert answer.status_code == 422
    assert ["body", "tasks", 1, "product"] in [error["loc"] for error in answer.json()["detail"]]
    assert call(sandbox, "GET", task_path("ok")).status_code == 404


def test_loading_needs_the_key(sandbox):
    answer = load(
        sandbox, {"inventory_id": "x", "product": "adbreaks", "version": "1", "status": "done"}, key="wrong"
    )
    assert answer.status_code == 401


def test_a_loaded_in_flight_task_goes_on_to_its_end(sandbox):
    sandbox.configure(pending_seconds=0.2, processing_seconds=0.2)
    load(sandbox, {"inventory_id": "mv-5", "product": "adbreaks", "version": "1.0", "status": "processing"})
    assert call(sandbox, "GET", task_path("mv-5")).json()["status"] == "processing"
    assert wait_until(lambda: call(sandbox, "GET", task_path("mv-5")).json()["status"] == "done")
