"""Reads that select rows, as QuerySet methods: views, admin and jobs ask these instead of spelling out
filters, so a rule lives in one place. This module imports nothing from models.py (models imports it)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Self

from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils.text import smart_split, unescape_string_literal

from dashboard.vionlabs import IN_FLIGHT_STATUSES, Status

if TYPE_CHECKING:  # for annotations only: models.py imports this module
    from .models import ProductSetting

#: When a task went in flight: its last request, else the row's creation. `ProductTask.in_flight_since` reads
#: it from a row, `ProductTaskQuerySet.with_inflight_since` computes it in SQL; both from this one tuple.
IN_FLIGHT_SINCE_FIELDS = ("requested_at", "created_at")

#: How `sync_error` starts when a create or deactivate may or may not have reached Vionlabs and the read that
#: should have settled it failed too: the row's status is then not to be trusted until a read succeeds.
OUTCOME_UNKNOWN = "Outcome unknown"


#: Terms a search keeps; the rest are ignored (each is one more indexed condition).
MAX_SEARCH_TERMS = 10


def search_terms(text: str) -> list[str]:
    """The terms of a search box's text: words split on spaces, a quoted phrase kept whole (quotes removed),
    duplicates and empty terms dropped, at most MAX_SEARCH_TERMS."""
    terms: list[str] = []
    for part in smart_split(text.strip()):
        if len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'":
            part = unescape_string_literal(part)
        part = part.strip()
        if part and part.lower() not in {t.lower() for t in terms}:
            terms.append(part)
    return terms[:MAX_SEARCH_TERMS]


class CatalogItemQuerySet(models.QuerySet):
    def search(self, text: str) -> Self:
        """Items whose inventory id or title contains every term of the text (case-insensitive), as the admin
        searches: `number 99999` finds "Title number 99999" and "tt00099999 · Title number 12"; a quoted
        `"number 99999"` must appear as written. Each term is its own trigram-indexed condition on PostgreSQL,
        so a rare term narrows the search whatever common words come with it."""
        qs = self
        for term in search_terms(text):
            qs = qs.filter(Q(inventory_id__icontains=term) | Q(title__icontains=term))
        return qs

    def applicable_to(self, setting: ProductSetting) -> Self:
        """Items of the kinds the product (a ProductSetting) is requested for."""
        return self.filter(kind__in=list(setting.applies_to))

    def covered_for(self, setting: ProductSetting) -> Self:
        """What an action on these items for the product (a ProductSetting) reaches: the items it applies to,
        plus the descendants it applies to of the containers it does not apply to (a series of a product
        for episodes only stands for its episodes). The one rule bulk operations and admin actions share."""
        applies = list(setting.applies_to)
        expand = list(setting.container_kinds_covered_by_episodes)
        # EXISTS per row, not `IN (subquery)`: OR-ed IN lists of a million ids cannot be hashed in memory, and
        # PostgreSQL then rescanned the subquery for every row (a preview of all 1 M items ran for over ten
        # minutes; with EXISTS it counts them in about a second).
        wanted = Q(Exists(self.filter(pk=OuterRef("pk"))))
        if expand:
            containers = self.filter(kind__in=expand)
            wanted |= Q(Exists(containers.filter(pk=OuterRef("parent_id")))) | Q(
                Exists(containers.filter(pk=OuterRef("parent__parent_id")))
            )
        return self.model._default_manager.filter(kind__in=applies).filter(wanted)  # type: ignore[return-value]


class ProductSettingQuerySet(models.QuerySet):
    def enabled(self) -> Self:
        """The products this organisation uses: the columns pages show and what bulk actions may request."""
        return self.filter(enabled=True)


class ProductTaskQuerySet(models.QuerySet):
    def in_flight(self) -> Self:
        return self.filter(status__in=IN_FLIGHT_STATUSES)

    def needs_sync(self) -> Self:
        """What scheduled sync reads: tasks in flight, and tasks whose last change has an unknown outcome."""
        return self.filter(Q(status__in=IN_FLIGHT_STATUSES) | Q(sync_error__startswith=OUTCOME_UNKNOWN))

    def failed(self) -> Self:
        return self.filter(status=Status.FAILED)

    def with_inflight_since(self) -> Self:
        """Annotated with `inflight_since` (see IN_FLIGHT_SINCE_FIELDS), for filtering and ordering by it."""
        return self.annotate(inflight_since=Coalesce(*IN_FLIGHT_SINCE_FIELDS))

    def action_under_way(self, *, now: dt.datetime, abandoned_after: dt.timedelta) -> Self:
        """A create/deactivate is marked on the row and not yet abandoned (see services.ABANDONED_AFTER)."""
        return self.exclude(action_in_progress="").filter(action_started_at__gt=now - abandoned_after)
