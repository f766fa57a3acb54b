"""The review panel's caches (``next_query`` / ``review_progress`` with ``max_age``) on real
datasets: they give what the uncached aggregations give after every kind of change made
through the package, see other processes' changes (direct database writes here) once older
than ``max_age``, and a cached queue never serves a query twice or one another reviewer holds.
"""

from __future__ import annotations

import threading
import time

import pytest
from bson import ObjectId

import alc_fiftyone as alc
from alc_fiftyone.review.queries import get_query
from alc_fiftyone.store import changes

FIELD = "alc_queries"


@pytest.fixture
def ranked(ranked_demo):
    return ranked_demo(num_samples=10, size=(80, 60), seed=11, n_segments=30, budget=16)


def _both(samples, user, max_age=60.0):
    cached = alc.review_progress(samples, FIELD, user, max_age=max_age)
    exact = alc.review_progress(samples, FIELD, user)
    return cached, exact


def _other_class(ds, label):
    return next(n for v, n in ds.mask_targets["pseudo"].items() if v != 255 and n != label)


def test_cached_progress_follows_every_change(ranked):
    cached, exact = _both(ranked, "ann")
    assert cached == exact and exact["round"]["queued"] == 16
    q1 = alc.next_query(ranked, "ann", max_age=60)
    assert _both(ranked, "ann")[0]["round"]["claimed"] == 1
    alc.answer(ranked, q1["id"], _other_class(ranked, q1["label"]), user="ann")
    q2 = alc.next_query(ranked, "bob", max_age=60)
    alc.answer(ranked, q2["id"], None, user="bob")
    q3 = alc.next_query(ranked, "ann", max_age=60)
    alc.skip(ranked, q3["id"], user="ann")
    q4 = alc.next_query(ranked, "ann", max_age=60)
    alc.release(ranked, q4["id"], "ann")
    for user in ("ann", "bob", None):
        cached, exact = _both(ranked, user)
        assert cached == exact, user
    assert exact["round"]["answered"] == 2 and exact["round"]["skipped"] == 1
    assert exact["round"]["pixels_changed"] > 0
    assert _both(ranked, "ann")[0]["round"]["answered_by_user"] == 1
    alc.undo(ranked, q1["id"], user="ann")
    cached, exact = _both(ranked, "ann")
    assert cached == exact and exact["round"]["answered"] == 1
    # a view: a subset of samples, and queries filtered by class
    from fiftyone import ViewField as F

    subset = ranked.skip(3).limit(4)
    label = q2["label"]
    by_class = ranked.filter_labels(FIELD, F("label") == label)
    for view in (subset, by_class):
        cached, exact = _both(view, "bob")
        assert cached == exact
    alc.answer(ranked, alc.next_query(by_class, "bob", max_age=60)["id"], None, user="bob")
    cached, exact = _both(by_class, "bob")
    assert cached == exact and exact["round"]["answered_by_user"] == 2


def test_cached_progress_sees_other_processes_after_max_age(ranked):
    max_age = 1.0
    before = alc.review_progress(ranked, FIELD, "x", max_age=max_age)
    # another process answers: a direct database write, unseen by this process's notices
    sid = next(i for i, d in zip(ranked.values("id"), ranked.values(f"{FIELD}.detections")) if d)
    ranked._sample_collection.update_one(
        {"_id": ObjectId(sid)},
        {"$set": {f"{FIELD}.detections.0.status": "confirmed"}},
    )
    stale = alc.review_progress(ranked, FIELD, "x", max_age=max_age)
    assert stale == before  # within max_age: the cache is used as documented
    time.sleep(max_age + 0.1)
    cached, exact = _both(ranked, "x", max_age=max_age)
    assert cached == exact and exact["round"]["answered"] == before["round"]["answered"] + 1
    # a new ranking in this process resets the caches at once
    alc.rank_superpixels(ranked, "pseudo", budget=5)
    cached, exact = _both(ranked, "x")
    assert cached == exact and exact["latest_round"] == 2 and exact["round"]["queries"] == 5


def test_cached_queue_serves_best_first_and_never_twice(ranked):
    scores = sorted(
        (s for ss in ranked.values(f"{FIELD}.detections.score") for s in ss or []),
        reverse=True,
    )
    served = []
    while True:
        q = alc.next_query(ranked, "ann", max_age=60)
        if q is None:
            break
        served.append(q)
        alc.answer(ranked, q["id"], None, user="ann")
    assert [q["score"] for q in served] == scores  # exactly the uncached order
    assert len({q["id"] for q in served}) == 16


def test_cached_queue_passes_over_what_others_took(ranked):
    a = alc.next_query(ranked, "ann", max_age=60)  # fills ann's list
    # bob (say, in another App server) takes the queries next on ann's list
    taken = []
    for _ in range(3):
        q = alc.next_query(ranked, "bob")  # uncached: the true best free ones
        taken.append(q["id"])
    alc.answer(ranked, a["id"], None, user="ann")
    b = alc.next_query(ranked, "ann", max_age=60)
    assert b["id"] not in taken and b["id"] != a["id"]
    det = get_query(ranked, b["id"], FIELD)[1]
    assert det.status == "claimed" and det.claimed_by == "ann"
    # a reviewer coming back (a reopened panel) gets the query they hold first
    again = alc.next_query(ranked, "ann", max_age=60)
    assert again["id"] == b["id"]
    # skip_ids are honoured (the panel's skip): the next one is another query
    alc.skip(ranked, b["id"], user="ann")
    c = alc.next_query(ranked, "ann", max_age=60, skip_ids=[b["id"]])
    assert c["id"] not in (*taken, a["id"], b["id"])


def test_events_at_once_get_the_same_query(ranked):
    """The App may run two panel events of one reviewer at once (two view changes, each
    giving the query back and asking again): both get the same query, as the uncached path
    serves a reviewer's own claim first, and the reviewer never holds two."""
    current = alc.next_query(ranked, "ann", max_age=60)["id"]
    for step in ("release", "answer", "release", "answer"):
        if step == "release":
            alc.release(ranked, current, "ann")
        else:
            alc.answer(ranked, current, None, user="ann")
        got, barrier = [], threading.Barrier(4)

        def event(got=got, barrier=barrier):
            barrier.wait()
            got.append(alc.next_query(ranked, "ann", max_age=60)["id"])

        threads = [threading.Thread(target=event) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 4 and len(set(got)) == 1, (step, got)
        claimed = [
            d.id
            for ds in ranked.values(f"{FIELD}.detections")
            for d in ds or []
            if d.status == "claimed"
        ]
        assert claimed == [got[0]], step
        current = got[0]


def test_cached_queue_after_a_new_ranking_serves_the_new_queries(ranked):
    old = alc.next_query(ranked, "ann", max_age=60)
    alc.release(ranked, old["id"], "ann")
    alc.rank_superpixels(ranked, "pseudo", budget=4)  # replaces the pending queries
    new_ids = {
        d.id for ds in ranked.values(f"{FIELD}.detections") for d in ds or [] if d.round == 2
    }
    q = alc.next_query(ranked, "ann", max_age=60)
    assert q["id"] in new_ids and q["round"] == 2


def test_change_log_is_bounded_and_says_when_it_lost_track(ranked, monkeypatch):
    monkeypatch.setattr(changes, "MAX_LOG", 10)
    start = changes.position(ranked)
    changes.touched(ranked, "a")
    ids, pos = changes.since(ranked, start)
    assert ids == {"a"} and pos[1] == start[1] + 1
    for i in range(30):
        changes.touched(ranked, f"s{i}")
    lost, _ = changes.since(ranked, start)
    assert lost is None  # too far behind: the caller re-reads everything
    ids, now = changes.since(ranked, changes.position(ranked))
    assert ids == set()
    changes.reset(ranked)
    assert changes.since(ranked, now)[0] is None


def test_caches_keep_a_bounded_number_of_views(ranked, monkeypatch):
    from alc_fiftyone.review import queue as review

    monkeypatch.setattr(review, "MAX_COUNTS", 2)
    monkeypatch.setattr(review, "MAX_CACHED", 3)
    monkeypatch.setattr(review, "_counts", {})
    monkeypatch.setattr(review, "_candidate_lists", {})
    views = [ranked.skip(i).limit(5) for i in range(5)]
    for view in views:
        cached, exact = _both(view, "ann")
        assert cached == exact
        alc.next_query(view, "ann", max_age=60)
    assert len(review._counts) == 2 and len(review._candidate_lists) == 3
    # the newest are kept
    assert review.view_key(views[-1]) in {k[0] for k in review._candidate_lists}
    assert (review.view_key(views[-1]), FIELD) in review._counts
