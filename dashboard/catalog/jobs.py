"""Background jobs, written against `django.tasks` only (the backend is configuration: settings.TASKS).
Named jobs, not tasks: a "task" here is a Vionlabs task. Queued rows name a job by its import path
(`dashboard.catalog.jobs.<name>`): renaming or moving a job needs a migration like 0006.

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
    """Run (or resume) a bulk operation's pending items."""
    from . import operations  # here, not at the top: operations imports this module (enqueue_on_commit)

    operations.operation_run(operation_id=operation_id)


@task()
def refresh_item(item_id: int, source: str = "sync") -> None:
    """Re-read every task of one item from Vionlabs (scheduled sync or a webhook hint)."""
    from . import sync  # here, not at the top: sync imports this module (enqueue_on_commit)

    sync.refresh_claimed_item(item_id=item_id, source=source)
