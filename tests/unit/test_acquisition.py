"""Tests of the superpixel acquisition functions (alc_fiftyone.core.acquisition)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alc_fiftyone.core import acquisition as acq
from alc_fiftyone.core.acquisition import (
    METHODS,
    SuperpixelScores,
    abc_class_weights,
    class_prior_from_dominant,
    expansion_mask,
    score_loop,
    score_superpixels,
)
from alc_fiftyone.core.acquisition import api as acq_api
from alc_fiftyone.core.acquisition import numba_backend as acq_nb

torch = pytest.importorskip("torch")

needs_numba = pytest.mark.skipif(not acq.numba_available(), reason="numba is not installed")


# ---------------------------------------------------------------------------------------------
# a hand-computable image: 2 classes, 4x4, superpixel 1 = columns 0-1, superpixel 2 = columns 2-3
#
#   superpixel 1: every pixel P = (0.8, 0.2)
#   superpixel 2: rows 0-2 P = (0.3, 0.7) (argmax 1, dominant), row 3 P = (0.9, 0.1)
#   labels: all 1


def _tiny() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    probs = np.zeros((2, 4, 4), dtype=np.float32)
    probs[:, :, 0:2] = np.array([0.8, 0.2], np.float32)[:, None, None]
    probs[:, 0:3, 2:4] = np.array([0.3, 0.7], np.float32)[:, None, None]
    probs[:, 3, 2:4] = np.array([0.9, 0.1], np.float32)[:, None]
    sp = np.zeros((4, 4), dtype=np.uint16)
    sp[:, 0:2] = 1
    sp[:, 2:4] = 2
    labels = np.ones((4, 4), dtype=np.uint8)
    return probs, sp, labels


# cosine between (0.9, 0.1) and (0.3, 0.7)
COS_2 = (0.9 * 0.3 + 0.1 * 0.7) / (math.sqrt(0.9**2 + 0.1**2) * math.sqrt(0.3**2 + 0.7**2))


def _ent(*p: float) -> float:
    return -sum(v * math.log(v) for v in p)


def test_tiny_sim_is_sum_of_similarity_times_cil():
    probs, sp, labels = _tiny()
    res = score_superpixels(probs, sp, labels, "sim")
    assert isinstance(res, SuperpixelScores)
    np.testing.assert_array_equal(res.ids, [1, 2])
    # sp1: 8 identical pixels, w = 1, a = 1 - P(label 1) = 0.8
    # sp2: 6 dominant pixels w = 1, a = 0.3; 2 pixels w = COS_2, a = 0.9
    expected = [8 * 0.8, 6 * 0.3 + 2 * COS_2 * 0.9]
    np.testing.assert_allclose(res.scores, expected, rtol=1e-6)
    np.testing.assert_array_equal(res.dominant, [0, 1])
    np.testing.assert_array_equal(res.sizes, [8, 8])
    np.testing.assert_array_equal(res.expanded_sizes, [8, 8])
    # identical vectors everywhere in the dominant group: first pixel in row-major order
    np.testing.assert_array_equal(res.rep_yx, [[0, 0], [0, 2]])
    np.testing.assert_array_equal(res.order(), [0, 1])
    assert len(res) == 2


def test_tiny_cil_pixel_and_mean():
    probs, sp, labels = _tiny()
    pix = score_superpixels(probs, sp, labels, "cil_pixel")
    np.testing.assert_allclose(pix.scores, [0.8, 0.3], rtol=1e-6)
    mean = score_superpixels(probs, sp, labels, "cil_mean")
    np.testing.assert_allclose(mean.scores, [0.8, (6 * 0.3 + 2 * 0.9) / 8], rtol=1e-6)


def test_tiny_entropy_and_margin():
    probs, sp, labels = _tiny()
    ent = score_superpixels(probs, sp, labels, "entropy")
    np.testing.assert_allclose(
        ent.scores, [_ent(0.8, 0.2), (6 * _ent(0.3, 0.7) + 2 * _ent(0.9, 0.1)) / 8], rtol=1e-5
    )
    mar = score_superpixels(probs, sp, labels, "margin")
    np.testing.assert_allclose(
        mar.scores, [1 - 0.6, (6 * (1 - 0.4) + 2 * (1 - 0.8)) / 8], rtol=1e-5
    )


def test_entropy_clips_zero_probabilities():
    probs = np.zeros((3, 1, 2), np.float32)
    probs[0] = 1.0  # one-hot: entropy 0, no nan from log(0)
    res = score_superpixels(
        probs, np.ones((1, 2), np.uint16), np.zeros((1, 2), np.uint8), "entropy"
    )
    assert np.isfinite(res.scores).all()
    np.testing.assert_allclose(res.scores, [0.0], atol=1e-9)


def test_margin_single_class_is_zero():
    probs = np.ones((1, 2, 2), np.float32)
    res = score_superpixels(
        probs, np.ones((2, 2), np.uint16), np.zeros((2, 2), np.uint8), "margin"
    )
    np.testing.assert_array_equal(res.scores, [0.0])


def test_tiny_classbal():
    probs, sp, labels = _tiny()
    # margins: u = [0.4, 0.5]; image min-max -> [0, 1]; image prior: dominants {0, 1} -> 0.5
    res = score_superpixels(probs, sp, labels, "classbal")
    np.testing.assert_allclose(res.scores, [0.0, math.exp(-0.5)], rtol=1e-5, atol=1e-7)
    # dataset-level range and prior
    res = score_superpixels(
        probs, sp, labels, "classbal", score_range=(0.0, 1.0), class_prior=[0.9, 0.1]
    )
    np.testing.assert_allclose(res.scores, [0.4 * math.exp(-0.9), 0.5 * math.exp(-0.1)], rtol=1e-5)
    # already selected regions get 0
    res = score_superpixels(
        probs, sp, labels, "classbal", score_range=(0.0, 1.0), class_prior=[0.9, 0.1], selected={2}
    )
    np.testing.assert_allclose(res.scores, [0.4 * math.exp(-0.9), 0.0], rtol=1e-5)


def test_classbal_rejects_bad_prior_shape():
    probs, sp, labels = _tiny()
    with pytest.raises(ValueError, match="class_prior"):
        score_superpixels(probs, sp, labels, "classbal", class_prior=[1.0, 0.0, 0.0])


def test_class_prior_from_dominant():
    np.testing.assert_allclose(class_prior_from_dominant([1, 3, 0]), [0.25, 0.75, 0.0])
    np.testing.assert_array_equal(class_prior_from_dominant([0, 0]), [0.0, 0.0])
    with pytest.raises(ValueError):
        class_prior_from_dominant([[1, 2]])


def test_abc_class_weights_hand_computed():
    counts = np.array([10, 30, 0, 60])
    p = np.array([0.1, 0.3, 0.6])
    kl = float(np.sum(p * np.log(p * 4)))
    expected = [1.0, (10 / 30) ** kl**3, 0.0, (10 / 60) ** kl**3]
    np.testing.assert_allclose(abc_class_weights(counts), expected, rtol=1e-12)
    # balanced distribution: KL = 0, every present class weighs 1, absent 0
    np.testing.assert_allclose(abc_class_weights([5, 5, 5, 5]), [1, 1, 1, 1])
    np.testing.assert_allclose(abc_class_weights([5, 0, 5]), [1, 0, 1])
    np.testing.assert_array_equal(abc_class_weights([0, 0]), [0, 0])
    # rarer classes weigh more
    w = abc_class_weights([1000, 10, 100])
    assert w[1] > w[2] > w[0] > 0


def test_tiny_abc_with_given_weights():
    probs, sp, labels = _tiny()
    labels = labels.copy()
    labels[0, 0] = 0  # sp1: one pixel labelled 0: a = 1 - 0.8 = 0.2, weight W0
    weights = np.array([2.0, 0.5])
    res = score_superpixels(probs, sp, labels, "abc", class_weights=weights)
    # sp1: mu = (0.8, 0.2), cos = 1 everywhere
    sp1 = 2.0 * 0.2 + 7 * 0.5 * 0.8
    # sp2: mu = mean of dominant pixels = (0.3, 0.7); all labelled 1
    sp2 = 6 * 0.5 * 0.3 + 2 * COS_2 * 0.5 * 0.9
    np.testing.assert_allclose(res.scores, [sp1, sp2], rtol=1e-6)


def test_abc_default_weights_from_image_labels():
    probs, sp, labels = _tiny()
    labels = labels.copy()
    labels[0:2, 0] = 0
    labels[3, 3] = 255  # ignore: not counted, replaced by argmax (0) in the CIL
    counts = np.array([2, 13])
    w = abc_class_weights(counts)
    res = score_superpixels(probs, sp, labels, "abc")
    sp1 = 2 * w[0] * (1 - 0.8) + 6 * w[1] * 0.8
    # sp2: (3,3) is ignore, y' = argmax = 0, a = 1 - 0.9 = 0.1
    sp2 = 6 * w[1] * 0.3 + COS_2 * w[1] * 0.9 + COS_2 * w[0] * 0.1
    np.testing.assert_allclose(res.scores, [sp1, sp2], rtol=1e-6)
    given = score_superpixels(probs, sp, labels, "abc", class_weights=w)
    np.testing.assert_allclose(given.scores, res.scores, rtol=1e-12)
    # selected superpixels are excluded from the counts and scored 0
    sel = score_superpixels(probs, sp, labels, "abc", selected=[1])
    w2 = abc_class_weights(np.array([0, 7]))
    sp2_sel = 6 * w2[1] * 0.3 + COS_2 * w2[1] * 0.9 + COS_2 * w2[0] * 0.1
    np.testing.assert_allclose(sel.scores, [0.0, sp2_sel], rtol=1e-6)


def test_random_is_seeded_and_uniform_over_superpixels():
    probs, sp, labels = _tiny()
    a = score_superpixels(probs, sp, labels, "random", seed=3)
    b = score_superpixels(probs, sp, labels, "random", seed=3)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.scores, np.random.default_rng(3).random(2))


def test_rep_is_chosen_among_dominant_class_pixels_only():
    # one superpixel of 3 pixels in a row. Dominant class 0 (2 pixels); the first pixel has
    # argmax 1 but is closer (cosine) to the dominant mean (0.5, 0.25, 0.25) than both
    # dominant pixels, which tie with each other.
    probs = np.array(
        [
            [[0.40, 0.50, 0.50]],
            [[0.41, 0.45, 0.05]],
            [[0.19, 0.05, 0.45]],
        ],
        dtype=np.float32,
    )
    mean = np.array([0.5, 0.25, 0.25])

    def cos(v):
        return v @ mean / (np.linalg.norm(v) * np.linalg.norm(mean))

    assert cos(probs[:, 0, 0].astype(float)) > cos(probs[:, 0, 1].astype(float))
    sp = np.ones((1, 3), np.uint16)
    labels = np.zeros((1, 3), np.uint8)
    for device in ("cpu", "numpy", "torch"):
        res = score_superpixels(probs, sp, labels, "sim", device=device)
        assert res.dominant[0] == 0
        np.testing.assert_array_equal(res.rep_yx, [[0, 1]])  # first of the tied dominant pair
    np.testing.assert_array_equal(score_loop(probs, sp, labels).rep_yx, [[0, 1]])


def test_rep_highest_cosine_wins_over_row_major_order():
    # dominant class 0 everywhere; the last pixel is the mean vector itself
    probs = np.array(
        [
            [[0.9, 0.6, 0.75]],
            [[0.1, 0.4, 0.25]],
        ],
        dtype=np.float32,
    )
    res = score_superpixels(probs, np.ones((1, 3), np.uint16), np.zeros((1, 3), np.uint8))
    np.testing.assert_array_equal(res.rep_yx, [[0, 2]])


def test_rep_tie_break_is_row_major_not_column_major():
    probs = np.zeros((2, 3, 4), np.float32)
    probs[0] = 0.6
    probs[1] = 0.4
    sp = np.zeros((3, 4), np.uint16)
    sp[0, 3] = 5
    sp[1, 0] = 5
    sp[2, 1] = 5
    labels = np.zeros((3, 4), np.uint8)
    for device in ("cpu", "numpy", "torch"):
        res = score_superpixels(probs, sp, labels, device=device)
        np.testing.assert_array_equal(res.rep_yx, [[0, 3]])


def test_ignore_label_replaced_by_argmax_in_cil():
    probs, sp, labels = _tiny()
    labels = labels.copy()
    labels[:, 0:2] = 255  # sp1 all ignore: y' = argmax = 0, a = 1 - 0.8 = 0.2
    res = score_superpixels(probs, sp, labels, "cil_mean")
    np.testing.assert_allclose(res.scores[0], 0.2, rtol=1e-6)
    res = score_superpixels(probs, sp, labels, "sim")
    np.testing.assert_allclose(res.scores[0], 8 * 0.2, rtol=1e-6)
    res = score_superpixels(probs, sp, labels, "cil_pixel")
    np.testing.assert_allclose(res.scores[0], 0.2, rtol=1e-6)


def test_custom_ignore_index_and_none():
    probs, sp, labels = _tiny()
    labels = labels.astype(np.int64)
    labels[:, 0:2] = -1
    res = score_superpixels(probs, sp, labels, "cil_mean", ignore_index=-1)
    np.testing.assert_allclose(res.scores[0], 0.2, rtol=1e-6)
    with pytest.raises(ValueError, match="-1"):
        score_superpixels(probs, sp, labels, "cil_mean", ignore_index=None)


def test_tau_shrinks_expansion_region():
    probs, sp, labels = _tiny()
    res = score_superpixels(probs, sp, labels, "sim", tau=0.9)
    # sp2: the two (0.9, 0.1) pixels have w = COS_2 ~ 0.49 < 0.9 and leave E(s)
    np.testing.assert_array_equal(res.expanded_sizes, [8, 6])
    np.testing.assert_array_equal(res.sizes, [8, 8])
    np.testing.assert_allclose(res.scores, [8 * 0.8, 6 * 0.3], rtol=1e-6)
    mean = score_superpixels(probs, sp, labels, "cil_mean", tau=0.9)
    np.testing.assert_allclose(mean.scores, [0.8, 0.3], rtol=1e-6)
    mask = expansion_mask(probs, sp, 2, res.rep_yx[1], 0.9)
    expected = np.zeros((4, 4), bool)
    expected[0:3, 2:4] = True
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(expansion_mask(probs, sp, 2, res.rep_yx[1], 0.0), sp == 2)
    # a threshold below COS_2 keeps everything
    low = score_superpixels(probs, sp, labels, "sim", tau=0.4)
    np.testing.assert_array_equal(low.expanded_sizes, [8, 8])


def test_expansion_mask_rejects_rep_outside_superpixel():
    probs, sp, _ = _tiny()
    with pytest.raises(ValueError, match="rep_yx"):
        expansion_mask(probs, sp, 2, (0, 0), 0.5)


def test_sim_is_a_sum_doubling_size_doubles_score():
    probs, sp, labels = _tiny()
    big_probs = np.concatenate([probs, probs], axis=1)  # 8x4: each superpixel twice as tall
    big_sp = np.concatenate([sp, sp], axis=0)
    big_labels = np.concatenate([labels, labels], axis=0)
    small = score_superpixels(probs, sp, labels, "sim")
    big = score_superpixels(big_probs, big_sp, big_labels, "sim")
    np.testing.assert_allclose(big.scores, 2 * small.scores, rtol=1e-6)
    np.testing.assert_array_equal(big.sizes, 2 * small.sizes)
    # the mean-based functions do not grow with size
    for method in ("cil_mean", "cil_pixel", "entropy", "margin"):
        a = score_superpixels(probs, sp, labels, method)
        b = score_superpixels(big_probs, big_sp, big_labels, method)
        np.testing.assert_allclose(b.scores, a.scores, rtol=1e-6)


def test_zero_means_no_superpixel():
    probs, sp, labels = _tiny()
    sp = sp.copy()
    sp[3, 2:4] = 0  # the two (0.9, 0.1) pixels leave superpixel 2
    sp[0, 0] = 0
    res = score_superpixels(probs, sp, labels, "sim")
    np.testing.assert_array_equal(res.ids, [1, 2])
    np.testing.assert_array_equal(res.sizes, [7, 6])
    np.testing.assert_allclose(res.scores, [7 * 0.8, 6 * 0.3], rtol=1e-6)
    np.testing.assert_array_equal(res.rep_yx, [[0, 1], [0, 2]])
    res_t = score_superpixels(probs, sp, labels, "sim", device="torch")
    np.testing.assert_array_equal(res_t.rep_yx, res.rep_yx)
    np.testing.assert_allclose(res_t.scores, res.scores, rtol=1e-6)


def test_all_zero_superpixels_gives_empty_result():
    probs, _, labels = _tiny()
    res = score_superpixels(probs, np.zeros((4, 4), np.uint16), labels)
    assert len(res) == 0
    assert res.rep_yx.shape == (0, 2)
    assert res.order().shape == (0,)


def test_non_contiguous_and_large_uint16_ids():
    probs, sp, labels = _tiny()
    for a, b in ((3, 7), (300, 65535), (256, 512)):
        sp2 = np.where(sp == 1, a, b).astype(np.uint16)
        for device in ("cpu", "numpy", "torch"):
            res = score_superpixels(probs, sp2, labels, "sim", device=device)
            np.testing.assert_array_equal(res.ids, [a, b])
            np.testing.assert_allclose(res.scores, [8 * 0.8, 6 * 0.3 + 2 * COS_2 * 0.9], rtol=1e-6)
    # huge int64 ids take the unique() path
    sp3 = np.where(sp == 1, 10**12, 5).astype(np.int64)
    res = score_superpixels(probs, sp3, labels, "sim")
    np.testing.assert_array_equal(res.ids, [5, 10**12])
    np.testing.assert_allclose(res.scores, [6 * 0.3 + 2 * COS_2 * 0.9, 8 * 0.8], rtol=1e-6)
    res_t = score_superpixels(probs, sp3, labels, "sim", device="torch")
    np.testing.assert_allclose(res_t.scores, res.scores, rtol=1e-6)


def test_order_sorts_by_score_then_id():
    res = SuperpixelScores(
        ids=np.array([4, 2, 9, 1]),
        scores=np.array([0.5, 0.7, 0.5, 0.1]),
        rep_yx=np.zeros((4, 2), np.int64),
        dominant=np.zeros(4, np.int64),
        sizes=np.ones(4, np.int64),
        expanded_sizes=np.ones(4, np.int64),
    )
    np.testing.assert_array_equal(res.order(), [1, 0, 2, 3])


def test_selected_zeroes_scores_for_every_method():
    probs, sp, labels = _tiny()
    for method in METHODS:
        res = score_superpixels(probs, sp, labels, method, seed=0, selected=[1])
        assert res.scores[0] == 0.0, method


# ---------------------------------------------------------------------------------------------
# validation


def test_validation_errors():
    probs, sp, labels = _tiny()
    with pytest.raises(ValueError, match="3-D"):
        score_superpixels(probs[0], sp, labels)
    with pytest.raises(ValueError, match="superpixels"):
        score_superpixels(probs, sp[:3], labels)
    with pytest.raises(ValueError, match="labels"):
        score_superpixels(probs, sp, labels[:, :3])
    with pytest.raises(ValueError, match="class"):
        score_superpixels(np.zeros((0, 4, 4), np.float32), sp, labels)
    with pytest.raises(ValueError, match="floating"):
        score_superpixels(probs.astype(np.int64), sp, labels)
    with pytest.raises(ValueError, match="integer"):
        score_superpixels(probs, sp.astype(np.float32), labels)
    with pytest.raises(ValueError, match="method"):
        score_superpixels(probs, sp, labels, "nope")
    with pytest.raises(ValueError, match="device"):
        score_superpixels(probs, sp, labels, device="tpu-of-dreams")
    with pytest.raises(ValueError, match="non-negative"):
        score_superpixels(probs, sp.astype(np.int32) - 2, labels)


@pytest.mark.parametrize(
    "device", ["cpu", "numpy", pytest.param("numba", marks=needs_numba), "torch"]
)
def test_bad_label_values_are_named(device):
    probs, sp, labels = _tiny()
    labels = labels.copy()
    labels[0, 0] = 7
    labels[1, 1] = 9
    labels[2, 2] = 255  # ignore: fine
    with pytest.raises(ValueError, match=r"7, 9"):
        score_superpixels(probs, sp, labels, device=device)


def test_auto_device_runs():
    probs, sp, labels = _tiny()
    res = score_superpixels(probs, sp, labels, device="auto")
    np.testing.assert_allclose(res.scores, [8 * 0.8, 6 * 0.3 + 2 * COS_2 * 0.9], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# numpy vs torch vs the plain loop on random inputs


def _random_case(
    seed: int, num_classes: int = 7, h: int = 37, w: int = 53, quantize: bool = False
):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(num_classes, h, w)) * 2.0
    if quantize:  # few distinct vectors: many exact ties in the representative choice
        logits = np.round(logits)
    probs = np.exp(logits - logits.max(0))
    probs = (probs / probs.sum(0)).astype(np.float32)
    # blocky superpixels with non-contiguous ids and holes (0)
    blocks = rng.integers(0, 12, size=(h // 6 + 1, w // 6 + 1))
    sp = np.kron(blocks, np.ones((6, 6), np.int64))[:h, :w]
    sp = np.where(rng.random((h, w)) < 0.1, 0, sp * 29 + 3 * (sp > 0))
    sp = sp.astype(np.uint16)
    labels = rng.integers(0, num_classes, size=(h, w)).astype(np.uint8)
    labels[rng.random((h, w)) < 0.2] = 255
    return probs, sp, labels


def _assert_same(a: SuperpixelScores, b: SuperpixelScores, rtol: float = 1e-4) -> None:
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.rep_yx, b.rep_yx)
    np.testing.assert_array_equal(a.dominant, b.dominant)
    np.testing.assert_array_equal(a.sizes, b.sizes)
    np.testing.assert_array_equal(a.expanded_sizes, b.expanded_sizes)
    np.testing.assert_allclose(a.scores, b.scores, rtol=rtol, atol=1e-9)
    np.testing.assert_array_equal(a.order(), b.order())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_and_torch_agree(method, seed):
    probs, sp, labels = _random_case(seed, quantize=seed == 2)
    for tau in (0.0, 0.8):
        a = score_superpixels(probs, sp, labels, method, tau=tau, seed=5, device="numpy")
        b = score_superpixels(probs, sp, labels, method, tau=tau, seed=5, device="torch")
        _assert_same(a, b)


def test_torch_tensor_inputs_use_torch_and_agree():
    probs, sp, labels = _random_case(4, num_classes=21)
    a = score_superpixels(probs, sp, labels, "sim")
    b = score_superpixels(
        torch.from_numpy(probs), torch.from_numpy(sp.astype(np.int64)), torch.from_numpy(labels)
    )
    _assert_same(a, b)
    c = score_superpixels(torch.from_numpy(probs), sp, labels, device="numpy")
    _assert_same(a, c)


def test_float64_probabilities_accepted():
    probs, sp, labels = _random_case(6)
    a = score_superpixels(probs.astype(np.float64), sp, labels)
    b = score_superpixels(probs, sp, labels)
    _assert_same(a, b)


@pytest.mark.parametrize("method", ["sim", "cil_mean", "cil_pixel"])
@pytest.mark.parametrize("tau", [0.0, 0.9])
def test_vectorised_matches_plain_loop(method, tau):
    for seed in (0, 1, 3):
        probs, sp, labels = _random_case(seed)
        fast = score_superpixels(probs, sp, labels, method, tau=tau)
        slow = score_loop(probs, sp, labels, method, tau=tau)
        _assert_same(fast, slow)


def _saturated_case(seed: int):
    """Confident, spatially smooth softmax maps: many vectors equal to 1.0 in float32."""
    rng = np.random.default_rng(seed)
    c, h, w = 21, 60, 80
    logits = np.kron(rng.normal(size=(c, 6, 8)) * 30, np.ones((10, 10)))
    logits = logits + rng.normal(size=(c, h, w)) * 3
    probs = np.exp(logits - logits.max(0))
    probs = (probs / probs.sum(0)).astype(np.float32)
    sp = np.kron(rng.integers(1, 30, (6, 8)), np.ones((10, 10), np.int64)).astype(np.uint16)
    labels = probs.argmax(0).astype(np.uint8)
    labels[rng.random((h, w)) < 0.2] = 3
    return probs, sp, labels


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_saturated_ties_resolved_identically(seed):
    probs, sp, labels = _saturated_case(seed)
    assert (probs == 1.0).any()
    for method in ("sim", "cil_mean", "cil_pixel"):
        a = score_superpixels(probs, sp, labels, method)
        _assert_same(a, score_superpixels(probs, sp, labels, method, device="torch"))
        _assert_same(a, score_loop(probs, sp, labels, method))
    for method in ("abc", "classbal", "entropy"):
        _assert_same(
            score_superpixels(probs, sp, labels, method),
            score_superpixels(probs, sp, labels, method, device="torch"),
        )


@pytest.mark.parametrize(
    "device",
    [
        "torch:cpu",
        "TORCH",
        "numpy",
        pytest.param("numba", marks=needs_numba),
        pytest.param(" Numba ", marks=needs_numba),
    ],
)
def test_device_spellings(device):
    probs, sp, labels = _random_case(11)
    _assert_same(
        score_superpixels(probs, sp, labels, device=device), score_superpixels(probs, sp, labels)
    )


def test_torch_device_object_and_half_precision_tensor():
    probs, sp, labels = _random_case(12)
    a = score_superpixels(probs, sp, labels, "entropy", device=torch.device("cpu"))
    _assert_same(a, score_superpixels(probs, sp, labels, "entropy"))
    half = torch.from_numpy(probs).half()
    b = score_superpixels(half, sp, labels, "entropy")
    c = score_superpixels(half.float().numpy(), sp, labels, "entropy")
    _assert_same(b, c)


def test_expansion_mask_agrees_with_expanded_sizes():
    probs, sp, labels = _random_case(7)
    res = score_superpixels(probs, sp, labels, "sim", tau=0.85)
    assert (res.expanded_sizes < res.sizes).any()
    for i, sp_id in enumerate(res.ids):
        mask = expansion_mask(probs, sp, int(sp_id), res.rep_yx[i], 0.85)
        assert mask.sum() == res.expanded_sizes[i]
        assert mask[tuple(res.rep_yx[i])]
        assert not (mask & (sp != sp_id)).any()


def test_rep_pixel_properties_on_random_input():
    probs, sp, labels = _random_case(8)
    res = score_superpixels(probs, sp, labels, "sim")
    argmax = probs.argmax(0)
    for i, sp_id in enumerate(res.ids):
        y, x = res.rep_yx[i]
        assert sp[y, x] == sp_id
        assert argmax[y, x] == res.dominant[i]
        counts = np.bincount(argmax[sp == sp_id], minlength=probs.shape[0])
        assert res.dominant[i] == counts.argmax()
        assert res.sizes[i] == (sp == sp_id).sum()


def test_score_loop_rejects_other_methods():
    probs, sp, labels = _tiny()
    with pytest.raises(ValueError):
        score_loop(probs, sp, labels, "entropy")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_numpy(method):
    probs, sp, labels = _random_case(9, num_classes=21, h=75, w=100)
    a = score_superpixels(probs, sp, labels, method, seed=1)
    b = score_superpixels(probs, sp, labels, method, seed=1, device="cuda")
    np.testing.assert_array_equal(a.dominant, b.dominant)
    np.testing.assert_array_equal(a.sizes, b.sizes)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-7)
    # the representative may differ only on float ties; its cosine must then be equal
    same = (a.rep_yx == b.rep_yx).all(axis=1)
    assert same.mean() > 0.95


# ---------------------------------------------------------------------------------------------
# the numba backend (the CPU default) against numpy: same pixels chosen, same order


def _assert_numba_matches_numpy(probs, sp, labels, method="sim", **kwargs) -> SuperpixelScores:
    a = score_superpixels(probs, sp, labels, method, device="numpy", **kwargs)
    b = score_superpixels(probs, sp, labels, method, device="numba", **kwargs)
    _assert_same(a, b, rtol=1e-5)
    assert b.scores.dtype == np.float64
    for name in ("ids", "rep_yx", "dominant", "sizes", "expanded_sizes"):
        assert getattr(b, name).dtype == np.int64, name
    return b


@needs_numba
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_numba_and_numpy_agree(method, seed):
    # ids up to 322 (> 255) and not contiguous, holes of id 0, 20% ignore labels; seed 2 has
    # few distinct vectors (many exact ties for the representative)
    probs, sp, labels = _random_case(seed, quantize=seed == 2)
    for tau in (0.0, 0.8, 0.95):
        _assert_numba_matches_numpy(probs, sp, labels, method, tau=tau, seed=5)


@needs_numba
@pytest.mark.parametrize("seed", [1, 2, 4])
@pytest.mark.parametrize("method", METHODS)
def test_numba_saturated_ties_resolved_like_numpy(seed, method):
    probs, sp, labels = _saturated_case(seed)
    assert (probs == 1.0).any()
    for tau in (0.0, 0.99):
        res = _assert_numba_matches_numpy(probs, sp, labels, method, tau=tau, seed=0)
    if method in ("sim", "cil_mean", "cil_pixel"):
        _assert_same(res, score_loop(probs, sp, labels, method, tau=0.99))


@needs_numba
def test_numba_options_agree():
    probs, sp, labels = _random_case(5, num_classes=9)
    ids = np.unique(sp[sp > 0])
    selected = [int(ids[0]), int(ids[3]), 99999]
    prior = np.linspace(0.0, 1.0, 9)
    weights = np.linspace(2.0, 0.1, 9)
    for method in METHODS:
        _assert_numba_matches_numpy(probs, sp, labels, method, seed=3, selected=selected)
    _assert_numba_matches_numpy(
        probs, sp, labels, "classbal", class_prior=prior, score_range=(0.2, 0.9)
    )
    _assert_numba_matches_numpy(probs, sp, labels, "classbal", score_range=(0.5, 0.5))
    _assert_numba_matches_numpy(probs, sp, labels, "abc", class_weights=weights)
    _assert_numba_matches_numpy(probs, sp, labels, "abc", class_weights=weights, tau=0.7)
    with pytest.raises(ValueError, match="class_weights"):
        score_superpixels(probs, sp, labels, "abc", class_weights=[1.0], device="numba")
    with pytest.raises(ValueError, match="class_prior"):
        score_superpixels(probs, sp, labels, "classbal", class_prior=[1.0], device="numba")


@needs_numba
@pytest.mark.parametrize("method", ["sim", "cil_pixel", "cil_mean", "abc"])
def test_numba_ignore_variants(method):
    probs, sp, labels = _random_case(6, num_classes=5)
    lab64 = labels.astype(np.int64)
    # no ignore value at all
    clean = np.where(labels == 255, 1, labels).astype(np.uint8)
    _assert_numba_matches_numpy(probs, sp, clean, method, ignore_index=None)
    # a negative ignore value
    _assert_numba_matches_numpy(
        probs, sp, np.where(lab64 == 255, -1, lab64), method, ignore_index=-1
    )
    # an ignore value inside [0, C): those labels count as ignore
    _assert_numba_matches_numpy(probs, sp, clean, method, ignore_index=2, tau=0.5)
    # every label ignored
    _assert_numba_matches_numpy(probs, sp, np.full_like(labels, 255), method)


@needs_numba
@pytest.mark.parametrize(
    "sp_dtype", [np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]
)
@pytest.mark.parametrize("lab_dtype", [np.uint8, np.int8, np.uint16, np.int32, np.int64])
def test_numba_map_dtypes(sp_dtype, lab_dtype):
    probs, sp, labels = _random_case(7)
    sp = (sp % 250).astype(sp_dtype)  # ids fit every dtype (0 stays "no superpixel")
    labels = np.where(labels == 255, 100, labels).astype(lab_dtype)
    _assert_numba_matches_numpy(probs, sp, labels, "sim", ignore_index=100, tau=0.3)
    # non-native byte order, read-only maps
    swapped = sp.astype(sp.dtype.newbyteorder())
    frozen = labels.copy()
    frozen.flags.writeable = False
    _assert_numba_matches_numpy(probs, swapped, frozen, "cil_pixel", ignore_index=100)


@needs_numba
def test_numba_huge_ids_take_the_unique_path():
    probs, sp, labels = _random_case(8)
    huge = np.where(sp > 0, sp.astype(np.int64) * 10**9 + 7, 0)
    res = _assert_numba_matches_numpy(probs, huge, labels, "sim", tau=0.5)
    assert res.ids.max() > 10**11
    small = score_superpixels(probs, sp, labels, "sim", tau=0.5, device="numba")
    np.testing.assert_array_equal(res.rep_yx, small.rep_yx)
    np.testing.assert_allclose(res.scores, small.scores, rtol=1e-12)


@needs_numba
def test_numba_runs_longer_than_a_scratch_row():
    # rows much wider than the kernels' run length: runs are split; ties across the split
    # must still go to the first pixel in row-major order
    n_run = acq_nb._NB_RUN
    h, w = 3, 2 * n_run + 37
    probs = np.zeros((2, h, w), np.float32)
    probs[0] = 0.7
    probs[1] = 0.3
    sp = np.ones((h, w), np.uint16)
    sp[1, : n_run + 5] = 2  # superpixel 2 ends past the first split of its row
    sp[2, 3] = 0
    labels = np.zeros((h, w), np.uint8)
    labels[:, ::3] = 1
    labels[0, 5] = 255
    res = _assert_numba_matches_numpy(probs, sp, labels, "sim", tau=0.5)
    np.testing.assert_array_equal(res.rep_yx, [[0, 0], [1, 0]])
    # superpixel 1 alternates (0.9, 0.1) and (0.7, 0.3) around a mean of ~(0.8, 0.2): the one
    # (0.8, 0.2) pixel, in a later chunk of a split run, is the unique closest
    probs[0, :, 0::2] = 0.9
    probs[0, :, 1::2] = 0.7
    probs[0, 0, n_run + 11] = 0.8
    probs[1] = 1.0 - probs[0]
    res = _assert_numba_matches_numpy(probs, sp, labels, "sim")
    assert tuple(res.rep_yx[0]) == (0, n_run + 11)
    for method in METHODS:
        _assert_numba_matches_numpy(probs, sp, labels, method, seed=1)


@needs_numba
def test_runs_numpy_matches_the_kernel():
    rng = np.random.default_rng(0)
    n_run = acq_nb._NB_RUN
    sp = np.repeat(rng.integers(0, 6, size=40), rng.integers(1, 3 * n_run, size=40))
    sp = sp.astype(np.int64)
    ids, sid, runs = acq_nb._numba_kernels().dense_ids(sp, int(sp.max()), n_run)
    np.testing.assert_array_equal(ids, np.unique(sp[sp > 0]))
    np.testing.assert_array_equal(acq_nb._runs_numpy(sid, len(ids)), runs)
    assert (runs[:, 1] - runs[:, 0]).max() == n_run
    covered = np.zeros(sp.shape[0], bool)
    for i, j in runs:
        assert (sid[i:j] == sid[i]).all()
        covered[i:j] = True
    np.testing.assert_array_equal(covered, sp > 0)


@needs_numba
def test_numba_edge_cases():
    # one class: margin 0, everything else defined
    ones = np.ones((1, 3, 4), np.float32)
    sp = np.ones((3, 4), np.uint16)
    zeros = np.zeros((3, 4), np.uint8)
    for method in METHODS:
        _assert_numba_matches_numpy(ones, sp, zeros, method, seed=0)
    # many classes (argmax beyond uint8), zero probability vectors (cosine clamps), one-hots
    probs, sp2, labels = _random_case(9, num_classes=300, h=12, w=13)
    probs[:, 0, :] = 0.0
    probs[:, 1, :] = 0.0
    probs[7, 1, :] = 1.0
    for method in METHODS:
        _assert_numba_matches_numpy(probs, sp2, labels.astype(np.int64) % 300, method, seed=0)
    # no superpixel at all, and an image of zero pixels
    empty = score_superpixels(ones, np.zeros((3, 4), np.uint16), zeros, device="numba")
    assert len(empty) == 0 and empty.rep_yx.shape == (0, 2)
    res = score_superpixels(
        np.zeros((2, 0, 5), np.float32),
        np.zeros((0, 5), np.uint16),
        np.zeros((0, 5), np.uint8),
        device="numba",
    )
    assert len(res) == 0
    # entropy of one-hot vectors is 0, not nan
    onehot = np.zeros((3, 1, 2), np.float32)
    onehot[0] = 1.0
    res = _assert_numba_matches_numpy(onehot, np.ones((1, 2), np.uint16), zeros[:1, :2], "entropy")
    np.testing.assert_allclose(res.scores, [0.0], atol=1e-9)


@needs_numba
def test_numba_validation_errors():
    probs, sp, labels = _tiny()
    with pytest.raises(ValueError, match="3-D"):
        score_superpixels(probs[0], sp, labels, device="numba")
    with pytest.raises(ValueError, match="floating"):
        score_superpixels(probs.astype(np.int64), sp, labels, device="numba")
    with pytest.raises(ValueError, match="integer"):
        score_superpixels(probs, sp.astype(np.float32), labels, device="numba")
    with pytest.raises(ValueError, match="non-negative"):
        score_superpixels(probs, sp.astype(np.int32) - 2, labels, device="numba")
    bad = labels.astype(np.int64)
    bad[0, 0] = -3
    bad[3, 3] = 2
    with pytest.raises(ValueError, match=r"-3, 2"):
        score_superpixels(probs, sp, bad, device="numba")
    with pytest.raises(ValueError, match="255"):
        score_superpixels(probs, sp, np.full_like(labels, 255), ignore_index=None, device="numba")


@needs_numba
def test_numba_non_contiguous_float64_and_tensor_inputs():
    probs, sp, labels = _random_case(10, num_classes=21)
    ref = score_superpixels(probs, sp, labels, "sim", device="numpy")
    hwc = np.ascontiguousarray(probs.transpose(1, 2, 0))
    view = hwc.transpose(2, 0, 1)  # (C, H, W) view, not C-contiguous
    assert not view.flags.c_contiguous
    _assert_same(ref, score_superpixels(view, sp, labels, "sim", device="numba"), rtol=1e-5)
    _assert_same(
        score_superpixels(probs.astype(np.float64), sp, labels, device="numpy"),
        score_superpixels(probs.astype(np.float64), sp, labels, device="numba"),
        rtol=1e-5,
    )
    tensors = (
        torch.from_numpy(probs),
        torch.from_numpy(sp.astype(np.int64)),
        torch.from_numpy(labels),
    )
    _assert_same(ref, score_superpixels(*tensors, "sim", device="numba"), rtol=1e-5)
    half = torch.from_numpy(probs).half()
    _assert_same(
        score_superpixels(half.float().numpy(), sp, labels, "entropy", device="numpy"),
        score_superpixels(half, sp, labels, "entropy", device="numba"),
        rtol=1e-5,
    )


@needs_numba
def test_cpu_default_is_numba_and_falls_back_to_numpy(monkeypatch):
    probs, sp, labels = _random_case(11)
    arrays = (probs, sp, labels)
    assert acq_api._resolve_backend("cpu", arrays) == "numba"
    assert acq_api._resolve_backend("numba", arrays) == "numba"
    assert acq_api._resolve_backend("numpy", arrays) == "numpy"
    if not torch.cuda.is_available():
        assert acq_api._resolve_backend("auto", arrays) == "numba"
    # tensor inputs keep running on their device
    assert acq_api._resolve_backend("cpu", (torch.from_numpy(probs),)) == torch.device("cpu")
    default = score_superpixels(probs, sp, labels)
    # without numba: "cpu" and "auto" run numpy, "numba" is refused
    monkeypatch.setitem(acq_nb._nb_state, "ns", None)
    assert not acq.numba_available()
    assert acq_api._resolve_backend("cpu", arrays) == "numpy"
    if not torch.cuda.is_available():
        assert acq_api._resolve_backend("auto", arrays) == "numpy"
    with pytest.raises(ValueError, match="numba"):
        score_superpixels(probs, sp, labels, device="numba")
    _assert_same(default, score_superpixels(probs, sp, labels), rtol=1e-5)


def test_missing_numba_import_disables_the_backend(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_numba(name, *args, **kwargs):
        if name == "numba" or name.startswith("numba."):
            raise ImportError("no numba here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_numba)
    assert acq_nb._build_numba_kernels() is None


@needs_numba
def test_numba_kernels_run_in_threads():
    # nogil kernels: several images scored at once from threads give the sequential results
    from concurrent.futures import ThreadPoolExecutor

    cases = [_random_case(s, num_classes=11) for s in range(4)]
    expected = [score_superpixels(*c, "sim", tau=0.6) for c in cases]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda c: score_superpixels(*c, "sim", tau=0.6), cases))
    for a, b in zip(expected, got):
        _assert_same(a, b, rtol=0)
