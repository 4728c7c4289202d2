"""Downloads of the catalog and task lists, filtered exactly as on screen (the same filter forms), streamed."""

from __future__ import annotations

from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from .. import selectors
from ..exports import EXPORTERS
from ..forms import CatalogFilterForm, TaskFilterForm
from ..models import CatalogItem
from ..permissions import viewer_required
from ..stuck import compute_thresholds
from .common import HtmxHttpRequest

CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


def _bad_filter(errors: str) -> HttpResponse:
    return HttpResponse(
        f"The filter is not valid, so nothing was exported:\n{errors}",
        status=400,
        content_type="text/plain; charset=utf-8",
    )


def _stream(kind: str, fmt: str, rows: object) -> StreamingHttpResponse:
    response = StreamingHttpResponse(EXPORTERS[(kind, fmt)](rows), content_type=CONTENT_TYPES[fmt])
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="{kind}-{stamp}.{fmt}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
@viewer_required
def item_export(request: HtmxHttpRequest, fmt: str) -> HttpResponseBase:
    """The catalog page's items (its filter from the query string; sort and cursor ignored)."""
    if fmt not in CONTENT_TYPES:
        return HttpResponse("Unknown format: use csv or jsonl.", status=404)
    form = CatalogFilterForm(data=request.GET)
    if not form.is_valid():
        return _bad_filter(form.errors.as_text())
    items = form.filter_items(CatalogItem.objects.all(), settings=selectors.product_settings())
    return _stream("catalog", fmt, items)


@require_GET
@viewer_required
def task_export(request: HtmxHttpRequest, fmt: str) -> HttpResponseBase:
    """The task page's tasks, newest first (its filter from the query string, the stuck flag included)."""
    if fmt not in CONTENT_TYPES:
        return HttpResponse("Unknown format: use csv or jsonl.", status=404)
    form = TaskFilterForm(data=request.GET)
    if not form.is_valid():
        return _bad_filter(form.errors.as_text())
    tasks = selectors.filtered_tasks(form, compute_thresholds(selectors.product_settings()))
    return _stream("tasks", fmt, tasks)
