"""Alert digests: new failures and newly stuck tasks since the last digest, per product, by e-mail and/or a
webhook (JSON with a Slack-compatible `text`). Sent by the scheduler (`sync_tasks`), see `send_digest_if_due`.

Rules:
- At most one digest every ALERT_INTERVAL seconds, and none while nothing is new.
- Never the same event twice: the AlertCursor row holds the last reported TaskEvent id and the moment up to
  which stuck tasks were reported. A scheduler locks that row, moves it past what it is about to send, commits,
  and only then sends (no HTTP inside a transaction): concurrent schedulers cannot both send one event. A
  delivery that fails is logged and noted on the row, not sent again: an alert digest is at most once.
- The first run starts from "now": history from before alerts were configured is not news.
- Nothing in a digest carries the Vionlabs key (every text is redacted), and the webhook URL, itself a secret
  for Slack, is never logged.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, Max
from django.urls import reverse
from django.utils import timezone

from dashboard.vionlabs import redaction

from .models import AlertCursor, ProductTask, TaskEvent, TaskStatus
from .services import ensure_no_transaction
from .stuck import compute_thresholds, stuck_filter

logger = logging.getLogger(__name__)

CURSOR_NAME = "digest"
#: Items listed per product and kind; the counts cover the rest.
ITEMS_LISTED = 5


@dataclass(frozen=True)
class Entry:
    inventory_id: str
    url: str
    note: str = ""


@dataclass
class Section:
    product: str
    failed: int = 0
    stuck: int = 0
    failed_items: list[Entry] = field(default_factory=list)
    stuck_items: list[Entry] = field(default_factory=list)


@dataclass
class Digest:
    sections: list[Section]

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.sections)

    @property
    def stuck(self) -> int:
        return sum(s.stuck for s in self.sections)

    @property
    def is_empty(self) -> bool:
        return not self.failed and not self.stuck

    @property
    def subject(self) -> str:
        return f"Vionlabs dashboard: {self.failed} new failure(s), {self.stuck} newly stuck task(s)"

    def text(self) -> str:
        lines = [self.subject + "."]
        for section in self.sections:
            lines.append("")
            lines.append(f"{section.product}: {section.failed} failed, {section.stuck} stuck")
            for title, count, entries in (
                ("Failed", section.failed, section.failed_items),
                ("Stuck", section.stuck, section.stuck_items),
            ):
                for entry in entries:
                    note = f" ({entry.note})" if entry.note else ""
                    lines.append(f"  {title}: {entry.inventory_id}{note} {entry.url}")
                if count > len(entries):
                    lines.append(f"  … and {count - len(entries)} more {title.lower()}")
        return _redact("\n".join(lines))

    def as_json(self) -> dict[str, Any]:
        return {
            "text": self.text(),
            "failed": self.failed,
            "stuck": self.stuck,
            "products": {
                s.product: {
                    "failed": s.failed,
                    "stuck": s.stuck,
                    "failed_items": [e.inventory_id for e in s.failed_items],
                    "stuck_items": [e.inventory_id for e in s.stuck_items],
                }
                for s in self.sections
            },
        }


def _redact(text: str) -> str:
    return redaction.redact(text, settings.VIONLABS_API_KEY)


def _item_url(item_id: int) -> str:
    return f"{settings.SITE_URL}{reverse('catalog:item-detail', args=[item_id])}"


def recipients() -> str:
    """Where a digest goes, for people (the webhook's URL is a secret: only its host is named)."""
    targets = list(settings.ALERT_EMAILS)
    if settings.ALERT_WEBHOOK_URL:
        host = urlsplit(settings.ALERT_WEBHOOK_URL).hostname or "webhook"
        targets.append(f"webhook ({host})")
    return ", ".join(targets)


def collect(*, after_event: int, up_to_event: int, stuck_since: dt.datetime, now: dt.datetime) -> Digest:
    """Failures among events (after_event, up_to_event], and tasks that became stuck in (stuck_since, now]."""
    sections: dict[str, Section] = {}

    def section(product: str) -> Section:
        return sections.setdefault(product, Section(product))

    failures = TaskEvent.objects.filter(
        pk__gt=after_event, pk__lte=up_to_event, status_after=TaskStatus.FAILED
    ).exclude(status_before=TaskStatus.FAILED)
    for product, n in failures.values_list("task__product").annotate(n=Count("pk")).order_by("task__product"):
        entry = section(product)
        entry.failed = n
        failed_rows = (
            failures.filter(task__product=product)
            .order_by("pk")
            .values_list("task__item_id", "task__item__inventory_id", "error")[:ITEMS_LISTED]
        )
        entry.failed_items = [
            Entry(inv, _item_url(pk), (error or "")[:200]) for pk, inv, error in failed_rows
        ]

    thresholds = compute_thresholds()
    newly_stuck = (
        ProductTask.objects.with_inflight_since()
        .filter(stuck_filter(thresholds, now=now))
        .exclude(stuck_filter(thresholds, now=stuck_since))
    )
    for product, n in newly_stuck.values_list("product").annotate(n=Count("pk")).order_by("product"):
        entry = section(product)
        entry.stuck = n
        stuck_rows = (
            newly_stuck.filter(product=product)
            .order_by("inflight_since", "pk")  # type: ignore[misc]  # an annotation the plugin cannot see
            .values_list("item_id", "item__inventory_id", "status")[:ITEMS_LISTED]
        )
        entry.stuck_items = [Entry(inv, _item_url(pk), status) for pk, inv, status in stuck_rows]
    return Digest(sorted(sections.values(), key=lambda s: s.product))


def _due(cursor: AlertCursor, now: dt.datetime) -> bool:
    interval = dt.timedelta(seconds=int(settings.ALERT_INTERVAL))
    return cursor.last_sent_at is None or now - cursor.last_sent_at >= interval


def send_digest_if_due(now: dt.datetime | None = None) -> Digest | None:
    """Send a digest if alerts are configured, the interval has passed and something is new; returns what
    was sent (None otherwise). Delivery errors are logged and kept on the cursor row, never raised."""
    if not settings.ALERT_EMAILS and not settings.ALERT_WEBHOOK_URL:
        return None
    now = now or timezone.now()
    with transaction.atomic():
        AlertCursor.objects.get_or_create(name=CURSOR_NAME)
        cursor = AlertCursor.objects.select_for_update().get(name=CURSOR_NAME)
        up_to = TaskEvent.objects.aggregate(last=Max("pk"))["last"] or 0
        if cursor.stuck_checked_at is None:
            cursor.last_event_id, cursor.stuck_checked_at = up_to, now
            cursor.save(update_fields=["last_event_id", "stuck_checked_at"])
            return None
        if not _due(cursor, now):
            return None
        digest = collect(
            after_event=cursor.last_event_id, up_to_event=up_to, stuck_since=cursor.stuck_checked_at, now=now
        )
        cursor.last_event_id, cursor.stuck_checked_at = max(up_to, cursor.last_event_id), now
        fields = ["last_event_id", "stuck_checked_at"]
        if not digest.is_empty:
            cursor.last_sent_at, cursor.last_sent_to = now, recipients()
            cursor.last_summary, cursor.last_error = digest.subject, ""
            fields += ["last_sent_at", "last_sent_to", "last_summary", "last_error"]
        cursor.save(update_fields=fields)
    if digest.is_empty:
        return None
    errors = deliver(digest)
    if errors:
        AlertCursor.objects.filter(name=CURSOR_NAME).update(last_error="; ".join(errors))
    return digest


def deliver(digest: Digest) -> list[str]:
    """Send `digest` to every configured target; returns what went wrong (never the key or the URL)."""
    ensure_no_transaction()
    errors: list[str] = []
    if settings.ALERT_EMAILS:
        try:
            send_mail(digest.subject, digest.text(), None, list(settings.ALERT_EMAILS))
        except Exception as error:  # any backend's failure: reported, and the webhook still goes out
            logger.warning("Alert e-mail not sent: %s", _redact(type(error).__name__ + ": " + str(error)))
            errors.append(f"e-mail: {type(error).__name__}")
    if settings.ALERT_WEBHOOK_URL:
        try:
            response = requests.post(
                settings.ALERT_WEBHOOK_URL,
                json=digest.as_json(),
                timeout=float(settings.ALERT_WEBHOOK_TIMEOUT),
            )
            response.raise_for_status()
        except requests.HTTPError as error:
            status = error.response.status_code if error.response is not None else "?"
            logger.warning("Alert webhook answered HTTP %s", status)
            errors.append(f"webhook: HTTP {status}")
        except requests.RequestException as error:
            # The exception text holds the URL: only its class is told.
            logger.warning("Alert webhook not reached: %s", type(error).__name__)
            errors.append(f"webhook: {type(error).__name__}")
    return errors


def last_alert() -> AlertCursor | None:
    """The cursor row, for the overview's "last alert sent" line (None before the first scheduler run)."""
    return AlertCursor.objects.filter(name=CURSOR_NAME).first()
