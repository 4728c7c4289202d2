"""Races between real transactions on PostgreSQL, against the sandbox on a real port.

Threads are released together by a barrier so that they really contend for the same row; each closes its
own database connection at the end. SQLite serialises writers and has no row locks: these tests are skipped
there (conftest.py states the reason) and run in CI's PostgreSQL pass.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.db import connection

from dashboard.catalog import services
from dashboard.catalog.client import get_client
from dashboard.catalog.models import CatalogItem, EventAction, EventSource, ProductTask, TaskEvent

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

PRODUCT = "adbreaks"
VERSION = "1.0.1"


def run_together(workers: list) -> list:
    """Run each callable in its own thread, released at once; return each one's result or exception."""
    barrier = threading.Barrier(len(workers))
    results: list = [None] * len(workers)

    def run(index: int, work) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = work()
        except BaseException as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, work)) for i, work in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    return results


def posts_for(sandbox, inventory_id: str) -> int:
    return sandbox.stats()["tasks"].get(inventory_id, {}).get(PRODUCT, {}).get(VERSION, {}).get("POST", 0)


def test_twenty_concurrent_creates_leave_one_row_and_send_at_most_one_post(use_sandbox):
    # Latency keeps the one POST in flight while the others arrive, so the in-progress marker is what stops them.
    use_sandbox.configure(latency=0.3)
    item = CatalogItem.objects.create(inventory_id="race/create 1", title="Race")

    def create():
        return services.task_create(item=item, product=PRODUCT, version=VERSION, source=EventSource.BULK)

    results = run_together([create] * 20)

    created = [r for r in results if isinstance(r, ProductTask)]
    refused = [r for r in results if isinstance(r, services.ActionRefused)]
    unexpected = [r for r in results if not isinstance(r, ProductTask | services.ActionRefused)]
    assert unexpected == []
    assert len(created) == 1
    assert len(refused) == 19
    assert ProductTask.objects.filter(item=item).count() == 1
    assert posts_for(use_sandbox, item.inventory_id) == 1
    task = ProductTask.objects.get(item=item)
    assert task.status == "pending"
    assert task.action_in_progress == ""
    assert list(task.events.values_list("action", flat=True)) == [EventAction.CREATE]
    print(f"\n20 concurrent creates: {Counter(type(r).__name__ for r in results)}, POSTs sent: 1")


def test_twenty_concurrent_retries_of_a_failed_task_send_one_post(use_sandbox):
    # The sandbox fails every task whose inventory id contains "fail", after pending and processing.
    item = CatalogItem.objects.create(inventory_id="race/fail 1", title="Race")
    task = services.task_create(item=item, product=PRODUCT, version=VERSION)
    deadline = time.monotonic() + 10
    while task.status != "failed" and time.monotonic() < deadline:
        time.sleep(0.1)
        task = services.task_refresh(task=task, source=EventSource.SYNC)
    assert task.status == "failed"
    use_sandbox.configure(latency=0.3)

    results = run_together([lambda: services.task_retry(task=task, source=EventSource.BULK)] * 20)

    assert [r for r in results if not isinstance(r, ProductTask | services.ActionRefused)] == []
    assert sum(isinstance(r, ProductTask) for r in results) == 1
    assert posts_for(use_sandbox, item.inventory_id) == 2  # the first create and one retry
    assert TaskEvent.objects.filter(task=task, action=EventAction.RETRY).count() == 1


def test_a_deactivation_racing_a_background_refresh_records_both_and_ends_deactivated(
    use_sandbox, django_user_model
):
    # Ten independent races at once: more interleavings of DELETE and GET (served, then recorded) per run.
    use_sandbox.configure(latency=0.1)
    operator = django_user_model.objects.create_user("operator")
    tasks = []
    for n in range(10):
        item = CatalogItem.objects.create(inventory_id=f"race/deactivate {n}", title="Race")
        tasks.append(services.task_create(item=item, product=PRODUCT, version=VERSION, actor=operator))
    assert {task.status for task in tasks} == {"pending"}
    workers = []
    for task in tasks:
        workers.append(lambda task=task: services.task_deactivate(task=task, actor=operator))
        workers.append(lambda task=task: services.task_refresh(task=task, source=EventSource.SYNC))

    results = run_together(workers)

    assert all(isinstance(r, ProductTask) for r in results), results
    client = get_client()
    for task in tasks:
        actions = Counter(TaskEvent.objects.filter(task=task).values_list("action", flat=True))
        assert actions == {EventAction.CREATE: 1, EventAction.DEACTIVATE: 1, EventAction.REFRESH: 1}
        deactivation = TaskEvent.objects.get(task=task, action=EventAction.DEACTIVATE)
        assert (deactivation.actor, deactivation.source) == (operator, EventSource.USER)
        assert TaskEvent.objects.get(task=task, action=EventAction.REFRESH).source == EventSource.SYNC
        final = client.get_task(task.item.inventory_id, PRODUCT, VERSION).status
        task.refresh_from_db()
        assert final == "deactivated"
        assert (task.status, task.action_in_progress) == (final, "")


def test_concurrent_item_refreshes_discover_each_unknown_task_once(use_sandbox):
    # The scheduler and a webhook hint can refresh one item at the same moment; both find the same new tasks.
    item = CatalogItem.objects.create(inventory_id="race/discover 1", title="Race")
    client = get_client()
    for product in ("adbreaks", "markers", "nudity"):
        client.create_task(item.inventory_id, product, VERSION)

    results = run_together([lambda: services.item_refresh(item=item)] * 10)

    assert [r for r in results if not isinstance(r, list)] == []
    assert ProductTask.objects.filter(item=item).count() == 3
    discovered = Counter(
        TaskEvent.objects.filter(task__item=item, action=EventAction.DISCOVER).values_list(
            "task__product", flat=True
        )
    )
    assert discovered == {"adbreaks": 1, "markers": 1, "nudity": 1}
    assert use_sandbox.stats()["items"][item.inventory_id] == 10
