"""Error pages and error e-mails never show the Vionlabs API key.

Django's SafeExceptionReporterFilter hides settings whose names look secret, but not the local variables of
library frames: a request that failed inside `requests` holds the full URL, `?key=` included, in several of
them. This filter blanks any frame variable whose text contains the key in any encoding it travels in.
"""

from __future__ import annotations

from collections.abc import ItemsView
from types import FrameType
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter

from dashboard.vionlabs.redaction import contains_key

REDACTED = "[value hidden: it contains the Vionlabs API key]"


class KeyRedactingExceptionReporterFilter(SafeExceptionReporterFilter):
    def get_traceback_frame_variables(
        self, request: HttpRequest | None, tb_frame: FrameType
    ) -> ItemsView[str, Any]:
        variables = super().get_traceback_frame_variables(request, tb_frame)
        key = getattr(settings, "VIONLABS_API_KEY", "")
        if not key:
            return variables
        return {name: self._hide_key(value, key) for name, value in variables}.items()

    @staticmethod
    def _hide_key(value: object, key: str) -> object:
        try:
            text = repr(value)
        except Exception:  # a broken __repr__ must not break the error page
            return value
        return REDACTED if contains_key(text, key) else value
