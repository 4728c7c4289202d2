"""The overview's counts (TaskCount/ItemCount, kept by database triggers) never drift from a full count.

A random mix of every kind of write the code uses (create, bulk_create, save, queryset update, delete, an
item's cascade delete, a kind change, an import) is applied, and the trigger-kept counts are compared with a
full count after each step; on PostgreSQL the same runs from concurrent threads.
"""

from __future__ import annotations

import contextlib
import io
import random
import threading

import pytest
from django.core.exceptions import ObjectDoesNotExist
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connection, transaction

from dashboard.catalog import counts
from dashboard.catalog.imports import import_rows
from dashboard.catalog.models import CatalogItem, ItemKind, ProductTask, TaskCount

PRODUCTS = [("adbreaks", "1.0.1"), ("adbreaks", "2.0"), ("markers", "2")]
# A vendor status longer than the known ones (and than 32 characters) is counted like any other.
STATUSES = [
    "",
    "pending",
    "processing",
    "done",
    "failed",
    "deactivated",
    "queued_for_reprocessing_at_the_vendor_after_review",
]


def assert_no_drift() -> None:
    expected = counts.full_count()
    actual = counts.read_counts()
    assert actual.tasks == expected.tasks
    assert actual.items == expected.items


def random_change(rng: random.Random, prefix: str, step: int) -> None:
    """One write of a randomly chosen kind, in its own transaction (as the code paths make them)."""
    items = list(CatalogItem.objects.filter(inventory_id__startswith=prefix).values_list("pk", flat=True))
    tasks = list(
        ProductTask.objects.filter(item__inventory_id__startswith=prefix).values_list("pk", flat=True)
    )
    action = rng.choice(
        ["item", "items", "task", "bulk_tasks", "save_status", "update_status", "update_many",
         "delete_task", "delete_item", "kind", "kind_update", "import", "compact"]
    )  # fmt: skip
    product, version = rng.choice(PRODUCTS)
    with transaction.atomic():
        if action == "item" or not items:
            CatalogItem.objects.create(
                inventory_id=f"{prefix}{step}", kind=rng.choice(ItemKind.values), title="x"
            )
        elif action == "items":
            CatalogItem.objects.bulk_create(
                CatalogItem(inventory_id=f"{prefix}{step}-{i}", kind=rng.choice(ItemKind.values))
                for i in range(rng.randint(1, 5))
            )
        elif action == "task":
            ProductTask.objects.get_or_create(
                item_id=rng.choice(items), product=product, version=version,
                defaults={"status": rng.choice(STATUSES)},
            )  # fmt: skip
        elif action == "bulk_tasks":
            ProductTask.objects.bulk_create(
                [
                    ProductTask(item_id=pk, product=product, version=version, status=rng.choice(STATUSES))
                    for pk in rng.sample(items, min(len(items), 4))
                ],
                ignore_conflicts=True,
            )
        elif action == "save_status" and tasks:
            task = ProductTask.objects.select_for_update().get(pk=rng.choice(tasks))
            task.status = rng.choice(STATUSES)
            task.save()
        elif action == "update_status" and tasks:
            ProductTask.objects.filter(pk=rng.choice(tasks)).update(status=rng.choice(STATUSES))
        elif action == "update_many" and tasks:
            chosen = rng.sample(tasks, min(len(tasks), 6))
            ProductTask.objects.filter(pk__in=chosen).update(status=rng.choice(STATUSES))
        elif action == "delete_task" and tasks:
            ProductTask.objects.filter(pk=rng.choice(tasks)).delete()
        elif action == "delete_item":
            CatalogItem.objects.filter(pk=rng.choice(items)).delete()  # cascades to its tasks and events
        elif action == "kind":
            item = CatalogItem.objects.get(pk=rng.choice(items))
            item.kind = rng.choice(ItemKind.values)
            item.save()
        elif action == "kind_update":
            CatalogItem.objects.filter(pk__in=rng.sample(items, min(len(items), 3))).update(
                kind=rng.choice(ItemKind.values)
            )
        elif action == "import":
            pk = rng.choice(items)
            existing = CatalogItem.objects.get(pk=pk).inventory_id
            rows = [
                {"inventory_id": existing, "title": "imported", "kind": rng.choice(ItemKind.values)},
                {"inventory_id": f"{prefix}{step}-imported", "kind": rng.choice(ItemKind.values)},
            ]
            report = import_rows(rows)
            assert report.ok, report.summary
        elif action == "compact":
            pass
    if action == "compact":
        counts.compact()


@pytest.mark.django_db
def test_counts_match_a_full_count_after_every_change_of_a_random_mix():
    rng = random.Random(20261130)
    for step in range(250):
        random_change(rng, "mix/", step)
        assert_no_drift()
    assert ProductTask.objects.exists()
    assert TaskCount.objects.exists()


@pytest.mark.django_db
def test_a_deleted_item_takes_its_tasks_out_of_the_counts():
    item = CatalogItem.objects.create(inventory_id="gone", kind=ItemKind.EPISODE)
    ProductTask.objects.create(item=item, product="adbreaks", version="1", status="done")
    ProductTask.objects.create(item=item, product="markers", version="2", status="failed")
    assert counts.read_counts().tasks_for("adbreaks", "1", [ItemKind.EPISODE]) == {"done": 1}

    item.delete()

    assert counts.read_counts().tasks == {}
    assert counts.read_counts().items == {}


@pytest.mark.django_db
def test_a_kind_change_moves_the_items_tasks_to_the_new_kind():
    item = CatalogItem.objects.create(inventory_id="sr-1", kind=ItemKind.STANDALONE)
    ProductTask.objects.create(item=item, product="adbreaks", version="1", status="done")

    CatalogItem.objects.filter(pk=item.pk).update(kind=ItemKind.SERIES)

    result = counts.read_counts()
    assert result.tasks == {("adbreaks", "1", "done", ItemKind.SERIES): 1}
    assert result.items == {ItemKind.SERIES: 1}


@pytest.mark.django_db
def test_compaction_folds_the_log_into_one_row_per_key_and_keeps_the_sums():
    item = CatalogItem.objects.create(inventory_id="c-1")
    task = ProductTask.objects.create(item=item, product="adbreaks", version="1", status="pending")
    for status in ["processing", "done", "failed", "pending", "done"]:
        ProductTask.objects.filter(pk=task.pk).update(status=status)
    assert TaskCount.objects.count() > 1

    counts.compact()

    assert list(TaskCount.objects.values_list("product", "version", "status", "kind", "n")) == [
        ("adbreaks", "1", "done", ItemKind.STANDALONE, 1)
    ]
    assert_no_drift()


@pytest.mark.django_db
def test_recount_tasks_rebuilds_counts_that_were_tampered_with():
    item = CatalogItem.objects.create(inventory_id="r-1")
    ProductTask.objects.create(item=item, product="adbreaks", version="1", status="done")
    TaskCount.objects.all().delete()
    TaskCount.objects.create(product="adbreaks", version="1", status="failed", kind="standalone", n=7)
    out = io.StringIO()

    call_command("recount_tasks", stdout=out)

    assert "Counted 1 tasks on 1 items" in out.getvalue()
    assert_no_drift()


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_counts_match_a_full_count_after_concurrent_random_changes():
    # Shared items, so that threads really change the same items' tasks and kinds at the same time.
    CatalogItem.objects.bulk_create(
        CatalogItem(inventory_id=f"conc/{i}", kind=ItemKind.values[i % 4]) for i in range(30)
    )
    barrier = threading.Barrier(4)
    problems: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            barrier.wait(timeout=30)
            for step in range(120):
                # A unique clash, a deadlock victim or an item another thread just deleted: the whole
                # transaction rolled back, counts included.
                with contextlib.suppress(IntegrityError, DatabaseError, ObjectDoesNotExist):
                    random_change(rng, "conc/", seed * 1000 + step)
        except BaseException as exc:  # surfaced below
            problems.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    assert not problems, problems
    assert ProductTask.objects.filter(item__inventory_id__startswith="conc/").exists()
    assert_no_drift()


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)  # TRUNCATE refuses a table with deferred FK checks pending
def test_truncating_tasks_or_items_empties_their_counts():
    item = CatalogItem.objects.create(inventory_id="t-1")
    ProductTask.objects.create(item=item, product="adbreaks", version="1", status="done")
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE catalog_producttask CASCADE")
    assert_no_drift()
    assert counts.read_counts().items == {ItemKind.STANDALONE: 1}

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE catalog_catalogitem CASCADE")
    assert_no_drift()
    assert counts.read_counts().items == {}
