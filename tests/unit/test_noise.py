"""Tests of the seeded label noise (alc_fiftyone.core.noise)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label as cc_label

from alc_fiftyone.core.noise import KINDS, corrupt, error_rate

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CAMVID = SHARED_DATA / "camvid-val"
C = 6
IGNORE = 255


def road_scene(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    """A CamVid-like class map: sky/building/road bands, cars, poles, a few ignore pixels."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((h, w), np.uint8)  # 0 sky
    gt[h // 4 : h // 2] = 1  # building
    gt[h // 2 :] = 2  # road
    for _ in range(4):  # cars
        y, x = rng.integers(h // 2, h - 12), rng.integers(0, w - 25)
        gt[y : y + 10, x : x + 22] = 3
    for _ in range(3):  # poles
        x = rng.integers(0, w - 2)
        gt[h // 5 : 3 * h // 4, x : x + 2] = 4
    yy, xx = np.mgrid[:h, :w]
    gt[(yy - h // 3) ** 2 + (xx - w // 2) ** 2 < 64] = 5  # a tree
    gt[-3:, :] = IGNORE
    gt[h // 2 + 2 : h // 2 + 6, w // 3 : w // 3 + 5] = IGNORE
    return gt


def _camvid_masks(n: int) -> list[np.ndarray]:
    if not CAMVID.is_dir():
        pytest.skip(f"real data folder {CAMVID} is absent (only on the project's machines)")
    from PIL import Image

    files = sorted((CAMVID / "masks").glob("*.png"))[:: max(1, 100 // n)][:n]
    return [np.asarray(Image.open(f)) for f in files]


def test_error_rate_hand_computed():
    gt = np.array([[0, 1, 255, 1]], np.uint8)
    noisy = np.array([[0, 0, 255, 255]], np.uint8)
    assert error_rate(noisy, gt) == pytest.approx(2 / 3)  # a new ignore counts as wrong
    assert error_rate(gt, gt) == 0.0
    assert error_rate(noisy, gt, ignore_index=None) == pytest.approx(2 / 4)
    assert error_rate(gt[:, :0], gt[:, :0]) == 0.0
    with pytest.raises(ValueError, match="shape"):
        error_rate(noisy[:, :2], gt)


@pytest.mark.parametrize("rate", [0.02, 0.1, 0.2, 0.35])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rate_reached_on_synthetic_maps(rate, seed):
    gt = road_scene(seed=seed)
    noisy = corrupt(gt, C, rate=rate, seed=seed, ignore_index=IGNORE)
    achieved = error_rate(noisy, gt, IGNORE)
    assert rate - 0.003 <= achieved <= rate + max(0.02 * rate, 0.002) + 1e-9


@pytest.mark.parametrize("background", [0, None])
def test_rate_reached_on_camvid(background):
    for i, gt in enumerate(_camvid_masks(6)):
        for rate in (0.1, 0.3):
            noisy = corrupt(gt, 11, rate=rate, seed=i, ignore_index=11, background=background)
            assert abs(error_rate(noisy, gt, 11) - rate) <= 0.01
            assert ((noisy == 11) == (gt == 11)).all()


def test_seeds_reproducible_and_different():
    gt = road_scene()
    a = corrupt(gt, C, seed=7, ignore_index=IGNORE)
    b = corrupt(gt, C, seed=7, ignore_index=IGNORE)
    c = corrupt(gt, C, seed=8, ignore_index=IGNORE)
    np.testing.assert_array_equal(a, b)
    assert (a != c).sum() > 0.05 * gt.size
    assert not np.shares_memory(a, gt)


def test_ignore_kept_dtype_kept_and_classes_valid():
    for dtype in (np.uint8, np.int32, np.int64):
        gt = road_scene(seed=3).astype(dtype)
        before = gt.copy()
        noisy = corrupt(gt, C, rate=0.3, seed=1, ignore_index=IGNORE)
        np.testing.assert_array_equal(gt, before)  # input untouched
        assert noisy.dtype == dtype
        assert ((noisy == IGNORE) == (gt == IGNORE)).all()
        assert noisy[gt != IGNORE].max() < C


def test_rate_zero_and_no_labelled_pixels():
    gt = road_scene()
    out = corrupt(gt, C, rate=0.0, ignore_index=IGNORE)
    np.testing.assert_array_equal(out, gt)
    assert out is not gt
    allign = np.full((10, 10), IGNORE, np.uint8)
    np.testing.assert_array_equal(corrupt(allign, C, rate=0.5, ignore_index=IGNORE), allign)


def test_invalid_input():
    gt = road_scene()
    with pytest.raises(ValueError, match="outside"):
        corrupt(gt, 3, ignore_index=IGNORE)
    with pytest.raises(ValueError, match="kinds"):
        corrupt(gt, C, kinds=("swap", "flip"), ignore_index=IGNORE)
    with pytest.raises(ValueError, match="kinds"):
        corrupt(gt, C, kinds=(), ignore_index=IGNORE)
    with pytest.raises(ValueError, match="confusion"):
        corrupt(gt, C, confusion=np.eye(3), ignore_index=IGNORE)
    with pytest.raises(ValueError, match="rate"):
        corrupt(gt, C, rate=1.5, ignore_index=IGNORE)
    with pytest.raises(ValueError, match="background"):
        corrupt(gt, C, background=C, ignore_index=IGNORE)


def _objects(gt: np.ndarray) -> np.ndarray:
    return cc_label(np.where(gt == IGNORE, -1, gt.astype(np.int64)), background=-1, connectivity=1)


def test_swap_relabels_whole_objects_to_another_class():
    gt = road_scene(seed=4)
    noisy = corrupt(gt, C, rate=0.15, seed=3, kinds=("swap",), ignore_index=IGNORE)
    assert error_rate(noisy, gt, IGNORE) > 0.1
    objs = _objects(gt)
    changed_objects = 0
    for k in range(1, objs.max() + 1):
        m = objs == k
        vals = np.unique(noisy[m])
        if (noisy[m] != gt[m]).any():
            changed_objects += 1
            assert vals.size == 1, "a swapped object must be relabelled as a whole"
            assert vals[0] != gt[m][0]
    assert changed_objects >= 1


def test_swap_follows_the_confusion_prior():
    gt = road_scene(seed=5)
    confusion = np.zeros((C, C))
    for c in range(C):
        confusion[c, (c + 1) % C] = 1.0
        confusion[c, c] = 5.0  # the diagonal is ignored: a swap always changes the class
    noisy = corrupt(
        gt, C, rate=0.2, seed=0, kinds=("swap",), confusion=confusion, ignore_index=IGNORE
    )
    changed = noisy != gt
    assert changed.mean() > 0.1
    np.testing.assert_array_equal(noisy[changed], (gt[changed].astype(int) + 1) % C)


def test_miss_relabels_objects_to_background():
    gt = road_scene(seed=6)
    noisy = corrupt(gt, C, rate=0.1, seed=2, kinds=("miss",), background=2, ignore_index=IGNORE)
    changed = noisy != gt
    assert changed.mean() > 0.08
    assert (noisy[changed] == 2).all()
    assert (gt[changed] != 2).all()
    objs = _objects(gt)
    for k in np.unique(objs[changed]):
        assert (noisy[objs == k] == 2).all(), "a missed object must vanish as a whole"


def test_miss_without_background_takes_the_surrounding_class():
    gt = np.zeros((60, 80), np.uint8)
    gt[30:, :] = 1
    gt[10:18, 10:20] = 2  # surrounded by 0
    gt[40:50, 50:70] = 3  # surrounded by 1
    gt[26:34, 35:45] = 4  # mostly on class 1 rows? half in 0 and half in 1
    noisy = corrupt(
        gt, 5, rate=0.03, seed=0, kinds=("miss",), background=None, ignore_index=IGNORE
    )
    assert (noisy != gt).any()
    if (noisy[10:18, 10:20] != 2).any():
        assert (noisy[10:18, 10:20] == 0).all()
    if (noisy[40:50, 50:70] != 3).any():
        assert (noisy[40:50, 50:70] == 1).all()
    for seed in range(10):
        noisy = corrupt(
            gt, 5, rate=0.02, seed=seed, kinds=("miss",), background=None, ignore_index=IGNORE
        )
        m = noisy != gt
        assert set(np.unique(noisy[m]).tolist()) <= {0, 1}
        assert set(np.unique(gt[m]).tolist()) <= {2, 3, 4}


def _near_class(gt: np.ndarray, radius: float) -> dict[int, np.ndarray]:
    return {
        int(c): ndimage.distance_transform_edt(gt != c) <= radius
        for c in np.unique(gt)
        if c != IGNORE
    }


def test_boundary_moves_only_pixels_near_class_borders():
    gt = road_scene(seed=7)
    noisy = corrupt(gt, C, rate=0.06, seed=4, kinds=("boundary",), ignore_index=IGNORE)
    changed = noisy != gt
    assert changed.mean() > 0.03
    # every changed pixel lies within 5 px of another class and takes a class found nearby
    dist_to_other = np.full(gt.shape, np.inf)
    for c in np.unique(gt[gt != IGNORE]):
        d = ndimage.distance_transform_edt(gt == c)
        dist_to_other = np.where(gt == c, d, dist_to_other)
    assert (dist_to_other[changed] <= 5.0 + 1e-9).all()
    near10 = _near_class(gt, 10.0)
    ys, xs = np.nonzero(changed)
    for y, x in zip(ys, xs, strict=True):
        assert near10[int(noisy[y, x])][y, x]
    # edges move, objects are not relabelled as a whole: the large regions change in part
    objs = _objects(gt)
    partly = [k for k in np.unique(objs[changed]) if k and not changed[objs == k].all()]
    assert len(partly) >= 2


def test_blob_paints_compact_spurious_regions():
    gt = np.zeros((100, 140), np.uint8)
    noisy = corrupt(gt, 4, rate=0.05, seed=0, kinds=("blob",), ignore_index=IGNORE)
    changed = noisy != gt
    assert error_rate(noisy, gt, IGNORE) == pytest.approx(0.05, abs=0.003)
    assert set(np.unique(noisy[changed]).tolist()) <= {1, 2, 3}
    comps, n = ndimage.label(changed)
    assert 1 <= n <= 20
    sizes = np.bincount(comps.ravel())[1:]
    assert sizes.max() >= 9
    # every blob stays compact: it fills a good share of its bounding box
    for sl, size in zip(ndimage.find_objects(comps), sizes, strict=True):
        box = (sl[0].stop - sl[0].start) * (sl[1].stop - sl[1].start)
        assert size / box > 0.2


def test_blob_respects_ignore():
    gt = road_scene(seed=8)
    noisy = corrupt(gt, C, rate=0.3, seed=1, kinds=("blob",), ignore_index=IGNORE)
    assert ((noisy == IGNORE) == (gt == IGNORE)).all()
    assert error_rate(noisy, gt, IGNORE) == pytest.approx(0.3, abs=0.01)


def test_instances_are_objects():
    gt = np.zeros((50, 100), np.uint8)
    gt[10:40, 20:80] = 1  # one connected region of class 1 ...
    inst = np.zeros(gt.shape, np.int32)
    inst[10:40, 20:50] = 1  # ... made of two instances of 900 px each (18% each)
    inst[10:40, 50:80] = 2
    rate = 900 / gt.size
    for seed in range(4):
        noisy = corrupt(
            gt, 3, rate=rate, seed=seed, kinds=("swap",), instances=inst, ignore_index=IGNORE
        )
        changed = noisy != gt
        assert changed.sum() == 900
        assert (inst[changed] == inst[changed][0]).all() and inst[changed][0] > 0
        # the class-1 component as a whole (1800 px) would overshoot: not possible without
        # instances
        plain = corrupt(gt, 3, rate=rate, seed=seed, kinds=("swap",), ignore_index=IGNORE)
        assert (plain != gt).sum() != 900


def test_single_class_and_swap_impossible():
    gt = np.zeros((20, 20), np.uint8)
    # one class: nothing can be made wrong, nothing breaks
    np.testing.assert_array_equal(corrupt(gt, 1, rate=0.3, ignore_index=IGNORE), gt)
    # swap alone on a two-object map cannot reach 5%: it falls short rather than overshoot
    gt[:, 10:] = 1
    noisy = corrupt(gt, 2, rate=0.05, seed=0, kinds=("swap",), ignore_index=IGNORE)
    assert error_rate(noisy, gt, IGNORE) <= 0.05 + 0.25 * 0.05 + 0.01


def test_all_kinds_contribute():
    gt = road_scene(seed=9)
    for kind in KINDS:
        noisy = corrupt(gt, C, rate=0.05, seed=0, kinds=(kind,), ignore_index=IGNORE)
        assert error_rate(noisy, gt, IGNORE) > 0.02, kind


def test_camvid_sized_rate():
    rng = np.random.default_rng(0)
    gt = np.kron(rng.integers(0, 11, (12, 16)), np.ones((30, 30), np.int64)).astype(np.uint8)
    gt[::37, :] = 11
    assert gt.shape == (360, 480)
    corrupt(gt, 11, rate=0.2, seed=0, ignore_index=11)  # warm-up (imports)
    for seed in range(3):
        noisy = corrupt(gt, 11, rate=0.2, seed=seed, ignore_index=11, background=None)
        assert abs(error_rate(noisy, gt, 11) - 0.2) < 0.01
