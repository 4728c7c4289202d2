"""The big tables are read through indexes: EXPLAIN of the real querysets names the index, never a Seq Scan.

PostgreSQL only (SQLite has no trigram index and its own planner). The tables get 20,000 items and 30,000
tasks in the bench's shape (a status mix, two products) and are ANALYZEd, so the planner decides on realistic
statistics rather than on an empty table. Plans over the task table are checked as the planner chooses them.
Where the plan starts from the items, 20,000 rows are still cheap enough to scan that the planner rightly
does, so those checks run with `enable_seqscan = off`: the named index must be able to serve the query (its
expression matches what Django writes), or PostgreSQL falls back to a scan and the test fails. The bench at
a million items (scripts/bench_catalog_page.py) shows the planner choosing them on its own.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.http import QueryDict
from django.utils import timezone

from dashboard.catalog.forms import CatalogFilterForm, TaskFilterForm
from dashboard.catalog.models import CatalogItem, ItemKind, ProductTask
from dashboard.catalog.stuck import StuckThresholds, stuck_ranking
from dashboard.catalog.sync import _due

pytestmark = [
    pytest.mark.postgres_only(reason="reads the plans of PostgreSQL's planner"),
    pytest.mark.django_db,
]

ITEMS = 20_000
STATUSES = ["done"] * 14 + ["pending", "processing", "failed", "deactivated"]


@pytest.fixture
def big_catalog():
    now = timezone.now()
    CatalogItem.objects.bulk_create(
        (
            CatalogItem(
                inventory_id=f"tt{i:08d}/{'4k' if i % 3 else 'hd'}",
                title=f"Title number {i}",
                kind=ItemKind.EPISODE if i % 10 == 0 else ItemKind.STANDALONE,
            )
            for i in range(ITEMS)
        ),
        batch_size=5000,
    )
    pks = list(CatalogItem.objects.order_by("pk").values_list("pk", flat=True))
    tasks = []
    for i, pk in enumerate(pks):
        status = STATUSES[i % len(STATUSES)]
        tasks.append(
            ProductTask(
                item_id=pk,
                product="adbreaks",
                version="1.0.1",
                status=status,
                requested_at=now - dt.timedelta(minutes=i % 600),
                status_changed_at=now - dt.timedelta(seconds=i),
                last_checked_at=now - dt.timedelta(seconds=i % 900),
            )
        )
        if i % 2 == 0:
            tasks.append(ProductTask(item_id=pk, product="markers", version="2", status="done"))
    ProductTask.objects.bulk_create(tasks, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_catalogitem")
        cursor.execute("ANALYZE catalog_producttask")


def plan(qs, *, seqscan: bool = True, indexscan: bool = True) -> str:
    sql, params = qs.query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        if not seqscan:
            cursor.execute("SET LOCAL enable_seqscan = off")
        if not indexscan:
            # Or the planner walks the inventory id index (already in page order) and filters each row.
            cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def assert_uses(text: str, *indexes: str) -> None:
    """The plan reads one of `indexes` (names, or a name's start) and scans neither big table."""
    assert any(index in text for index in indexes), text
    for table in ("catalog_producttask", "catalog_catalogitem"):
        assert f"Seq Scan on {table}" not in text, text


def catalog_page(query: str):
    form = CatalogFilterForm(data=QueryDict(query))
    assert form.is_valid(), form.errors
    return form.filter_items(CatalogItem.objects.all()).order_by("inventory_id", "pk")[:51]


def test_catalog_search_reads_the_trigram_indexes(big_catalog):
    text = plan(catalog_page("q=number 1999"), seqscan=False, indexscan=False)

    assert_uses(text, "item_title_trgm_idx")
    assert "item_inventory_id_trgm_idx" in text


def test_catalog_search_by_inventory_id_reads_the_trigram_index(big_catalog):
    assert_uses(
        plan(catalog_page("q=tt0001234"), seqscan=False, indexscan=False), "item_inventory_id_trgm_idx"
    )


def test_catalog_product_and_status_filter_reads_the_task_index(big_catalog):
    # The first page walks the items in inventory id order and probes each one's tasks by item.
    text = plan(catalog_page("product=adbreaks&status=failed"))

    assert "Seq Scan" not in text, text


def test_catalog_status_filter_count_reads_the_task_index(big_catalog):
    form = CatalogFilterForm(data=QueryDict("product=adbreaks&status=failed"))
    assert form.is_valid()
    qs = form.filter_items(CatalogItem.objects.all()).order_by()[:10_001]

    # With a status this rare, the plain status index serves as well: either is an index read, not a scan.
    assert_uses(plan(qs, seqscan=False), "task_product_status_item_idx", "catalog_producttask_status_")
    assert "Seq Scan on catalog_producttask" not in plan(qs), plan(qs)


def test_catalog_failures_filter_reads_the_task_index(big_catalog):
    form = CatalogFilterForm(data=QueryDict("failures=on"))
    assert form.is_valid()
    qs = form.filter_items(CatalogItem.objects.all()).order_by()[:10_001]

    # Any index leading with the status serves it here. At a million items (vacuumed, so index-only scans pay)
    # the count reads task_status_item_idx in item order; a test transaction cannot VACUUM, so that choice is
    # shown by the bench, not asserted.
    text = plan(qs)
    assert "Seq Scan on catalog_producttask" not in text, text
    assert "catalog_producttask_status" in text or "task_status_" in text, text


def test_task_list_by_status_reads_the_status_index_newest_first(big_catalog):
    form = TaskFilterForm(data=QueryDict("status=failed"))
    assert form.is_valid()

    assert_uses(plan(form.filter_tasks(ProductTask.objects.all()).order_by("-pk")[:51]), "task_status_id_idx")


def test_scheduler_claim_walks_the_in_flight_index_instead_of_sorting(big_catalog):
    due = ProductTask.objects.in_flight().filter(_due(timezone.now()))
    qs = due.order_by(F("last_checked_at").asc(nulls_first=True), "pk").values_list("item_id", flat=True)[
        :400
    ]
    text = plan(qs)

    assert_uses(text, "task_inflight_check_idx")
    assert "Sort" not in text, text


def test_stuck_list_reads_one_index_range_per_product_and_priority(big_catalog):
    ranking = stuck_ranking(StuckThresholds(), limit=50)
    text = plan(ranking)

    # Each (product, priority) is one range of the index, reaching only tasks past that pair's threshold.
    assert_uses(text, "task_inflight_pair_idx")


def test_recent_failures_read_the_status_time_index(big_catalog):
    qs = ProductTask.objects.failed().order_by("-status_changed_at", "-pk")[:20]

    assert_uses(plan(qs), "task_status_time_idx")
