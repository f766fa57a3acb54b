"""Bad-input fuzzing of the core functions with hypothesis.

Properties: valid input gives a valid result with the stated invariants (the backends agree,
scores are finite, an expansion touches only its superpixel, ...); invalid input raises a clear
ValueError, never an IndexError, a segfault or silent garbage. ``max_examples`` is kept small
(and ``deadline=None``: the numba kernels compile on first use) so the suite stays fast.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from alc_fiftyone.core import acquisition as acq
from alc_fiftyone.core import correction, metrics, noise
from alc_fiftyone.core import probabilities as cprob
from alc_fiftyone.core import superpixels as csp

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ_SCORING = settings(FUZZ, max_examples=20)  # x 8 methods x 3 backends
BACKENDS = ["numpy", "numba", "torch"]
INT_DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.int64, np.uint32]


@st.composite
def scoring_case(draw, sparse_ids: bool = True):
    """A valid (probs, superpixels, labels, ignore) quadruple of a small image."""
    h = draw(st.integers(1, 7))
    w = draw(st.integers(1, 7))
    c = draw(st.integers(1, 5))
    logits = draw(hnp.arrays(np.float64, (c, h, w), elements=st.floats(-6, 6, allow_nan=False)))
    probs = np.exp(logits)
    probs /= probs.sum(axis=0, keepdims=True)
    if draw(st.booleans()):
        probs = probs.astype(np.float32)
    # superpixel ids from a small palette that may include 0, sparse and very large ids
    palette = draw(
        st.lists(
            st.sampled_from([0, 1, 2, 3, 7, 255, 256, 65535, 70000, 2**31 - 1])
            if sparse_ids
            else st.integers(0, 4),
            min_size=1,
            max_size=5,
        )
    )
    sp = np.array(palette, dtype=np.int64)[
        draw(hnp.arrays(np.int64, (h, w), elements=st.integers(0, len(palette) - 1)))
    ]
    sp_dtype = draw(st.sampled_from([np.uint32, np.int64] if sp.max() > 65535 else INT_DTYPES))
    if np.iinfo(sp_dtype).max < sp.max():
        sp_dtype = np.int64
    ignore = draw(st.sampled_from([None, 255, c]))
    values = list(range(c)) + ([ignore] if ignore is not None else [])
    labels = np.array(values)[
        draw(hnp.arrays(np.int64, (h, w), elements=st.integers(0, len(values) - 1)))
    ]
    lab_dtype = draw(st.sampled_from([np.uint8, np.int32, np.int64]))
    return probs, sp.astype(sp_dtype), labels.astype(lab_dtype), ignore


def _check_result(res, probs, sp):
    present = np.unique(sp[sp > 0]).astype(np.int64)
    np.testing.assert_array_equal(res.ids, present)
    n = len(present)
    assert res.scores.shape == (n,) and np.isfinite(res.scores).all()
    assert res.rep_yx.shape == (n, 2)
    for i, sp_id in enumerate(present):
        y, x = res.rep_yx[i]
        assert sp[y, x] == sp_id  # the representative lies inside its superpixel
    assert ((res.dominant >= 0) & (res.dominant < probs.shape[0])).all()
    np.testing.assert_array_equal(res.sizes, [int((sp == i).sum()) for i in present])
    assert ((res.expanded_sizes >= 1) & (res.expanded_sizes <= res.sizes)).all()


@pytest.mark.parametrize("method", acq.METHODS)
@FUZZ_SCORING
@given(case=scoring_case(), tau=st.sampled_from([0.0, 0.5, 0.9, 1.0]))
def test_score_superpixels_backends_agree(method, case, tau):
    probs, sp, labels, ignore = case
    results = {
        b: acq.score_superpixels(
            probs, sp, labels, method=method, tau=tau, ignore_index=ignore, device=b, seed=3
        )
        for b in BACKENDS
    }
    ref = results["numpy"]
    _check_result(ref, probs, sp)
    for b, res in results.items():
        np.testing.assert_array_equal(res.ids, ref.ids, err_msg=b)
        np.testing.assert_array_equal(res.rep_yx, ref.rep_yx, err_msg=b)
        np.testing.assert_array_equal(res.dominant, ref.dominant, err_msg=b)
        np.testing.assert_array_equal(res.expanded_sizes, ref.expanded_sizes, err_msg=b)
        np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-5, atol=1e-6, err_msg=b)
    # the expansion region of each superpixel lies inside it and has the reported size
    for i, sp_id in enumerate(ref.ids):
        region = correction.region_mask(sp, int(sp_id), probs, ref.rep_yx[i], tau)
        assert region.shape == sp.shape
        assert not (region & (sp != sp_id)).any()
        assert int(region.sum()) == int(ref.expanded_sizes[i])


@st.composite
def bad_scoring_case(draw):
    """A case that breaks exactly one stated precondition."""
    probs, sp, labels, ignore = draw(scoring_case(sparse_ids=False))
    c, h, w = probs.shape
    kind = draw(
        st.sampled_from(
            [
                "nan",
                "inf",
                "negative",
                "label_high",
                "label_negative",
                "sp_negative",
                "sp_float",
                "probs_int",
                "probs_2d",
                "shape",
                "labels_float",
            ]
        )
    )
    probs = probs.astype(np.float32).copy()
    y, x = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
    if kind == "nan":
        probs[draw(st.integers(0, c - 1)), y, x] = np.nan
    elif kind == "inf":
        probs[draw(st.integers(0, c - 1)), y, x] = np.inf
    elif kind == "negative":
        probs[draw(st.integers(0, c - 1)), y, x] = -0.5
    elif kind == "label_high":
        labels = labels.astype(np.int64)
        labels[y, x] = c + 1 if ignore != c + 1 else c + 2
    elif kind == "label_negative":
        labels = labels.astype(np.int64)
        labels[y, x] = -1
    elif kind == "sp_negative":
        sp = sp.astype(np.int64)
        sp[y, x] = -3
    elif kind == "sp_float":
        sp = sp.astype(np.float32)
    elif kind == "probs_int":
        probs = (probs * 100).astype(np.int64)
    elif kind == "probs_2d":
        probs = probs[0]
    elif kind == "shape":
        sp = np.zeros((h + 1, w), dtype=np.uint16)
    elif kind == "labels_float":
        labels = labels.astype(np.float64)
    return kind, probs, sp, labels, ignore


@pytest.mark.parametrize("backend", BACKENDS)
@FUZZ
@given(case=bad_scoring_case(), method=st.sampled_from(acq.METHODS))
def test_score_superpixels_bad_input_is_a_value_error(backend, case, method):
    _kind, probs, sp, labels, ignore = case
    with pytest.raises(ValueError):
        acq.score_superpixels(
            probs, sp, labels, method=method, ignore_index=ignore, device=backend, seed=0
        )


@FUZZ
@given(
    labels=hnp.arrays(
        st.sampled_from([np.uint8, np.int32, np.int64]),
        st.tuples(st.integers(1, 6), st.integers(1, 6)),
        elements=st.integers(0, 20),
    ),
    data=st.data(),
)
def test_expand_answer_touches_only_the_region(labels, data):
    region = data.draw(hnp.arrays(np.bool_, labels.shape))
    answer = data.draw(st.integers(0, 255))
    before = labels.copy()
    new, changed = correction.expand_answer(labels, region, answer)
    np.testing.assert_array_equal(labels, before)  # input untouched
    assert new.dtype == labels.dtype and new.shape == labels.shape
    assert (new[region] == answer).all()
    np.testing.assert_array_equal(new[~region], labels[~region])
    assert changed == int((labels[region] != answer).sum())


@FUZZ
@given(
    labels=hnp.arrays(np.uint8, (4, 5), elements=st.integers(0, 5)),
    kind=st.sampled_from(["shape", "dtype", "answer", "ndim"]),
)
def test_expand_answer_bad_input(labels, kind):
    region = np.ones(labels.shape, bool)
    answer = 1
    if kind == "shape":
        region = np.ones((5, 4), bool)
    elif kind == "dtype":
        region = region.astype(np.uint8)
    elif kind == "answer":
        answer = 300  # does not fit uint8
    else:
        labels = labels[None]
    with pytest.raises(ValueError):
        correction.expand_answer(labels, region, answer)


@FUZZ
@given(case=scoring_case(), data=st.data())
def test_region_mask_bad_input(case, data):
    probs, sp, _, _ = case
    kind = data.draw(st.sampled_from(["rep_outside", "rep_other", "probs_shape", "sp_float"]))
    sp_id = int(sp.max())
    assume(sp_id > 0)
    h = sp.shape[0]
    rep = np.argwhere(sp == sp_id)[0]
    tau = 0.5
    if kind == "rep_outside":
        rep = np.array([h + 2, 0])
    elif kind == "rep_other":
        others = np.argwhere(sp != sp_id)
        assume(len(others))
        rep = others[0]
    elif kind == "probs_shape":
        probs = probs[:, :, :0]
    else:
        sp = sp.astype(np.float64) + 0.5
        tau = data.draw(st.sampled_from([0.0, 0.5]))
    with pytest.raises(ValueError):
        correction.region_mask(sp, sp_id, probs, rep, tau)


@FUZZ
@given(
    c=st.integers(1, 6),
    ignore=st.sampled_from([None, 255, 6]),
    data=st.data(),
)
def test_confusion_matrix(c, ignore, data):
    shape = data.draw(st.tuples(st.integers(0, 5), st.integers(0, 5)))
    values = list(range(c)) + ([ignore] if ignore is not None else [])
    gt = np.array(values)[
        data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, len(values) - 1)))
    ]
    pred = np.array(values)[
        data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, len(values) - 1)))
    ]
    cm = metrics.ConfusionMatrix(c, ignore)
    cm.update(pred.astype(np.uint8), gt.astype(np.int32))
    keep = np.ones(shape, bool)
    if ignore is not None:
        keep = (gt != ignore) & (pred != ignore)
    assert cm.total == int(keep.sum())
    assert (cm.matrix >= 0).all()
    iou = cm.iou()
    assert iou.shape == (c,)
    finite = iou[np.isfinite(iou)]
    assert ((finite >= 0) & (finite <= 1)).all()
    miou = cm.miou()
    assert np.isnan(miou) or 0 <= miou <= 1
    # bad values and shapes are ValueErrors
    bad = pred.astype(np.int64)
    if bad.size:  # (a value at a pixel whose ground truth is ignore is skipped, as documented)
        bad.flat[0] = c + 1 if ignore != c + 1 else c + 2
        gt_ok = gt.astype(np.int64)
        gt_ok.flat[0] = 0
        with pytest.raises(ValueError):
            cm.update(bad, gt_ok)
    with pytest.raises(ValueError):
        cm.update(pred.astype(np.float32) + 0.5, gt)
    with pytest.raises(ValueError):
        cm.update(pred, gt.reshape(-1)[:-1] if gt.size else np.zeros(1, np.int64))


@pytest.mark.parametrize("num_classes", [0, -1])
def test_confusion_matrix_bad_classes(num_classes):
    with pytest.raises(ValueError):
        metrics.ConfusionMatrix(num_classes)


@FUZZ
@given(
    ids=hnp.arrays(
        st.sampled_from(INT_DTYPES),
        st.tuples(st.integers(1, 8), st.integers(1, 8)),
        elements=st.integers(0, 200),
    ),
    start=st.integers(1, 40),
)
def test_relabel_sequential(ids, start):
    out = csp.relabel_sequential(ids, start=start)
    assert out.dtype == np.uint16 and out.shape == ids.shape
    np.testing.assert_array_equal(out == 0, ids == 0)
    nz = np.unique(ids[ids > 0])
    assert np.array_equal(np.unique(out[out > 0]), np.arange(start, start + nz.size))
    # order is kept: a smaller old id gets a smaller new id
    for a in nz:
        assert len(np.unique(out[ids == a])) == 1


@FUZZ
@given(
    ids=hnp.arrays(
        np.int64,
        st.tuples(st.integers(1, 8), st.integers(1, 8)),
        elements=st.sampled_from([0, 1, 2, 5, 9, 70000, 2**40]),
    ),
    max_n=st.integers(1, 4),
)
def test_cap_superpixels(ids, max_n):
    out = csp.cap_superpixels(ids, max_n=max_n)
    assert out.dtype == np.uint16 and out.shape == ids.shape
    np.testing.assert_array_equal(out == 0, ids == 0)
    n_in = np.unique(ids[ids > 0]).size
    n_out = np.unique(out[out > 0]).size
    assert n_out == min(n_in, max_n)
    assert set(np.unique(out[out > 0])) == set(range(1, n_out + 1))
    # a merge never splits a region: every old region maps to one new id
    for a in np.unique(ids[ids > 0]):
        assert len(np.unique(out[ids == a])) == 1


@pytest.mark.parametrize(
    "ids",
    [
        np.array([[-1, 2]]),
        np.zeros((2, 2, 2), np.int64),
        np.array([[0.5, 1.0]]),
        np.zeros(3, np.int64),
    ],
)
def test_superpixel_maps_bad_input(ids):
    with pytest.raises(ValueError):
        csp.relabel_sequential(ids)
    with pytest.raises(ValueError):
        csp.cap_superpixels(ids, 4)


def test_relabel_overflow_is_a_value_error():
    ids = np.arange(70000, dtype=np.int64).reshape(100, 700) + 1
    with pytest.raises(ValueError, match="uint16"):
        csp.relabel_sequential(ids)


@FUZZ
@given(
    c=st.integers(1, 5),
    ignore=st.sampled_from([None, 255]),
    rate=st.floats(0, 1),
    kinds=st.lists(st.sampled_from(noise.KINDS), min_size=1, unique=True),
    data=st.data(),
)
def test_corrupt(c, ignore, rate, kinds, data):
    shape = data.draw(st.tuples(st.integers(1, 12), st.integers(1, 12)))
    values = list(range(c)) + ([ignore] if ignore is not None else [])
    gt = np.array(values)[
        data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, len(values) - 1)))
    ].astype(np.uint8)
    background = data.draw(st.sampled_from([None, 0]))
    out = noise.corrupt(
        gt, c, rate=rate, seed=1, kinds=kinds, ignore_index=ignore, background=background
    )
    assert out.shape == gt.shape and out.dtype == gt.dtype
    valid = np.ones(shape, bool) if ignore is None else gt != ignore
    # ignore pixels stay ignore, other values stay classes
    np.testing.assert_array_equal(out[~valid], gt[~valid])
    assert ((out[valid] >= 0) & (out[valid] < c)).all()
    again = noise.corrupt(
        gt, c, rate=rate, seed=1, kinds=kinds, ignore_index=ignore, background=background
    )
    np.testing.assert_array_equal(out, again)  # seeded


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gt": np.zeros((3, 3), np.float32)},
        {"gt": np.zeros(9, np.uint8)},
        {"num_classes": 0},
        {"rate": 1.5},
        {"rate": float("nan")},
        {"kinds": ["nope"]},
        {"kinds": []},
        {"background": 7},
        {"gt": np.full((3, 3), 9, np.uint8)},
        {"instances": np.zeros((2, 2), np.int64)},
        {"confusion": np.ones((2, 2))},
        {"confusion": np.full((3, 3), np.nan)},
        {"confusion": -np.ones((3, 3))},
    ],
)
def test_corrupt_bad_input(kwargs):
    args = {"gt": np.zeros((3, 3), np.uint8), "num_classes": 3, "rate": 0.3, **kwargs}
    with pytest.raises(ValueError):
        noise.corrupt(**args)


@FUZZ
@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    channels=st.sampled_from([None, 3]),
    dtype=st.sampled_from([np.uint8, np.float32]),
    data=st.data(),
)
def test_superpixel_features(shape, channels, dtype, data):
    full = shape if channels is None else (*shape, channels)
    if dtype == np.uint8:
        image = data.draw(hnp.arrays(np.uint8, full))
    else:
        image = data.draw(hnp.arrays(np.float32, full, elements=st.floats(0, 1, width=32)))
    palette = data.draw(st.sampled_from([[0, 1, 3, 65535], [0, 5, 2**40, 2**40 + 1]]))
    sp = np.array(palette, dtype=np.int64)[
        data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 3)))
    ]
    if palette[-1] < 2**16:
        sp = sp.astype(np.uint16)
    ids, feats = cprob.superpixel_features(image, sp)
    np.testing.assert_array_equal(ids, np.unique(sp[sp > 0]))
    assert feats.shape == (ids.size, len(cprob.FEATURE_NAMES))
    assert feats.dtype == np.float32 and np.isfinite(feats).all()


@pytest.mark.parametrize(
    "image, sp",
    [
        (np.zeros((4, 4, 3), np.uint8), np.ones((4, 5), np.uint16)),
        (np.zeros((4, 4, 3), np.uint8), np.full((4, 4), -1, np.int64)),
        (np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.float32)),
        (np.zeros((4, 4, 5), np.uint8), np.ones((4, 4), np.uint16)),
        (np.full((4, 4, 3), np.nan, np.float32), np.ones((4, 4), np.uint16)),
        (np.zeros((4,), np.uint8), np.ones((4,), np.uint16)),
    ],
)
def test_superpixel_features_bad_input(image, sp):
    with pytest.raises(ValueError):
        cprob.superpixel_features(image, sp)
