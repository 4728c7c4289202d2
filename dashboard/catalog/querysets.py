"""Reads that select rows, as QuerySet methods: views, admin and jobs ask these instead of spelling out
filters, so a rule lives in one place. This module imports nothing from models.py (models imports it)."""

import datetime as dt
from typing import Self

from django.db import models
from django.db.models import Q

from dashboard.vionlabs import IN_FLIGHT_STATUSES, Status


class CatalogItemQuerySet(models.QuerySet):
    def search(self, text: str) -> Self:
        """Items whose inventory id or title contains the text (case-insensitive)."""
        text = text.strip()
        if not text:
            return self
        return self.filter(Q(inventory_id__icontains=text) | Q(title__icontains=text))


class ProductTaskQuerySet(models.QuerySet):
    def in_flight(self) -> Self:
        return self.filter(status__in=IN_FLIGHT_STATUSES)

    def failed(self) -> Self:
        return self.filter(status=Status.FAILED)

    def action_under_way(self, *, now: dt.datetime, abandoned_after: dt.timedelta) -> Self:
        """A create/deactivate is marked on the row and not yet abandoned (see services.ABANDONED_AFTER)."""
        return self.exclude(action_in_progress="").filter(action_started_at__gt=now - abandoned_after)
