"""The debug error page (and error e-mails) never show the Vionlabs key held in a library frame's locals."""

from __future__ import annotations

import html
import sys

import pytest
from django.test import RequestFactory
from django.views.debug import ExceptionReporter

# Built at run time: the report shows source lines around each frame, and the key must not be there either.
KEY = "".join(["Ca&na", '"ry<', "key>/+ %é#?"])


def _fail_like_requests(url: str) -> None:
    prepared_url = url  # noqa: F841 - what a failing frame inside requests holds
    raise ConnectionError("the connection was refused")


@pytest.mark.parametrize("encode", ["raw", "url"])
def test_the_technical_500_page_hides_a_url_holding_the_key(settings, encode):
    from urllib.parse import quote

    settings.VIONLABS_API_KEY = KEY
    settings.DEBUG = True
    key_in_url = KEY if encode == "raw" else quote(KEY, safe="")
    try:
        _fail_like_requests(f"https://apis.example.test/tasks/catalog-item/x?key={key_in_url}")
    except ConnectionError:
        exc_type, exc_value, tb = sys.exc_info()
    reporter = ExceptionReporter(RequestFactory().get("/items/1/"), exc_type, exc_value, tb)

    page = reporter.get_traceback_html()
    text = reporter.get_traceback_text()

    for rendered in (page, text):
        assert quote(KEY, safe="") not in rendered
        assert "Ca&amp;na&quot;ry&lt;key&gt;" not in rendered
    assert "value hidden: it contains the Vionlabs API key" in page
    assert "the connection was refused" in page  # the rest of the report is intact


def _fail_holding(value: object) -> None:
    held = value  # noqa: F841 - a local whose repr escapes the key
    raise ConnectionError("the connection was refused")


# Both quote characters and a backslash: repr() escapes the key, so its raw form is not in the repr.
REPR_KEY = "".join(["it's", ' "quoted" ', "back", chr(92), "slash"])


@pytest.mark.parametrize("held", ["string", "in-a-url", "in-a-dict"])
def test_the_technical_500_page_hides_the_key_in_its_repr_form(settings, held):
    settings.VIONLABS_API_KEY = REPR_KEY
    settings.DEBUG = True
    value = {
        "string": REPR_KEY,
        "in-a-url": f"https://apis.example.test/x?key={REPR_KEY}",
        "in-a-dict": {"key": REPR_KEY},
    }[held]
    try:
        _fail_holding(value)
    except ConnectionError:
        exc_type, exc_value, tb = sys.exc_info()
    reporter = ExceptionReporter(RequestFactory().get("/items/1/"), exc_type, exc_value, tb)

    text = reporter.get_traceback_text()
    page = reporter.get_traceback_html()

    escaped = repr(REPR_KEY)[1:-1]
    assert escaped not in text
    assert html.escape(escaped) not in page
    assert "value hidden: it contains the Vionlabs API key" in page
