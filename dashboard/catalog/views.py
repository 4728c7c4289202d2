"""Pages and fragments of the operations UI.

Every view checks its permission itself (fragments included: a fragment URL can be requested directly).
Reads go to the database only; actions call services, and an upstream error is rendered inside the fragment
with a 200, because htmx 2 does not swap 4xx/5xx bodies.
"""

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
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

from . import selectors, services
from .forms import UNANSWERED, CatalogFilterForm, TaskCreateForm, TaskFilterForm
from .models import CatalogItem, EventSource, ProductSetting, ProductTask
from .pagination import Page, bounded_count, keyset_page
from .permissions import OPERATE_PERMISSION, operator_required, viewer_required
from .selectors import (
    KNOWN_STATUS_ORDER,
    POLL_ROW_MODES,
    ItemRow,
    build_rows,
    enabled,
    poll_context,
    product_settings,
    task_is_active,
)
from .services import ActionRefused
from .stuck import compute_thresholds, stuck_filter, with_inflight_since

#: Children shown when a series or season is expanded; the rest are one filtered catalog page away.
CHILDREN_LIMIT = 200
#: Rows a poll may cover (a page never shows more).
POLL_MAX_IDS = 500
#: A poll looks this far behind its `since`, so a row saved just before a poll and committed just after it is
#: not missed; re-sending an unchanged badge is harmless.
POLL_OVERLAP = dt.timedelta(seconds=3)


# --- helpers ------------------------------------------------------------------------------------------


def can_operate(request: HttpRequest) -> bool:
    return request.user.has_perm(OPERATE_PERMISSION)


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


# --- live updates --------------------------------------------------------------------------------------


def parse_ids(text: str) -> list[int]:
    ids = []
    for part in text.split(",")[:POLL_MAX_IDS]:
        if part.strip().isdigit():
            ids.append(int(part))
    return ids


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
    rows = request.GET.get("rows", "")
    cells, changed_tasks, active = selectors.poll_changes(
        item_ids=item_ids, task_ids=task_ids, rows=rows, since=since, now=now
    )
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


@require_GET
@viewer_required
def overview(request: HttpRequest) -> HttpResponse:
    return render(request, "catalog/overview.html", selectors.overview_context())


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


def item_detail_context(
    request: HttpRequest, item: CatalogItem, *, all_settings: list[ProductSetting] | None = None
) -> dict[str, Any]:
    return {
        **selectors.item_detail_context(item, all_settings=all_settings),
        "can_operate": can_operate(request),
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
