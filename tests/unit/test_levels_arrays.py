"""Regions at several sizes (issue 22), array level: nested levels, the conflict-free
selection, unanswered pixels, and the expected-gain acquisition."""

from __future__ import annotations

import numpy as np
import pytest

from alc_fiftyone.core.acquisition import score_loop, score_superpixels
from alc_fiftyone.core.hierarchy import (
    ConflictFreeSelector,
    check_nested,
    parents_of,
    unanswered_map,
)
from alc_fiftyone.core.regions import label_aware_regions, nested_regions
from alc_fiftyone.core.superpixels import felzenszwalb, slic


def _scene(seed=0, shape=(60, 80)):
    rng = np.random.default_rng(seed)
    img = np.zeros((*shape, 3), np.uint8)
    img[:, : shape[1] // 2] = (200, 40, 40)
    img[:, shape[1] // 2 :] = (40, 40, 200)
    img[20:40, 10:30] = (40, 200, 40)
    img = np.clip(img.astype(int) + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
    labels = np.zeros(shape, np.uint8)
    labels[:, shape[1] // 2 :] = 1
    return img, labels


def test_nested_regions_nest_cover_and_merge_small_pieces_among_siblings():
    img, labels = _scene()
    top = label_aware_regions(labels, felzenszwalb(img, scale=200), image=img, min_area=64)
    fine = nested_regions(top, slic(img, n_segments=60), image=img, min_area=20)
    assert fine.dtype == np.uint16 and fine.shape == top.shape
    assert fine.min() >= 1  # every pixel in a region
    assert check_nested(fine, top) == 0
    assert int(fine.max()) > int(top.max())  # finer than the level above
    ids = np.unique(fine)
    assert np.array_equal(ids, np.arange(1, ids.size + 1))  # dense ids
    sizes = np.bincount(fine.ravel())[1:]
    par = parents_of(fine, top)
    siblings = np.bincount(par[1:], minlength=int(top.max()) + 1)
    # a piece under min_area survives only as its parent's single piece
    small = np.flatnonzero(sizes < 20) + 1
    assert all(siblings[par[i]] == 1 for i in small)
    # deterministic
    assert np.array_equal(
        fine, nested_regions(top, slic(img, n_segments=60), image=img, min_area=20)
    )


def test_nested_regions_never_cross_a_parent_border_even_to_merge():
    parent = np.ones((10, 10), np.uint16)
    parent[:, 5:] = 2
    base = np.ones((10, 10), np.int64)  # one base region straddling both parents
    base[0, 4:6] = 2  # two tiny pieces, one in each parent
    out = nested_regions(parent, base, min_area=5)
    assert check_nested(out, parent) == 0
    # the tiny pieces merged into their own parent's big piece, not across
    assert len(np.unique(out[:, :5])) == 1 and len(np.unique(out[:, 5:])) == 1
    assert out[0, 0] != out[0, 9]


def test_nested_regions_caps_by_growing_min_area():
    parent = np.ones((40, 40), np.uint16)
    base = np.arange(1600).reshape(40, 40)  # 1,600 one-pixel pieces
    out = nested_regions(parent, base, min_area=0, max_regions=100)
    assert int(out.max()) <= 100 and check_nested(out, parent) == 0


def test_nested_regions_refuses_bad_input():
    with pytest.raises(ValueError, match="same|size"):
        nested_regions(np.ones((4, 4), np.uint16), np.ones((4, 5), np.uint16))
    with pytest.raises(ValueError, match="min_area"):
        nested_regions(np.ones((4, 4), np.uint16), np.ones((4, 4), np.uint16), min_area=-1)


def test_parents_and_nesting_check():
    coarse = np.array([[1, 1, 2, 2]], np.uint16)
    fine = np.array([[1, 2, 3, 3]], np.uint16)
    assert parents_of(fine, coarse).tolist() == [0, 1, 1, 2]
    assert check_nested(fine, coarse) == 0
    straddle = np.array([[1, 2, 2, 3]], np.uint16)
    assert check_nested(straddle, coarse) == 1


def test_selector_never_takes_a_region_with_one_inside_or_around_it():
    # three levels: 1 top region; 2 middle; 4 fine (fine 1,2 in middle 1; 3,4 in middle 2)
    parents = [np.array([0, 1, 1]), np.array([0, 1, 1, 2, 2])]
    sel = ConflictFreeSelector(parents)
    assert sel.offer(2, 3)  # a fine region
    assert not sel.offer(1, 2)  # its parent
    assert not sel.offer(0, 1)  # its grandparent
    assert sel.offer(1, 1)  # the other middle region: disjoint
    assert not sel.offer(2, 1)  # inside a taken region
    assert sel.offer(2, 4)  # a sibling of the first fine region
    assert not sel.offer(2, 3)  # taken once only


def test_unanswered_map_removes_answered_pixels_only():
    sp = np.array([[1, 1, 2, 2]], np.uint16)
    done = np.array([[False, True, False, False]])
    out = unanswered_map(sp, done)
    assert out.tolist() == [[1, 0, 2, 2]]
    assert sp.tolist() == [[1, 1, 2, 2]]  # not modified
    assert unanswered_map(sp, None) is sp


def _probs(shape, C, rng):
    P = rng.random((C, *shape)).astype(np.float32) + 0.05
    return P / P.sum(0)


@pytest.mark.parametrize("device", ["cpu", "numpy", "torch"])
def test_gain_equals_the_reference_loop(device):
    rng = np.random.default_rng(3)
    P = _probs((20, 24), 4, rng)
    sp = rng.integers(1, 7, (20, 24)).astype(np.uint16)
    lab = rng.integers(0, 4, (20, 24)).astype(np.uint8)
    lab[0, :6] = 255
    for tau in (0.0, 0.8):
        fast = score_superpixels(P, sp, lab, method="gain", tau=tau, device=device)
        ref = score_loop(P, sp, lab, method="gain", tau=tau)
        np.testing.assert_allclose(fast.scores, ref.scores, rtol=1e-5, atol=1e-6)


def test_gain_is_the_expected_pixels_made_right():
    C, shape = 3, (4, 6)
    P = np.zeros((C, *shape), np.float32)
    P[0] = 0.1
    P[1] = 0.8
    P[2] = 0.1
    sp = np.ones(shape, np.uint16)
    sp[:, 3:] = 2
    lab = np.ones(shape, np.uint8)  # region 1 labelled 1: the model agrees
    lab[:, 3:] = 0  # region 2 labelled 0: the model says 1
    res = score_superpixels(P, sp, lab, method="gain")
    # region 1: writing class 1 changes nothing; region 2: 12 px x (0.8 - 0.1)
    np.testing.assert_allclose(res.scores, [0.0, 12 * 0.7], atol=1e-5)
    # sim also counts the model's doubt about the right region (12 x 0.2 x cos 1)
    sim = score_superpixels(P, sp, lab, method="sim")
    assert sim.scores[0] > 2.0


def test_one_ranking_counts_a_finer_level_less_unless_the_scores_are_exact():
    """push_image: a finer region's estimate counts FINER_LEVEL_WEIGHT as much per level (an
    estimate on small regions is less sure), an exact count (the oracle) as it is."""
    from types import SimpleNamespace

    from alc_fiftyone.steps.candidates import (
        FINER_LEVEL_WEIGHT,
        ImageLevels,
        ImageScores,
        push_image,
    )

    top = np.zeros((4, 8), np.int32)
    top[:, :4], top[:, 4:] = 1, 2
    fine = np.zeros_like(top)
    fine[:, :4], fine[:2, 4:], fine[2:, 4:] = 1, 2, 3  # region 2 of the top cut in two
    levels = ImageLevels(["sp", "sp_level1"], [top, fine], ["a.png", "b.png"])

    def res(ids, scores):
        n = len(ids)
        return SimpleNamespace(
            ids=np.array(ids),
            scores=np.array(scores, float),
            rep_yx=np.zeros((n, 2), int),
            sizes=np.full(n, 8),
        )

    # the top's region 1 (10 pixels to fix, estimated) against a piece of the top's region 2
    # (15 estimated); the top's region 2 itself and the other piece score nothing
    scored = ImageScores(
        levels,
        [top, fine],
        [res([1, 2], [10.0, 0.0]), res([1, 2, 3], [0.0, 15.0, 0.0])],
        [np.array([True, True]), np.array([False, True, True])],
        0,
    )
    maker = SimpleNamespace(payload=lambda *a: {"score": float(a[6])})
    probs = [np.zeros((2, 4, 8)), np.zeros((2, 4, 8))]

    def first(weight):
        heap: list = []
        push_image(heap, 1, scored, 0, "s", probs, np.zeros((4, 8), np.uint8), maker, weight)
        (cand,) = heap
        return cand.payload["level"], cand.payload["superpixel_field"], cand.payload["score"]

    assert 10.0 < 15.0 * 1.0 and 15.0 * FINER_LEVEL_WEIGHT < 10.0  # the case decides
    assert first(FINER_LEVEL_WEIGHT) == (0, "sp", 10.0)
    assert first(1.0) == (1, "sp_level1", 15.0)  # the query keeps its own score
    assert push_image.__defaults__[-1] == FINER_LEVEL_WEIGHT
