"""Bulk operations: preview, confirm, list, progress, cancel, retry the failures.

How another page starts a bulk operation: POST to `catalog:operation-preview` with
  kind      create | refresh | deactivate | retry
  product, version, priority   (version and priority default to the product's settings)
  and one of: `filter` (the catalog filter's query string, as `CatalogFilterForm.filter_query()` gives it)
  for "all N matching this filter"; `items` (one field per ticked item id, a page's worth); `selection` (the
  token of a server-side Selection, e.g. the admin's "select all").
The preview keeps ticked ids as a Selection and from then on carries ONE field for the set, whatever its size
(Django refuses a POST of more than DATA_UPLOAD_MAX_NUMBER_FIELDS fields). It shows the count, the breakdown
by status, a sample, and asks for a reason; its form posts the same fields plus `reason`, `expected_count`,
`max_item_id` and a one-time `confirm_token` to `catalog:operation-create`.

None of these views calls Vionlabs: the work runs in a background job.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .. import operations
from ..forms import (
    CatalogFilterForm,
    OperationChoicesForm,
    OperationConfirmForm,
    OperationRetryForm,
    parse_id,
)
from ..models import (
    CatalogItem,
    Operation,
    OperationItem,
    OperationItemState,
    OperationKind,
    OperationState,
    PriorityChoices,
    ProductSetting,
    Selection,
)
from ..permissions import OPERATE_PERMISSION, operator_required, viewer_required
from .common import HtmxHttpRequest

LIST_PAGE_SIZE = 50
FAILURES_SHOWN = 200
#: How often the progress fragment asks again while the operation runs (seconds).
PROGRESS_POLL_SECONDS = 2


# --- Selection -----------------------------------------------------------------------------------------


class BadSelection(ValueError):
    """The posted selection cannot be read; the message says why."""


def _selection(data: QueryDict, user: Any) -> tuple[QuerySet[CatalogItem], dict[str, Any]]:
    """The items a bulk form names and how, as `operation_start` takes it: `filter` (a catalog filter's
    query string), `selection` (the token of items chosen one by one and kept on the server), or `items`
    (ids ticked on a catalog page: kept as a new Selection here, so the preview posts back one token)."""
    filter_query = data.get("filter")
    if filter_query is not None:
        form = CatalogFilterForm(data=QueryDict(filter_query))
        try:
            items = form.filter_items(CatalogItem.objects.all())
        except ValueError as error:
            raise BadSelection(str(error)) from error
        return items, {"filter_query": form.filter_query()}
    token = data.get("selection")
    if token:
        selection = Selection.objects.filter(token=token).first()
        if selection is None:
            raise BadSelection("This selection is no longer known; select the items again.")
        return operations.selection_items({"selection": "items", "selection_token": token}), {
            "selection": selection
        }
    raw_ids = data.getlist("items")
    if not raw_ids:
        raise BadSelection("Select at least one item, or choose “all matching this filter”.")
    if len(raw_ids) > operations.MAX_SELECTED_ITEMS:
        raise BadSelection(
            f"Too many items selected one by one ({len(raw_ids)}); use “all matching this filter” instead."
        )
    parsed = {parse_id(raw) for raw in raw_ids}
    if None in parsed:
        raise BadSelection("The selection holds something that is not an item id.")
    ids = {pk for pk in parsed if pk is not None}
    try:
        selection = operations.selection_create(items=ids, actor=user)
    except operations.OperationRefused as refused:
        raise BadSelection(str(refused)) from refused
    return operations.selection_items({"selection": "items", "selection_token": selection.token}), {
        "selection": selection
    }


def _choices(data: QueryDict) -> dict[str, str]:
    form = OperationChoicesForm(data=data)
    form.is_valid()  # only parses: `operations` judges the values, with the same words everywhere
    return form.choices()


def _hidden_selection(spec: dict[str, Any], data: QueryDict) -> list[tuple[str, str]]:
    """One hidden field, however many items: the filter, or the selection's token."""
    if "filter_query" in spec:
        return [("filter", spec["filter_query"])]
    if "selection" in spec:
        return [("selection", spec["selection"].token)]
    if data.get("filter") is not None:
        return [("filter", data.get("filter", ""))]
    token = data.get("selection")
    return [("selection", str(token))] if token else []


def _render_preview(
    request: HttpRequest,
    choices: dict[str, str],
    *,
    data: QueryDict | None = None,
    error: str = "",
    reason: str = "",
    spec: dict[str, Any] | None = None,
    items: QuerySet[CatalogItem] | None = None,
) -> HttpResponse:
    data = request.POST if data is None else data
    preview = None
    try:
        if items is None or spec is None:
            items, spec = _selection(data, request.user)
        preview = operations.operation_preview(
            items=items,
            kind=choices["kind"],
            product=choices["product"],
            version=choices["version"],
            priority=choices["priority"],
        )
    except (BadSelection, operations.OperationRefused) as problem:
        error = error or str(problem)
    context = {
        "kinds": OperationKind.choices,
        # Bulk operations act on enabled products only: the others are not offered.
        "products": [(s.product, s.get_product_display()) for s in ProductSetting.objects.enabled()],
        "priorities": PriorityChoices.choices,
        "hidden_selection": _hidden_selection(spec or {}, data),
        "preview": preview,
        "choices": choices,
        "error": error,
        "reason": reason,
        "confirm_token": operations.new_confirm_token(),
    }
    return render(request, "catalog/operation_preview.html", context)


def preview_for_items(
    request: HttpRequest,
    items: QuerySet[CatalogItem],
    *,
    kind: str = OperationKind.CREATE,
    product: str = "",
    version: str = "",
) -> HttpResponse:
    """The preview page for items chosen elsewhere (the admin's actions, "select all" included): the ids are
    kept on the server as a Selection, the page carries its token. The product defaults to the first enabled
    one; the operator adjusts the choices and confirms there."""
    if not request.user.has_perm(OPERATE_PERMISSION):
        raise PermissionDenied
    data = QueryDict(mutable=True)
    data["kind"] = kind
    if product:
        data["product"] = product
    else:
        setting = ProductSetting.objects.enabled().first()
        if setting is not None:
            data["product"] = setting.product
    if version:
        data["version"] = version
    try:
        selection = operations.selection_create(items=items, actor=request.user)
    except operations.OperationRefused as refused:
        return _render_preview(request, _choices(data), data=data, error=str(refused))
    data["selection"] = selection.token
    return _render_preview(request, _choices(data), data=data)


@require_POST
@operator_required
def operation_preview(request: HtmxHttpRequest) -> HttpResponse:
    """What the operation would touch: count, breakdown by status, a sample; asks for a reason."""
    return _render_preview(request, _choices(request.POST))


@require_POST
@operator_required
def operation_create(request: HtmxHttpRequest) -> HttpResponse:
    """Record the previewed operation and start it in the background (the set is frozen there). The
    preview's one-time token makes a second confirmation (a double click, a reload) show the first."""
    form = OperationConfirmForm(data=request.POST)
    valid = form.is_valid()
    choices = form.choices()
    reason = form.cleaned_data.get("reason", "")
    token = form.cleaned_data.get("confirm_token", "")
    existing = Operation.objects.filter(token=token).first() if token else None
    if existing is not None:
        messages.info(request, f"This preview was already confirmed: operation #{existing.pk}.")
        return redirect("catalog:operation-detail", pk=existing.pk)
    if not valid:
        return _render_preview(request, choices, reason=reason, error="Check the preview before confirming.")
    expected, max_item_id = form.cleaned_data["expected_count"], form.cleaned_data["max_item_id"]
    try:
        items, spec = _selection(request.POST, request.user)
        operation = operations.operation_start(
            reason=reason,
            actor=request.user,
            expected_count=expected,
            max_item_id=max_item_id,
            token=token,
            kind=choices["kind"],
            product=choices["product"],
            version=choices["version"],
            priority=choices["priority"],
            **spec,
        )
    except operations.AlreadyConfirmed as again:
        messages.info(request, str(again))
        return redirect("catalog:operation-detail", pk=again.operation.pk)
    except BadSelection as problem:
        return _render_preview(request, choices, reason=reason, error=str(problem))
    except operations.OperationRefused as problem:
        return _render_preview(request, choices, reason=reason, error=str(problem), spec=spec, items=items)
    messages.success(
        request, f"Operation #{operation.pk} started over {expected} items; its set is being frozen."
    )
    return redirect("catalog:operation-detail", pk=operation.pk)


# --- Pages ---------------------------------------------------------------------------------------------


@require_GET
@viewer_required
def operation_list(request: HtmxHttpRequest) -> HttpResponse:
    """Every operation, newest first."""
    paginator = Paginator(Operation.objects.select_related("created_by").order_by("-created_at", "-pk"), 50)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "catalog/operation_list.html", {"page": page})


def _progress_context(request: HtmxHttpRequest, operation: Operation) -> dict[str, Any]:
    """What the live region shows: progress, the failures so far (the first FAILURES_SHOWN), the buttons."""
    processed = operation.processed
    failures = list(
        OperationItem.objects.filter(operation=operation, state=OperationItemState.FAILED)
        .select_related("item")
        .order_by("pk")[:FAILURES_SHOWN]
        if operation.failed
        else []
    )
    cancelled = 0
    if operation.state == OperationState.CANCELLED:
        cancelled = OperationItem.objects.filter(
            operation=operation, state=OperationItemState.CANCELLED
        ).count()
    return {
        "operation": operation,
        "percent": int(processed * 100 / operation.total) if operation.total else 100,
        "poll_seconds": PROGRESS_POLL_SECONDS,
        "failures": failures,
        "failures_shown": FAILURES_SHOWN,
        "cancelled": cancelled,
    }


@require_GET
@viewer_required
def operation_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """An operation: parameters, live progress, failures with their errors, cancel and retry."""
    operation = get_object_or_404(Operation.objects.select_related("created_by"), pk=pk)
    context = {
        **_progress_context(request, operation),
        "retry_of": (operation.params or {}).get("retry_of"),
        "retries": Operation.objects.filter(params__retry_of=operation.pk).order_by("pk").only("pk"),
    }
    return render(request, "catalog/operation_detail.html", context)


@require_GET
@viewer_required
def operation_progress(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The live region as a fragment; it carries its own poll trigger only while the operation is active."""
    operation = get_object_or_404(Operation, pk=pk)
    return render(request, "catalog/operation_detail.html#progress", _progress_context(request, operation))


@require_POST
@operator_required
def operation_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    operation = get_object_or_404(Operation, pk=pk)
    try:
        operation = operations.operation_cancel(operation=operation)
        messages.info(request, f"Operation #{operation.pk}: {operation.get_state_display().lower()}.")
    except operations.OperationRefused as refused:
        messages.error(request, str(refused))
    return redirect("catalog:operation-detail", pk=pk)


@require_POST
@operator_required
def operation_retry_failures(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    operation = get_object_or_404(Operation, pk=pk)
    form = OperationRetryForm(data=request.POST)
    if not form.is_valid():
        messages.error(request, f"The reason cannot be used: {form.errors['reason'][0]}")
        return redirect("catalog:operation-detail", pk=pk)
    try:
        retry = operations.operation_retry_failures(
            operation=operation, actor=request.user, reason=form.cleaned_data["reason"]
        )
    except operations.OperationRefused as refused:
        messages.error(request, str(refused))
        return redirect("catalog:operation-detail", pk=pk)
    messages.success(
        request, f"Operation #{retry.pk} retries the {operation.failed} failures of #{operation.pk}."
    )
    return redirect("catalog:operation-detail", pk=retry.pk)


@require_http_methods(["GET", "HEAD", "POST"])
def operations_root(request: HtmxHttpRequest) -> HttpResponse:
    """`/operations/`: GET lists operations, POST creates one (each with its own permission check)."""
    if request.method == "POST":
        return operation_create(request)
    return operation_list(request)
