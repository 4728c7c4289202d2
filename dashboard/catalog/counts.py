"""Exact task and item counts without a scan: read, compact and rebuild the trigger-kept delta logs.

Database triggers (migration 0012_task_counts) append a row to `TaskCount` / `ItemCount` for every change, in the
changing transaction; the count of a key is the sum of its rows. Reading sums a small table. `compact` folds
the log into one row per key (the scheduler does it every cycle; a reader does it when the log has grown);
`recount` rebuilds both tables from the tasks and items (`manage.py recount_tasks`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import Count, Sum

from .models import CatalogItem, ItemCount, ProductTask, TaskCount

#: Above this many rows in the log a reader compacts it before summing (a few milliseconds either way).
COMPACT_ABOVE = 2_000
#: Any number; one PostgreSQL advisory lock key so that two compactions never wait on each other.
_COMPACT_LOCK = 0x7A5C_0C07

#: (product, version, status, kind) → tasks
TaskKey = tuple[str, str, str, str]


@dataclass
class Counts:
    tasks: dict[TaskKey, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)

    def tasks_for(self, product: str, version: str, kinds: list[str] | tuple[str, ...]) -> dict[str, int]:
        """Tasks of the product at the version, by status, on items of the given kinds."""
        result: dict[str, int] = defaultdict(int)
        for (p, v, status, kind), n in self.tasks.items():
            if p == product and v == version and kind in kinds:
                result[status] += n
        return dict(result)

    def items_of(self, kinds: list[str] | tuple[str, ...]) -> int:
        return sum(n for kind, n in self.items.items() if kind in kinds)


def read_counts() -> Counts:
    """The exact counts now: two small grouped queries (plus a compaction when the log has grown)."""
    counts = Counts()
    rows = 0
    grouped = TaskCount.objects.values_list("product", "version", "status", "kind").annotate(
        total=Sum("n"), rows=Count("id")
    )
    for product, version, status, kind, total, n_rows in grouped.order_by():
        rows += n_rows
        if total:
            counts.tasks[(product, version, status, kind)] = total
    for kind, total in ItemCount.objects.values_list("kind").annotate(total=Sum("n")).order_by():
        if total:
            counts.items[kind] = total
    if rows > COMPACT_ABOVE:
        compact()
    return counts


def compact() -> None:
    """Fold each log into one row per key, dropping keys that sum to zero. Safe beside concurrent writers:
    rows committed after it starts are left for the next compaction."""
    for table, key in (
        ("catalog_taskcount", "product, version, status, kind"),
        ("catalog_itemcount", "kind"),
    ):
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_COMPACT_LOCK])
                if not cursor.fetchone()[0]:
                    return  # another process is compacting right now
                # One statement: exactly the rows it deletes are summed back (rows of transactions that
                # commit meanwhile are not visible to it, so neither deleted nor counted).
                cursor.execute(
                    f"WITH gone AS (DELETE FROM {table} RETURNING {key}, n) "  # noqa: S608 (constant names)
                    f"INSERT INTO {table} ({key}, n) SELECT {key}, SUM(n) FROM gone "
                    f"GROUP BY {key} HAVING SUM(n) <> 0"
                )
            else:
                # SQLite: one writer at a time, so the two statements see the same rows.
                cursor.execute(f"SELECT MAX(id) FROM {table}")  # noqa: S608 (constant names)
                (last,) = cursor.fetchone()
                if last is None:
                    continue
                cursor.execute(
                    f"INSERT INTO {table} ({key}, n) SELECT {key}, SUM(n) FROM {table} WHERE id <= %s "  # noqa: S608
                    f"GROUP BY {key} HAVING SUM(n) <> 0",
                    [last],
                )
                cursor.execute(f"DELETE FROM {table} WHERE id <= %s", [last])  # noqa: S608 (constant names)


def recount() -> Counts:
    """Rebuild both logs from the tasks and items themselves. On PostgreSQL, writes to tasks and items wait
    meanwhile (SHARE lock), so the rebuilt counts match a single moment."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("LOCK TABLE catalog_producttask, catalog_catalogitem IN SHARE MODE")
        cursor.execute("DELETE FROM catalog_taskcount")
        cursor.execute("DELETE FROM catalog_itemcount")
        cursor.execute(
            "INSERT INTO catalog_taskcount (product, version, status, kind, n) "
            "SELECT t.product, t.version, t.status, i.kind, COUNT(*) FROM catalog_producttask t "
            "JOIN catalog_catalogitem i ON i.id = t.item_id GROUP BY t.product, t.version, t.status, i.kind"
        )
        cursor.execute(
            "INSERT INTO catalog_itemcount (kind, n) SELECT kind, COUNT(*) FROM catalog_catalogitem GROUP BY kind"
        )
    return read_counts()


def full_count() -> Counts:
    """The same numbers counted from the tasks and items (a full scan): what the logs must always equal."""
    counts = Counts()
    for product, version, status, kind, n in (
        ProductTask.objects.values_list("product", "version", "status", "item__kind")
        .annotate(n=Count("id"))
        .order_by()
    ):
        counts.tasks[(product, version, status, kind)] = n
    for kind, n in CatalogItem.objects.values_list("kind").annotate(n=Count("id")).order_by():
        counts.items[kind] = n
    return counts
