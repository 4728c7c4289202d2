"""The background jobs moved from `dashboard.catalog.tasks` to `dashboard.catalog.jobs`.

django-tasks-db stores each job's import path in its queued rows: rewrite them, so jobs queued before the
upgrade still run (and finished ones still show their job in the admin). Reversible.
"""

from django.db import migrations
from django.db.models import Value
from django.db.models.functions import Concat, Length, Substr

OLD = "dashboard.catalog.tasks."
NEW = "dashboard.catalog.jobs."


def _move(apps, old: str, new: str) -> None:
    DBTaskResult = apps.get_model("django_tasks_database", "DBTaskResult")
    DBTaskResult.objects.filter(task_path__startswith=old).update(
        task_path=Concat(Value(new), Substr("task_path", len(old) + 1, Length("task_path")))
    )


def forwards(apps, schema_editor):
    _move(apps, OLD, NEW)


def backwards(apps, schema_editor):
    _move(apps, NEW, OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0008_sync_budget_last_cycle_at"),
        ("django_tasks_database", "0021_conditional_partial_index_ordering"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
