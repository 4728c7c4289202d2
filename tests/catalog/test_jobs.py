"""Background jobs: enqueued on commit with ids only, run by the real `db_worker`, harmless when rerun."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.db import transaction
from django_tasks_db.models import DBTaskResult

from dashboard.catalog import operations
from dashboard.catalog.jobs import enqueue_on_commit, refresh_item, run_operation
from dashboard.catalog.models import (
    CatalogItem,
    Operation,
    OperationChunk,
    OperationItem,
    OperationItemState,
    OperationState,
    ProductSetting,
    ProductTask,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def enabled_product(db):
    """Bulk operations act on enabled products only."""
    return ProductSetting.objects.create(product="adbreaks", default_version="1")


def make_items(n: int, prefix: str = "t") -> None:
    CatalogItem.objects.bulk_create(CatalogItem(inventory_id=f"{prefix}-{i:04d}") for i in range(n))


def start(**kwargs) -> Operation:
    return operations.operation_start(
        kind="create",
        items=CatalogItem.objects.all(),
        product="adbreaks",
        version="1",
        reason="test",
        **kwargs,
    )


def run_worker() -> None:
    """The real worker, in this process, until the queue is empty."""
    call_command("db_worker", "--batch", "--no-startup-delay", "--interval", "0", verbosity=0)


def test_a_job_is_enqueued_only_when_the_transaction_commits():
    with transaction.atomic():
        enqueue_on_commit(refresh_item, 1, "sync")
        assert not DBTaskResult.objects.exists()
    assert DBTaskResult.objects.get().args_kwargs == {"args": [1, "sync"], "kwargs": {}}


def test_a_rolled_back_transaction_enqueues_nothing():
    make_items(3)

    def failing_request() -> None:
        with transaction.atomic():
            start()
            raise RuntimeError("the request failed after the operation was written")

    with pytest.raises(RuntimeError):
        failing_request()
    assert not Operation.objects.exists()
    assert not DBTaskResult.objects.exists()


def test_the_db_worker_runs_an_operation_from_its_id(use_sandbox):
    make_items(25)
    operation = start()
    job = DBTaskResult.objects.get()
    assert job.args_kwargs == {"args": [operation.pk], "kwargs": {}}  # an id, never a pickled object
    run_worker()
    operation.refresh_from_db()
    assert (operation.state, operation.done, operation.total) == (OperationState.DONE, 25, 25)
    job.refresh_from_db()
    assert job.status == "SUCCESSFUL"
    assert use_sandbox.stats()["endpoints"]["POST task"] == 25


def test_a_rerun_resumes_only_the_pending_items_and_never_counts_twice(use_sandbox):
    """A worker that died mid-run leaves the operation `running`; running its job again finishes the rest."""
    make_items(10)
    operation = start()
    operations.operation_freeze(operation_id=operation.pk)
    first = list(OperationItem.objects.filter(operation=operation).order_by("pk")[:4])
    OperationItem.objects.filter(pk__in=[row.pk for row in first]).update(state=OperationItemState.DONE)
    # The dead worker had counted its 4 items into its chunk and the operation.
    OperationChunk.objects.filter(operation=operation).update(done=4)
    Operation.objects.filter(pk=operation.pk).update(state=OperationState.RUNNING, done=4)
    run_operation.call(operation.pk)
    operation.refresh_from_db()
    assert (operation.state, operation.done, operation.processed) == (OperationState.DONE, 10, 10)
    assert use_sandbox.stats()["endpoints"]["POST task"] == 6
    # Once finished, a stray duplicate of the job changes nothing.
    run_operation.call(operation.pk)
    operation.refresh_from_db()
    assert operation.done == 10
    assert use_sandbox.stats()["endpoints"]["POST task"] == 6


def test_jobs_for_rows_deleted_meanwhile_do_nothing(use_sandbox):
    make_items(1)
    operation = start()
    item = CatalogItem.objects.get()
    Operation.objects.all().delete()
    CatalogItem.objects.all().delete()
    refresh_item.enqueue(item.pk, "webhook")
    run_worker()
    assert set(DBTaskResult.objects.values_list("status", flat=True)) == {"SUCCESSFUL"}
    assert operation.pk is not None
    assert use_sandbox.stats()["requests"] == 0
    assert not ProductTask.objects.exists()


def test_jobs_queued_under_the_old_module_path_still_run():
    """Migration 0009 rewrites queued rows from `dashboard.catalog.tasks.*` to `dashboard.catalog.jobs.*`."""
    migration = importlib.import_module("dashboard.catalog.migrations.0009_rename_tasks_module_to_jobs")
    make_items(1)
    item = CatalogItem.objects.get()
    refresh_item.enqueue(item.pk, "sync")
    DBTaskResult.objects.update(task_path="dashboard.catalog.tasks.refresh_item")

    migration.forwards(django_apps, None)

    row = DBTaskResult.objects.get()
    assert row.task_path == "dashboard.catalog.jobs.refresh_item"
    assert row.task.func is refresh_item.func
    migration.backwards(django_apps, None)
    assert DBTaskResult.objects.get().task_path == "dashboard.catalog.tasks.refresh_item"
