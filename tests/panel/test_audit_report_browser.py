"""The audit's HTML report in a real browser (issue 21): a headless chromium opens the file
and finds the headings, the estimate table, the confusion table, the plot and the pictures
(decoded: their natural width is not 0), and nothing it would fetch from elsewhere.

And the review panel's line that tells a reviewer where they stand (issue 21, point 4), in
the real App: how many of the latest answers corrected a label, and once the random queries
are answered the share of the labelled pixels still to fix, as ``alc.audit`` estimates it.

Skipped where /usr/bin/chromium or playwright is absent (app_browser's ``browser`` fixture).
"""

from __future__ import annotations

import pytest
from app_browser import (  # noqa: F401 (fixtures)
    artifacts,
    browser,
    by_status,
    dismiss_banner,
    launch_app,
    open_review,
    panel_text,
    queries,
    rank_of,
    wait_for,
)

import alc_fiftyone as alc
from alc_fiftyone.review import standing
from alc_fiftyone.review.answers import attr

pytestmark = pytest.mark.browser


def test_the_report_opens_with_its_tables_and_plots(browser, unique_name, tmp_alc_dir, tmp_path):
    ds = alc.make_demo_dataset(name=unique_name, num_samples=6, size=(96, 72), seed=4)
    try:
        alc.compute_superpixels(ds, label_field="pseudo")
        alc.simulate(
            ds, "pseudo", "ground_truth", rounds=2, budget_per_round=16, estimate_share=0.5
        )
        path = alc.audit(ds, queries_field="alc_sim_queries").to_html(tmp_path / "report.html")
    finally:
        ds.delete()
    page = browser.page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"file://{path}")
    headings = page.locator("h1, h2").all_inner_texts()
    assert headings[0].startswith("Label audit")
    for h in ("Error rate", "Corrections by class", "Hit rate by rank", "Most corrected images"):
        assert h in headings
    assert page.locator("#error-rate tr").count() == 3
    assert page.locator("#confusion tr").count() >= 2
    assert page.locator("#corrections tbody tr").count() > 0
    widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
    assert len(widths) >= 2 and all(w > 0 for w in widths)
    assert all(u.startswith(("file:", "data:")) for u in requests)  # self-contained


def test_the_panel_says_where_the_reviewer_stands(
    browser, launch_app, artifacts, unique_name, tmp_path, monkeypatch
):
    monkeypatch.setenv("ALC_FIFTYONE_DIR", str(tmp_path / "alc"))  # the App reads the masks
    ds = alc.make_demo_dataset(
        name=unique_name, num_samples=6, size=(160, 120), seed=4, persistent=True
    )
    try:
        alc.compute_superpixels(ds, label_field="pseudo")
        alc.rank_superpixels(ds, "pseudo", budget=8, estimate_share=0.5)
        page = browser.page()
        open_review(page, launch_app(ds))
        dismiss_banner(page)
        wait_for(lambda: "estimated once its random queries" in panel_text(page), page)
        page.screenshot(path=str(artifacts / "standing-0.png"))
        # the keys first, as a reviewer does: 1 (the first suggestion) and Enter (confirm)
        for i in range(8):
            # the next query is claimed before the card shows it: a key pressed in between
            # answers the card's old query (refused, "already answered"), so wait for it
            wait_for(lambda: len(by_status(ds, "claimed")) == 1, page)
            held = by_status(ds, "claimed")[0]
            wait_for(lambda held=held: rank_of(page) == attr(held, "rank"), page)
            page.keyboard.press("1" if i % 2 else "Enter")
            done = i + 1
            wait_for(
                lambda done=done: (
                    sum(d.status in ("confirmed", "corrected") for d in queries(ds).values())
                    == done
                ),
                page,
            )
        want = standing(ds)
        assert want["error_rate"] is not None and want["line"].startswith("8 answers corrected")
        wait_for(lambda: want["line"] in panel_text(page).replace("\n", " "), page)
        assert "of the labelled pixels are still to fix" in want["line"]
        page.screenshot(path=str(artifacts / "standing-8.png"))
    finally:
        ds.delete()
