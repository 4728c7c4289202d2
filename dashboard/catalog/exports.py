"""Catalog and task exports, CSV and JSON Lines, produced row by row for a streamed response.

Rows are read in keyset batches of BATCH_SIZE (a short query each, no cursor held open across the response),
so memory stays flat however many rows match. The columns are documented in docs/export.md.

CSV cells that a spreadsheet would run as a formula (starting with = + - @) are written with a leading
apostrophe; so is a cell that already starts with apostrophes before such a character, so that
`unescape_cell` (used by the CSV import) restores every value exactly. See docs/export.md.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from django.db.models import QuerySet

from .models import CatalogItem, ProductTask

BATCH_SIZE: Final = 2000
FORMULA_START: Final = ("=", "+", "-", "@")

#: The catalog CSV's fixed columns (the import's own); each metadata key found follows as its own column.
CATALOG_COLUMNS: Final = ("inventory_id", "title", "kind", "parent_id")
TASK_COLUMNS: Final = (
    "task_id",
    "inventory_id",
    "product",
    "version",
    "priority",
    "status",
    "error",
    "sync_error",
    "requested_at",
    "status_changed_at",
    "last_checked_at",
    "created_at",
)


def _formula_like(value: str) -> bool:
    return value.lstrip("'").startswith(FORMULA_START)


def escape_cell(value: str) -> str:
    """A spreadsheet-safe cell: one apostrophe before anything that could start a formula."""
    return "'" + value if _formula_like(value) else value


def unescape_cell(value: str) -> str:
    """The inverse of `escape_cell` (a spreadsheet's own reading of a leading apostrophe)."""
    return value[1:] if value.startswith("'") and _formula_like(value) else value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _keyset(qs: QuerySet[Any], *, key: str, descending: bool = False) -> Iterator[Any]:
    """Every row of `qs` (values()), BATCH_SIZE at a time, ordered by the unique column `key`."""
    last: Any = None
    order = f"-{key}" if descending else key
    while True:
        batch = qs.order_by(order)
        if last is not None:
            batch = batch.filter(**{f"{key}__{'lt' if descending else 'gt'}": last})
        rows = list(batch[:BATCH_SIZE])
        yield from rows
        if len(rows) < BATCH_SIZE:
            return
        last = rows[-1][key]


# --- catalog --------------------------------------------------------------------------------------------


def _item_rows(items: QuerySet[CatalogItem]) -> Iterator[dict[str, Any]]:
    fields = ["inventory_id", "title", "kind", "parent__inventory_id", "vionlabs_id", "metadata"]
    fields += ["created_at", "updated_at"]
    return _keyset(items.values(*fields), key="inventory_id")


def catalog_metadata_keys(items: QuerySet[CatalogItem]) -> list[str]:
    """The metadata keys of the matching items (a first streamed pass), minus the fixed columns' names."""
    keys: set[str] = set()
    for row in _keyset(items.values("inventory_id", "metadata"), key="inventory_id"):
        if isinstance(row["metadata"], dict):
            keys.update(row["metadata"])
    return sorted(keys - set(CATALOG_COLUMNS))


def catalog_csv(items: QuerySet[CatalogItem]) -> Iterator[str]:
    """The catalog as CSV, header first: the import's columns, then one column per metadata key."""
    extra = catalog_metadata_keys(items)
    yield from _csv_lines(
        [*CATALOG_COLUMNS, *extra],
        (
            [
                row["inventory_id"],
                row["title"],
                row["kind"],
                row["parent__inventory_id"],
                *((row["metadata"] or {}).get(key) for key in extra),
            ]
            for row in _item_rows(items)
        ),
    )


def catalog_jsonl(items: QuerySet[CatalogItem]) -> Iterator[str]:
    for row in _item_rows(items):
        yield _json_line(
            {
                "inventory_id": row["inventory_id"],
                "title": row["title"],
                "kind": row["kind"],
                "parent_id": row["parent__inventory_id"],
                "vionlabs_id": row["vionlabs_id"],
                "metadata": row["metadata"],
                "created_at": row["created_at"],
                "updated_at": row["updated_at"],
            }
        )


# --- tasks ----------------------------------------------------------------------------------------------

_TASK_FIELDS: Final = ("pk", "item__inventory_id", *TASK_COLUMNS[2:])


def _task_rows(tasks: QuerySet[ProductTask]) -> Iterator[dict[str, Any]]:
    # Newest first, as on the task page.
    for row in _keyset(tasks.values(*_TASK_FIELDS), key="pk", descending=True):
        yield {
            "task_id": row["pk"],
            "inventory_id": row["item__inventory_id"],
            **{c: row[c] for c in TASK_COLUMNS[2:]},
        }


def tasks_csv(tasks: QuerySet[ProductTask]) -> Iterator[str]:
    yield from _csv_lines(list(TASK_COLUMNS), ([row[c] for c in TASK_COLUMNS] for row in _task_rows(tasks)))


def tasks_jsonl(tasks: QuerySet[ProductTask]) -> Iterator[str]:
    for row in _task_rows(tasks):
        yield _json_line(row)


# --- writers --------------------------------------------------------------------------------------------


def _csv_lines(header: list[str], rows: Iterable[list[Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def take() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow([escape_cell(name) for name in header])
    yield take()
    pending = 0
    for row in rows:
        writer.writerow([escape_cell(_text(value)) for value in row])
        pending += 1
        if pending == 200:  # a few hundred rows per chunk: fewer, larger writes to the socket
            yield take()
            pending = 0
    if pending:
        yield take()


def _json_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, default=_text) + "\n"


EXPORTERS: Final[dict[tuple[str, str], Callable[[Any], Iterator[str]]]] = {
    ("catalog", "csv"): catalog_csv,
    ("catalog", "jsonl"): catalog_jsonl,
    ("tasks", "csv"): tasks_csv,
    ("tasks", "jsonl"): tasks_jsonl,
}
