"""Small presentation helpers: status badges (colour plus icon plus text), durations. No HTTP, no queries."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..models import TaskStatus

register = template.Library()

NOT_REQUESTED = "not requested"

# (css modifier, icon, label). The icon and the text carry the meaning; the colour only repeats it.
_BADGES: dict[str, tuple[str, str, str]] = {
    TaskStatus.PENDING: ("pending", "◷", "pending"),
    TaskStatus.PROCESSING: ("processing", "↻", "processing"),
    TaskStatus.DONE: ("done", "✓", "done"),
    TaskStatus.FAILED: ("failed", "✕", "failed"),
    TaskStatus.DEACTIVATED: ("deactivated", "⊘", "deactivated"),
    "": ("unanswered", "…", "no answer yet"),
    NOT_REQUESTED: ("missing", "\u2013", "not requested"),
}


def badge_parts(status: str) -> tuple[str, str, str]:
    return _BADGES.get(status, ("unknown", "?", status))


@register.simple_tag
def status_badge(status: str | None) -> SafeString:
    """`<span class="badge badge--done">✓ done</span>`; an unknown status is shown as it comes."""
    modifier, icon, label = badge_parts(status or "")
    return format_html(
        '<span class="badge badge--{}" data-status="{}"><span class="badge__icon" aria-hidden="true">{}</span>'
        " {}</span>",
        modifier,
        status or "",
        icon,
        label,
    )


@register.simple_tag
def cell_badge(cell: Any) -> SafeString:
    """A catalog cell's badge (`selectors.Cell`): the chosen task's status linking to the item's page, with
    its version when it is not the product's default, or "not requested". Written in Python rather than as a
    template: a catalog page draws one per item and product (150 on a page of 50), and the poll the same."""
    task = cell.task
    if task is None:
        return status_badge(NOT_REQUESTED)
    version = (
        format_html(' <span class="version">{}</span>', task.version)
        if task.version != cell.product.default_version
        else ""
    )
    return format_html(
        '<a href="{}" class="badge-link" title="{} {}: {}">{}{}</a>',
        cell.item_url,
        cell.product,
        task.version,
        status_label(task.status),
        status_badge(task.status),
        version,
    )


@register.filter
def status_label(status: str | None) -> str:
    return badge_parts(status or "")[2]


@register.filter
def duration(value: dt.timedelta | None) -> str:
    """A compact duration: `45s`, `12m`, `3h 5m`, `2d 4h`."""
    if value is None:
        return ""
    seconds = max(0, int(value.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


@register.filter
def get_item(mapping: dict, key: object) -> object:
    return mapping.get(key) if mapping else None


@register.filter
def safe_href(href: object) -> bool:
    """Only absolute http(s) links from Vionlabs become clickable: a `javascript:` href stays text."""
    return isinstance(href, str) and href.lower().startswith(("https://", "http://"))
