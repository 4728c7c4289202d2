"""Background jobs, written against `django.tasks` only (the backend is configuration: settings.TASKS).
Named jobs, not tasks: a "task" here is a Vionlabs task. Queued rows name a job by its import path
(`dashboard.catalog.jobs.<name>`): renaming or moving a job needs a migration like 0006.

Jobs take ids, never model instances: the row is read again when the job runs, so a job queued before a
change sees the change. Code enqueues with `enqueue_on_commit`, so a job never runs before the rows it names
are committed, and a rolled-back request enqueues nothing. The request id of the request (or job) that
enqueues travels as the job's `request_id`, so the job's log lines carry it too.
"""

from __future__ import annotations

from django.db import transaction
from django.tasks import Task, task

from dashboard.logs import current, log_context


def enqueue_on_commit(job: Task, *args: object, **kwargs: object) -> None:
    """Enqueue `job` once the current transaction commits (at once when there is none), with the current
    request id as its `request_id`."""
    if (request_id := current("request_id")) and "request_id" not in kwargs:
        kwargs["request_id"] = request_id
    transaction.on_commit(lambda: job.enqueue(*args, **kwargs))


@task()
def run_operation(operation_id: int, request_id: str = "") -> None:
    """Freeze a bulk operation's set if still to do, then run its chunks (any number of these jobs may run
    one operation at once: each claims its own chunks)."""
    from . import operations  # here, not at the top: operations imports this module (enqueue_on_commit)

    with log_context(request_id=request_id or None, operation_id=operation_id):
        operations.operation_work(operation_id=operation_id)


@task()
def refresh_item(item_id: int, source: str = "sync", request_id: str = "") -> None:
    """Re-read every task of one item from Vionlabs (scheduled sync or a webhook hint)."""
    from . import sync  # here, not at the top: sync imports this module (enqueue_on_commit)

    with log_context(request_id=request_id or None):
        sync.refresh_claimed_item(item_id=item_id, source=source)
