"""What every view module shares: the operate check and an upstream error in an operator's words."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from dashboard.vionlabs import redaction
from dashboard.vionlabs.errors import (
    VionlabsNotFound,
    VionlabsOutOfTime,
    VionlabsRateLimited,
    VionlabsRejected,
    VionlabsUnauthorized,
    VionlabsUnavailable,
)

from ..client import time_budget
from ..services import ActionRefused


class HtmxHttpRequest(HttpRequest):
    """A request that passed django-htmx's middleware, for typing views: `request.htmx` is always set."""

    htmx: HtmxDetails


@contextmanager
def action_budget() -> Iterator[None]:
    """The Vionlabs calls of one click share REQUEST_ACTION_BUDGET seconds, settling reads included, so a
    hanging Vionlabs cannot hold a web worker until its timeout kills it."""
    with time_budget(float(settings.REQUEST_ACTION_BUDGET)):
        yield


def _out_of_time(exc: Exception) -> bool:
    # A create whose POST ran out of time re-raises the POST's error with the settling read's as its cause.
    return isinstance(exc, VionlabsOutOfTime) or isinstance(exc.__cause__, VionlabsOutOfTime)


def redact(text: str) -> str:
    """The client never puts the key in a message; this is the second lock on that door."""
    return redaction.redact(text, settings.VIONLABS_API_KEY)


# The client ends its messages with the call it made ("[GET /tasks/… , inventory_id 'x']"): useful in logs,
# noise on a page where the row already says which task it is.
_CALL_CONTEXT = re.compile(r"\s*\[(?:GET|POST|PUT|DELETE) /[^\]]*\]\s*$")


def describe_error(exc: Exception) -> str:
    """An upstream error or a refusal in words an operator can act on. Never the key, never a traceback."""
    if isinstance(exc, ActionRefused):
        return redact(str(exc))
    detail = redact(_CALL_CONTEXT.sub("", str(exc)))
    if isinstance(exc, VionlabsRejected):
        fields = "; ".join(f"{d.loc}: {d.msg}" if d.loc else d.msg for d in exc.details)
        return f"Vionlabs rejected the request: {redact(fields) or detail}"
    if isinstance(exc, VionlabsRateLimited):
        if exc.retry_after is not None:
            return f"Vionlabs is limiting our requests: try again in {max(1, round(exc.retry_after))} s."
        return "Vionlabs is limiting our requests: try again in a minute."
    if isinstance(exc, VionlabsUnauthorized):
        return (
            f"Vionlabs refused our credentials ({exc.status_code or 'unauthorised'}): the API key setting needs "
            "checking by an administrator."
        )
    if isinstance(exc, VionlabsNotFound):
        return f"Vionlabs does not know this item or task (404). {detail}"
    if isinstance(exc, VionlabsUnavailable) and _out_of_time(exc):
        within = f"Vionlabs did not answer within {float(settings.REQUEST_ACTION_BUDGET):g} s"
        if exc.outcome_unknown:
            return f"{within}; the dashboard will check the task's status in the background."
        return f"{within}; nothing was changed. Try again in a minute."
    if isinstance(exc, VionlabsUnavailable):
        # The client's own words already say what happened, what to do, and whether the change may have
        # reached Vionlabs.
        return f"Vionlabs could not be reached. {detail}"
    return f"Vionlabs gave an answer we could not use. {detail}"
