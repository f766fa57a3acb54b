"""Issue 20, point 1 in the real App: a team on one App server, a reviewer per browser tab.

Two tabs of one browser on one App (the README's ``fo.launch_app(..., spaces=...)``), named
alice and bob, answer at the same time (each key pressed in both tabs before either answer
comes back) until 30 or more answers are in. Checked all along: the two tabs never show the
same query, each tab's query is claimed under its own name; and at the end, every answer a tab
reported as saved is in the database under that tab's name, and no answer was refused.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from app_browser import (  # noqa: F401 (fixtures)
    artifacts,
    browser,
    launch_app,
    open_review,
    queries,
    rank_of,
    set_name,
    settle,
    shot,
    status_text,
    wait_for,
)

from alc_fiftyone.review.answers import ANSWERED, attr

pytestmark = pytest.mark.browser

SAVED = re.compile(r"^Saved: rank (\d+)\b")
ANSWERS = 30


@pytest.fixture
def team_dataset(unique_name, tmp_path, monkeypatch):
    """12 generated images (160x120), SLIC superpixels, 48 queries on ``pseudo``."""
    import alc_fiftyone as alc

    monkeypatch.setenv("ALC_FIFTYONE_DIR", str(tmp_path / "alc"))
    ds = alc.make_demo_dataset(
        name=unique_name, num_samples=12, size=(160, 120), seed=7, persistent=True
    )
    alc.compute_superpixels(ds, method="slic", n_segments=30)
    alc.rank_superpixels(ds, "pseudo", budget=48)
    yield ds
    ds.delete()


def holders(ds) -> dict:
    """rank -> the name holding that query's claim."""
    return {
        d["rank"]: d.claimed_by for d in queries(ds).values() if attr(d, "status") == "claimed"
    }


def key_for(page, i: int) -> str:
    """Enter (yes) or, every other time when the card offers one, 1 (the first other class):
    confirmations and corrections, some on the same images in both tabs."""
    if i % 2 and page.get_by_role("button", name=re.compile(r"^\s*1\. ")).count():
        return "1"
    return "Enter"


def test_two_tabs_of_one_app_are_two_reviewers(team_dataset, launch_app, artifacts, browser):
    ds = team_dataset
    url = launch_app(ds)
    window = browser.context()
    tabs = {"alice": browser.page(context=window), "bob": browser.page(context=window)}
    for page in tabs.values():
        open_review(page, url)
        settle(page)
    for name, page in tabs.items():
        set_name(page, name)
        settle(page)
    for name, page in tabs.items():
        wait_for(lambda p=page: rank_of(p) is not None, page)
        shot(page, artifacts, f"1-{name}-named")

    overlaps, foreign, refused, saved = [], [], [], {n: [] for n in tabs}
    total = 0
    for i in range(40):
        before = {n: (rank_of(p), status_text(p)) for n, p in tabs.items()}
        ra, rb = before["alice"][0], before["bob"][0]
        if ra is None and rb is None:
            break
        if ra is not None and ra == rb:
            overlaps.append(ra)
        held = holders(ds)
        for name, (rank, _) in before.items():
            if rank is not None and held.get(rank) != name:
                foreign.append((name, rank, held.get(rank)))
        # both tabs answer at the same time: each key is pressed before either answer is back
        for name, page in tabs.items():
            if before[name][0] is not None:
                page.keyboard.press(key_for(page, i))
        for name, page in tabs.items():
            if before[name][0] is None:
                continue
            try:
                wait_for(lambda p=page, b=before[name]: (rank_of(p), status_text(p)) != b, page)
            except AssertionError:
                refused.append((name, before[name][0], "the card did not change"))
                continue
            settle(page, 300)
            text = status_text(page)
            m = SAVED.match(text)
            if m:
                saved[name].append(int(m.group(1)))
                if int(m.group(1)) != before[name][0]:
                    refused.append((name, before[name][0], f"saved another rank: {text}"))
            else:
                refused.append((name, before[name][0], text))
        total = sum(len(v) for v in saved.values())
        if i == 5:
            for name, page in tabs.items():
                shot(page, artifacts, f"2-{name}-answering")
        if total >= ANSWERS:
            break
    for name, page in tabs.items():
        settle(page)
        shot(page, artifacts, f"3-{name}-end")

    done = {d["rank"]: d for d in queries(ds).values() if attr(d, "status") in ANSWERED}
    wrong = [
        (name, rank, attr(done.get(rank), "answered_by") if rank in done else "not answered")
        for name, ranks in saved.items()
        for rank in ranks
        if rank not in done or done[rank].answered_by != name
    ]
    by = sorted(f"{k}: {v}" for k, v in Counter(d.answered_by for d in done.values()).items())
    print(
        f"saved per tab { ({n: len(v) for n, v in saved.items()}) }; in the database "
        f"{len(done)} answers by {by}; shown in both tabs {len(overlaps)}x; held under "
        f"another name {len(foreign)}x; refused {len(refused)}; saved but wrong {len(wrong)}"
    )
    assert not overlaps, f"the same query was shown in both tabs (ranks {overlaps})"
    assert not foreign, f"a tab showed a query held under another name: {foreign[:8]}"
    assert not refused, f"answers refused or lost ({len(refused)}): {refused[:6]}"
    assert not wrong, f"answers the tab reported as saved, in the database as: {wrong[:8]}"
    assert total >= ANSWERS, f"only {total} answers saved"
    assert {d.answered_by for d in done.values()} == set(tabs)
    assert len(done) == total, f"{len(done)} answers in the database, {total} reported saved"
