"""The pages: overview, catalog (with its expandable children), item page and task list. Reads only."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from .. import alerts, selectors
from ..forms import CatalogFilterForm, TaskCreateForm, TaskFilterForm, parse_depth
from ..models import CatalogItem, OperationKind, PriorityChoices
from ..pagination import Page, first_page_counted, keyset_page, page_count
from ..permissions import viewer_required
from ..querysets import search_terms
from ..selectors import (
    ItemRow,
    build_rows,
    create_choices,
    enabled_of,
    enabled_settings,
    flag_not_applicable,
    poll_context,
    product_settings,
    status_choices,
    task_is_active,
)
from ..stuck import compute_thresholds
from .common import HtmxHttpRequest

#: Children shown when a series or season is expanded; the rest are one filtered catalog page away.
CHILDREN_LIMIT = 200


@require_GET
@viewer_required
def overview(request: HtmxHttpRequest) -> HttpResponse:
    """The overview; its live region asks for itself every OVERVIEW_REFRESH_SECONDS (database only)."""
    template = "catalog/overview.html"
    if request.htmx and request.htmx.target == "overview-live":
        template += "#overview-live"
    return render(request, template, {**selectors.overview_context(), "last_alert": alerts.last_alert()})


# --- catalog page --------------------------------------------------------------------------------------


@require_GET
@viewer_required
def item_list(request: HtmxHttpRequest) -> HttpResponse:
    all_settings = product_settings()
    products = enabled_of(all_settings)
    form = CatalogFilterForm(data=request.GET)
    rows: list[ItemRow] = []
    page = Page(rows=[], next_cursor=None, prev_cursor=None)
    count, count_exact = 0, True
    if form.is_valid():
        qs = form.filter_items(CatalogItem.objects.all(), settings=all_settings)
        sort = form.cleaned_data["sort"]
        field_name, descending = sort.lstrip("-"), sort.startswith("-")
        first = form.cleaned_data["after"] is None and form.cleaned_data["before"] is None
        # A search's first page: page and count from one pass over its matches (see first_page_counted).
        counted = (
            first_page_counted(
                qs, field_name=field_name, descending=descending, size=settings.DASHBOARD_PAGE_SIZE
            )
            if first and search_terms(form.cleaned_data["q"])
            else None
        )
        if counted is not None:
            page, count = counted
        else:
            page = keyset_page(
                qs,
                field_name=field_name,
                descending=descending,
                after=form.cleaned_data["after"],
                before=form.cleaned_data["before"],
                size=settings.DASHBOARD_PAGE_SIZE,
                unique=field_name == "inventory_id",
            )
            count, count_exact = page_count(page, form.countable(qs))
        rows = build_rows(page.rows, products)
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
        "status_choices": status_choices(str(form.data.get("status", ""))),
        "operation_kinds": OperationKind.choices,
        "priorities": PriorityChoices.choices,
        **poll_context(items=[r.item.pk for r in rows], active=any(r.in_flight for r in rows)),
    }
    template = "catalog/item_list.html"
    if request.htmx and request.htmx.target == "item-results":
        template += "#item-results"
    return render(request, template, ctx)


@require_GET
@viewer_required
def item_children(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The rows under a series or season (seasons with their own roll-ups), for the catalog's expand."""
    parent = get_object_or_404(CatalogItem, pk=pk)
    products = enabled_settings()
    children = list(
        CatalogItem.objects.filter(parent=parent).order_by("inventory_id", "pk")[: CHILDREN_LIMIT + 1]
    )
    rows = build_rows([parent, *children[:CHILDREN_LIMIT]], products)
    ctx = {
        "parent_row": rows[0],
        "rows": rows[1:],
        "depth": parse_depth(request.GET.get("depth", "")),
        "truncated": len(children) > CHILDREN_LIMIT,
        "products": products,
        "results_by_item": selectors.results_available(children[:CHILDREN_LIMIT]),
    }
    return render(request, "catalog/item_list.html#item-children", ctx)


# --- item page -----------------------------------------------------------------------------------------


@require_GET
@viewer_required
def item_by_id(request: HtmxHttpRequest, inventory_id: str) -> HttpResponse:
    """The shareable link of an item: its inventory id (any characters, decoded once by Django) redirects to
    the item's page; an unknown one gets a 404 that says which id was not found."""
    item = CatalogItem.objects.filter(inventory_id=inventory_id).only("pk").first()
    if item is None:
        ctx = {"inventory_id": inventory_id, "search_url": reverse("catalog:item-list")}
        return render(request, "catalog/item_not_found.html", ctx, status=404)
    return redirect("catalog:item-detail", pk=item.pk)


@require_GET
@viewer_required
def item_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(CatalogItem.objects.select_related("parent"), pk=pk)
    if request.htmx and request.htmx.target == f"create-form-{item.pk}":
        # The product select changed: prefill that product's default version and priority.
        offered, not_offered = create_choices(enabled_settings(), item.kind)
        form = TaskCreateForm(settings=offered, initial={"product": request.GET.get("product", "")})
        ctx = {"item": item, "create_form": form, "not_offered": not_offered}
        return render(request, "catalog/item_detail.html#create-form", ctx)
    ctx = selectors.item_detail_context(item, query=request.GET)
    if request.htmx and request.htmx.target == f"contents-results-{item.pk}" and ctx["contents"] is not None:
        return render(request, "catalog/item_detail.html#contents-response", ctx)
    return render(request, "catalog/item_detail.html", ctx)


@require_GET
@viewer_required
def task_list(request: HtmxHttpRequest) -> HttpResponse:
    all_settings = product_settings()
    form = TaskFilterForm(data=request.GET)
    thresholds = compute_thresholds(all_settings)
    page = Page(rows=[], next_cursor=None, prev_cursor=None)
    count, count_exact = 0, True
    if form.is_valid():
        qs = selectors.filtered_tasks(form, thresholds)
        page = keyset_page(
            qs.select_related("item"),
            field_name="pk",
            descending=True,
            after=form.cleaned_data["after"],
            before=form.cleaned_data["before"],
            size=settings.DASHBOARD_PAGE_SIZE,
            unique=True,
        )
        count, count_exact = page_count(page, qs)
    now = timezone.now()
    for task in page.rows:
        task.stuck = thresholds.is_stuck(task, now=now)
    flag_not_applicable(page.rows, all_settings)
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
        "status_choices": status_choices(str(form.data.get("status", ""))),
        **poll_context(
            tasks=[t.pk for t in page.rows], rows="tasks", active=any(task_is_active(t) for t in page.rows)
        ),
    }
    template = "catalog/task_list.html"
    if request.htmx and request.htmx.target == "task-results":
        template += "#task-results"
    return render(request, template, ctx)
