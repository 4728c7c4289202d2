"""Error pages and error e-mails never show the Vionlabs API key.

Django's SafeExceptionReporterFilter hides settings whose names look secret, but not the local variables of
library frames: a request that failed inside `requests` holds the full URL, `?key=` included, in several of
them. This filter blanks any frame variable whose text contains the key in any encoding it travels in.
"""

import html
import json
from urllib.parse import quote, quote_plus

from django.conf import settings
from django.views.debug import SafeExceptionReporterFilter

REDACTED = "[value hidden: it contains the Vionlabs API key]"


def key_forms(key: str) -> set[str]:
    """The key as it may appear in a URL, a form body, JSON or HTML."""
    return {key, quote(key, safe=""), quote_plus(key), json.dumps(key)[1:-1], html.escape(key)} - {""}


class KeyRedactingExceptionReporterFilter(SafeExceptionReporterFilter):
    def get_traceback_frame_variables(self, request, tb_frame):
        variables = super().get_traceback_frame_variables(request, tb_frame)
        key = getattr(settings, "VIONLABS_API_KEY", "")
        if not key:
            return variables
        forms = key_forms(key)
        return [(name, self._hide_key(value, forms)) for name, value in variables]

    @staticmethod
    def _hide_key(value: object, forms: set[str]) -> object:
        try:
            text = repr(value)
        except Exception:  # a broken __repr__ must not break the error page
            return value
        return REDACTED if any(form in text for form in forms) else value
