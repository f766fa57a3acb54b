"""Tests of the label-aware regions (alc_fiftyone.core.regions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from alc_fiftyone.core.regions import (
    label_aware_regions,
    label_components,
    region_label_context,
)
from alc_fiftyone.core.superpixels import MAX_SUPERPIXELS, felzenszwalb, slic

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _ids(r: np.ndarray) -> np.ndarray:
    return np.unique(r).astype(np.int64)


def _assert_dense_full(r: np.ndarray, shape) -> int:
    assert r.dtype == np.uint16
    assert r.shape == tuple(shape)
    ids = _ids(r)
    assert ids[0] == 1, "every pixel must have a region (0 unused)"
    np.testing.assert_array_equal(ids, np.arange(1, ids[-1] + 1))
    return int(ids[-1])


def _assert_connected(r: np.ndarray) -> None:
    pieces = sum(ndimage.label(r == v)[1] for v in _ids(r))
    assert pieces == _ids(r).size, "a region is split into pieces"


def _assert_inside(r: np.ndarray, other: np.ndarray) -> None:
    """Every region of ``r`` lies inside one region of ``other``."""
    pairs = np.unique(
        np.stack([r.ravel().astype(np.int64), other.ravel().astype(np.int64)]), axis=1
    )
    assert pairs.shape[1] == _ids(r).size, "a region straddles two regions of the other map"


def _grid(h, w, step):
    yy, xx = np.mgrid[:h, :w]
    return ((yy // step) * (w // step + 1) + xx // step + 1).astype(np.uint16)


def _labels_and_base(h=60, w=80, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.zeros((h, w), np.uint8)
    labels[:, w // 2 :] = 1
    labels[10:30, 10:30] = 2  # an object across several base cells
    labels[40:43, 60:63] = 0  # a 9-pixel blob of class 0 inside class 1
    noise = rng.random((h, w)) < 0.02
    labels[noise] = 2  # scattered single pixels
    return labels, _grid(h, w, 16)


def test_min_area_zero_is_the_exact_intersection():
    labels, base = _labels_and_base()
    r = label_aware_regions(labels, base, min_area=0)
    _assert_dense_full(r, labels.shape)
    _assert_connected(r)
    _assert_inside(r, base)
    _assert_inside(r, label_components(labels)[0])
    # and nothing coarser: each (base region, label component) piece is one region
    key = base.astype(np.int64) * 4 + labels
    n_pieces = int(ndimage.label(np.ones_like(labels))[1])
    assert n_pieces == 1
    from skimage.measure import label as cc

    assert r.max() == cc(key, background=-1, connectivity=1).max()


def test_fragments_merge_into_their_label_component_first():
    # one label component (class 1 everywhere) cut by a base border 2 px from the edge:
    # the 2-px sliver must join the class-1 region next to it, not the class-0 one
    labels = np.zeros((20, 20), np.uint8)
    labels[:, 10:] = 1
    base = np.ones((20, 20), np.uint16)
    base[:, 18:] = 2
    r = label_aware_regions(labels, base, min_area=50)
    assert _assert_dense_full(r, labels.shape) == 2
    assert np.unique(r[labels == 1]).size == 1  # the sliver joined class 1
    assert np.unique(r[labels == 0]).size == 1
    assert r[0, 0] != r[0, 19]


def test_small_whole_component_joins_most_similar_neighbour():
    # a 4-pixel blob of class 2 touching class 0 (long border) and class 1 (short border)
    labels = np.zeros((20, 20), np.uint8)
    labels[:, 12:] = 1
    labels[5:7, 10:12] = 2
    base = np.ones((20, 20), np.uint16)
    # without an image: the longest shared border (class 0 side)
    r = label_aware_regions(labels, base, min_area=10)
    assert r[5, 10] == r[0, 0]
    # with an image whose blob looks like class 1: colour wins
    img = np.zeros((20, 20, 3), np.uint8)
    img[:, 12:] = 200
    img[5:7, 10:12] = 190
    r = label_aware_regions(labels, base, image=img, min_area=10)
    assert r[5, 10] == r[0, 19]


def test_min_area_respected_where_a_merge_is_possible():
    labels, base = _labels_and_base()
    for min_area in (5, 30, 100):
        r = label_aware_regions(labels, base, min_area=min_area)
        _assert_dense_full(r, labels.shape)
        _assert_connected(r)
        sizes = np.bincount(r.ravel())[1:]
        if r.max() > 1:
            assert sizes.min() >= min_area
        # every region is label-pure and inside one base region apart from the fragments it
        # absorbed: each connected piece of another label (or base region) is < min_area
        for v in _ids(r):
            inside = r == v
            for other in (labels, base):
                vals, counts = np.unique(other[inside], return_counts=True)
                main = vals[counts.argmax()]
                for val in vals[vals != main]:
                    pieces, _k = ndimage.label(inside & (other == val))
                    assert np.bincount(pieces.ravel())[1:].max() < min_area


def test_fragments_stay_in_one_label_component_when_merged_within_it():
    labels, base = _labels_and_base(seed=1)
    labels = ndimage.median_filter(labels, 5)  # no isolated pixels: no cross-label merges
    r = label_aware_regions(labels, base, min_area=20)
    comps, _ = label_components(labels)
    sizes = np.bincount(comps.ravel())
    big = sizes[comps] >= 20
    # pixels of label components of at least min_area never share a region with another label
    for v in _ids(r):
        inside = (r == v) & big
        if inside.any():
            assert np.unique(labels[inside]).size == 1


def test_deterministic_and_independent_of_base_id_values():
    labels, base = _labels_and_base()
    img = np.random.default_rng(3).integers(0, 255, labels.shape + (3,), dtype=np.uint8)
    a = label_aware_regions(labels, base, image=img, min_area=25)
    b = label_aware_regions(labels.copy(), base.copy(), image=img.copy(), min_area=25)
    np.testing.assert_array_equal(a, b)
    # renumbering the base regions (a permutation of ids) gives the same partition
    perm = np.random.default_rng(0).permutation(int(base.max()) + 1)
    perm[perm == 0] = perm[0]
    perm[0] = 0
    c = label_aware_regions(labels, (perm[base] + 1000).astype(np.int32), image=img, min_area=25)
    _assert_inside(a, c)
    _assert_inside(c, a)


def test_ignore_own_keeps_unlabelled_areas_as_regions():
    labels = np.zeros((30, 30), np.uint8)
    labels[:, 15:] = 1
    labels[5:25, 5:12] = 255  # an unlabelled patch (e.g. a missed object)
    labels[:, 14] = 255  # a thin unlabelled border between the classes
    base = np.ones((30, 30), np.uint16)
    r = label_aware_regions(labels, base, min_area=0, ignore="own")
    patch = r[5:25, 5:12]
    assert np.unique(patch).size == 1
    assert (labels[r == patch[0, 0]] == 255).all()  # the region is only the patch
    # with min_area the 30-px border column merges; the 140-px patch stays its own region
    r = label_aware_regions(labels, base, min_area=50, ignore="own")
    assert (labels[r == r[10, 8]] == 255).all()
    assert (labels[r == r[0, 14]] != 255).any()


def test_ignore_merge_joins_labelled_region_of_the_same_base_region():
    labels = np.zeros((30, 30), np.uint8)
    labels[:, 15:] = 1
    labels[5:25, 5:12] = 255
    base = np.ones((30, 30), np.uint16)
    base[:, 20:] = 2
    labels[0:5, 22:28] = 255  # inside base region 2, touching class 1 only
    r = label_aware_regions(labels, base, min_area=0, ignore="merge")
    assert r[10, 8] == r[0, 0]  # the patch joined class 0 around it (same base region)
    assert r[2, 24] == r[10, 25]  # the corner joined class 1 of base region 2
    _assert_inside(r, base)
    # an ignore piece alone in its base region stays a region of its own
    base3 = base.copy()
    base3[5:25, 5:12] = 3
    r = label_aware_regions(labels, base3, min_area=0, ignore="merge")
    assert (labels[r == r[10, 8]] == 255).all()
    # ignore_index=None: 255 is just another class
    r = label_aware_regions(labels, base, min_area=0, ignore="merge", ignore_index=None)
    assert (labels[r == r[10, 8]] == 255).all()


def test_cap_and_uint16():
    # a checkerboard of two labels: every pixel is its own component (90,000 > 65,535)
    h, w = 300, 300
    labels = ((np.add.outer(np.arange(h), np.arange(w))) % 2).astype(np.uint8)
    base = np.ones((h, w), np.uint16)
    r = label_aware_regions(labels, base, min_area=0)
    assert r.dtype == np.uint16
    assert int(r.max()) == MAX_SUPERPIXELS
    assert _assert_dense_full(r, labels.shape) == MAX_SUPERPIXELS
    r = label_aware_regions(labels, base, min_area=0, max_regions=1000)
    assert _assert_dense_full(r, labels.shape) == 1000


def test_base_zero_is_a_base_region_and_single_region_inputs():
    labels = np.zeros((10, 10), np.uint8)
    base = np.zeros((10, 10), np.uint16)
    base[:, 5:] = 7
    r = label_aware_regions(labels, base, min_area=0)
    assert _assert_dense_full(r, labels.shape) == 2
    r = label_aware_regions(labels, np.zeros((10, 10), np.uint8), min_area=1000)
    assert _assert_dense_full(r, labels.shape) == 1


def test_bad_inputs():
    labels = np.zeros((5, 5), np.uint8)
    with pytest.raises(ValueError, match="differ in size"):
        label_aware_regions(labels, np.ones((5, 6), np.uint16))
    with pytest.raises(ValueError, match="ignore must be"):
        label_aware_regions(labels, np.ones((5, 5), np.uint16), ignore="drop")
    with pytest.raises(ValueError, match="integer"):
        label_aware_regions(labels.astype(float), np.ones((5, 5), np.uint16))
    with pytest.raises(ValueError, match="min_area"):
        label_aware_regions(labels, np.ones((5, 5), np.uint16), min_area=-1)
    with pytest.raises(ValueError, match="max_regions"):
        label_aware_regions(labels, np.ones((5, 5), np.uint16), max_regions=70000)


def test_region_label_context_describes_neighbours_not_self():
    labels = np.zeros((10, 30), np.uint8)
    labels[:, 10:20] = 1
    labels[:, 20:] = 2
    regions = np.ones((10, 30), np.uint16)
    regions[:, 10:20] = 2
    regions[:, 20:] = 3
    ids, ctx = region_label_context(regions, labels, 3)
    np.testing.assert_array_equal(ids, [1, 2, 3])
    np.testing.assert_allclose(ctx[0], [0, 1, 0])  # region 1 touches only class 1
    np.testing.assert_allclose(ctx[1], [0.5, 0, 0.5])  # equal borders with 0 and 2
    np.testing.assert_allclose(ctx[2], [0, 1, 0])
    assert ctx.dtype == np.float32


@pytest.mark.skipif(
    not (DATA / "camvid-val").is_dir(),
    reason=f"real data folder {DATA / 'camvid-val'} is absent (only on the project machine)",
)
@pytest.mark.parametrize("base_method", ["felzenszwalb", "slic"])
def test_real_camvid_image(base_method):
    from PIL import Image

    from alc_fiftyone.core.noise import corrupt

    name = min((DATA / "camvid-val" / "images").iterdir()).name
    img = np.asarray(Image.open(DATA / "camvid-val" / "images" / name).convert("RGB"))
    gt = np.array(Image.open(DATA / "camvid-val" / "masks" / name), dtype=np.uint8)
    gt[gt == 11] = 255
    labels = corrupt(gt, 11, rate=0.3, seed=0, ignore_index=255)
    if base_method == "felzenszwalb":
        base = felzenszwalb(img, scale=400, sigma=0.8, min_size=100)
    else:
        base = slic(img, n_segments=200, compactness=10)
    exact = label_aware_regions(labels, base, image=img, min_area=0)
    _assert_dense_full(exact, labels.shape)
    _assert_inside(exact, base)
    _assert_inside(exact, label_components(labels)[0])
    r = label_aware_regions(labels, base, image=img, min_area=64)
    n = _assert_dense_full(r, labels.shape)
    assert n < exact.max()
    assert np.bincount(r.ravel())[1:].min() >= 64
    # nearly all pixels share their region with their own label only
    major = np.zeros(n + 1, np.int64)
    counts = np.bincount(
        r.ravel().astype(np.int64) * 256 + labels.ravel(), minlength=(n + 1) * 256
    )
    major = counts.reshape(n + 1, 256).argmax(1)
    assert (major[r] == labels).mean() > 0.98
    np.testing.assert_array_equal(r, label_aware_regions(labels, base, image=img, min_area=64))
