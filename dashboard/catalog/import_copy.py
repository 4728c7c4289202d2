"""The PostgreSQL write path of the catalog import (imports.py): COPY into a temporary table, then set-based SQL.

imports.py reads and validates the file and decides what goes into each batch; on PostgreSQL it hands each
batch to `write_batch` and the children still waiting for a parent to `resolve_parents`. The rules are those of
the ORM path (used on SQLite), written as a few statements per batch instead of a few per thousand rows:

- `encode_batch` turns the batch into COPY text (the reader's thread does this, while the previous batch is
  being written); `write_batch` COPYs it into `catalog_import_batch`, a temporary table of this connection.
- One statement then plans each row: the item's current values (if it exists), the primary key it will have
  (its own, or the next one of the table's sequence for a new item, drawn now so that a child can point at a
  parent created in the same statement), its parent's key (a parent in the batch, else in the catalog;
  unknown: the item keeps the parent it has and waits for the end of the file) and its outcome: created,
  updated (any of title, kind, metadata, parent differs) or unchanged. In the same statement one INSERT
  writes the new items and one UPDATE … FROM the changed ones. Unchanged rows are not written, so their
  `updated_at` stays. Both are plain DML: the count triggers of migration 0012 keep the counts exact.

The caller runs each batch in one transaction (a savepoint in a test): a batch is written whole or not at all.
The parent's foreign key is checked at COMMIT (DEFERRABLE INITIALLY DEFERRED), after the whole batch is in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

from django.db import connection

from .models import CatalogItem

CREATED: Final = 1
UPDATED: Final = 2
UNCHANGED: Final = 3

# The SQL below names CatalogItem's table and the outcomes (1 created, 2 updated, 3 unchanged) literally.
_ITEM: Final = CatalogItem._meta.db_table

# Temporary tables live as long as the connection; ON COMMIT DELETE ROWS empties them after each batch, and
# each use starts with TRUNCATE as well, for a batch that runs inside an outer transaction (a test).
_CREATE_TEMP: Final = (
    """
    CREATE TEMP TABLE IF NOT EXISTS catalog_import_batch (
        line integer NOT NULL,
        inventory_id text NOT NULL,
        title text NOT NULL,
        kind text NOT NULL,
        parent text NOT NULL,
        metadata jsonb NOT NULL
    ) ON COMMIT DELETE ROWS
    """,
    """
    CREATE TEMP TABLE IF NOT EXISTS catalog_import_pending (
        line integer NOT NULL,
        child text NOT NULL,
        parent text NOT NULL,
        outcome smallint NOT NULL
    ) ON COMMIT DELETE ROWS
    """,
)

# `current` is the item as it is now; `pk` its key after the batch. A parent in the batch has its `pk` (new or
# not); otherwise the catalog is asked. The outcome compares all four written fields, the parent as it will be.
# Each item and parent is looked up through the unique index (LATERAL … LIMIT 1 keeps the planner from turning
# that into a scan of the whole table, which stale statistics in the middle of a large import would invite;
# see also _prepare).
# The INSERT and the UPDATE touch different rows; both read `planned`, computed once. The result: each
# outcome's count, then the rows whose parent is still unknown (line, id, parent, outcome).
_MERGE: Final = """
    WITH batch AS MATERIALIZED (
        SELECT b.line, b.inventory_id, b.title, b.kind, b.parent, b.metadata,
               c.id AS current_id, c.parent_id AS current_parent,
               (c.title = b.title AND c.kind = b.kind AND c.metadata = b.metadata) AS same_fields,
               COALESCE(c.id, nextval(%(sequence)s::regclass)) AS pk
        FROM catalog_import_batch b
        LEFT JOIN LATERAL (
            SELECT id, parent_id, title, kind, metadata FROM catalog_catalogitem
            WHERE inventory_id = b.inventory_id LIMIT 1
        ) c ON true
    ), parented AS (
        SELECT x.*,
               CASE WHEN x.parent = '' THEN NULL
                    ELSE COALESCE(
                        inside.pk,
                        (SELECT p.id FROM catalog_catalogitem p WHERE p.inventory_id = x.parent LIMIT 1)
                    )
               END AS found_parent
        FROM batch x
        LEFT JOIN batch inside ON inside.inventory_id = x.parent
    ), planned AS MATERIALIZED (
        SELECT line, pk, current_id, inventory_id, title, kind, parent, metadata, pending, parent_pk,
               CASE WHEN current_id IS NULL THEN 1
                    WHEN same_fields AND parent_pk IS NOT DISTINCT FROM current_parent THEN 3
                    ELSE 2
               END AS outcome
        FROM (
            SELECT p.*,
                   p.parent <> '' AND p.found_parent IS NULL AS pending,
                   CASE WHEN p.parent <> '' AND p.found_parent IS NULL THEN p.current_parent
                        ELSE p.found_parent
                   END AS parent_pk
            FROM parented p
        ) decided
    ), created AS (
        INSERT INTO catalog_catalogitem
            (id, inventory_id, title, kind, vionlabs_id, metadata, created_at, updated_at, parent_id)
        SELECT pk, inventory_id, title, kind, '', metadata, %(now)s, %(now)s, parent_pk
        FROM planned WHERE outcome = 1
        ORDER BY line
    ), changed AS (
        UPDATE catalog_catalogitem c
        SET title = p.title, kind = p.kind, metadata = p.metadata, parent_id = p.parent_pk, updated_at = %(now)s
        FROM planned p
        WHERE p.outcome = 2 AND c.id = p.current_id
    )
    SELECT outcome, COUNT(*)::integer, NULL::integer, NULL::text, NULL::text FROM planned GROUP BY outcome
    UNION ALL
    SELECT outcome, NULL::integer, line, inventory_id, parent FROM planned WHERE pending
"""

# The second pass: children whose parent exists now get it (when it is not already theirs).
_ADOPT: Final = """
    UPDATE catalog_catalogitem c SET parent_id = p.id, updated_at = %(now)s
    FROM catalog_import_pending w
    JOIN catalog_catalogitem p ON p.inventory_id = w.parent
    WHERE c.inventory_id = w.child AND c.parent_id IS DISTINCT FROM p.id
    RETURNING w.line, w.outcome
"""

_ORPHANS: Final = """
    SELECT w.line, w.child, w.parent, w.outcome
    FROM catalog_import_pending w
    WHERE NOT EXISTS (SELECT 1 FROM catalog_catalogitem p WHERE p.inventory_id = w.parent)
    ORDER BY w.line
"""

#: A row as COPYed: line, inventory id, title, kind, parent id ('' for none), metadata.
BatchRow = tuple[int, str, str, str, str, dict[str, Any]]
#: A child waiting for its parent: line, inventory id, parent id, outcome counted for it.
Waiting = tuple[int, str, str, int]

_sequence: str | None = None


def _copy_text(value: str) -> str:
    """A value in COPY's text format: backslash, tab and line breaks escaped (NUL never gets this far)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def encode_batch(rows: Iterable[BatchRow]) -> bytes:
    """The rows as the data of `COPY catalog_import_batch FROM STDIN` (text format, UTF-8). Needs no database
    connection: the reader's thread calls it."""
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    text = _copy_text
    return "".join(
        f"{line}\t{text(inventory_id)}\t{text(title)}\t{text(kind)}\t{text(parent)}\t{text(dumps(metadata))}\n"
        for line, inventory_id, title, kind, parent, metadata in rows
    ).encode()


def _prepare(cursor: Any, table: str) -> None:
    # Every statement here finds items through an index: a batch is small beside the catalog, and the statistics
    # lag behind a large import. Without these settings the planner may read the whole table for each batch
    # (hash-joining 20,000 updates with a million items) and compile the statement with JIT first.
    cursor.execute("SET LOCAL enable_seqscan = off")
    cursor.execute("SET LOCAL jit = off")
    for statement in _CREATE_TEMP:
        cursor.execute(statement)
    cursor.execute(f"TRUNCATE {table}")


def _item_sequence(cursor: Any) -> str:
    global _sequence  # looked up once per process
    if _sequence is None:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [_ITEM])
        _sequence = cursor.fetchone()[0]
    return _sequence


def write_batch(data: bytes, now: datetime) -> tuple[dict[int, int], list[Waiting]]:
    """Write one batch, given as `encode_batch` made it (call inside a transaction). Returns the rows per
    outcome, and the rows whose parent is neither in the batch nor in the catalog (written keeping their
    current parent)."""
    with connection.cursor() as cursor:
        _prepare(cursor, "catalog_import_batch")
        with cursor.copy(
            "COPY catalog_import_batch (line, inventory_id, title, kind, parent, metadata) FROM STDIN"
        ) as copy:
            copy.write(data)
        cursor.execute(_MERGE, {"sequence": _item_sequence(cursor), "now": now})
        counts: dict[int, int] = {}
        waiting: list[Waiting] = []
        for outcome, count, line, inventory_id, parent in cursor.fetchall():
            if line is None:
                counts[outcome] = count
            else:
                waiting.append((line, inventory_id, parent, outcome))
    return counts, waiting


def resolve_parents(chunk: Iterable[Waiting], now: datetime) -> tuple[list[tuple[int, int]], list[Waiting]]:
    """Give waiting children the parent that exists now (call inside a transaction). Returns (line, outcome)
    of each child moved, and the children whose parent is nowhere, in file order."""
    with connection.cursor() as cursor:
        _prepare(cursor, "catalog_import_pending")
        with cursor.copy("COPY catalog_import_pending (line, child, parent, outcome) FROM STDIN") as copy:
            for row in chunk:
                copy.write_row(row)
        cursor.execute(_ADOPT, {"now": now})
        moved = [(line, outcome) for line, outcome in cursor.fetchall()]
        cursor.execute(_ORPHANS)
        orphans = [(line, child, parent, outcome) for line, child, parent, outcome in cursor.fetchall()]
    return moved, orphans
