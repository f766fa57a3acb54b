"""The review panel in the real App: a headless chromium opens it, answers three queries
(confirm, correct, undo) with clicks, and the database is checked after each.

The App and the browser come from ``app_browser`` (shared with the other browser tests);
screenshots of each step are kept in ``$ALC_TEST_ARTIFACTS``.
"""

from __future__ import annotations

import re

import pytest
from app_browser import (  # noqa: F401 (fixtures)
    app,
    app_dataset,
    artifacts,
    browser,
    by_status,
    dismiss_banner,
    launch_app,
    open_review,
    queries,
    wait_for,
)

from alc_fiftyone.review.answers import attr

pytestmark = pytest.mark.browser


def test_answer_three_queries_in_the_app(app, app_dataset, artifacts, browser):
    ds = app_dataset
    page = browser.page()
    open_review(page, app)
    dismiss_banner(page)
    page.screenshot(path=str(artifacts / "1-query.png"))

    claimed = by_status(ds, "claimed")
    assert len(claimed) == 1 and claimed[0].claimed_by.startswith("browser-")
    first = claimed[0]
    reviewer = first.claimed_by

    # 1. confirm
    page.get_by_role("button", name=re.compile(rf"^Yes, it is {first.label}")).click()
    page.get_by_text("Saved:", exact=False).wait_for(timeout=30_000)
    wait_for(lambda: len(by_status(ds, "confirmed")) == 1, page)
    d1 = queries(ds)[first.id]
    assert d1.status == "confirmed" and d1.answered_by == reviewer
    page.screenshot(path=str(artifacts / "2-confirmed.png"))

    # 2. correct with the first suggested class
    wait_for(lambda: len(by_status(ds, "claimed")) == 1, page)
    second = by_status(ds, "claimed")[0]
    suggestion = page.get_by_role("button", name="1. ", exact=False)
    suggestion.first.wait_for(timeout=30_000)
    picked = suggestion.first.inner_text().split(". ", 1)[1].strip()
    suggestion.first.click()
    wait_for(lambda: attr(queries(ds)[second.id], "status") == "corrected", page)
    d2 = queries(ds)[second.id]
    assert d2.answer == picked and d2.answered_by == reviewer
    page.get_by_text(f"\u2192 {picked}", exact=False).wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts / "3-corrected.png"))

    # 3. undo: the correction is taken back and its query is shown again
    page.get_by_role("button", name=re.compile(r"^Undo")).click()
    page.get_by_text("Undone:", exact=False).wait_for(timeout=30_000)
    wait_for(lambda: attr(queries(ds)[second.id], "status") == "claimed", page)
    d2 = queries(ds)[second.id]
    assert attr(d2, "answer") is None and d2.claimed_by == reviewer
    assert queries(ds)[first.id].status == "confirmed"
    assert len(by_status(ds, "corrected")) == 0
    page.screenshot(path=str(artifacts / "4-undone.png"))

    # keyboard (panels/keys.js): Enter confirms the query on screen, U undoes it
    page.keyboard.press("Enter")
    wait_for(lambda: attr(queries(ds)[second.id], "status") == "confirmed", page)
    page.keyboard.press("u")
    wait_for(lambda: attr(queries(ds)[second.id], "status") == "claimed", page)
    page.screenshot(path=str(artifacts / "5-keyboard.png"))
