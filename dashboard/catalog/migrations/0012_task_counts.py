"""Task and item counts kept by database triggers (see TaskCount's docstring and dashboard/catalog/counts.py).

Triggers rather than application code: tasks are written by the services, item_refresh's discovery, imports,
seed_demo's bulk_create, admin deletes and Django's cascade when an item is deleted, and any new path
(a bulk_update, a raw UPDATE in a repair script) would silently drift an application-maintained counter. A
trigger sees every row change in the changing transaction, whoever makes it.

PostgreSQL: statement-level triggers with transition tables, so a bulk insert of a million tasks adds a
handful of aggregated rows, not a million. SQLite: row-level triggers (one writer at a time).

Kinds: a task is counted under its item's kind. A task trigger locks its items FOR SHARE, which conflicts with
any UPDATE of the item, so a kind change and a concurrent task change on the same item are serialised: the
later one sees the earlier one's result (FOR KEY SHARE would not do: it does not wait for a non-key update and
would read the old kind). Deleting an item subtracts the
tasks it still has; a task whose item is already gone adds nothing (either deletion order is exact).
"""

from django.db import migrations, models

RECOUNT = [
    "DELETE FROM catalog_taskcount",
    "DELETE FROM catalog_itemcount",
    "INSERT INTO catalog_taskcount (product, version, status, kind, n) "
    "SELECT t.product, t.version, t.status, i.kind, COUNT(*) FROM catalog_producttask t "
    "JOIN catalog_catalogitem i ON i.id = t.item_id GROUP BY t.product, t.version, t.status, i.kind",
    "INSERT INTO catalog_itemcount (kind, n) SELECT kind, COUNT(*) FROM catalog_catalogitem GROUP BY kind",
]

# Items of a transition table, locked so that a concurrent change of their kind is seen (see above).
_LOCKED_ITEMS = "(SELECT id, kind FROM catalog_catalogitem WHERE id IN (SELECT item_id FROM {rows}) FOR SHARE)"

POSTGRES_FORWARD = f"""
CREATE FUNCTION catalog_count_task_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO catalog_taskcount (product, version, status, kind, n)
    SELECT t.product, t.version, t.status, i.kind, COUNT(*)
    FROM new_rows t JOIN {_LOCKED_ITEMS.format(rows="new_rows")} i ON i.id = t.item_id
    GROUP BY t.product, t.version, t.status, i.kind;
    RETURN NULL;
END $$;

CREATE FUNCTION catalog_count_task_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO catalog_taskcount (product, version, status, kind, n)
    SELECT t.product, t.version, t.status, i.kind, -COUNT(*)
    FROM old_rows t JOIN {_LOCKED_ITEMS.format(rows="old_rows")} i ON i.id = t.item_id
    GROUP BY t.product, t.version, t.status, i.kind;
    RETURN NULL;
END $$;

CREATE FUNCTION catalog_count_task_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH changed AS (
        SELECT o.item_id AS old_item, o.product AS old_product, o.version AS old_version,
               o.status AS old_status, n.item_id AS new_item, n.product AS new_product,
               n.version AS new_version, n.status AS new_status
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE (o.item_id, o.product, o.version, o.status) IS DISTINCT FROM
              (n.item_id, n.product, n.version, n.status)
    ), delta AS (
        SELECT old_item AS item_id, old_product AS product, old_version AS version, old_status AS status,
               -1 AS n FROM changed
        UNION ALL
        SELECT new_item, new_product, new_version, new_status, 1 FROM changed
    )
    INSERT INTO catalog_taskcount (product, version, status, kind, n)
    SELECT d.product, d.version, d.status, i.kind, SUM(d.n)
    FROM delta d JOIN {_LOCKED_ITEMS.format(rows="delta")} i ON i.id = d.item_id
    GROUP BY d.product, d.version, d.status, i.kind
    HAVING SUM(d.n) <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION catalog_count_item_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO catalog_itemcount (kind, n) SELECT kind, COUNT(*) FROM new_rows GROUP BY kind;
    RETURN NULL;
END $$;

CREATE FUNCTION catalog_count_item_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO catalog_itemcount (kind, n) SELECT kind, -COUNT(*) FROM old_rows GROUP BY kind;
    -- Tasks still pointing at a deleted item (their own delete comes later in this transaction and adds
    -- nothing then, its item being gone).
    INSERT INTO catalog_taskcount (product, version, status, kind, n)
    SELECT t.product, t.version, t.status, o.kind, -COUNT(*)
    FROM old_rows o CROSS JOIN LATERAL (
        SELECT product, version, status FROM catalog_producttask WHERE item_id = o.id
    ) t
    GROUP BY t.product, t.version, t.status, o.kind;
    RETURN NULL;
END $$;

CREATE FUNCTION catalog_count_item_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE o.kind IS DISTINCT FROM n.kind
    ) THEN
        RETURN NULL;
    END IF;
    -- This UPDATE waited for every transaction holding a task trigger's FOR SHARE lock on these items, so
    -- the tasks read below include their changes (counted under the old kind, moved here).
    WITH changed AS (
        SELECT o.id, o.kind AS old_kind, n.kind AS new_kind
        FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE o.kind IS DISTINCT FROM n.kind
    ), d AS (
        SELECT id, old_kind AS kind, -1 AS n FROM changed UNION ALL SELECT id, new_kind, 1 FROM changed
    ), items AS (
        INSERT INTO catalog_itemcount (kind, n)
        SELECT kind, SUM(n) FROM d GROUP BY kind HAVING SUM(n) <> 0
    )
    INSERT INTO catalog_taskcount (product, version, status, kind, n)
    SELECT t.product, t.version, t.status, d.kind, SUM(d.n)
    FROM d CROSS JOIN LATERAL (
        SELECT product, version, status FROM catalog_producttask WHERE item_id = d.id
    ) t
    GROUP BY t.product, t.version, t.status, d.kind HAVING SUM(d.n) <> 0;
    RETURN NULL;
END $$;

-- TRUNCATE fires no DELETE trigger: emptying a table empties its counts.
CREATE FUNCTION catalog_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM catalog_taskcount;
    IF TG_TABLE_NAME = 'catalog_catalogitem' THEN
        DELETE FROM catalog_itemcount;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER catalog_count_task_truncate AFTER TRUNCATE ON catalog_producttask
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_count_truncate();
CREATE TRIGGER catalog_count_item_truncate AFTER TRUNCATE ON catalog_catalogitem
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_count_truncate();
CREATE TRIGGER catalog_count_task_insert AFTER INSERT ON catalog_producttask
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_count_task_insert();
CREATE TRIGGER catalog_count_task_delete AFTER DELETE ON catalog_producttask
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_count_task_delete();
CREATE TRIGGER catalog_count_task_update AFTER UPDATE ON catalog_producttask
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_count_task_update();
CREATE TRIGGER catalog_count_item_insert AFTER INSERT ON catalog_catalogitem
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_count_item_insert();
CREATE TRIGGER catalog_count_item_delete AFTER DELETE ON catalog_catalogitem
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION catalog_count_item_delete();
CREATE TRIGGER catalog_count_item_update AFTER UPDATE ON catalog_catalogitem
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_count_item_update();
"""

POSTGRES_REVERSE = """
DROP TRIGGER IF EXISTS catalog_count_task_insert ON catalog_producttask;
DROP TRIGGER IF EXISTS catalog_count_task_delete ON catalog_producttask;
DROP TRIGGER IF EXISTS catalog_count_task_update ON catalog_producttask;
DROP TRIGGER IF EXISTS catalog_count_item_insert ON catalog_catalogitem;
DROP TRIGGER IF EXISTS catalog_count_item_delete ON catalog_catalogitem;
DROP TRIGGER IF EXISTS catalog_count_item_update ON catalog_catalogitem;
DROP TRIGGER IF EXISTS catalog_count_task_truncate ON catalog_producttask;
DROP TRIGGER IF EXISTS catalog_count_item_truncate ON catalog_catalogitem;
DROP FUNCTION IF EXISTS catalog_count_truncate();
DROP FUNCTION IF EXISTS catalog_count_task_insert();
DROP FUNCTION IF EXISTS catalog_count_task_delete();
DROP FUNCTION IF EXISTS catalog_count_task_update();
DROP FUNCTION IF EXISTS catalog_count_item_insert();
DROP FUNCTION IF EXISTS catalog_count_item_delete();
DROP FUNCTION IF EXISTS catalog_count_item_update();
"""

SQLITE_FORWARD = [
    """CREATE TRIGGER catalog_count_task_insert AFTER INSERT ON catalog_producttask BEGIN
        INSERT INTO catalog_taskcount (product, version, status, kind, n)
        SELECT NEW.product, NEW.version, NEW.status, kind, 1 FROM catalog_catalogitem WHERE id = NEW.item_id;
    END""",
    """CREATE TRIGGER catalog_count_task_delete AFTER DELETE ON catalog_producttask BEGIN
        INSERT INTO catalog_taskcount (product, version, status, kind, n)
        SELECT OLD.product, OLD.version, OLD.status, kind, -1 FROM catalog_catalogitem WHERE id = OLD.item_id;
    END""",
    """CREATE TRIGGER catalog_count_task_update AFTER UPDATE OF item_id, product, version, status
        ON catalog_producttask
        WHEN OLD.item_id IS NOT NEW.item_id OR OLD.product IS NOT NEW.product
            OR OLD.version IS NOT NEW.version OR OLD.status IS NOT NEW.status
    BEGIN
        INSERT INTO catalog_taskcount (product, version, status, kind, n)
        SELECT OLD.product, OLD.version, OLD.status, kind, -1 FROM catalog_catalogitem WHERE id = OLD.item_id;
        INSERT INTO catalog_taskcount (product, version, status, kind, n)
        SELECT NEW.product, NEW.version, NEW.status, kind, 1 FROM catalog_catalogitem WHERE id = NEW.item_id;
    END""",
    """CREATE TRIGGER catalog_count_item_insert AFTER INSERT ON catalog_catalogitem BEGIN
        INSERT INTO catalog_itemcount (kind, n) VALUES (NEW.kind, 1);
    END""",
    """CREATE TRIGGER catalog_count_item_delete AFTER DELETE ON catalog_catalogitem BEGIN
        INSERT INTO catalog_itemcount (kind, n) VALUES (OLD.kind, -1);
        INSERT INTO catalog_taskcount (product, version, status, kind, n)
        SELECT product, version, status, OLD.kind, -COUNT(*) FROM catalog_producttask
        WHERE item_id = OLD.id GROUP BY product, version, status;
    END""",
    """CREATE TRIGGER catalog_count_item_update AFTER UPDATE OF kind ON catalog_catalogitem
        WHEN OLD.kind IS NOT NEW.kind
    BEGIN
        INSERT INTO catalog_itemcount (kind, n) VALUES (OLD.kind, -1);
        INSERT INTO catalog_itemcount (kind, n) VALUES (NEW.kind, 1);
        INSERT INTO catalog_taskcount (product, version, status, kind, n)
        SELECT product, version, status, OLD.kind, -COUNT(*) FROM catalog_producttask
        WHERE item_id = OLD.id GROUP BY product, version, status;
        INSERT INTO catalog_taskcount (product, version, status, kind, n)
        SELECT product, version, status, NEW.kind, COUNT(*) FROM catalog_producttask
        WHERE item_id = NEW.id GROUP BY product, version, status;
    END""",
]

SQLITE_REVERSE = [
    f"DROP TRIGGER IF EXISTS catalog_count_{name}"
    for name in ("task_insert", "task_delete", "task_update", "item_insert", "item_delete", "item_update")
]


def create_triggers(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)
    else:
        raise RuntimeError(f"Task counts need triggers written for {vendor}.")
    for statement in RECOUNT:
        schema_editor.execute(statement)


def drop_triggers(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_REVERSE)
    else:
        for statement in SQLITE_REVERSE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0011_operation_fanout_selection"),
    ]

    operations = [
        migrations.CreateModel(
            name="ItemCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("kind", models.TextField()),
                ("n", models.BigIntegerField()),
            ],
        ),
        migrations.CreateModel(
            name="TaskCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("product", models.TextField()),
                ("version", models.TextField()),
                ("status", models.TextField(blank=True)),
                ("kind", models.TextField()),
                ("n", models.BigIntegerField()),
            ],
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
