"""What an operator sees of a done task's result on the item page, against the live sandbox: the ad-break and
markers timelines in light and dark mode, the break parameters, the results link, no access, and no CSP
violation anywhere (the `context` fixture fails the test on one)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from dashboard.catalog import services
from dashboard.catalog.models import CatalogItem
from dashboard.sandbox.results import runtime_seconds

from .conftest import login_as, screenshot

pytestmark = pytest.mark.browser

# An id whose made-up markers have an intro, a recap and credits (dashboard/sandbox/results.py).
INVENTORY_ID = "tt1000004"


@pytest.fixture
def episode(products, sandbox):
    # No pending or processing time: the sandbox answers "done" to the create itself.
    sandbox.configure(pending_seconds=0, processing_seconds=0)
    return CatalogItem.objects.create(
        inventory_id=INVENTORY_ID,
        title="Dark, episode 4",
        metadata={"runtime_seconds": runtime_seconds(INVENTORY_ID)},
    )


def done(item, product, version, operator):
    task = services.task_create(item=item, product=product, version=version, actor=operator)
    assert task.status == "done"
    return task


def expand(page, task):
    page.locator(f"#result-{task.pk} > summary").click()
    result = page.locator(f"#task-result-{task.pk}")
    expect(result.locator("svg.timeline-svg")).to_be_visible()
    return result


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_ad_breaks_expand_to_a_timeline_by_rank_with_copyable_times(
    page, live_server, operator, episode, sandbox, scheme
):
    task = done(episode, "adbreaks", "1.0.1", operator)
    page.emulate_media(color_scheme=scheme)
    login_as(page.context, live_server, operator)
    page.goto(f"/items/{episode.pk}/")

    result = expand(page, task)

    ranks = result.locator("rect.tl-mark").evaluate_all("marks => marks.map(m => m.dataset.rank)")
    assert set(ranks) >= {"1", "2"}
    rank1 = result.get_by_label(re.compile(r"^Rank 1 · \d+ times"))
    expect(rank1).to_have_value(re.compile(r"^\d\d:\d\d:\d\d(\n\d\d:\d\d:\d\d)+$"))
    expect(result).to_contain_text("Fetched from Vionlabs just now")
    page.locator(f"#task-result-{task.pk}").scroll_into_view_if_needed()
    screenshot(page, f"results-adbreaks-{scheme}")
    assert sandbox.stats()["endpoints"]["GET results"] == 1


def test_markers_expand_to_intro_recap_and_credits_segments(page, live_server, operator, episode, sandbox):
    task = done(episode, "markers", "2", operator)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        login_as(page.context, live_server, operator)
        page.goto(f"/items/{episode.pk}/")

        result = expand(page, task)

        kinds = result.locator("rect.tl-seg").evaluate_all("segments => segments.map(s => s.dataset.kind)")
        assert kinds == ["intro", "recap", "credits"]
        expect(result.locator('[data-marker="intro"] dd')).to_have_text(
            re.compile("00:00:53 \u2013 00:01:41")
        )
        screenshot(page, f"results-markers-{scheme}")
    # The second page load read the saved copy.
    expect(result).to_contain_text("saved copy")
    assert sandbox.stats()["endpoints"]["GET results"] == 1


def test_changing_the_separation_asks_again_and_redraws(
    page, live_server, viewer, operator, episode, sandbox
):
    task = done(episode, "adbreaks", "1.0.1", operator)
    login_as(page.context, live_server, viewer)
    page.goto(f"/items/{episode.pk}/")
    result = expand(page, task)
    before = result.locator("rect.tl-mark").count()

    page.get_by_label("Min. separation (min)").fill("10")
    page.get_by_role("button", name="Apply").click()

    expect(page.locator(f"#task-result-{task.pk} rect.tl-mark")).not_to_have_count(before)
    expect(page.get_by_label("Min. separation (min)")).to_have_value("10")
    assert page.get_by_role("button", name="Refresh from Vionlabs").count() == 0  # a viewer's view


def test_the_results_link_opens_the_result_page(page, live_server, operator, episode):
    task = done(episode, "adbreaks", "1.0.1", operator)
    login_as(page.context, live_server, operator)
    page.goto(f"/items/{episode.pk}/")

    page.locator(f"#task-{task.pk}").get_by_role("link", name="results").click()

    expect(page).to_have_url(re.compile(rf"/tasks/{task.pk}/result/$"))
    expect(page.locator(f"#task-result-{task.pk} svg.timeline-svg")).to_be_visible()


def test_no_access_to_a_results_api_is_said_plainly(page, live_server, operator, episode, sandbox):
    sandbox.configure(no_access_product="markers")
    task = done(episode, "markers", "2", operator)
    login_as(page.context, live_server, operator)
    page.goto(f"/items/{episode.pk}/")

    page.locator(f"#result-{task.pk} > summary").click()

    expect(page.locator(f"#task-result-{task.pk}").get_by_role("alert")).to_contain_text(
        "Your Vionlabs key has no access to the Markers results API"
    )
