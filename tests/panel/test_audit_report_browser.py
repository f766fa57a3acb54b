"""The audit's HTML report in a real browser (issue 21): a headless chromium opens the file
and finds the headings, the estimate table, the confusion table, the plot and the pictures
(decoded: their natural width is not 0), and nothing it would fetch from elsewhere.

Skipped where /usr/bin/chromium or playwright is absent (app_browser's ``browser`` fixture).
"""

from __future__ import annotations

import pytest
from app_browser import artifacts, browser  # noqa: F401 (fixtures)

import alc_fiftyone as alc

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
