"""PostgreSQL-only indexes: trigram indexes for the catalog search, and the scheduler's claim index.

Trigram: serving the catalog search (`icontains` on inventory id and title).

Django writes `icontains` as `UPPER(col::text) LIKE UPPER(%s)`, so the index is on that same expression with
`gin_trgm_ops`: a substring search reads the index instead of the whole table. SQLite has no trigram index;
there the search stays a scan (docs/scaling.md gives its speed). Creating them on a live table of a million
items takes about a minute, during which writes to the catalog wait.

Claim: `sync.claim_due_items` takes in-flight tasks longest unchecked first (`last_checked_at` NULLS FIRST);
this partial index holds exactly those tasks in that order, with `next_check_at` and `item_id` beside, so a
claim reads the first few hundred entries instead of sorting every due row. SQLite cannot declare NULLS FIRST
in an index.
"""

from django.db import migrations

FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS item_inventory_id_trgm_idx ON catalog_catalogitem "
    "USING gin (UPPER(inventory_id::text) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS item_title_trgm_idx ON catalog_catalogitem "
    "USING gin (UPPER(title::text) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS task_inflight_check_idx ON catalog_producttask "
    "(last_checked_at ASC NULLS FIRST, id, next_check_at, item_id) WHERE status IN ('pending', 'processing')",
]
REVERSE = [
    "DROP INDEX IF EXISTS item_inventory_id_trgm_idx",
    "DROP INDEX IF EXISTS item_title_trgm_idx",
    "DROP INDEX IF EXISTS task_inflight_check_idx",
]


def forward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for statement in FORWARD:
            schema_editor.execute(statement)


def reverse(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for statement in REVERSE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0013_scale_indexes"),
    ]

    operations = [migrations.RunPython(forward, reverse)]
