"""The overview's per-product stacked bars: drawn without script or inline style (no CSP report), sized by
the counts, readable in light and dark mode, and screenshotted (overview-bars.png, overview-bars-dark.png)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .conftest import login_as, screenshot

pytestmark = pytest.mark.browser


def segment_fills(page, product: str) -> dict[str, tuple[float, str]]:
    """{segment: (rendered width in px, computed fill)} of one product's bar."""
    return page.evaluate(
        """(product) => Object.fromEntries(
            [...document.querySelectorAll(`#coverage-${product} rect.bar__seg`)].map((r) => [
                r.classList[1].replace('bar__seg--', ''),
                [r.getBoundingClientRect().width, getComputedStyle(r).fill],
            ]))""",
        product,
    )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_overview_bars_show_each_products_state_at_a_glance(page, live_server, operator, catalog, scheme):
    login_as(page.context, live_server, operator)
    page.emulate_media(color_scheme=scheme)

    page.goto("/")
    bars = page.locator(".coverage-bars")
    expect(bars).to_be_visible()
    screenshot(page, "overview-bars" if scheme == "light" else "overview-bars-dark")

    adbreaks = segment_fills(page, "adbreaks")
    markers = segment_fills(page, "markers")
    # The catalog fixture has adbreaks tasks in several states, markers on nothing.
    assert {"done", "failed"} <= adbreaks.keys(), adbreaks
    assert list(markers) == ["missing"], markers
    assert all(width > 0 for width, _ in adbreaks.values()), adbreaks
    # Each state its own colour, and a bar as wide as the next one (the segments fill it).
    fills = [fill for _, fill in adbreaks.values()]
    assert len(set(fills)) == len(fills), fills
    total_adbreaks = sum(width for width, _ in adbreaks.values())
    assert abs(total_adbreaks - markers["missing"][0]) < 2
    expect(page.get_by_role("img", name="Ad breaks:", exact=False)).to_be_visible()
