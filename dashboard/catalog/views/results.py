"""A done task's result: the fragment an item page's task row loads when expanded (and the page the task's
`results` link opens), and its refresh.

Who may do what: reading a result is a read, so viewers may open it; the first open (or one whose cache is
out of date) fetches it from Vionlabs once and caches it, like any page that reads. Forcing a new fetch
(Refresh) calls Vionlabs on purpose and is an operator's action, like refreshing a task.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from .. import services
from ..forms import ResultParamsForm
from ..models import ProductTask
from ..permissions import operator_required, viewer_required
from ..results import PARAM_PRODUCTS, TaskResultView, present
from .common import HtmxHttpRequest

TEMPLATE = "catalog/task_results.html"


def _task(pk: int) -> ProductTask:
    return get_object_or_404(ProductTask.objects.select_related("item"), pk=pk)


def _answer(
    request: HtmxHttpRequest, task: ProductTask, form: ResultParamsForm, refresh: bool
) -> HttpResponse:
    view: TaskResultView | None = None
    if not form.is_bound or form.is_valid():
        view = services.task_results(task=task, params=form.params(), refresh=refresh)
    ctx: dict[str, Any] = {
        "task": task,
        "item": task.item,
        "form": form,
        "takes_params": task.product in PARAM_PRODUCTS,
        "view": view,
        **(present(view) if view is not None else {}),
    }
    return render(request, f"{TEMPLATE}#task-result" if request.htmx else TEMPLATE, ctx)


@require_GET
@viewer_required
def task_result(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    task = _task(pk)
    # Parameters come from the fragment's own form; none given: Vionlabs' defaults.
    given = {name: value for name, value in request.GET.items() if name in ResultParamsForm.base_fields}
    form = ResultParamsForm(data=given or None)
    return _answer(request, task, form, refresh=False)


@require_POST
@operator_required
def task_result_refresh(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    task = _task(pk)
    given = {name: value for name, value in request.POST.items() if name in ResultParamsForm.base_fields}
    form = ResultParamsForm(data=given or None)
    return _answer(request, task, form, refresh=True)
