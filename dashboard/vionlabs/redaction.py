"""The one redactor of the API key: every form the key can travel in, cut out of any text.

The key rides in the query string, so it shows up URL-encoded (either case of hex digits, `+` or `%20` for a
space, `/` encoded or not), JSON-escaped, HTML-escaped and, in tracebacks and debug pages, inside `repr()`.
The client, the services (before anything is stored), the views and the error reports all call `redact`, so
a form found missing is added here once.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
#: A `key=` query parameter, whoever's key it carries (also its `%3D`-encoded form). A value already masked
#: ("***", as the sandbox logs it, or "[redacted]") is left as it is.
_QUERY_KEY = re.compile(
    r"((?:^|[?&;])key(?:=|%3D))(?!(?:\*\*\*|\[redacted\])(?:[&#\s\"'<>]|$))[^&#\s\"'<>]*", re.IGNORECASE
)
_PERCENT_HEX = re.compile(r"%[0-9A-F]{2}")


def _lower_hex(text: str) -> str:
    return _PERCENT_HEX.sub(lambda match: match.group().lower(), text)


@functools.lru_cache(maxsize=16)
def key_forms(key: str) -> frozenset[str]:
    """The key as it may appear in a URL, a form body, JSON, HTML or a repr (empty for an empty key)."""
    if not key:
        return frozenset()
    url_forms = {quote(key, safe=""), quote(key), quote_plus(key), quote_plus(key, safe="/")}
    escaped = key.replace("\\", "\\\\")
    forms = {
        key,
        *url_forms,
        *(_lower_hex(form) for form in url_forms),
        json.dumps(key)[1:-1],
        json.dumps(key, ensure_ascii=False)[1:-1],
        html.escape(key),
        html.escape(key, quote=False),
        # repr() of the key alone, and inside a longer string whose quoting repr chose differently.
        repr(key)[1:-1],
        escaped,
        escaped.replace("'", "\\'"),
    }
    return frozenset(form for form in forms if form)


def redact_forms(text: str, forms: Iterable[str]) -> str:
    """`text` with each of `forms` (longest first) and every `key=` query value replaced by REDACTED."""
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return _QUERY_KEY.sub(rf"\1{REDACTED}", text)


def redact(text: str, key: str) -> str:
    """`text` with `key`, in any of its forms, and every `key=` query value replaced by REDACTED."""
    if not text:
        return text
    return redact_forms(text, key_forms(key))


def contains_key(text: str, key: str) -> bool:
    """Whether any form of `key` appears in `text`."""
    return any(form in text for form in key_forms(key))
