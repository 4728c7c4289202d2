"""Pages and fragments of the operations UI.

Every view checks its permission itself (fragments included: a fragment URL can be requested directly).
Reads go to the database only; actions call services, and an upstream error is rendered inside the fragment
with a 200, because htmx 2 does not swap 4xx/5xx bodies.
"""

import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from dashboard.vionlabs.errors import (
    VionlabsError,
    VionlabsNotFound,
    VionlabsRateLimited,
    VionlabsRejected,
    VionlabsUnauthorized,
    VionlabsUnavailable,
)

from . import services
from .forms import (
    CONTAINER_KINDS,
    UNANSWERED,
    CatalogFilterForm,
    TaskCreateForm,
    TaskFilterForm,
    encode_cursor,
)
from .models import (
    CatalogItem,
    EventSource,
    ItemKind,
    ProductSetting,
    ProductTask,
    TaskEvent,
    TaskStatus,
    UpstreamHealth,
)
from .permissions import OPERATE_PERMISSION, operator_required, viewer_required
from .services import ActionRefused
from .stuck import compute_thresholds, stuck_filter, stuck_tasks, with_inflight_since
from .templatetags.catalog_ui import NOT_REQUESTED

#: Above this many matches a list says "10,000+" instead of counting a million rows on every page view.
COUNT_LIMIT = 10_000
#: Children shown when a series or season is expanded; the rest are one filtered catalog page away.
CHILDREN_LIMIT = 200
#: History rows shown on an item page.
EVENT_LIMIT = 300
#: Rows a poll may cover (a page never shows more).
POLL_MAX_IDS = 500
#: A poll looks this far behind its `since`, so a row saved just before a poll and committed just after it is
#: not missed; re-sending an unchanged badge is harmless.
POLL_OVERLAP = dt.timedelta(seconds=3)
#: `rows=item` (item page) and `rows=tasks` (tasks page): the poll sends whole task rows, not only badges.
POLL_ROW_MODES = ("item", "tasks")
KNOWN_STATUS_ORDER = [
    TaskStatus.PENDING,
    TaskStatus.PROCESSING,
    TaskStatus.DONE,
    TaskStatus.FAILED,
    TaskStatus.DEACTIVATED,
]


# --- helpers ------------------------------------------------------------------------------------------


def product_settings() -> list[ProductSetting]:
    return list(ProductSetting.objects.all())


def enabled(settings_list: Iterable[ProductSetting]) -> list[ProductSetting]:
    return [s for s in settings_list if s.enabled]


def can_operate(request: HttpRequest) -> bool:
    return request.user.has_perm(OPERATE_PERMISSION)


def bounded_count(qs: QuerySet) -> tuple[int, bool]:
    """(count, is_exact): counts at most COUNT_LIMIT + 1 rows, so a page over a million items stays quick."""
    n = qs.order_by()[: COUNT_LIMIT + 1].count()
    return min(n, COUNT_LIMIT), n <= COUNT_LIMIT


def redact(text: str) -> str:
    """The client never puts the key in a message; this is the second lock on that door."""
    key = settings.VIONLABS_API_KEY
    return text.replace(key, "[redacted]") if key else text


# The client ends its messages with the call it made ("[GET /tasks/… , inventory_id 'x']"): useful in logs,
# noise on a page where the row already says which task it is.
_CALL_CONTEXT = re.compile(r"\s*\[(?:GET|POST|PUT|DELETE) /[^\]]*\]\s*$")


def describe_error(exc: Exception) -> str:
    """An upstream error or a refusal in words an operator can act on. Never the key, never a traceback."""
    if isinstance(exc, ActionRefused):
        return redact(str(exc))
    detail = redact(_CALL_CONTEXT.sub("", str(exc)))
    if isinstance(exc, VionlabsRejected):
        fields = "; ".join(f"{d.loc}: {d.msg}" if d.loc else d.msg for d in exc.details)
        return f"Vionlabs rejected the request: {redact(fields) or detail}"
    if isinstance(exc, VionlabsRateLimited):
        if exc.retry_after is not None:
            return f"Vionlabs is limiting our requests: try again in {max(1, round(exc.retry_after))} s."
        return "Vionlabs is limiting our requests: try again in a minute."
    if isinstance(exc, VionlabsUnauthorized):
        return (
            f"Vionlabs refused our credentials ({exc.status_code or 'unauthorised'}): the API key setting needs "
            "checking by an administrator."
        )
    if isinstance(exc, VionlabsNotFound):
        return f"Vionlabs does not know this item or task (404). {detail}"
    if isinstance(exc, VionlabsUnavailable):
        # The client's own words already say what happened, what to do, and whether the change may have
        # reached Vionlabs.
        return f"Vionlabs could not be reached. {detail}"
    return f"Vionlabs gave an answer we could not use. {detail}"


@dataclass
class Page:
    """One keyset page: rows plus the cursors of the neighbouring pages (None where there is none)."""

    rows: list[Any]
    next_cursor: str | None
    prev_cursor: str | None


def keyset_page(
    qs: QuerySet,
    *,
    field_name: str,
    descending: bool,
    after: list[Any] | None,
    before: list[Any] | None,
    size: int,
    unique: bool = False,
) -> Page:
    """A page of `qs` ordered by (field, pk), starting after or ending before a cursor: one query, no OFFSET,
    so page 20,000 costs what page 1 costs."""

    def beyond(cursor: list[Any], forward: bool) -> Q:
        value, pk = cursor
        greater = forward != descending
        op = "gt" if greater else "lt"
        if unique:
            return Q(**{f"{field_name}__{op}": value})
        return Q(**{f"{field_name}__{op}": value}) | Q(**{field_name: value, f"pk__{op}": pk})

    order = [f"-{field_name}", "-pk"] if descending else [field_name, "pk"]
    reverse_order = [field_name, "pk"] if descending else [f"-{field_name}", "-pk"]
    if before is not None:
        rows = list(qs.filter(beyond(before, forward=False)).order_by(*reverse_order)[: size + 1])
        has_more_before = len(rows) > size
        rows = list(reversed(rows[:size]))
        has_prev, has_next = has_more_before, True
    else:
        if after is not None:
            qs = qs.filter(beyond(after, forward=True))
        rows = list(qs.order_by(*order)[: size + 1])
        has_next = len(rows) > size
        rows = rows[:size]
        has_prev = after is not None

    def cursor(row: Any) -> str:
        return encode_cursor([getattr(row, field_name), row.pk])

    return Page(
        rows=rows,
        next_cursor=cursor(rows[-1]) if rows and has_next else None,
        prev_cursor=cursor(rows[0]) if rows and has_prev else None,
    )


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


@dataclass
class Cell:
    product: ProductSetting
    task: ProductTask | None = None
    rollup: Rollup | None = None

    @property
    def dom_id(self) -> str:
        return f"badge-{self.item_pk}-{self.product.product}"

    item_pk: int = 0


@dataclass
class ItemRow:
    item: CatalogItem
    cells: list[Cell]

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


def build_rows(items: list[CatalogItem], products: list[ProductSetting]) -> list[ItemRow]:
    """Catalog rows with their badges: one query for the tasks, two more when series or seasons are shown."""
    by_item: dict[tuple[int, str], list[ProductTask]] = defaultdict(list)
    if items and products:
        tasks = ProductTask.objects.filter(
            item_id__in=[i.pk for i in items], product__in=[s.product for s in products]
        ).order_by()
        for task in tasks:
            by_item[(task.item_id, task.product)].append(task)
    containers = [i.pk for i in items if i.kind in CONTAINER_KINDS]
    rollups = rollups_for(containers, products)
    rows = []
    for item in items:
        cells = []
        for setting in products:
            task = choose_task(by_item.get((item.pk, setting.product), []), setting.default_version)
            rollup = rollups[item.pk][setting.product] if item.pk in rollups else None
            cells.append(Cell(product=setting, task=task, rollup=rollup, item_pk=item.pk))
        rows.append(ItemRow(item=item, cells=cells))
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
    }


def parse_ids(text: str) -> list[int]:
    ids = []
    for part in text.split(",")[:POLL_MAX_IDS]:
        if part.strip().isdigit():
            ids.append(int(part))
    return ids


def task_is_active(task: ProductTask) -> bool:
    return task.is_in_flight or bool(task.action_in_progress)


@require_GET
@viewer_required
def poll(request: HttpRequest) -> HttpResponse:
    """Badges changed since the last poll, as out-of-band swaps, and the poll element itself re-rendered
    (without its trigger when nothing it covers is in flight, which ends the polling). Database only."""
    now = timezone.now()
    try:
        since = dt.datetime.fromtimestamp(float(request.GET.get("since", "")), tz=dt.UTC) - POLL_OVERLAP
    except (ValueError, OverflowError, OSError):
        since = now - POLL_OVERLAP
    item_ids = parse_ids(request.GET.get("items", ""))
    task_ids = parse_ids(request.GET.get("tasks", ""))
    cells: list[Cell] = []
    changed_tasks: list[ProductTask] = []
    active = False
    if item_ids:
        products = enabled(product_settings())
        grouped: dict[tuple[int, str], list[ProductTask]] = defaultdict(list)
        for task in ProductTask.objects.filter(
            item_id__in=item_ids, product__in=[s.product for s in products]
        ).order_by():
            grouped[(task.item_id, task.product)].append(task)
        for (item_pk, product), tasks in grouped.items():
            setting = next(s for s in products if s.product == product)
            chosen = choose_task(tasks, setting.default_version)
            if chosen is None:
                continue
            active = active or task_is_active(chosen)
            if any(t.updated_at > since for t in tasks):
                cells.append(Cell(product=setting, task=chosen, item_pk=item_pk))
    rows = request.GET.get("rows", "")
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
        thresholds = compute_thresholds()
        for task in changed_tasks:
            task.stuck = thresholds.is_stuck(task, now=now)
        if rows == "item":
            attach_timelines(changed_tasks, now=now)
    ctx = {
        "cells": cells,
        "changed_tasks": changed_tasks,
        "rows": rows,
        "can_operate": can_operate(request),
        "announcements": [
            f"{t.item.inventory_id} {t.product} {t.version}: {t.status or 'no answer yet'}"
            for t in changed_tasks
            if rows in POLL_ROW_MODES
        ],
        **poll_context(items=item_ids, tasks=task_ids, rows=rows, active=active, now=now),
    }
    return render(request, "catalog/poll.html#poll-response", ctx)


# --- overview ------------------------------------------------------------------------------------------


@dataclass
class MatrixRow:
    status: str
    label: str
    cells: list[tuple[int, str]]  # (count, url) per enabled product


@require_GET
@viewer_required
def overview(request: HttpRequest) -> HttpResponse:
    all_settings = product_settings()
    products = enabled(all_settings)
    item_url = reverse("catalog:item-list")
    counts: dict[tuple[str, str], int] = {}
    if products:
        for product, status, n in (
            ProductTask.objects.filter(default_version_q(products))
            .values_list("product", "status")
            .annotate(n=Count("id"))
            .order_by()
        ):
            counts[(product, status)] = n
    # Containers have no video of their own: "not requested" counts the items that can have tasks.
    requestable = CatalogItem.objects.exclude(kind__in=CONTAINER_KINDS).count()
    statuses = sorted({status for _, status in counts} | set(KNOWN_STATUS_ORDER), key=status_sort_key)
    matrix = []
    for status in statuses:
        cells = []
        for s in products:
            query = f"product={s.product}&version={s.default_version}&status={status or UNANSWERED}"
            cells.append((counts.get((s.product, status), 0), f"{item_url}?{query}"))
        matrix.append(MatrixRow(status=status, label=status or UNANSWERED, cells=cells))
    not_requested = []
    for s in products:
        requested = sum(n for (product, _), n in counts.items() if product == s.product)
        not_requested.append((max(0, requestable - requested), f"{item_url}?missing={s.product}"))
    matrix.append(MatrixRow(status=NOT_REQUESTED, label=NOT_REQUESTED, cells=not_requested))

    thresholds = compute_thresholds(all_settings)
    stuck = list(stuck_tasks(thresholds).select_related("item")[:50])
    now = timezone.now()
    for task in stuck:
        task.threshold = thresholds.for_task(task.product, task.priority)
        task.in_flight_for = now - task.inflight_since
    failures = list(
        ProductTask.objects.failed().select_related("item").order_by("-status_changed_at", "-pk")[:20]
    )
    health = UpstreamHealth.objects.filter(name="vionlabs").first()
    ctx = {
        "products": products,
        "matrix": matrix,
        "requestable": requestable,
        "stuck": stuck,
        "failures": failures,
        "health": health,
        "task_list_url": reverse("catalog:task-list"),
    }
    return render(request, "catalog/overview.html", ctx)


# --- catalog page --------------------------------------------------------------------------------------


@require_GET
@viewer_required
def item_list(request: HttpRequest) -> HttpResponse:
    all_settings = product_settings()
    products = enabled(all_settings)
    form = CatalogFilterForm(data=request.GET)
    rows: list[ItemRow] = []
    page = Page(rows=[], next_cursor=None, prev_cursor=None)
    count, count_exact = 0, True
    if form.is_valid():
        qs = form.filter_items(CatalogItem.objects.all(), settings=all_settings)
        sort = form.cleaned_data["sort"]
        page = keyset_page(
            qs,
            field_name=sort.lstrip("-"),
            descending=sort.startswith("-"),
            after=form.cleaned_data["after"],
            before=form.cleaned_data["before"],
            size=settings.DASHBOARD_PAGE_SIZE,
            unique=sort.lstrip("-") == "inventory_id",
        )
        rows = build_rows(page.rows, products)
        count, count_exact = bounded_count(qs)
    base_query = request.GET.copy()
    for name in ("after", "before"):
        base_query.pop(name, None)
    ctx = {
        "form": form,
        "products": products,
        "rows": rows,
        "page": page,
        "count": count,
        "count_exact": count_exact,
        "base_query": base_query.urlencode(),
        "filter_query": form.filter_query(),
        "can_operate": can_operate(request),
        **poll_context(items=[r.item.pk for r in rows], active=any(r.in_flight for r in rows)),
    }
    template = "catalog/item_list.html"
    if request.htmx and request.htmx.target == "item-results":
        template += "#item-results"
    return render(request, template, ctx)


@require_GET
@viewer_required
def item_children(request: HttpRequest, pk: int) -> HttpResponse:
    """The rows under a series or season (seasons with their own roll-ups), for the catalog's expand."""
    parent = get_object_or_404(CatalogItem, pk=pk)
    products = enabled(product_settings())
    children = list(
        CatalogItem.objects.filter(parent=parent).order_by("inventory_id", "pk")[: CHILDREN_LIMIT + 1]
    )
    rows = build_rows([parent, *children[:CHILDREN_LIMIT]], products)
    depth = request.GET.get("depth", "0")
    ctx = {
        "parent_row": rows[0],
        "rows": rows[1:],
        "depth": min(int(depth), 3) if depth.isdigit() else 0,
        "truncated": len(children) > CHILDREN_LIMIT,
        "products": products,
        "can_operate": can_operate(request),
    }
    return render(request, "catalog/item_list.html#item-children", ctx)


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


def item_detail_context(
    request: HttpRequest, item: CatalogItem, *, all_settings: list[ProductSetting] | None = None
) -> dict[str, Any]:
    all_settings = product_settings() if all_settings is None else all_settings
    products = enabled(all_settings)
    tasks = list(item.tasks.order_by("product", "version"))
    now = timezone.now()
    attach_timelines(tasks, now=now)
    thresholds = compute_thresholds(all_settings)
    for task in tasks:
        task.stuck = thresholds.is_stuck(task, now=now)
    return {
        "item": item,
        "tasks": tasks,
        "products": products,
        "can_operate": can_operate(request),
        "create_form": TaskCreateForm(settings=products),
        **poll_context(
            tasks=[t.pk for t in tasks], rows="item", active=any(task_is_active(t) for t in tasks)
        ),
    }


@require_GET
@viewer_required
def item_detail(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(CatalogItem.objects.select_related("parent"), pk=pk)
    if request.htmx and request.htmx.target == f"create-form-{item.pk}":
        # The product select changed: prefill that product's default version and priority.
        products = enabled(product_settings())
        form = TaskCreateForm(settings=products, initial={"product": request.GET.get("product", "")})
        ctx = {"item": item, "create_form": form, "can_operate": can_operate(request)}
        return render(request, "catalog/item_detail.html#create-form", ctx)
    return render(request, "catalog/item_detail.html", item_detail_context(request, item))


def action_done(
    request: HttpRequest,
    *,
    item: CatalogItem,
    task: ProductTask | None,
    message: str,
    ok: bool,
) -> HttpResponse:
    """The answer to an action: the task's row (or the whole task table) with the message inline, plus the
    poll element re-armed; without htmx, a redirect back to the item page with the message."""
    if not request.htmx:
        (messages.success if ok else messages.error)(request, message)
        return redirect(item)
    ctx = item_detail_context(request, item)
    ctx.update({"message": message, "message_ok": ok, "message_task_pk": task.pk if task else None})
    if task is not None and request.POST.get("fragment") != "task-table":
        ctx["task"] = next((t for t in ctx["tasks"] if t.pk == task.pk), task)
        return render(request, "catalog/item_detail.html#task-row-response", ctx)
    return render(request, "catalog/item_detail.html#task-table-response", ctx)


def run_task_action(
    request: HttpRequest, pk: int, action: Callable[..., ProductTask], done_message: str
) -> HttpResponse:
    task = get_object_or_404(ProductTask.objects.select_related("item"), pk=pk)
    try:
        task = action(task=task, actor=request.user, source=EventSource.USER)
    except (VionlabsError, ActionRefused) as exc:
        return action_done(request, item=task.item, task=task, message=describe_error(exc), ok=False)
    return action_done(request, item=task.item, task=task, message=done_message, ok=True)


@require_POST
@operator_required
def task_refresh(request: HttpRequest, pk: int) -> HttpResponse:
    return run_task_action(request, pk, services.task_refresh, "Refreshed from Vionlabs.")


@require_POST
@operator_required
def task_deactivate(request: HttpRequest, pk: int) -> HttpResponse:
    return run_task_action(request, pk, services.task_deactivate, "Deactivation sent to Vionlabs.")


@require_POST
@operator_required
def task_retry(request: HttpRequest, pk: int) -> HttpResponse:
    return run_task_action(request, pk, services.task_retry, "Task requested again.")


@require_POST
@operator_required
def task_create(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(CatalogItem, pk=pk)
    products = enabled(product_settings())
    form = TaskCreateForm(data=request.POST, settings=products)
    message, ok, task = "", False, None
    if form.is_valid():
        try:
            task = services.task_create(
                item=item,
                product=form.cleaned_data["product"],
                version=form.cleaned_data["version"],
                priority=form.cleaned_data["priority"],
                actor=request.user,
                source=EventSource.USER,
            )
        except (VionlabsError, ActionRefused) as exc:
            message = describe_error(exc)
        else:
            message, ok = f"Requested {task.get_product_display()} {task.version}.", True
    else:
        message = "Check the fields below."
    if not request.htmx:
        (messages.success if ok else messages.error)(request, message)
        return redirect(item)
    ctx = item_detail_context(request, item)
    if not ok:
        ctx["create_form"] = form
    ctx.update({"create_message": message, "message_ok": ok})
    return render(request, "catalog/item_detail.html#create-form-response", ctx)


@require_POST
@operator_required
def item_refresh(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(CatalogItem, pk=pk)
    try:
        services.item_refresh(item=item, actor=request.user, source=EventSource.USER)
    except (VionlabsError, ActionRefused) as exc:
        message, ok = describe_error(exc), False
    else:
        message, ok = "Refreshed every task of this item from Vionlabs.", True
    if request.htmx and request.POST.get("fragment") == "item-row":
        products = enabled(product_settings())
        ctx = {
            "row": build_rows([item], products)[0],
            "products": products,
            "can_operate": True,
            "row_message": message,
            "message_ok": ok,
            "depth": min(int(depth), 3) if (depth := request.POST.get("depth", "0")).isdigit() else 0,
        }
        return render(request, "catalog/item_list.html#item-row", ctx)
    return action_done(request, item=item, task=None, message=message, ok=ok)


# --- tasks page ----------------------------------------------------------------------------------------


@require_GET
@viewer_required
def task_list(request: HttpRequest) -> HttpResponse:
    all_settings = product_settings()
    form = TaskFilterForm(data=request.GET)
    thresholds = compute_thresholds(all_settings)
    page = Page(rows=[], next_cursor=None, prev_cursor=None)
    count, count_exact = 0, True
    if form.is_valid():
        qs = form.filter_tasks(ProductTask.objects.all())
        if form.cleaned_data["stuck"]:
            qs = with_inflight_since(qs).filter(stuck_filter(thresholds))
        page = keyset_page(
            qs.select_related("item"),
            field_name="pk",
            descending=True,
            after=form.cleaned_data["after"],
            before=form.cleaned_data["before"],
            size=settings.DASHBOARD_PAGE_SIZE,
            unique=True,
        )
        count, count_exact = bounded_count(qs)
    now = timezone.now()
    for task in page.rows:
        task.stuck = thresholds.is_stuck(task, now=now)
    base_query = request.GET.copy()
    for name in ("after", "before"):
        base_query.pop(name, None)
    ctx = {
        "form": form,
        "tasks": page.rows,
        "page": page,
        "count": count,
        "count_exact": count_exact,
        "base_query": base_query.urlencode(),
        "known_statuses": [*KNOWN_STATUS_ORDER, UNANSWERED],
        **poll_context(
            tasks=[t.pk for t in page.rows], rows="tasks", active=any(task_is_active(t) for t in page.rows)
        ),
    }
    template = "catalog/task_list.html"
    if request.htmx and request.htmx.target == "task-results":
        template += "#task-results"
    return render(request, template, ctx)
