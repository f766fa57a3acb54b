"""Tests of the superpixel id maps (alc_fiftyone.core.superpixels)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from alc_fiftyone.core.superpixels import (
    MAX_SUPERPIXELS,
    cap_superpixels,
    felzenszwalb,
    relabel_sequential,
    slic,
    superpixels,
)


def _scene(h: int = 90, w: int = 120, seed: int = 0) -> np.ndarray:
    """An RGB image of a few flat coloured regions with mild noise."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float64)
    img[: h // 3] = (120, 170, 230)  # sky
    img[h // 3 : 2 * h // 3] = (140, 90, 60)  # building
    img[2 * h // 3 :] = (90, 90, 90)  # road
    img[h // 2 : h // 2 + 15, w // 4 : w // 4 + 25] = (200, 20, 20)  # a car
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _assert_dense_full(ids: np.ndarray, shape: tuple[int, int]) -> int:
    assert ids.dtype == np.uint16
    assert ids.shape == shape
    values = np.unique(ids).astype(np.int64)
    assert values[0] == 1, "0 must be unused when every pixel is covered"
    np.testing.assert_array_equal(values, np.arange(1, values[-1] + 1))
    return int(values[-1])


def _assert_connected(ids: np.ndarray) -> None:
    values = np.unique(ids[ids > 0])
    pieces = sum(ndimage.label(ids == v)[1] for v in values)
    assert pieces == values.size, "a superpixel is split into pieces"


@pytest.mark.parametrize("method", ["slic", "felzenszwalb"])
def test_dense_uint16_full_coverage_and_deterministic(method):
    img = _scene()
    a = superpixels(img, method)
    n = _assert_dense_full(a, img.shape[:2])
    assert n > 4
    b = superpixels(img.copy(), method)
    np.testing.assert_array_equal(a, b)


def test_slic_segment_count_follows_n_segments():
    img = _scene(180, 240)
    few = int(slic(img, n_segments=30).max())
    many = int(slic(img, n_segments=300).max())
    assert few < many
    assert 100 < many < 600


def test_slic_regions_respect_a_strong_edge_in_grayscale():
    gray = np.zeros((80, 100), np.uint8)
    gray[:, 50:] = 220
    for image in (gray, gray[..., None]):
        # without smoothing no superpixel crosses the edge
        ids = slic(image, n_segments=40, sigma=0.0)
        _assert_dense_full(ids, gray.shape)
        left = set(np.unique(ids[:, :50]).tolist())
        right = set(np.unique(ids[:, 50:]).tolist())
        assert not left & right, "a superpixel crosses the black/white edge"
        # with the default smoothing only the blurred edge column may stray
        ids = slic(image, n_segments=40)
        n = int(ids.max())
        on_left = np.bincount(ids[:, :50].ravel(), minlength=n + 1)[1:]
        total = np.bincount(ids.ravel(), minlength=n + 1)[1:]
        share = on_left / total
        assert ((share > 0.9) | (share < 0.1)).all()


def test_felzenszwalb_grayscale_and_scale():
    rng = np.random.default_rng(1)
    gray = np.clip(rng.normal(128, 30, (60, 80)), 0, 255).astype(np.uint8)
    gray[:, :40] //= 4
    fine = felzenszwalb(gray, scale=20, min_size=5)
    coarse = felzenszwalb(gray, scale=2000, min_size=5)
    _assert_dense_full(fine, gray.shape)
    _assert_dense_full(coarse, gray.shape)
    assert coarse.max() < fine.max()


def test_bad_images_and_unknown_method():
    with pytest.raises(ValueError, match="RGB"):
        slic(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(ValueError, match="slic, felzenszwalb"):
        superpixels(_scene(), "watershed")
    with pytest.raises(ValueError, match="start_label"):
        slic(_scene(), start_label=0)


def test_slic_mask_restricts_and_offsets_ids():
    img = _scene()
    mask = np.zeros(img.shape[:2], bool)
    mask[10:60, 20:100] = True
    ids = slic(img, n_segments=30, mask=mask, start_label=50)
    assert ids.dtype == np.uint16
    assert (ids[~mask] == 0).all()
    assert (ids[mask] > 0).all()
    values = np.unique(ids[mask])
    np.testing.assert_array_equal(values, np.arange(50, 50 + values.size))
    assert values.size > 3
    empty = slic(img, mask=np.zeros(img.shape[:2], bool))
    assert empty.dtype == np.uint16 and not empty.any()
    with pytest.raises(ValueError, match="mask shape"):
        slic(img, mask=mask[:-1])


def test_tiny_image():
    ids = slic(np.full((1, 1, 3), 7, np.uint8), n_segments=10)
    np.testing.assert_array_equal(ids, [[1]])
    ids = felzenszwalb(np.zeros((2, 3), np.uint8))
    _assert_dense_full(ids, (2, 3))


def test_relabel_sequential():
    ids = np.array([[0, 5, 5], [70000, 7, 0]], np.int64)
    out = relabel_sequential(ids)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, [[0, 1, 1], [3, 2, 0]])
    np.testing.assert_array_equal(relabel_sequential(ids, start=10), [[0, 10, 10], [12, 11, 0]])
    with pytest.raises(ValueError, match="cap_superpixels"):
        relabel_sequential(ids, start=MAX_SUPERPIXELS - 1)
    with pytest.raises(ValueError, match=">= 0"):
        relabel_sequential(np.array([[-1, 2]]))


def test_cap_superpixels_merges_smallest_into_neighbours():
    img = _scene(120, 160, seed=3)
    fine = felzenszwalb(img, scale=1, sigma=0.0, min_size=1).astype(np.int64) * 3  # sparse ids
    n_fine = len(np.unique(fine))
    assert n_fine > 200
    capped = cap_superpixels(fine, max_n=12)
    n = _assert_dense_full(capped, fine.shape)
    assert n <= 12
    assert n >= 6, "merging went far below the cap"
    _assert_connected(capped)
    # merging only: every original region lies inside exactly one new region
    pairs = np.unique(fine.ravel() * 100 + capped.ravel())
    assert pairs.size == n_fine
    # deterministic
    np.testing.assert_array_equal(capped, cap_superpixels(fine, max_n=12))


def test_cap_superpixels_keeps_large_regions_and_zero():
    ids = np.zeros((40, 40), np.int64)
    ids[:, :20] = 1  # large
    ids[:, 20:39] = 2  # large
    ids[5, 25] = 3  # tiny, inside 2
    ids[30, 5] = 4  # tiny, inside 1
    ids[:, 39] = 0  # no superpixel
    capped = cap_superpixels(ids, max_n=2)
    np.testing.assert_array_equal(np.unique(capped), [0, 1, 2])
    assert (capped[:, 39] == 0).all()
    assert capped[5, 25] == capped[10, 25]  # merged into its surrounding region
    assert capped[30, 5] == capped[0, 0]
    # under the cap: just a dense relabel
    np.testing.assert_array_equal(cap_superpixels(ids, max_n=10), relabel_sequential(ids))


def test_cap_superpixels_isolated_regions_fallback():
    ids = np.zeros((12, 12), np.int64)
    ids[1::4, 1::4] = np.arange(1, 10).reshape(3, 3)  # nine isolated one-pixel regions
    capped = cap_superpixels(ids, max_n=3)
    assert int(capped.max()) == 3
    assert ((capped > 0) == (ids > 0)).all()


def test_default_cap_applies_to_huge_segmentations():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    ids = felzenszwalb(noise, scale=0.001, sigma=0.0, min_size=1)
    n = _assert_dense_full(ids, noise.shape[:2])
    assert n == MAX_SUPERPIXELS
