"""Actions on one task or item (create, refresh, deactivate, retry): each calls a service and answers with
the changed fragment, an upstream error inside it with a 200 (htmx 2 does not swap 4xx/5xx bodies)."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from dashboard.vionlabs.errors import VionlabsError

from .. import services
from ..forms import TaskCreateForm, parse_depth
from ..models import CatalogItem, EventSource, ProductTask
from ..permissions import operator_required
from ..selectors import build_rows, enabled_settings, item_detail_context
from ..services import ActionRefused
from .common import HtmxHttpRequest, action_budget, describe_error


def action_done(
    request: HtmxHttpRequest,
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
    ctx = item_detail_context(item)
    ctx.update({"message": message, "message_ok": ok, "message_task_pk": task.pk if task else None})
    if task is not None and request.POST.get("fragment") != "task-table":
        ctx["task"] = next((t for t in ctx["tasks"] if t.pk == task.pk), task)
        return render(request, "catalog/item_detail.html#task-row-response", ctx)
    return render(request, "catalog/item_detail.html#task-table-response", ctx)


def run_task_action(
    request: HtmxHttpRequest, pk: int, action: Callable[..., ProductTask], done_message: str
) -> HttpResponse:
    task = get_object_or_404(ProductTask.objects.select_related("item"), pk=pk)
    try:
        with action_budget():
            task = action(task=task, actor=request.user, source=EventSource.USER)
    except (VionlabsError, ActionRefused) as exc:
        return action_done(request, item=task.item, task=task, message=describe_error(exc), ok=False)
    return action_done(request, item=task.item, task=task, message=done_message, ok=True)


@require_POST
@operator_required
def task_refresh(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return run_task_action(request, pk, services.task_refresh, "Refreshed from Vionlabs.")


@require_POST
@operator_required
def task_deactivate(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return run_task_action(request, pk, services.task_deactivate, "Deactivation sent to Vionlabs.")


@require_POST
@operator_required
def task_retry(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return run_task_action(request, pk, services.task_retry, "Task requested again.")


@require_POST
@operator_required
def task_create(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(CatalogItem, pk=pk)
    products = enabled_settings()
    form = TaskCreateForm(data=request.POST, settings=products)
    message, ok, task = "", False, None
    if form.is_valid():
        try:
            with action_budget():
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
    ctx = item_detail_context(item)
    if not ok:
        ctx["create_form"] = form
    ctx.update({"create_message": message, "message_ok": ok})
    return render(request, "catalog/item_detail.html#create-form-response", ctx)


@require_POST
@operator_required
def item_refresh(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(CatalogItem, pk=pk)
    try:
        with action_budget():
            services.item_refresh(item=item, actor=request.user, source=EventSource.USER)
    except (VionlabsError, ActionRefused) as exc:
        message, ok = describe_error(exc), False
    else:
        message, ok = "Refreshed every task of this item from Vionlabs.", True
    if request.htmx and request.POST.get("fragment") == "item-row":
        products = enabled_settings()
        ctx = {
            "row": build_rows([item], products)[0],
            "products": products,
            "row_message": message,
            "message_ok": ok,
            "depth": parse_depth(request.POST.get("depth", "")),
        }
        return render(request, "catalog/item_list.html#item-row", ctx)
    return action_done(request, item=item, task=None, message=message, ok=ok)
