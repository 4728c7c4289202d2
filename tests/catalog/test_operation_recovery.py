"""A bulk operation whose worker went away mid-run (a restart, a crash) is resumed by the scheduler: the
job is queued again, the run takes only the items still pending, and nothing is counted or sent twice."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from dashboard.catalog import operations
from dashboard.catalog.jobs import run_operation
from dashboard.catalog.models import (
    CatalogItem,
    ChunkState,
    Operation,
    OperationChunk,
    OperationItem,
    OperationItemState,
    OperationState,
)

from .test_operations import enabled_product, freeze, make_items, posts, start  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def jobs_for(operation: Operation) -> list[DBTaskResult]:
    return list(
        DBTaskResult.objects.filter(task_path=run_operation.module_path, args_kwargs__args=[operation.pk])
    )


def abandoned_midway(items: list[CatalogItem], *, done: int, minutes_ago: int) -> Operation:
    """An operation as a worker killed mid-run leaves it: running, some items done, the rest pending."""
    operation = freeze(start(items=CatalogItem.objects.filter(pk__in=[item.pk for item in items])))
    first = OperationItem.objects.filter(operation=operation).order_by("pk")[:done]
    OperationItem.objects.filter(pk__in=[row.pk for row in first]).update(state=OperationItemState.DONE)
    then = timezone.now() - dt.timedelta(minutes=minutes_ago)
    # The dead runner held the chunk (its lease ran out since) and had counted what it finished.
    OperationChunk.objects.filter(operation=operation).update(
        state=ChunkState.RUNNING, owner="dead-worker", lease_until=then, done=done
    )
    Operation.objects.filter(pk=operation.pk).update(
        state=OperationState.RUNNING, done=done, started_at=then, heartbeat_at=then
    )
    DBTaskResult.objects.all().delete()  # the job the dead worker was running is gone with it
    return operation


def test_a_stalled_operation_is_queued_again_once(use_sandbox):
    operation = abandoned_midway(make_items(5), done=2, minutes_ago=30)

    assert operations.operation_resume_stale(stale_after=dt.timedelta(minutes=10)) == [operation.pk]
    assert operations.operation_resume_stale(stale_after=dt.timedelta(minutes=10)) == []
    assert len(jobs_for(operation)) == 1


def test_an_operation_still_making_progress_is_left_alone(use_sandbox):
    operation = abandoned_midway(make_items(3), done=1, minutes_ago=2)

    assert operations.operation_resume_stale(stale_after=dt.timedelta(minutes=10)) == []
    assert jobs_for(operation) == []


def test_the_resumed_run_finishes_only_what_was_pending(use_sandbox):
    items = make_items(5)
    operation = abandoned_midway(items, done=2, minutes_ago=30)
    operations.operation_resume_stale(stale_after=dt.timedelta(minutes=10))

    job = jobs_for(operation)[0].task_result
    run_operation.call(*job.args, **job.kwargs)

    operation.refresh_from_db()
    assert operation.state == OperationState.DONE
    assert (operation.done, operation.failed, operation.skipped) == (5, 0, 0)
    assert [posts(use_sandbox, item.inventory_id) for item in items] == [0, 0, 1, 1, 1]
    assert operation.heartbeat_at > timezone.now() - dt.timedelta(minutes=1)


def test_the_scheduler_resumes_stalled_operations(use_sandbox, settings):
    settings.OPERATION_STALE_AFTER = 60
    operation = abandoned_midway(make_items(2), done=0, minutes_ago=5)
    out = io.StringIO()

    call_command("sync_tasks", stdout=out)

    assert f"Operation {operation.pk} had stopped making progress: resumed." in out.getvalue()
    assert len(jobs_for(operation)) == 1


def test_finished_operations_are_never_resumed(use_sandbox):
    operation = abandoned_midway(make_items(2), done=2, minutes_ago=30)
    Operation.objects.filter(pk=operation.pk).update(state=OperationState.DONE)

    assert operations.operation_resume_stale(stale_after=dt.timedelta(minutes=10)) == []
    assert jobs_for(operation) == []
