"""The single poll of each page: badges and rows changed since the last poll. Database only."""

from __future__ import annotations

import datetime as dt

from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from .. import selectors
from ..forms import parse_ids
from ..permissions import viewer_required
from ..selectors import POLL_ROW_MODES, poll_context
from .common import HtmxHttpRequest

#: Rows a poll may cover (a page never shows more).
POLL_MAX_IDS = 500
#: A poll looks this far behind its `since`, so a row saved just before a poll and committed just after it is
#: not missed; re-sending an unchanged badge is harmless.
POLL_OVERLAP = dt.timedelta(seconds=3)


@require_GET
@viewer_required
def poll(request: HtmxHttpRequest) -> HttpResponse:
    """Badges changed since the last poll, as out-of-band swaps, and the poll element itself re-rendered
    (at the idle interval when nothing it covers is in flight). Database only."""
    now = timezone.now()
    try:
        since = dt.datetime.fromtimestamp(float(request.GET.get("since", "")), tz=dt.UTC) - POLL_OVERLAP
    except (ValueError, OverflowError, OSError):
        since = now - POLL_OVERLAP
    item_ids = parse_ids(request.GET.get("items", ""), limit=POLL_MAX_IDS)
    task_ids = parse_ids(request.GET.get("tasks", ""), limit=POLL_MAX_IDS)
    rows = request.GET.get("rows", "")
    cells, changed_tasks, active = selectors.poll_changes(
        item_ids=item_ids, task_ids=task_ids, rows=rows, since=since, now=now
    )
    ctx = {
        "cells": cells,
        "changed_tasks": changed_tasks,
        "rows": rows,
        "announcements": [
            f"{t.item.inventory_id} {t.product} {t.version}: {t.status or 'no answer yet'}"
            for t in changed_tasks
            if rows in POLL_ROW_MODES
        ],
        **poll_context(items=item_ids, tasks=task_ids, rows=rows, active=active, now=now),
    }
    return render(request, "catalog/poll.html#poll-response", ctx)
