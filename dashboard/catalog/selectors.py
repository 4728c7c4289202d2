"""Reads that build what a page shows: catalog rows with their badges and roll-ups, the overview matrix,
task timelines and the poll's changes. Database only, never the API; the views render what these return.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone

from .counts import Counts, read_counts
from .forms import CONTAINER_KINDS, UNANSWERED, CatalogFilterForm, TaskCreateForm, TaskFilterForm
from .models import (
    UPSTREAM_NAME,
    CatalogItem,
    ItemKind,
    ProductChoices,
    ProductSetting,
    ProductTask,
    TaskEvent,
    TaskStatus,
    UpstreamHealth,
)
from .pagination import Page, keyset_page
from .stuck import StuckThresholds, compute_thresholds, stuck_filter, stuck_tasks
from .templatetags.catalog_ui import NOT_REQUESTED

#: History rows shown on an item page.
EVENT_LIMIT = 300
#: Seconds between refreshes of the overview's counts, stuck list and failures (database only, a few ms).
OVERVIEW_REFRESH_SECONDS = 30
#: `rows=item` (item page) and `rows=tasks` (tasks page): the poll sends whole task rows, not only badges.
POLL_ROW_MODES = ("item", "tasks")
KNOWN_STATUS_ORDER: list[str] = [
    TaskStatus.PENDING,
    TaskStatus.PROCESSING,
    TaskStatus.DONE,
    TaskStatus.FAILED,
    TaskStatus.DEACTIVATED,
]
#: What a status filter suggests: the known statuses, then "no answer yet".
STATUS_FILTER_VALUES = [*(str(status) for status in KNOWN_STATUS_ORDER), UNANSWERED]


#: A loose index scan of ProductTask.status: each step asks the index for the next larger value.
STATUSES_PRESENT_SQL = """
WITH RECURSIVE present(status) AS (
    SELECT MIN(status) FROM catalog_producttask
    UNION ALL
    SELECT (SELECT MIN(t.status) FROM catalog_producttask t WHERE t.status > present.status)
    FROM present WHERE present.status IS NOT NULL
)
SELECT status FROM present WHERE status IS NOT NULL
"""


def statuses_present() -> set[str]:
    """The distinct statuses of all tasks, by a skip scan of the status index (one probe per distinct value):
    at a million tasks on PostgreSQL 0.3 ms, where `SELECT DISTINCT status` reads the whole index (~170 ms)."""
    with connection.cursor() as cursor:
        cursor.execute(STATUSES_PRESENT_SQL)
        return {row[0] for row in cursor.fetchall()}


def status_choices(current: str = "") -> list[tuple[str, str]]:
    """A status filter's options: the known statuses, "no answer yet", then any other status present
    (statuses_present), and the current value should it be none of these."""
    present = statuses_present()
    choices = [(status, TaskStatus(status).label) for status in KNOWN_STATUS_ORDER]
    choices.append((UNANSWERED, "No answer yet"))
    known = {value for value, _ in choices} | {""}
    others = sorted((present - known) | ({current} - known))
    choices.extend((value, value) for value in others)
    return choices


def product_settings() -> list[ProductSetting]:
    return list(ProductSetting.objects.all())


def enabled_of(settings_list: Iterable[ProductSetting]) -> list[ProductSetting]:
    """`ProductSetting.objects.enabled()` out of settings already read, for a page that needs both (no
    second query)."""
    return [s for s in settings_list if s.enabled]


def enabled_settings() -> list[ProductSetting]:
    return list(ProductSetting.objects.enabled())


# --- catalog rows: one badge per enabled product, roll-ups for series and seasons ------------------------


@dataclass
class Rollup:
    """How the episodes under a series or season stand for one product (at its default version)."""

    total: int = 0
    counts: Counter = field(default_factory=Counter)

    @property
    def missing(self) -> int:
        return max(0, self.total - sum(self.counts.values()))

    @property
    def modifier(self) -> str:
        if self.counts.get(TaskStatus.FAILED):
            return "failed"
        if any(self.counts.get(s) for s in TaskStatus.IN_FLIGHT):
            return "processing"
        if self.total and self.counts.get(TaskStatus.DONE) == self.total:
            return "done"
        return "missing"

    @property
    def summary(self) -> str:
        if not self.total:
            return "no episodes"
        parts = [f"{self.counts.get(TaskStatus.DONE, 0)}/{self.total} done"]
        for status, n in sorted(self.counts.items(), key=lambda kv: status_sort_key(kv[0])):
            if status != TaskStatus.DONE and n:
                parts.append(f"{n} {status or 'no answer yet'}")
        if self.missing:
            parts.append(f"{self.missing} missing")
        return ", ".join(parts)


def status_sort_key(status: str) -> tuple[int, str]:
    try:
        return (KNOWN_STATUS_ORDER.index(status), status)
    except ValueError:
        return (len(KNOWN_STATUS_ORDER), status)


#: The task fields a catalog badge needs, with those `choose_task` and `task_is_active` read: catalog pages and
#: their poll load only these (whole rows cost 2-3x more to load; a page of 50 items reads about 75 tasks).
BADGE_TASK_FIELDS = ("item_id", "product", "version", "status", "action_in_progress", "updated_at")


@dataclass
class Cell:
    product: ProductSetting
    task: ProductTask | None = None
    rollup: Rollup | None = None

    @property
    def dom_id(self) -> str:
        return f"badge-{self.item_pk}-{self.product.product}"

    item_pk: int = 0
    #: The item's page, where the badge links (the row's URL, reversed once per row, not once per badge).
    item_url: str = ""


@dataclass
class ItemRow:
    item: CatalogItem
    cells: list[Cell]
    #: The item's page and the row's refresh action (see `pk_urls`).
    url: str = ""
    refresh_url: str = ""

    @property
    def is_container(self) -> bool:
        return self.item.kind in CONTAINER_KINDS

    @property
    def in_flight(self) -> bool:
        return any(c.task is not None and c.task.is_in_flight for c in self.cells)


def choose_task(tasks: list[ProductTask], default_version: str) -> ProductTask | None:
    """The task a catalog badge shows: the product's default version, else the most recently updated."""
    for task in tasks:
        if task.version == default_version:
            return task
    return max(tasks, key=lambda t: (t.updated_at, t.pk)) if tasks else None


def default_version_q(products: list[ProductSetting], prefix: str = "") -> Q:
    q = Q(pk__in=[])
    for setting in products:
        q |= Q(**{f"{prefix}product": setting.product, f"{prefix}version": setting.default_version})
    return q


def rollups_for(container_ids: list[int], products: list[ProductSetting]) -> dict[int, dict[str, Rollup]]:
    """Episode roll-ups of series and seasons: two grouped queries, however many episodes."""
    result: dict[int, dict[str, Rollup]] = {
        pk: {s.product: Rollup() for s in products} for pk in container_ids
    }
    if not container_ids or not products:
        return result
    ids = set(container_ids)
    totals = (
        CatalogItem.objects.filter(kind=ItemKind.EPISODE)
        .filter(Q(parent_id__in=ids) | Q(parent__parent_id__in=ids))
        .values_list("parent_id", "parent__parent_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    for parent, grandparent, n in totals:
        for owner in {parent, grandparent} & ids:
            for rollup in result[owner].values():
                rollup.total += n
    counts = (
        ProductTask.objects.filter(item__kind=ItemKind.EPISODE)
        .filter(Q(item__parent_id__in=ids) | Q(item__parent__parent_id__in=ids))
        .filter(default_version_q(products))
        .values_list("item__parent_id", "item__parent__parent_id", "product", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for parent, grandparent, product, status, n in counts:
        for owner in {parent, grandparent} & ids:
            result[owner][product].counts[status] += n
    return result


#: A primary key no row has, reversed in place of a real one by `pk_urls`.
_PK_MARK = 918273645546372819


def pk_urls(name: str) -> Callable[[int], str]:
    """The URL of the named pattern for any primary key, reversed once: a catalog page links each of its 50
    rows to the item's page and its refresh action, and reversing each of those costs more than the row's
    other work. Only for patterns whose one argument is an `<int:pk>`."""
    head, tail = reverse(name, args=[_PK_MARK]).split(str(_PK_MARK))
    return lambda pk: f"{head}{int(pk)}{tail}"


def build_rows(items: list[CatalogItem], products: list[ProductSetting]) -> list[ItemRow]:
    """Catalog rows with their badges: one query for the tasks, two more when series or seasons are shown."""
    by_item: dict[tuple[int, str], list[ProductTask]] = defaultdict(list)
    if items and products:
        tasks = (
            ProductTask.objects.filter(
                item_id__in=[i.pk for i in items], product__in=[s.product for s in products]
            )
            .only(*BADGE_TASK_FIELDS)
            .order_by()
        )
        for task in tasks:
            by_item[(task.item_id, task.product)].append(task)
    containers = [i.pk for i in items if i.kind in CONTAINER_KINDS]
    rollups = rollups_for(containers, products)
    rows = []
    detail_url, refresh_url = pk_urls("catalog:item-detail"), pk_urls("catalog:item-refresh")
    for item in items:
        cells = []
        url = detail_url(item.pk)
        for setting in products:
            chosen = choose_task(by_item.get((item.pk, setting.product), []), setting.default_version)
            rollup = rollups[item.pk][setting.product] if item.pk in rollups else None
            cells.append(Cell(product=setting, task=chosen, rollup=rollup, item_pk=item.pk, item_url=url))
        rows.append(ItemRow(item=item, cells=cells, url=url, refresh_url=refresh_url(item.pk)))
    return rows


# --- live updates --------------------------------------------------------------------------------------


def poll_context(
    *,
    items: Iterable[int] = (),
    tasks: Iterable[int] = (),
    rows: str = "",
    active: bool,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """What the page's single poll element needs: which rows it covers, since when, and whether to poll."""
    now = now or timezone.now()
    item_ids = ",".join(str(pk) for pk in items)
    task_ids = ",".join(str(pk) for pk in tasks)
    query = f"since={now.timestamp():.6f}"
    if item_ids:
        query += f"&items={item_ids}"
    if task_ids:
        query += f"&tasks={task_ids}"
    if rows in POLL_ROW_MODES:
        query += f"&rows={rows}"
    return {
        "poll_url": f"{reverse('catalog:poll')}?{query}",
        "poll_active": active,
        "poll_interval": settings.DASHBOARD_POLL_INTERVAL,
        "poll_idle_interval": settings.DASHBOARD_IDLE_POLL_INTERVAL,
    }


def task_is_active(task: ProductTask) -> bool:
    return task.is_in_flight or bool(task.action_in_progress)


def poll_changes(
    *, item_ids: list[int], task_ids: list[int], rows: str, since: dt.datetime, now: dt.datetime
) -> tuple[list[Cell], list[ProductTask], bool]:
    """What changed since `since` among the badges of `item_ids` and the rows of `task_ids`, and whether
    anything they cover is still active (the poll asks at the normal rate then, slowly otherwise)."""
    cells: list[Cell] = []
    changed_tasks: list[ProductTask] = []
    active = False
    if item_ids:
        # One query: the enabled products' default versions come along as a subquery, so the settings are
        # read only when a badge changed (a poll of 50 idle items every few seconds per page is the norm).
        enabled = ProductSetting.objects.enabled()
        grouped: dict[tuple[int, str], list[ProductTask]] = defaultdict(list)
        for polled in (
            ProductTask.objects.filter(item_id__in=item_ids, product__in=enabled.values("product"))
            .annotate(
                default_version=Subquery(
                    enabled.filter(product=OuterRef("product")).values("default_version")
                )
            )
            .only(*BADGE_TASK_FIELDS)
            .order_by()
        ):
            grouped[(polled.item_id, polled.product)].append(polled)
        changed: list[tuple[int, ProductTask]] = []
        for (item_pk, _product), tasks in grouped.items():
            chosen = choose_task(tasks, tasks[0].default_version)  # type: ignore[attr-defined]  # annotated above
            if chosen is None:
                continue
            active = active or task_is_active(chosen)
            if any(t.updated_at > since for t in tasks):
                changed.append((item_pk, chosen))
        if changed:
            settings_by_product = {s.product: s for s in enabled}
            detail_url = pk_urls("catalog:item-detail")
            cells = [
                Cell(product=settings_by_product[t.product], task=t, item_pk=pk, item_url=detail_url(pk))
                for pk, t in changed
                if t.product in settings_by_product  # unless disabled between the two reads
            ]
    if task_ids:
        tasks_qs = ProductTask.objects.filter(pk__in=task_ids).order_by("pk")
        if rows in POLL_ROW_MODES:
            tasks_qs = tasks_qs.select_related("item")
        for task in tasks_qs:
            active = active or task_is_active(task)
            if task.updated_at > since:
                changed_tasks.append(task)
    if changed_tasks and rows in POLL_ROW_MODES:
        # Whole rows, not just badges: a task that failed meanwhile needs its error and its Retry button too.
        all_settings = product_settings()
        thresholds = compute_thresholds(all_settings)
        for task in changed_tasks:
            task.stuck = thresholds.is_stuck(task, now=now)
        flag_not_applicable(changed_tasks, all_settings)
        if rows == "item":
            attach_timelines(changed_tasks, now=now)
    return cells, changed_tasks, active


# --- overview ------------------------------------------------------------------------------------------


@dataclass
class MatrixRow:
    status: str
    label: str
    cells: list[tuple[int, str]]  # (count, url) per enabled product


#: Width of the stacked bar in SVG user units; segments are whole units so they always add up to it.
BAR_UNITS = 1000


@dataclass(frozen=True)
class Segment:
    key: str  # CSS modifier: done, in-flight, failed, other, missing
    label: str
    count: int
    x: int = 0
    width: int = 0

    def percent(self, total: int) -> int:
        return round(100 * self.count / total) if total else 0


@dataclass
class ProductCoverage:
    setting: ProductSetting
    #: Tasks at the default version on items the product applies to, by status.
    by_status: dict[str, int] = field(default_factory=dict)
    #: Items the product applies to.
    applicable: int = 0
    #: Tasks at the default version on items of kinds the product no longer applies to (not counted above).
    elsewhere: int = 0

    @property
    def requested(self) -> int:
        return sum(self.by_status.values())

    @property
    def not_requested(self) -> int:
        return max(0, self.applicable - self.requested)

    @property
    def total(self) -> int:
        return self.requested + self.not_requested

    @property
    def segments(self) -> list[Segment]:
        """done / in flight / failed / other (deactivated, statuses we do not know) / not requested, each
        with its place on the bar. "In flight" includes tasks Vionlabs has not answered for yet."""
        done = self.by_status.get(TaskStatus.DONE, 0)
        in_flight = sum(n for s, n in self.by_status.items() if s in TaskStatus.IN_FLIGHT or s == "")
        failed = self.by_status.get(TaskStatus.FAILED, 0)
        other = self.requested - done - in_flight - failed
        parts = [
            ("done", "done", done),
            ("in-flight", "in flight", in_flight),
            ("failed", "failed", failed),
            ("other", "deactivated or other", other),
            ("missing", "not requested", self.not_requested),
        ]
        total = self.total
        segments, x, consumed = [], 0, 0
        for key, label, count in parts:
            if not count:
                continue
            consumed += count
            # Cumulative rounding: the segments always end exactly at BAR_UNITS.
            end = round(BAR_UNITS * consumed / total)
            segments.append(Segment(key=key, label=label, count=count, x=x, width=end - x))
            x = end
        return segments

    @property
    def summary(self) -> str:
        """The bar in words (its accessible name)."""
        total = self.total
        if not total:
            return f"{self.setting}: no items it applies to"
        parts = [f"{s.count} {s.label} ({s.percent(total)}%)" for s in self.segments]
        return f"{self.setting}: " + ", ".join(parts)


def product_coverage(products: list[ProductSetting], counts: Counts) -> list[ProductCoverage]:
    """One ProductCoverage per product, following each product's `applies_to`."""
    result = []
    for setting in products:
        kinds = list(setting.applies_to)
        coverage = ProductCoverage(setting=setting, applicable=counts.items_of(kinds))
        coverage.by_status = counts.tasks_for(setting.product, setting.default_version, kinds)
        others = [kind for kind in {k for (_, _, _, k) in counts.tasks} if kind not in kinds]
        coverage.elsewhere = sum(counts.tasks_for(setting.product, setting.default_version, others).values())
        result.append(coverage)
    return result


def overview_context() -> dict[str, Any]:
    """The overview: a status-by-product matrix at each product's default version (on the kinds of item each
    product applies to) with a stacked bar per product, stuck tasks, failures. The counts come from the
    trigger-kept count tables, so no visit scans the tasks."""
    all_settings = product_settings()
    products = enabled_of(all_settings)
    item_url = reverse("catalog:item-list")
    counts = read_counts()
    coverage = product_coverage(products, counts) if products else []
    statuses = sorted(
        {status for c in coverage for status in c.by_status} | set(KNOWN_STATUS_ORDER), key=status_sort_key
    )
    matrix = []
    for status in statuses:
        cells = []
        for c in coverage:
            s = c.setting
            query = f"product={s.product}&version={s.default_version}&status={status or UNANSWERED}"
            cells.append((c.by_status.get(status, 0), f"{item_url}?{query}"))
        matrix.append(MatrixRow(status=status, label=status or UNANSWERED, cells=cells))
    not_requested = [(c.not_requested, f"{item_url}?missing={c.setting.product}") for c in coverage]
    matrix.append(MatrixRow(status=NOT_REQUESTED, label=NOT_REQUESTED, cells=not_requested))

    thresholds = compute_thresholds(all_settings)
    stuck = stuck_tasks(thresholds, limit=50, counts=counts)
    now = timezone.now()
    for task in stuck:
        task.threshold = thresholds.for_task(task.product, task.priority)
        task.in_flight_for = now - task.inflight_since
    failures = list(
        ProductTask.objects.failed().select_related("item").order_by("-status_changed_at", "-pk")[:20]
    )
    health = UpstreamHealth.objects.filter(name=UPSTREAM_NAME).first()
    return {
        "products": products,
        "coverage": coverage,
        "matrix": matrix,
        "stuck": stuck,
        "failures": failures,
        "health": health,
        "task_list_url": reverse("catalog:task-list"),
        "refresh_interval": OVERVIEW_REFRESH_SECONDS,
    }


# --- item page -----------------------------------------------------------------------------------------


@dataclass
class Step:
    event: TaskEvent
    time_in_status: dt.timedelta | None


def timeline(events: list[TaskEvent], now: dt.datetime) -> list[Step]:
    """Newest first, each with how long the task stayed in the status the event left it in."""
    ordered = sorted(events, key=lambda e: (e.created_at, e.pk))
    steps = []
    for index, event in enumerate(ordered):
        later = next(
            (e for e in ordered[index + 1 :] if e.status_after and e.status_after != event.status_after),
            None,
        )
        end = later.created_at if later else now
        # Only an event that moved the task starts a stay in a status; a refresh that found it unchanged does not.
        moved = event.status_after and event.status_after != event.status_before
        spent = end - event.created_at if moved else None
        steps.append(Step(event=event, time_in_status=spent))
    return list(reversed(steps))


def attach_timelines(tasks: list[ProductTask], *, now: dt.datetime) -> None:
    """Give each task its `timeline`: one query for all of them."""
    by_task: dict[int, list[TaskEvent]] = defaultdict(list)
    events = TaskEvent.objects.filter(task__in=tasks).select_related("actor", "operation")
    for event in events.order_by("-created_at", "-pk")[:EVENT_LIMIT]:
        by_task[event.task_id].append(event)
    for task in tasks:
        task.timeline = timeline(by_task.get(task.pk, []), now)


def flag_not_applicable(tasks: Iterable[ProductTask], all_settings: Iterable[ProductSetting]) -> None:
    """Give each task its `not_applicable` reason ("" when its product applies to its item's kind): tasks made
    before the product's `applies_to` changed stay visible, flagged. Needs `task.item` loaded."""
    by_product = {s.product: s for s in all_settings}
    for task in tasks:
        setting = by_product.get(task.product)
        task.not_applicable = setting.not_applicable_reason(task.item.kind) if setting else ""


def create_choices(products: list[ProductSetting], kind: str) -> tuple[list[ProductSetting], list[str]]:
    """The enabled products an item of `kind` may be given a task of, and why each other one is not offered."""
    offered = [s for s in products if s.applies(kind)]
    reasons = [s.not_applicable_reason(kind) for s in products if not s.applies(kind)]
    return offered, reasons


@dataclass
class Contents:
    """A series' or season's seasons and episodes: one filtered keyset page with the catalog's badges."""

    form: CatalogFilterForm
    rows: list[ItemRow]
    page: Page
    base_query: str


#: The filters a series or season page offers over its contents.
CONTENTS_FILTERS = ("q", "product", "status")


def item_contents(item: CatalogItem, query: QueryDict, products: list[ProductSetting]) -> Contents:
    """The seasons and episodes under a series or season (the same rows and roll-ups as the catalog),
    filtered by search, product and status, one keyset page at a time."""
    data = QueryDict(mutable=True)
    for name in (*CONTENTS_FILTERS, "after", "before"):
        if name in query:
            data.setlist(name, query.getlist(name))
    form = CatalogFilterForm(data=data)
    page = Page(rows=[], next_cursor=None, prev_cursor=None)
    rows: list[ItemRow] = []
    if form.is_valid():
        below = CatalogItem.objects.filter(Q(parent=item) | Q(parent__parent=item))
        page = keyset_page(
            form.filter_items(below, settings=products),
            field_name="inventory_id",
            descending=False,
            after=form.cleaned_data["after"],
            before=form.cleaned_data["before"],
            size=settings.DASHBOARD_PAGE_SIZE,
            unique=True,
        )
        rows = build_rows(page.rows, products)
    base = data.copy()
    for name in ("after", "before"):
        base.pop(name, None)
    return Contents(form=form, rows=rows, page=page, base_query=base.urlencode())


def item_detail_context(
    item: CatalogItem,
    *,
    all_settings: list[ProductSetting] | None = None,
    query: QueryDict | None = None,
) -> dict[str, Any]:
    """An item's page: its tasks with their timelines and stuck flags, the create form (products that apply to
    the item's kind, and why others do not), a series' or season's contents, the poll."""
    all_settings = product_settings() if all_settings is None else all_settings
    products = enabled_of(all_settings)
    tasks = list(item.tasks.order_by("product", "version"))
    for task in tasks:
        task.item = item
    now = timezone.now()
    attach_timelines(tasks, now=now)
    thresholds = compute_thresholds(all_settings)
    for task in tasks:
        task.stuck = thresholds.is_stuck(task, now=now)
    flag_not_applicable(tasks, all_settings)
    offered, not_offered = create_choices(products, item.kind)
    contents = item_contents(item, query or QueryDict(), products) if item.kind in CONTAINER_KINDS else None
    content_rows = contents.rows if contents else []
    return {
        "item": item,
        "tasks": tasks,
        "products": products,
        "create_form": TaskCreateForm(settings=offered),
        "not_offered": not_offered,
        "contents": contents,
        "status_choices": status_choices(contents.form.data.get("status", "")) if contents else [],
        **poll_context(
            items=[r.item.pk for r in content_rows],
            tasks=[t.pk for t in tasks],
            rows="item",
            active=any(task_is_active(t) for t in tasks) or any(r.in_flight for r in content_rows),
        ),
    }


# --- results available (catalog rows of episodes) -------------------------------------------------------

#: The products whose results an episode row says exist: what is checked before a release.
RESULT_SUMMARY_PRODUCTS = (ProductChoices.ADBREAKS, ProductChoices.MARKERS)


def results_available(items: Iterable[CatalogItem]) -> dict[int, list[tuple[str, str, bool]]]:
    """Per item that carries video (not a series or season): (product, label, has a result) for each of
    RESULT_SUMMARY_PRODUCTS. A result exists when a task of that product is done (any version): one query,
    and no result is fetched."""
    ids = [item.pk for item in items if item.kind not in CONTAINER_KINDS]
    if not ids:
        return {}
    done = set(
        ProductTask.objects.filter(
            item_id__in=ids, product__in=RESULT_SUMMARY_PRODUCTS, status=TaskStatus.DONE
        )
        .values_list("item_id", "product")
        .distinct()
        .order_by()
    )
    return {
        pk: [(str(p.value), str(p.label).lower(), (pk, p.value) in done) for p in RESULT_SUMMARY_PRODUCTS]
        for pk in ids
    }


# --- Task counts for /metrics -----------------------------------------------------------------------------


def task_counts() -> dict[tuple[str, str], int]:
    """{(product, status): number of tasks}, exact, from the count log the database triggers keep (counts.py):
    a read of a few rows however large the catalog, so a scrape can ask every time."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for (product, _version, status, _kind), n in read_counts().tasks.items():
        totals[(product, status)] += n
    return {key: n for key, n in totals.items() if n}


def filtered_tasks(form: TaskFilterForm, thresholds: StuckThresholds) -> QuerySet[ProductTask]:
    """The tasks the task page lists for a valid `form`, the stuck flag included (the page and the export)."""
    qs = form.filter_tasks(ProductTask.objects.all())
    if form.cleaned_data["stuck"]:
        qs = qs.with_inflight_since().filter(stuck_filter(thresholds))
    return qs
