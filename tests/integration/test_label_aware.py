"""Label-aware superpixels and the oracle ceiling on real FiftyOne datasets (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import alc_fiftyone as alc
from alc_fiftyone.core import superpixels as csp
from alc_fiftyone.core.correction import oracle_gains
from alc_fiftyone.core.regions import (
    DEFAULT_MIN_AREA,
    FELZENSZWALB_MIN_SIZE,
    FELZENSZWALB_SCALE_PER_PIXEL,
    label_aware_regions,
)
from alc_fiftyone.store.files import read_image, read_png_array, read_segmentation


@pytest.fixture
def demo(unique_name, tmp_alc_dir):
    ds = alc.make_demo_dataset(name=unique_name, num_samples=5, size=(96, 72), seed=3)
    yield ds
    if not ds.deleted:
        ds.delete()


def _inside_one(regions: np.ndarray, parts: np.ndarray) -> bool:
    """Whether every region of ``regions`` lies inside one region of ``parts``."""
    pairs = np.unique(np.stack([regions.ravel(), parts.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1]


def test_label_aware_regions_follow_the_labels_and_the_base(demo):
    summary = alc.compute_superpixels(demo, label_field="pseudo", scale=100, min_size=20)
    assert summary["method"] == "label_aware" and summary["processed"] == len(demo)
    demo.reload()
    record = demo.info["alc"]["superpixels"]["alc_superpixels"]
    assert record["method"] == "label_aware" and record["label_field"] == "pseudo"
    for s in demo.iter_samples():
        seg = s.alc_superpixels
        assert seg.method == "label_aware" and seg.base == "felzenszwalb"
        assert seg.label_field == "pseudo" and seg.labels_path == s.pseudo.mask_path
        ids = read_segmentation(s, "alc_superpixels")
        assert (
            ids.dtype.kind == "u" and ids.min() >= 1
        )  # every pixel in a region (PNG: 8 or 16 bit)
        assert seg.num_superpixels == len(np.unique(ids)) == ids.max()
        labels = read_segmentation(s, "pseudo")
        # one label per region (merges only join a small fragment to a neighbour)
        sizes = np.bincount(ids.ravel())
        for i in np.flatnonzero(sizes):
            values, counts = np.unique(labels[ids == i], return_counts=True)
            if len(values) > 1:  # only fragments under min_area may have joined it
                assert counts.sum() - counts.max() < DEFAULT_MIN_AREA * len(values)
        # without merging, regions lie in one label component and one base region
        base = csp.felzenszwalb(read_image(s), scale=100, min_size=20)
        raw = label_aware_regions(labels, base, min_area=0, ignore_index=255)
        comp = np.zeros(labels.shape, np.int64)
        for v in np.unique(labels):
            cc, _ = ndimage.label(labels == v)
            comp = np.where(labels == v, cc + comp.max(), comp)
        assert _inside_one(raw, comp) and _inside_one(raw, base)


def test_label_aware_defaults_scale_with_the_image(unique_name, tmp_alc_dir):
    # the measured defaults: min_area 256, a Felzenszwalb scale of 0.008 per pixel (so a
    # small and a large image get regions of a similar share of the image), min_size 100
    for size in ((96, 72), (192, 144)):
        ds = alc.make_demo_dataset(name=f"{unique_name}-{size[0]}", num_samples=2, size=size)
        try:
            alc.compute_superpixels(ds, label_field="pseudo")
            for s in ds.iter_samples():
                image = read_image(s)
                h, w = image.shape[:2]
                scale = FELZENSZWALB_SCALE_PER_PIXEL * h * w
                base = csp.felzenszwalb(image, scale=scale, min_size=FELZENSZWALB_MIN_SIZE)
                expected = label_aware_regions(
                    read_segmentation(s, "pseudo"),
                    base,
                    image=image,
                    min_area=DEFAULT_MIN_AREA,
                    ignore_index=255,
                )
                np.testing.assert_array_equal(read_segmentation(s, "alc_superpixels"), expected)
        finally:
            ds.delete()


def test_label_aware_regions_follow_the_revised_labels(demo):
    alc.compute_superpixels(demo, method="slic", field="sp_slic", n_segments=30)
    alc.rank_superpixels(demo, "pseudo", superpixel_field="sp_slic", budget=5)
    q = alc.next_query(demo, "ana")
    alc.answer(demo, q["id"], 0, user="ana")
    # min_area=0: no fragment merges, so each region lies in one SLIC region exactly
    alc.compute_superpixels(demo, label_field="pseudo", base="field:sp_slic", min_area=0)
    s = demo[q["sample_id"]]
    assert s.alc_superpixels.labels_path == s.alc_revised.mask_path
    assert s.alc_superpixels.base == "field:sp_slic"
    ids = read_segmentation(s, "alc_superpixels")
    assert _inside_one(ids, read_segmentation(s, "sp_slic"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "label_aware"}, "label_field"),
        ({"label_field": "pseudo", "base": "watershed"}, "unknown base"),
        ({"label_field": "pseudo", "n_segments": 10}, "n_segments"),
        ({"label_field": "pseudo", "ignore": "drop"}, "ignore"),
        ({"label_field": "pseudo", "base": "field:nope"}, "no superpixel field"),
    ],
)
def test_label_aware_bad_options_write_nothing(demo, kwargs, match):
    with pytest.raises((ValueError, TypeError, alc.ALCError), match=match):
        alc.compute_superpixels(demo, **kwargs)
    assert not demo.has_field("alc_superpixels")


def test_label_aware_on_sam_regions(demo):
    """base="sam": SAM superpixels (a tiny random SAM here: timing and coverage only) cut by
    the label components; deterministic."""
    from alc_fiftyone.core.sam import tiny_random_sam

    sam = tiny_random_sam(seed=0, img_size=64)
    kw = {"sam": sam, "points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    alc.compute_superpixels(demo, label_field="pseudo", base="sam", batch_size=2, **kw)
    alc.compute_superpixels(
        demo, label_field="pseudo", base="sam", field="sp_again", batch_size=2, **kw
    )
    for s in demo.iter_samples():
        a = read_segmentation(s, "alc_superpixels")
        assert a.min() >= 1 and s.alc_superpixels.base == "sam"
        assert np.array_equal(a, read_segmentation(s, "sp_again"))


def test_simulate_oracle_ranks_by_what_one_answer_fixes(demo):
    alc.compute_superpixels(demo, label_field="pseudo", scale=100, min_size=20)
    with pytest.raises(ValueError, match="ceiling"):
        alc.rank_superpixels(demo, "pseudo", method="oracle")
    res = alc.simulate(
        demo, "pseudo", "ground_truth", rounds=1, budget_per_round=6, method="oracle"
    )
    assert res.config["method"] == "oracle"
    # the queries of round 1 are the 6 regions with the largest gains on the initial labels
    gains = []
    for s in demo.iter_samples():
        sp = read_segmentation(s, "alc_superpixels")
        ids = np.unique(sp)
        g = oracle_gains(
            read_segmentation(s, "ground_truth"), read_segmentation(s, "pseudo"), sp, ids
        )
        gains += [(float(x), s.id, int(i)) for x, i in zip(g, ids)]
    best = sorted(gains, reverse=True)[:6]
    asked = sorted(
        (float(d.score), sid, int(d.superpixel_id))
        for sid, dets in zip(demo.values("id"), demo.values("alc_sim_queries.detections"))
        for d in dets or []
    )
    assert [a[0] for a in sorted(asked, reverse=True)] == [b[0] for b in best]
    assert res.rows[1]["pixels_changed"] == pytest.approx(sum(b[0] for b in best))
    assert res.mious[1] > res.mious[0]


def test_simulate_refuses_regions_that_follow_the_ground_truth(demo):
    alc.compute_superpixels(demo, label_field="ground_truth", field="sp_truth")
    with pytest.raises(alc.ALCError, match="ground truth"):
        alc.simulate(demo, "pseudo", "ground_truth", superpixel_field="sp_truth", rounds=1)


def test_labels_path_is_a_readable_mask(demo):
    alc.compute_superpixels(demo, label_field="pseudo")
    s = demo.first()
    assert np.array_equal(
        read_png_array(s.alc_superpixels.labels_path), read_segmentation(s, "pseudo")
    )
