"""What a reviewer can answer (issue 12, the library side): the question names the class most
of the region holds, "Mixed" splits a region into pieces served next, undo takes back the last
action of any kind, skipped queries can be revisited, and a ranking from the review queue in
the grid ranks the samples behind it."""

from __future__ import annotations

import numpy as np
import pytest

import alc_fiftyone as alc
from alc_fiftyone.errors import QueryError
from alc_fiftyone.review.queries import region_classes
from alc_fiftyone.store.files import read_segmentation


@pytest.fixture
def ranked(ranked_demo):
    return ranked_demo(num_samples=5, size=(96, 72), seed=5, n_segments=20, budget=15)


def _dets(ds):
    ds.reload()
    out = []
    for sid, dets in zip(ds.values("id"), ds.values("alc_queries.detections")):
        out += [(sid, d) for d in dets or []]
    return out


def test_the_question_names_the_class_most_of_the_region_holds(ranked):
    for sid, d in _dets(ranked):
        labels = read_segmentation(ranked[sid], "pseudo")
        x0, y0, w, h = d.bbox_px
        values = labels[y0 : y0 + h, x0 : x0 + w][np.asarray(d.mask, bool)]
        counts = np.bincount(values, minlength=256)
        assert d.current_value == int(counts.argmax())  # the majority, not the star's pixel
        assert d.label == ranked.mask_targets["pseudo"][d.current_value]
        if np.count_nonzero(counts) > 1:
            assert d.label_mix and d.label_mix[0][0] == d.label
    # confirming the region's own class changes only the pixels of the other classes
    q = alc.next_query(ranked, "ana")
    sid, det = next((s, d) for s, d in _dets(ranked) if d.id == q["id"])
    before = read_segmentation(ranked[sid], "pseudo")
    x0, y0, w, h = det.bbox_px
    region = before[y0 : y0 + h, x0 : x0 + w][np.asarray(det.mask, bool)]
    n = alc.answer(ranked, q["id"], q["label"], user="ana")
    assert n == int((region != q["current_value"]).sum())
    assert next(d for _, d in _dets(ranked) if d.id == q["id"]).status == "confirmed"


def test_region_classes_mix():
    names = {0: "Sky", 1: "Pavement"}
    assert region_classes(np.array([0] * 99 + [1]), names) == (
        0,
        [["Sky", 0.99], ["Pavement", 0.01]],
    )
    # any other class shows: one pixel of 3,489
    assert region_classes(np.array([1] * 3488 + [0]), names)[1] == [
        ["Pavement", 0.9997],
        ["Sky", 0.0003],
    ]
    assert region_classes(np.array([1] * 7), names) == (1, [])


def test_mixed_splits_the_region_into_pieces_served_next(ranked):
    q = alc.next_query(ranked, "ana")
    pieces = alc.split_query(ranked, q["id"], user="ana", pieces=3)
    assert len(pieces) >= 2
    by = {d.id: (sid, d) for sid, d in _dets(ranked)}
    parent = by[q["id"]][1]
    assert parent.status == "split" and parent.split_into == pieces
    total = 0
    for pid in pieces:
        sid, d = by[pid]
        assert sid == q["sample_id"] and d.parent_id == q["id"]
        assert d.status == "claimed" and d.claimed_by == "ana"
        ry, rx = d.rep_yx  # the star lies inside its piece
        x0, y0 = d.bbox_px[:2]
        assert np.asarray(d.mask, bool)[ry - y0, rx - x0]
        total += d.num_pixels
    assert total == parent.num_pixels  # the pieces cover the region exactly
    served = [alc.next_query(ranked, "ana")["id"]]
    alc.skip(ranked, served[0], user="ana")
    served.append(alc.next_query(ranked, "ana")["id"])
    assert set(served) <= set(pieces)  # the pieces come first for this reviewer
    assert alc.next_query(ranked, "bob")["id"] not in pieces  # and only for them


def test_undo_takes_back_the_last_action_of_any_kind(ranked):
    q1 = alc.next_query(ranked, "ana")
    n = alc.answer(ranked, q1["id"], 0, user="ana")
    q2 = alc.next_query(ranked, "ana")
    alc.skip(ranked, q2["id"], user="ana")
    assert alc.undo(ranked, user="ana") == 0  # the skip, not the answer
    status = {d.id: d.status for _, d in _dets(ranked)}
    assert status[q2["id"]] == "pending" and status[q1["id"]] in ("confirmed", "corrected")
    q3 = alc.next_query(ranked, "ana")
    pieces = alc.split_query(ranked, q3["id"], user="ana")
    alc.answer(ranked, pieces[0], 1, user="ana")
    with pytest.raises(QueryError, match="undo those answers first"):
        alc.undo(ranked, q3["id"], user="ana")
    alc.undo(ranked, user="ana")  # the piece's answer
    alc.undo(ranked, user="ana")  # the split: the pieces are gone
    ids = {d.id: d.status for _, d in _dets(ranked)}
    assert ids[q3["id"]] == "pending" and not set(pieces) & set(ids)
    assert alc.undo(ranked, user="ana") == n  # now the first answer
    with pytest.raises(alc.ALCError, match="nothing to undo"):
        alc.undo(ranked, user="ana")


def test_skipped_queries_can_be_revisited(ranked):
    q = alc.next_query(ranked, "ana")
    alc.skip(ranked, q["id"], user="ana")
    assert alc.next_query(ranked, "ana")["id"] != q["id"]  # never served again by itself
    assert alc.next_skipped(ranked, "bob") is None  # bob skipped nothing
    back = alc.next_skipped(ranked, "ana")
    assert back["id"] == q["id"] and back["status"] == "claimed"
    alc.answer(ranked, q["id"], 0, user="ana")
    assert alc.next_skipped(ranked, "ana") is None
    p = alc.review_progress(ranked, user="ana")
    assert p["total"]["skipped_by_user"] == 0


def test_a_new_ranking_keeps_splits_and_their_pieces(ranked):
    q = alc.next_query(ranked, "ana")
    pieces = alc.split_query(ranked, q["id"], user="ana")
    alc.rank_superpixels(ranked, "pseudo", budget=15)
    ids = {d.id: d for _, d in _dets(ranked)}
    assert ids[q["id"]].status == "split" and set(pieces) <= set(ids)
    asked = [
        (sid, d.superpixel_id)
        for sid, d in _dets(ranked)
        if d.status == "pending" and not d.has_field("parent_id")
    ]
    assert (q["sample_id"], ids[q["id"]].superpixel_id) not in asked


def test_ranking_from_the_review_queue_in_the_grid_ranks_its_samples(ranked):
    queue = alc.review_queue(ranked)  # a patches view, as "Queue in grid" shows
    summary = alc.rank_superpixels(queue, "pseudo", budget=7)
    # the queue stands for the dataset it was made from: every image is ranked again
    assert summary["num_samples"] == len(ranked) == len(alc.samples_to_rank(queue))
    assert summary["num_queries"] == 7


def test_an_answer_for_a_query_the_reviewer_does_not_hold_is_refused(ranked):
    q = alc.next_query(ranked, "ana")
    alc.release(ranked, q["id"], "ana")  # e.g. a claim given back in another tab
    with pytest.raises(alc.NotClaimedError, match="not claimed") as info:
        alc.answer(ranked, q["id"], 0, user="ana", claimed_by="ana")
    assert info.value.query_id == q["id"] and info.value.status == "pending"
    alc.claim(ranked, q["id"], "bob")
    with pytest.raises(alc.NotClaimedError, match="held by 'bob'"):
        alc.answer(ranked, q["id"], 0, user="ana", claimed_by="ana")
    with pytest.raises(alc.NotClaimedError, match="held by 'bob'"):
        alc.skip(ranked, q["id"], user="ana", claimed_by="ana")
    with pytest.raises(alc.NotClaimedError, match="held by 'bob'"):
        alc.split_query(ranked, q["id"], user="ana", claimed_by="ana")
    assert {d.id: d.status for _, d in _dets(ranked)}[q["id"]] == "claimed"
    alc.skip(ranked, q["id"], user="bob", claimed_by="bob")
    with pytest.raises(alc.NotClaimedError, match="was skipped by 'bob'"):
        alc.answer(ranked, q["id"], 0, user="ana", claimed_by="ana")
    mine = alc.next_query(ranked, "ana")
    assert alc.answer(ranked, mine["id"], 0, user="ana", claimed_by="ana") >= 0


def test_the_skipped_list_and_unskip(ranked):
    a = alc.next_query(ranked, "ana")
    alc.skip(ranked, a["id"], user="ana")
    b = alc.next_query(ranked, "ana")
    alc.skip(ranked, b["id"], user="ana")
    c = alc.next_query(ranked, "bob")
    alc.skip(ranked, c["id"], user="bob")
    assert [q["id"] for q in alc.skipped_queries(ranked, "ana")] == [b["id"], a["id"]]
    assert len(alc.skipped_queries(ranked)) == 3
    assert alc.unskip(ranked, a["id"], "ana")
    assert not alc.unskip(ranked, a["id"], "ana")  # no longer skipped
    assert [q["id"] for q in alc.skipped_queries(ranked, "ana")] == [b["id"]]


def test_the_question_follows_labels_changed_since_the_ranking(ranked):
    """An answer to an overlapping query (or any new label mask) changes what the region
    holds: the panel asks about the class it holds now (refresh_label), stored on the query."""
    import fiftyone as fo

    from alc_fiftyone.review import get_query, refresh_label
    from alc_fiftyone.store.files import write_mask

    q = alc.next_query(ranked, "ana")
    sample, det = get_query(ranked, q["id"])
    labels = read_segmentation(sample, "pseudo")
    x0, y0, w, h = det.bbox_px
    other = (q["current_value"] + 1) % 3
    window = labels[y0 : y0 + h, x0 : x0 + w]
    window[np.asarray(det.mask, bool)] = other
    sample["pseudo"] = fo.Segmentation(mask_path=write_mask(labels, ranked, "pseudo", sample.id))
    sample.save()
    now = refresh_label(ranked, sample, det)
    assert now["current_value"] == other and now["label_mix"] == []
    sample, det = get_query(ranked, q["id"])
    assert det.current_value == other and det.label == ranked.mask_targets["pseudo"][other]
