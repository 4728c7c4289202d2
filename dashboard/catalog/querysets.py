"""Reads. Views, admin and jobs ask these instead of spelling out filters, so a rule lives in one place."""

import datetime as dt

from django.db import models
from django.db.models import Q
from django.utils import timezone

from dashboard.vionlabs import FINAL_STATUSES, IN_FLIGHT_STATUSES, Status


class CatalogItemQuerySet(models.QuerySet):
    def search(self, text: str):
        """Items whose inventory id or title contains the text (case-insensitive)."""
        text = text.strip()
        if not text:
            return self
        return self.filter(Q(inventory_id__icontains=text) | Q(title__icontains=text))

    def applicable_to(self, setting):
        """Items of the kinds the product (a ProductSetting) is requested for."""
        return self.filter(kind__in=list(setting.applies_to))

    def covered_for(self, setting):
        """What an action on these items for the product (a ProductSetting) reaches: the items it applies to,
        plus the descendants it applies to of the containers it does not apply to (a series of a product
        for episodes only stands for its episodes). The one rule bulk operations and admin actions share."""
        applies = list(setting.applies_to)
        expand = list(setting.container_kinds_covered_by_episodes)
        wanted = Q(pk__in=self.values("pk"))
        if expand:
            containers = self.filter(kind__in=expand).values("pk")
            wanted |= Q(parent__in=containers) | Q(parent__parent__in=containers)
        return self.model._default_manager.filter(kind__in=applies).filter(wanted)


class ProductTaskQuerySet(models.QuerySet):
    def in_flight(self):
        return self.filter(status__in=IN_FLIGHT_STATUSES)

    def final(self):
        return self.filter(status__in=FINAL_STATUSES)

    def failed(self):
        return self.filter(status=Status.FAILED)

    def active(self):
        """Tasks that exist at Vionlabs and are not over: a new create for them would be a duplicate."""
        from .models import TaskStatus  # models imports this module

        return self.filter(status__in=TaskStatus.ACTIVE)

    def stale(self, *, after: dt.timedelta):
        """Not successfully checked for longer than `after` (or never)."""
        cutoff = timezone.now() - after
        return self.filter(Q(last_checked_at__lt=cutoff) | Q(last_checked_at__isnull=True))

    def action_under_way(self, *, now: dt.datetime, abandoned_after: dt.timedelta):
        """A create/deactivate is marked on the row and not yet abandoned (see services.ABANDONED_AFTER)."""
        return self.exclude(action_in_progress="").filter(action_started_at__gt=now - abandoned_after)

    def for_product(self, product: str, version: str | None = None):
        qs = self.filter(product=product)
        return qs.filter(version=version) if version else qs


class TaskEventQuerySet(models.QuerySet):
    pass


class OperationQuerySet(models.QuerySet):
    def active(self):
        return self.filter(state__in=["queued", "running", "cancelling"])
