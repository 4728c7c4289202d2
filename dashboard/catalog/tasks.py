"""Background jobs, written against `django.tasks` only (the backend is configuration: settings.TASKS).

Jobs take ids, never model instances: the row is read again when the job runs, so a job queued before a
change sees the change. Code enqueues with `enqueue_on_commit`, so a job never runs before the rows it names
are committed, and a rolled-back request enqueues nothing.
"""

from __future__ import annotations

from django.db import transaction
from django.tasks import Task, task


def enqueue_on_commit(job: Task, *args: object, **kwargs: object) -> None:
    """Enqueue `job` once the current transaction commits (at once when there is none)."""
    transaction.on_commit(lambda: job.enqueue(*args, **kwargs))


@task()
def run_operation(operation_id: int) -> None:
    """Freeze a bulk operation's set if still to do, then run its chunks (any number of these jobs may run
    one operation at once: each claims its own chunks)."""
    from . import operations

    operations.operation_work(operation_id=operation_id)


@task()
def refresh_item(item_id: int, source: str = "sync") -> None:
    """Re-read every task of one item from Vionlabs (scheduled sync or a webhook hint)."""
    from . import sync

    sync.refresh_claimed_item(item_id=item_id, source=source)
