"""Bulk operations (preview, confirm, progress, cancel, retry the failures) and the Vionlabs webhook receiver.

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

None of these views calls Vionlabs: the work runs in a background job, and the webhook only enqueues one.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import operations
from .forms import CatalogFilterForm
from .models import (
    CatalogItem,
    EventSource,
    Operation,
    OperationItem,
    OperationItemState,
    OperationKind,
    OperationState,
    PriorityChoices,
    ProductChoices,
    ProductSetting,
    Selection,
    WebhookDelivery,
)
from .permissions import OPERATE_PERMISSION, operator_required, viewer_required
from .tasks import enqueue_on_commit, refresh_item

logger = logging.getLogger(__name__)


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
    try:
        ids = {int(raw) for raw in raw_ids if len(raw) <= 20}
        if len(raw_ids) != sum(len(raw) <= 20 for raw in raw_ids):
            raise ValueError
    except ValueError as error:
        raise BadSelection("The selection holds something that is not an item id.") from error
    try:
        selection = operations.selection_create(items=ids, actor=user)
    except operations.OperationRefused as refused:
        raise BadSelection(str(refused)) from refused
    return operations.selection_items({"selection": "items", "selection_token": selection.token}), {
        "selection": selection
    }


def _choices(data: QueryDict) -> dict[str, str]:
    kind = data.get("kind", "")
    product = data.get("product", "")
    version = (data.get("version") or "").strip()
    priority = data.get("priority") or ""
    if product and (not version or not priority):
        setting = ProductSetting.objects.filter(product=product).first()
        if setting is not None:
            version = version or setting.default_version
            priority = priority or setting.default_priority
    return {"kind": kind, "product": product, "version": version, "priority": priority or PriorityChoices.LOW}


def _hidden_selection(spec: dict[str, Any], data: QueryDict) -> list[tuple[str, str]]:
    """One hidden field, however many items: the filter, or the selection's token."""
    if "filter_query" in spec:
        return [("filter", spec["filter_query"])]
    if "selection" in spec:
        return [("selection", spec["selection"].token)]
    if data.get("filter") is not None:
        return [("filter", data.get("filter", ""))]
    return [("selection", data["selection"])] if data.get("selection") else []


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
        preview = operations.operation_preview(items=items, **choices)
    except (BadSelection, operations.OperationRefused) as problem:
        error = error or str(problem)
    context = {
        "kinds": OperationKind.choices,
        # Bulk operations act on enabled products only: the others are not offered.
        "products": [
            (s.product, s.get_product_display()) for s in ProductSetting.objects.filter(enabled=True)
        ],
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
        setting = ProductSetting.objects.filter(enabled=True).first()
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
def operation_preview(request: HttpRequest) -> HttpResponse:
    """What the operation would touch: count, breakdown by status, a sample; asks for a reason."""
    return _render_preview(request, _choices(request.POST))


@require_POST
@operator_required
def operation_create(request: HttpRequest) -> HttpResponse:
    """Record the previewed operation and start it in the background (the set is frozen there). The
    preview's one-time token makes a second confirmation (a double click, a reload) show the first."""
    choices = _choices(request.POST)
    reason = request.POST.get("reason", "")
    token = request.POST.get("confirm_token", "")[:64]
    existing = Operation.objects.filter(token=token).first() if token else None
    if existing is not None:
        messages.info(request, f"This preview was already confirmed: operation #{existing.pk}.")
        return redirect("catalog:operation-detail", pk=existing.pk)
    try:
        expected = int(request.POST["expected_count"])
        max_item_id = int(request.POST["max_item_id"])
        if not token:
            raise ValueError
    except (KeyError, ValueError):
        return _render_preview(request, choices, reason=reason, error="Check the preview before confirming.")
    try:
        items, spec = _selection(request.POST, request.user)
        operation = operations.operation_start(
            reason=reason,
            actor=request.user,
            expected_count=expected,
            max_item_id=max_item_id,
            token=token,
            **spec,
            **choices,
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
def operation_list(request: HttpRequest) -> HttpResponse:
    """Every operation, newest first."""
    paginator = Paginator(Operation.objects.select_related("created_by").order_by("-created_at", "-pk"), 50)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "catalog/operation_list.html", {"page": page})


def _progress_context(request: HttpRequest, operation: Operation) -> dict[str, Any]:
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
        "can_operate": request.user.has_perm(OPERATE_PERMISSION),
    }


@require_GET
@viewer_required
def operation_detail(request: HttpRequest, pk: int) -> HttpResponse:
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
def operation_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The live region as a fragment; it carries its own poll trigger only while the operation is active."""
    operation = get_object_or_404(Operation, pk=pk)
    return render(request, "catalog/operation_detail.html#progress", _progress_context(request, operation))


@require_POST
@operator_required
def operation_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    operation = get_object_or_404(Operation, pk=pk)
    try:
        operation = operations.operation_cancel(operation=operation)
        messages.info(request, f"Operation #{operation.pk}: {operation.get_state_display().lower()}.")
    except operations.OperationRefused as refused:
        messages.error(request, str(refused))
    return redirect("catalog:operation-detail", pk=pk)


@require_POST
@operator_required
def operation_retry_failures(request: HttpRequest, pk: int) -> HttpResponse:
    operation = get_object_or_404(Operation, pk=pk)
    try:
        retry = operations.operation_retry_failures(
            operation=operation, actor=request.user, reason=request.POST.get("reason", "")
        )
    except operations.OperationRefused as refused:
        messages.error(request, str(refused))
        return redirect("catalog:operation-detail", pk=pk)
    messages.success(
        request, f"Operation #{retry.pk} retries the {operation.failed} failures of #{operation.pk}."
    )
    return redirect("catalog:operation-detail", pk=retry.pk)


# --- Webhook -------------------------------------------------------------------------------------------

WEBHOOK_FIELDS = ("inventory_id", "product", "version")
WEBHOOK_MAX_BYTES = 64 * 1024


def _bad_payload(message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=400)


def _payload(body: bytes) -> dict[str, str]:
    """The delivery's key fields, validated; raises ValidationError with a message for the sender."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise ValidationError("The body is not valid JSON.") from error
    if not isinstance(data, dict):
        raise ValidationError("The body must be a JSON object.")
    fields: dict[str, str] = {}
    for name in WEBHOOK_FIELDS:
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"`{name}` is required and must be a non-empty string.")
        fields[name] = value
    if len(fields["inventory_id"]) > 255 or len(fields["version"]) > 100:
        raise ValidationError("`inventory_id` (255) or `version` (100) is too long.")
    if fields["product"] not in ProductChoices.values:
        raise ValidationError(f"`product` {fields['product'][:40]!r} is not a known Vionlabs product.")
    timestamp = data.get("timestamp", "")
    if isinstance(timestamp, bool) or not isinstance(timestamp, str | int | float):
        raise ValidationError("`timestamp` must be a string or a number.")
    fields["timestamp"] = str(timestamp)[:64]
    kind = data.get("type", "")
    fields["type"] = kind[:32] if isinstance(kind, str) else ""
    return fields


@csrf_exempt
@login_not_required
@require_POST
def webhook_vionlabs(request: HttpRequest) -> HttpResponse:
    """Vionlabs says a task finished: check the shared secret, note the delivery, enqueue a refresh (the
    payload carries no outcome, so the status is re-read). Answers at once; makes no HTTP call."""
    secret = settings.VIONLABS_WEBHOOK_SECRET
    if not secret:
        # Not configured: behave as if there were no such endpoint.
        return HttpResponse("Not found.", status=404, content_type="text/plain")
    given = request.headers.get("x-api-key", "")
    if not hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8")):
        logger.warning(
            "Webhook refused: wrong or missing x-api-key (from %s)", request.META.get("REMOTE_ADDR")
        )
        return JsonResponse({"error": "Wrong or missing x-api-key."}, status=403)
    if len(request.body) > WEBHOOK_MAX_BYTES:
        return _bad_payload("The body is too large.")
    try:
        payload = _payload(request.body)
    except ValidationError as error:
        return _bad_payload(error.messages[0])
    item = CatalogItem.objects.filter(inventory_id=payload["inventory_id"]).first()
    key = {
        "inventory_id": payload["inventory_id"],
        "product": payload["product"],
        "version": payload["version"],
        "sent_at": payload["timestamp"],
    }
    try:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(
                **key, kind=payload["type"], item=item, refresh_enqueued=item is not None
            )
            if item is not None:
                enqueue_on_commit(refresh_item, item.pk, EventSource.WEBHOOK.value)
    except IntegrityError:
        WebhookDelivery.objects.filter(**key).update(duplicates=F("duplicates") + 1)
        logger.info(
            "Webhook duplicate for %r %s %s at %s: ignored", key["inventory_id"], key["product"],
            key["version"], key["sent_at"],
        )  # fmt: skip
        return JsonResponse({"status": "duplicate"}, status=202)
    if item is None:
        logger.warning(
            "Webhook for unknown item %r (%s %s): nothing to refresh", key["inventory_id"], key["product"],
            key["version"],
        )  # fmt: skip
        return JsonResponse({"status": "unknown item"}, status=202)
    logger.info("Webhook for %r %s %s: refresh enqueued", item.inventory_id, key["product"], key["version"])
    return JsonResponse({"status": "refresh enqueued", "delivery": delivery.pk}, status=202)


@require_http_methods(["GET", "HEAD", "POST"])
def operations_root(request: HttpRequest) -> HttpResponse:
    """`/operations/`: GET lists operations, POST creates one (each with its own permission check)."""
    if request.method == "POST":
        return operation_create(request)
    return operation_list(request)


urlpatterns = [
    # One URL, two names: the list (GET) and the create (POST) are the same resource.
    path("operations/", operations_root, name="operation-list"),
    path("operations/", operations_root, name="operation-create"),
    path("operations/preview/", operation_preview, name="operation-preview"),
    path("operations/<int:pk>/", operation_detail, name="operation-detail"),
    path("operations/<int:pk>/progress/", operation_progress, name="operation-progress"),
    path("operations/<int:pk>/cancel/", operation_cancel, name="operation-cancel"),
    path("operations/<int:pk>/retry-failures/", operation_retry_failures, name="operation-retry-failures"),
    path("webhooks/vionlabs/", webhook_vionlabs, name="webhook-vionlabs"),
]
