"""The review panel's callbacks, run through FiftyOne's ExecutionContext and Executor as the
App runs them, on real datasets: answers, undo, skip, claims and their expiry, two reviewers.
"""

from __future__ import annotations

import base64
import io
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pydash
import pytest
from bson import ObjectId
from PIL import Image

import alc_fiftyone as alc
from alc_fiftyone.review.answers import attr, query_region
from alc_fiftyone.review.queue import get_query
from alc_fiftyone.store.fields import read_current_labels
from alc_fiftyone.store.files import read_segmentation

FIELD = "alc_queries"
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the plugin's panels/ package, as FiftyOne loads it
    sys.path.insert(0, str(REPO))


@pytest.fixture
def ranked(ranked_demo):
    return ranked_demo(num_samples=8, size=(96, 72), seed=5, n_segments=40, budget=12)


@pytest.fixture
def panel():
    from panels.review import ReviewPanel

    return ReviewPanel()


class Session:
    """One browser tab's card (panels/keys.js) on the panel, run through FiftyOne's executor as
    the App runs it: the tab's id and reviewer name travel with every event (param ``card``),
    the panel data is the tab's own, and the panel *state* is the App session's, shared by
    every tab of one App (pass the same dict as ``state``)."""

    def __init__(self, panel, ds, panel_id, reviewer=None, view=None, state=None, tab=None):
        self.panel, self.ds, self.panel_id, self.view = panel, ds, panel_id, view
        self.state = state if state is not None else {}
        self.tab = tab or f"tab-{uuid.uuid4().hex[:8]}"
        self.name = reviewer
        self.data: dict = {}
        self.drawn: dict = {}
        self.req = 0
        self.requests: list = []
        self.state_writes: list = []
        self._resync = None

    def _card(self) -> dict:
        q = self.query
        return {
            "tab": self.tab,
            "reviewer": self.name,
            "shown": {"id": q["id"], "sample_id": q["sample_id"]} if q else None,
            "view_key": self.drawn.get("view_key"),
            "whole": bool(q and q.get("whole")),
            "req": self.req,
        }

    def _run(self, method, params):
        from fiftyone.operators.executor import ExecutionContext, Executor

        executor = Executor()
        self.req += 1
        req = {
            "dataset_name": self.ds.name,
            "params": {
                "panel_id": self.panel_id,
                "panel_state": self.state,
                "card": self._card(),
                **params,
            },
        }
        if self.view is not None:
            req["view"] = self.view._serialize()
        ctx = ExecutionContext(request_params=req, executor=executor)
        getattr(self.panel, method)(ctx)
        layout = self.panel.render(ctx)
        layout.to_json()  # what the App receives must serialize
        requests = [r.to_json() for r in executor._requests]
        self.requests += requests
        for r in requests:
            if r["operator_uri"] == "patch_panel_data":
                for key, value in r["params"]["data"].items():
                    pydash.set_(self.data, key, value)
            elif "panel_state" in r["operator_uri"]:
                self.state_writes.append(r)
        review = self.data.get("review") or {}
        if review.get("seq") is not None and review.get("seq") != self.drawn.get("seq"):
            keep = review.get("keep_message")
            message = self.drawn.get("message") if keep else review.get("message")
            level = self.drawn.get("level") if keep else review.get("level")
            self.drawn = {**review, "message": message, "level": level}
            self.name = review.get("reviewer") or self.name  # the name served as
        return ctx

    def call(self, method, **params):
        """An event of this tab, then what the card does on its own: it sends itself when it
        appears (``why`` "start") and when the server asks (``review.resync``)."""
        self.requests = []
        ctx = self._run(method, params)
        if method == "on_load":
            self._run("refresh", {"why": "start"})
        resync = (self.data.get("review") or {}).get("resync")
        if resync and resync is not self._resync:
            self._resync = resync
            extra = {k: resync.get(k) for k in ("message", "level", "serve")}
            self._run("refresh", {"why": resync["why"], **extra})
        return ctx

    @property
    def query(self):
        return self.drawn.get("query")

    @property
    def message(self):
        return self.drawn.get("message")

    @property
    def level(self):
        return self.drawn.get("level")

    @property
    def progress(self):
        return self.drawn.get("counts") or {}

    def answer(self, label=None, query_id=None):
        """What the card sends for the query it shows: yes (``label=None``) or a class."""
        q = self.query
        return self.call(
            "answer",
            query_id=query_id or q["id"],
            label=label if label is not None else q["label"],
            asked=q["label"],
        )

    @property
    def card(self):
        return self.drawn


def _det(ds, qid):
    return get_query(ds, qid, FIELD)[1]


def _other_class(ds, label):
    return next(n for v, n in ds.mask_targets["pseudo"].items() if v != 255 and n != label)


def test_load_claims_best_query_and_draws_it(ranked, panel):
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    a.call("on_load")
    q = a.query
    assert q["rank"] == 1
    d = _det(ranked, q["id"])
    assert d.status == "claimed" and d.claimed_by == "ann" and d.claimed_until is not None
    uri = a.card["query"]["image"]
    assert uri.startswith("data:image/png;base64,")
    im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert max(im.size) >= 400  # a 96x72 image is enlarged to read well
    p = a.progress["round"]
    assert p["queries"] == 12 and p["queued"] == 12 and p["answered"] == 0
    # reopening the panel (a new browser tab, same reviewer) shows the same query
    again = Session(panel, ranked, "panel-a2", reviewer="ann")
    again.call("on_load")
    assert again.query["id"] == q["id"]


def test_confirm_correct_undo_skip(ranked, panel):
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    a.call("on_load")
    first = a.query
    a.answer()
    d = _det(ranked, first["id"])
    assert d.status == "confirmed" and d.answered_by == "ann" and d.answered_at is not None
    assert a.query["id"] != first["id"] and a.message.startswith("Saved:")

    second = a.query
    before = read_current_labels(ranked[second["sample_id"]], "pseudo", "alc_revised")
    target = _other_class(ranked, second["label"])
    a.answer(target)
    d2 = _det(ranked, second["id"])
    assert d2.status == "corrected" and d2.answer == target and d2.pixels_changed > 0
    d2_changed = d2.pixels_changed
    progress = a.progress["round"]
    # confirming writes the confirmed class to the whole region too (METHOD.md, step 6)
    both = d.pixels_changed + d2.pixels_changed
    assert progress["answered"] == 2 and progress["pixels_changed"] == both

    # undo takes the last answer back (pixels restored) and shows that query again
    a.call("undo")
    d2 = _det(ranked, second["id"])
    assert d2.status == "claimed" and attr(d2, "answer") is None
    assert a.query["id"] == second["id"]
    assert a.message.startswith(f"Undone: {d2_changed:,} px")
    sample = ranked[second["sample_id"]]
    slc, region = query_region(d2, (72, 96))
    revised = read_segmentation(sample, "alc_revised")[slc][region]
    assert np.array_equal(revised, before[slc][region])

    # the class picked from the list
    a.answer(target)
    assert _det(ranked, second["id"]).status == "corrected"

    third = a.query
    a.call("skip", query_id=third["id"])
    assert _det(ranked, third["id"]).status == "skipped"
    assert a.query["id"] not in (first["id"], second["id"], third["id"])
    assert a.progress["round"]["skipped"] == 1


def test_undo_without_answers_says_so(ranked, panel):
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    a.call("on_load")
    a.call("undo")
    assert a.level == "warning" and "nothing to undo" in a.message


def test_two_reviewers_never_get_the_same_query(ranked, panel):
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    b = Session(panel, ranked, "panel-b", reviewer="bob")
    a.call("on_load")
    b.call("on_load")
    assert a.query["id"] != b.query["id"]
    answered = []
    while a.query or b.query:
        for s in (a, b):
            if s.query:
                answered.append(s.query["id"])
                s.answer()
                if a.query and b.query:
                    assert a.query["id"] != b.query["id"]
    assert len(answered) == len(set(answered)) == 12
    dets = [d for ds in ranked.values(f"{FIELD}.detections") for d in (ds or [])]
    by = {d.answered_by for d in dets}
    assert by == {"ann", "bob"} and all(d.status == "confirmed" for d in dets)
    a.call("refresh")  # progress counts the other reviewer's answers too
    assert a.query is None
    assert a.progress["round"]["queued"] == 0
    assert a.progress["round"]["answered"] == 12


def test_two_tabs_of_one_app_are_two_reviewers(ranked, panel):
    """Two tabs of one App: the same panel id and the same (shared) panel state, as FiftyOne
    gives them; each tab is its own reviewer all the same."""
    shared: dict = {}
    a = Session(panel, ranked, "panel-1", state=shared)
    b = Session(panel, ranked, "panel-1", state=shared)
    a.call("on_load")
    b.call("on_load")
    assert a.name != b.name and a.query["id"] != b.query["id"]  # unnamed: two reviewers
    a.call("set_reviewer", value="alice")
    b.call("set_reviewer", value="bob")
    assert (a.name, b.name) == ("alice", "bob")
    mine = {"alice": set(), "bob": set()}
    while a.query or b.query:
        for s in (a, b):
            if a.query and b.query:
                assert a.query["id"] != b.query["id"]
            if s.query:
                qid = s.query["id"]
                assert _det(ranked, qid).claimed_by == s.name
                s.answer()
                assert s.message.startswith("Saved:"), s.message
                mine[s.name].add(qid)
    assert len(mine["alice"]) + len(mine["bob"]) == 12 and not mine["alice"] & mine["bob"]
    for name, ids in mine.items():
        assert {_det(ranked, i).answered_by for i in ids} == {name}
    # nothing of a reviewer goes to the state the tabs share
    assert a.state_writes == [] and b.state_writes == [] and shared == {}


def test_a_reviewer_name_has_at_most_64_characters(ranked, panel):
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    a.call("on_load")
    q = a.query
    a.call("set_reviewer", value="x" * 600)
    assert a.name == "ann" and a.level == "error"
    assert "at most 64 characters; this one has 600" in a.message
    assert _det(ranked, q["id"]).claimed_by == "ann" and a.query["id"] == q["id"]
    a.call("set_reviewer", value="line\nbreak")
    assert a.name == "ann" and "line breaks" in a.message
    a.call("set_reviewer", value="y" * 64)  # the longest accepted
    assert a.name == "y" * 64 and _det(ranked, a.query["id"]).claimed_by == "y" * 64
    with pytest.raises(alc.ALCError, match="at most 64"):
        alc.next_query(ranked, "z" * 65)
    with pytest.raises(alc.ALCError, match="at most 64"):
        alc.answer(ranked, a.query["id"], None, user="z" * 65)


def test_mixed_shows_the_first_piece_and_then_the_others(ranked, panel):
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    a.call("on_load")
    parent = a.query
    a.call("mixed", query_id=parent["id"])
    pieces = _det(ranked, parent["id"]).split_into
    assert a.message.startswith(f"Split rank {parent['rank']} into {len(pieces)} pieces")
    assert a.query["id"] == pieces[0]  # the first piece, not another query
    seen = [a.query["id"]]
    for _ in pieces[1:]:
        a.answer()
        seen.append(a.query["id"])
    assert set(seen) == set(pieces), (seen, pieces)


def test_concurrent_claims_are_exclusive(ranked):
    got, errors = {}, []

    def reviewer(name):
        try:
            q = alc.next_query(ranked, name)
            got[name] = q["id"] if q else None
        except Exception as e:  # noqa: BLE001 (any error fails the test below)
            errors.append(e)

    threads = [threading.Thread(target=reviewer, args=(f"r{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = list(got.values())
    assert None not in ids and len(set(ids)) == 8
    # and the same query claimed by two users at once: exactly one wins
    free = alc.next_query(ranked, "probe")
    alc.release(ranked, free["id"], "probe")
    wins = []
    barrier = threading.Barrier(6)

    def race(name):
        barrier.wait()
        wins.append(alc.claim(ranked, free["id"], name))

    threads = [threading.Thread(target=race, args=(f"x{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(wins) == 1


def test_expired_claim_returns_to_the_queue(ranked, panel):
    q = alc.next_query(ranked, "ann", seconds=0.5)
    assert not alc.claim(ranked, q["id"], "bob")  # held
    b = Session(panel, ranked, "panel-b", reviewer="bob")
    b.call("on_load")
    assert b.query["id"] != q["id"]
    time.sleep(0.6)
    assert alc.claim(ranked, q["id"], "bob")  # expired: free again
    d = _det(ranked, q["id"])
    assert d.claimed_by == "bob" and d.status == "claimed"


def test_answer_after_claim_lost_is_refused(ranked, panel):
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    a.call("on_load")
    q = a.query
    # ann's claim expires and bob takes the query
    ranked._sample_collection.update_one(
        {"_id": ObjectId(q["sample_id"]), f"{FIELD}.detections._id": ObjectId(q["id"])},
        {"$set": {f"{FIELD}.detections.$.claimed_until": datetime(2000, 1, 1)}},
    )
    assert alc.claim(ranked, q["id"], "bob")
    a.answer()
    assert a.level == "warning" and "bob holds that query" in a.message
    d = _det(ranked, q["id"])
    assert d.status == "claimed" and d.claimed_by == "bob" and attr(d, "answer") is None
    assert a.query["id"] != q["id"]


def test_refused_answer_is_shown_and_the_next_query_served(ranked, panel):
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    a.call("on_load")
    q = a.query
    alc.compute_superpixels(
        ranked.select(q["sample_id"]), method="slic", n_segments=10, overwrite=True
    )
    a.answer()
    assert a.level == "error" and "changed since it was ranked" in a.message
    assert a.query["id"] != q["id"]
    assert _det(ranked, q["id"]).status == "pending"


def test_panel_works_on_the_view_open(ranked, panel):
    ids = ranked.values("id")
    with_queries = [i for i, d in zip(ids, ranked.values(f"{FIELD}.detections")) if d]
    subset = ranked.select(with_queries[-2:])
    a = Session(panel, ranked, "panel-a", reviewer="ann", view=subset)
    a.call("on_load")
    seen = set()
    while a.query:
        assert a.query["sample_id"] in with_queries[-2:]
        seen.add(a.query["id"])
        a.answer()
    n = sum(len(d or []) for d in subset.values(f"{FIELD}.detections"))
    assert len(seen) == n and a.progress["round"]["queries"] == n
    # the review queue as a patches view (what "Queue in grid" shows) works too
    b = Session(panel, ranked, "panel-b", reviewer="bob", view=alc.review_queue(ranked))
    b.call("on_load")
    assert b.query is not None and b.query["id"] not in seen, (n, len(with_queries), b.drawn)


def test_view_change_events(ranked, panel):
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    a.call("on_load")
    a.answer()
    shown, message = a.query, a.message
    assert message.startswith("Saved:")
    # the App sends the same view again (it does, e.g. after the first answer adds a field):
    # the query and the message on screen stay, no claim moves
    a.call("on_change_view")
    assert a.query["id"] == shown["id"] and a.message == message
    assert _det(ranked, shown["id"]).claimed_by == "ann"
    # another tab opens the queue in the grid (the App's view is the session's; the panel's
    # "Queue in grid" shows every query, status=None): a view that still holds the query
    # keeps it on screen, with its claim
    a.view = alc.review_queue(ranked, status=None)
    a.call("on_change_view")
    assert a.query["id"] == shown["id"] and a.message == message
    assert _det(ranked, shown["id"]).claimed_by == "ann"
    a.view = None
    # a real change to a view without that query: given back, one of the new view served
    others = [
        i
        for i, d in zip(ranked.values("id"), ranked.values(f"{FIELD}.detections"))
        if d and i != shown["sample_id"] and any(x.status == "pending" for x in d)
    ]
    a.view = ranked.select(others)
    a.call("on_change_view")
    assert a.query["sample_id"] in others and a.message is None
    assert _det(ranked, shown["id"]).status == "pending"


def test_buttons_trigger_the_app(ranked, panel):
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    a.call("on_load")
    q = a.query
    a.call("open_sample")
    uris = [r["operator_uri"] for r in a.requests]
    assert "open_sample" in uris and "set_selected_labels" in uris
    a.call("show_queue")
    assert "set_view" in [r["operator_uri"] for r in a.requests]
    a.call("rank_again")
    prompt = next(r for r in a.requests if r["operator_uri"] == "prompt_user_for_operation")
    assert prompt["params"]["operator_uri"].endswith("/rank_superpixels")
    assert prompt["params"]["params"]["label_field"] == "pseudo"
    assert _det(ranked, q["id"]).status == "pending"  # its claim was given back
    for method, op in (
        ("save_version", "save_revised_version"),
        ("export", "export_masks"),
        ("report", "audit_report"),
    ):
        a.call(method)
        prompt = next(r for r in a.requests if r["operator_uri"] == "prompt_user_for_operation")
        assert prompt["params"]["operator_uri"].endswith("/" + op)


def test_empty_queue_and_dataset_without_queries(unique_name, tmp_alc_dir, panel):
    ds = alc.make_demo_dataset(name=unique_name, num_samples=2, size=(32, 24), seed=1)
    try:
        a = Session(panel, ds, "panel-a", reviewer="ann")
        a.call("on_load")
        assert a.query is None and a.level == "error"
        assert "rank_superpixels" in a.message
    finally:
        ds.delete()


@pytest.mark.parametrize("size", [(64, 48), (1600, 1200)])
def test_picture_of_any_size(unique_name, tmp_alc_dir, size):
    ds = alc.make_demo_dataset(name=unique_name, num_samples=1, size=size, seed=2)
    try:
        alc.compute_superpixels(ds, method="slic", n_segments=30)
        alc.rank_superpixels(ds, "pseudo", budget=2)
        q = alc.next_query(ds, "ann")
        sample, det = get_query(ds, q["id"])
        t = time.perf_counter()
        png = alc.render_query(sample, det)
        assert time.perf_counter() - t < 5
        im = Image.open(io.BytesIO(png))
        assert 200 <= max(im.size) <= 480 + 2 * 30  # the picture, its frame and legend
        arr = np.asarray(im.convert("RGB"))
        assert (arr == (255, 40, 40)).all(axis=2).any()  # the star
        assert (arr == (255, 255, 0)).all(axis=2).any()  # the region's outline
    finally:
        ds.delete()


@pytest.mark.parametrize("num_classes", [2, 200])
def test_two_to_two_hundred_classes(unique_name, tmp_alc_dir, panel, num_classes):
    ds = alc.make_demo_dataset(
        name=unique_name, num_samples=3, size=(64, 48), num_classes=num_classes, seed=3
    )
    try:
        alc.compute_superpixels(ds, method="slic", n_segments=20)
        alc.rank_superpixels(ds, "pseudo", budget=4)
        a = Session(panel, ds, "panel-a", reviewer="ann")
        ctx = a.call("on_load")
        q = a.query
        layout = panel.render(ctx).to_json()
        card = layout["type"]["properties"]["review"]["view"]
        assert card["component"] == "AlcReview" and card["answer"].endswith("#answer")
        assert len(a.card["classes"]) == num_classes + 1  # every class and the ignore value
        assert len(a.card["query"]["suggestions"]) <= 9
        target = _other_class(ds, q["label"])
        a.answer(target)
        assert _det(ds, q["id"]).status == "corrected"
    finally:
        ds.delete()


# --- issue 12: every answer carries the query on screen ---------------------------------------


def test_an_answer_for_another_query_than_the_one_held_is_refused(ranked, panel):
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    a.call("on_load")
    shown = a.query
    other = alc.next_query(ranked, "zed")  # any other query, e.g. from a stale tab
    alc.release(ranked, other["id"], "zed")
    a.answer(query_id=other["id"])
    assert a.level == "warning" and "no longer on screen" in a.message
    assert _det(ranked, other["id"]).status == "pending"  # nothing written anywhere
    assert _det(ranked, shown["id"]).status == "claimed"
    assert a.query["id"] == shown["id"]  # the query held is shown again
    a.call("answer", label=shown["label"])  # no id at all: refused too
    assert "no longer on screen" in a.message
    assert _det(ranked, shown["id"]).status == "claimed"
    a.call("skip", query_id=other["id"])
    assert _det(ranked, other["id"]).status == "pending"


def test_a_stale_tab_cannot_answer_a_query_skipped_elsewhere(ranked, panel):
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    b = Session(panel, ranked, "panel-b", reviewer="ann")  # the same reviewer, another tab
    a.call("on_load")
    b.call("on_load")
    assert a.query["id"] == b.query["id"]  # a reviewer's held query comes first
    stale = a.query
    b.call("skip", query_id=stale["id"])
    a.answer()
    assert _det(ranked, stale["id"]).status == "skipped"
    assert a.level == "warning" and "skipped" in a.message
    assert "another reviewer" not in a.message
    assert a.query["id"] == b.query["id"] != stale["id"]


def test_a_second_answer_to_the_same_card_is_refused(ranked, panel):
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    a.call("on_load")
    first = a.query
    a.answer()
    # the same key again before the new card arrived: the card still shows the old query
    a.drawn["query"] = first
    a.answer(label=_other_class(ranked, first["label"]), query_id=first["id"])
    d = _det(ranked, first["id"])
    assert d.status == "confirmed" and d.answer == first["label"]
    assert "already answered" in a.message


def test_the_name_is_set_once_and_its_claim_given_back(ranked, panel):
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    a.call("on_load")
    q = a.query
    a.call("set_reviewer", value="  ")  # blank: nothing changes
    assert a.name == "ann" and _det(ranked, q["id"]).claimed_by == "ann"
    a.call("set_reviewer", value="bob")
    assert a.name == "bob" and a.card["reviewer"] == "bob"
    d = _det(ranked, a.query["id"])
    assert d.claimed_by == "bob"
    dets = ranked.values(f"{FIELD}.detections", unwind=True)
    names = {attr(x, "claimed_by") for x in dets} - {None}
    assert names == {"bob"}  # ann's claim was given back


def test_the_card_and_the_whole_image(ranked, panel):
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    a.call("on_load")
    card = a.card["query"]
    assert card["id"] == a.query["id"] and card["label"] == a.query["label"]
    assert card["legend"][0] == {**card["legend"][0], "name": card["label"], "now": True}
    assert all(e["color"].startswith("#") for e in card["legend"])

    def size(c):
        return Image.open(io.BytesIO(base64.b64decode(c["image"].split(",", 1)[1]))).size

    w, h = size(card)
    assert abs(w / h - 1.5) < 0.2 or max(w, h) == 720  # the frame's shape where it fits
    seq = a.card["seq"]
    a.call("toggle_whole")
    whole = a.card["query"]
    assert whole["whole"] and whole["id"] == card["id"] and a.card["seq"] > seq
    assert size(whole)[0] / size(whole)[1] == pytest.approx(96 / 72, rel=0.05)
    a.call("toggle_whole")
    assert not a.card["query"]["whole"]


def test_save_and_rank_again_use_the_ranked_fields(ranked, panel):
    # the dataset records 'pseudo' as its label field; rank a copy under another name
    import fiftyone as fo

    info = dict(ranked.info)
    info["alc"] = {**info["alc"], "label_field": "ground_truth"}
    ranked.info = info
    ranked.save()
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    a.call("on_load")
    a.call("save_version")
    prompt = next(r for r in a.requests if r["operator_uri"] == "prompt_user_for_operation")
    assert prompt["params"]["params"]["label_field"] == "pseudo"
    assert prompt["params"]["params"]["revised_field"] == "alc_revised"
    assert prompt["params"]["on_success"].endswith("#saved")
    a.call(
        "saved",
        result={"summary": {"dataset": "v2", "samples": 8, "failed": []}},
        original_params={"label_field": "pseudo"},
    )
    assert a.message.startswith("Saved the revised version as dataset 'v2'")
    a.call("failed", error="Traceback (most recent call last):\n  ...\nALCError: no good")
    assert a.message == "ALCError: no good" and a.level == "error"
    # Rank again from the queue in the grid (a patches view): the images behind it
    b = Session(panel, ranked, "panel-b", reviewer="bob", view=alc.review_queue(ranked))
    b.call("on_load")
    b.call("rank_again")
    ops = [r["operator_uri"] for r in b.requests]
    # the grid stays as the reviewer left it; the ranking takes the images behind it
    assert "set_view" not in ops and "prompt_user_for_operation" in ops
    prompt = next(r for r in b.requests if r["operator_uri"] == "prompt_user_for_operation")
    assert prompt["params"]["params"]["label_field"] == "pseudo"
    assert isinstance(fo.load_dataset(ranked.name), fo.Dataset)


def test_grid_defaults(ranked, panel):
    ranked.app_config.active_fields = None
    ranked.app_config.color_scheme = None
    ranked.save()
    a = Session(panel, ranked, "panel-a", reviewer="ann")
    a.call("on_load")
    ranked.reload()
    # the labels under review drawn, the queries not (a list the App takes as chosen: an
    # empty one is its "nothing chosen", which shows the queries in every other browser)
    assert ranked.app_config.active_fields.paths == ["pseudo"]
    scheme = ranked.app_config.color_scheme
    assert scheme.color_by == "value"
    fields = {f["path"]: f for f in scheme.fields}
    assert {"pseudo", "ground_truth"} <= set(fields)
    colors = [t["color"] for t in fields["pseudo"]["maskTargetsColors"]]
    assert len(set(colors)) == len(colors)  # a colour per class
    uris = [r["operator_uri"] for r in a.requests]
    assert "set_color_scheme" in uris and "set_active_fields" in uris
    # a dataset's own choices are kept
    ranked.app_config.color_scheme = __import__("fiftyone").ColorScheme(color_by="field")
    ranked.save()
    a.call("on_load")
    ranked.reload()
    assert ranked.app_config.color_scheme.color_by == "field"
    assert "set_color_scheme" not in [r["operator_uri"] for r in a.requests]


@pytest.fixture
def hierarchy(unique_name, tmp_alc_dir):
    """A demo dataset with the default regions (the hierarchy: label-aware regions and a finer
    level) and a ranking of the top level only, so that its queries can be split."""
    ds = alc.make_demo_dataset(name=unique_name, num_samples=6, size=(128, 96), seed=5)
    alc.compute_superpixels(ds, label_field="pseudo")
    yield ds
    if not ds.deleted:
        ds.delete()


def test_queries_of_any_level_read_alike_and_mixed_splits_into_the_next_level(hierarchy, panel):
    level = "alc_superpixels_level1"
    alc.rank_superpixels(hierarchy, "pseudo", budget=40)
    levels = {d.level for s in hierarchy for d in s[FIELD].detections}
    assert levels == {0, 1}  # the ranking queued regions of both sizes
    a = Session(panel, hierarchy, "panel-h", reviewer="ann")
    a.call("on_load")
    shown = set()
    for _ in range(40):  # answer until a query of each level has been on the card
        q = a.query
        det = _det(hierarchy, q["id"])
        shown.add(det.level)
        # the card reads the same for either level: the class, its rank and its size
        assert q["label"] == det.label and q["rank"] == det.rank
        assert q["pixels"] == f"{det.num_pixels:,}"
        a.answer()
        assert a.level != "error", a.message
        if shown == {0, 1}:
            break
    assert shown == {0, 1}
    # Mixed on a top region holding several finer regions: its pieces are those regions
    alc.rank_superpixels(hierarchy, "pseudo", budget=40, levels=1)
    b = Session(panel, hierarchy, "panel-h2", reviewer="bo")
    b.call("on_load")
    for _ in range(10):
        det = _det(hierarchy, b.query["id"])
        s = hierarchy[b.query["sample_id"]]
        fine = read_segmentation(s, level)
        slc, region = query_region(det, fine.shape)
        if 2 <= len(np.unique(fine[slc][region])) <= 12:
            break
        b.call("skip", query_id=b.query["id"])
    else:
        pytest.skip("no top region with 2-12 finer regions on the card")
    b.call("mixed", query_id=det.id)
    pieces = [_det(hierarchy, i) for i in _det(hierarchy, det.id).split_into]
    assert b.message.startswith(f"Split rank {det.rank} into {len(pieces)} pieces")
    assert {p.level for p in pieces} == {1} and {p.superpixel_field for p in pieces} == {level}
    assert b.query["id"] == pieces[0].id
    b.answer()
    assert _det(hierarchy, pieces[0].id).status in ("confirmed", "corrected")
