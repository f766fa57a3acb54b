"""Tests of the CPU class-probability model (alc_fiftyone.core.probabilities)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alc_fiftyone.core.probabilities import (
    FEATURE_NAMES,
    OutOfFoldClassifier,
    broadcast,
    superpixel_features,
    superpixel_targets,
)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CAMVID = SHARED_DATA / "camvid-val"
D = len(FEATURE_NAMES)


def _grid(h: int, w: int, step: int) -> np.ndarray:
    """Square superpixels of side ``step`` with ids 1..N (row-major)."""
    rows = np.arange(h)[:, None] // step
    cols = np.arange(w)[None, :] // step
    return (rows * ((w + step - 1) // step) + cols + 1).astype(np.uint16)


# -- features ------------------------------------------------------------------------------


def test_feature_shapes_ids_and_values():
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :30] = (255, 0, 0)  # red left half
    img[:, 30:] = (0, 200, 0)  # green right half
    sp = np.zeros((40, 60), np.uint16)
    sp[:, :30] = 7
    sp[:, 30:] = 3
    sp[:20, 30:] = 9
    sp[0, 0] = 0  # no superpixel: excluded from everything
    ids, feats = superpixel_features(img, sp)
    np.testing.assert_array_equal(ids, [3, 7, 9])
    assert ids.dtype == np.int64
    assert feats.shape == (3, D) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    f = {name: feats[:, i] for i, name in enumerate(FEATURE_NAMES)}
    # red has a large positive a*, green a negative one
    assert f["a_mean"][1] > 50 and f["a_mean"][0] < -40
    np.testing.assert_allclose(f["L_std"], 0.0, atol=1e-3)  # flat colour inside each region
    # geometry: superpixel 9 covers rows 0..19, cols 30..59
    assert f["row"][2] == pytest.approx(9.5 / 40)
    assert f["col"][2] == pytest.approx(44.5 / 60)
    assert f["bbox_h"][2] == pytest.approx(20 / 40)
    assert f["bbox_w"][2] == pytest.approx(30 / 60)
    assert f["log_area"][2] == pytest.approx(np.log(600 / 2400), rel=1e-5)
    assert f["log_area"][1] == pytest.approx(np.log(1199 / 2400), rel=1e-5)
    # context: 7 (red) touches 3 and 9 (green); 9 touches 7 (red) and 3 (green)
    # 3 shares 20 boundary pixel pairs with 7 and 30 with 9: weighted by boundary length
    expected = (20 * f["a_mean"][1] + 30 * f["a_mean"][2]) / 50
    assert f["ctx_a_mean"][0] == pytest.approx(expected, rel=1e-4)
    assert f["ctx_a_mean"][1] < -40  # red superpixel surrounded by green
    assert f["ctx_a_diff"][1] > 90
    # texture: gradients only at the red/green edge; LBP histogram sums to 1
    lbp = feats[:, [FEATURE_NAMES.index(f"lbp_{i}") for i in range(4)]]
    np.testing.assert_allclose(lbp.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((30, 40), np.uint8),  # constant gray
        np.full((30, 40, 3), 255, np.uint8),  # constant white
        np.random.default_rng(0).integers(0, 256, (30, 40), dtype=np.uint8),  # gray noise
        np.random.default_rng(0).integers(0, 256, (30, 40, 1), dtype=np.uint8),
        np.random.default_rng(0).random((30, 40, 3)),  # float RGB
    ],
)
def test_features_finite_for_gray_constant_and_float_images(image):
    for sp in (_grid(30, 40, 10), np.ones((30, 40), np.uint16)):
        _, feats = superpixel_features(image, sp)
        assert feats.shape == (len(np.unique(sp)), D)
        assert np.isfinite(feats).all()


def test_single_superpixel_context_is_its_own_colour():
    img = np.random.default_rng(1).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    ids, feats = superpixel_features(img, np.ones((20, 20), np.uint16))
    np.testing.assert_array_equal(ids, [1])
    i = FEATURE_NAMES.index
    assert feats[0, i("ctx_L_mean")] == pytest.approx(feats[0, i("L_mean")])
    assert feats[0, i("ctx_L_diff")] == 0.0
    assert feats[0, i("bbox_h")] == 1.0 and feats[0, i("log_area")] == 0.0


def test_features_empty_map_and_bad_shapes():
    ids, feats = superpixel_features(np.zeros((5, 5, 3), np.uint8), np.zeros((5, 5), np.uint16))
    assert ids.shape == (0,) and feats.shape == (0, D)
    with pytest.raises(ValueError, match="differ"):
        superpixel_features(np.zeros((5, 6, 3), np.uint8), np.ones((5, 5), np.uint16))
    with pytest.raises(ValueError, match="RGB"):
        superpixel_features(np.zeros((5, 5, 4), np.uint8), np.ones((5, 5), np.uint16))


# -- targets and broadcast -----------------------------------------------------------------


def test_superpixel_targets_majority_purity_and_ignore():
    sp = np.array([[1, 1, 1, 2], [1, 2, 2, 2], [5, 5, 0, 0]], np.uint16)
    labels = np.array([[0, 0, 1, 255], [0, 2, 2, 1], [255, 255, 1, 1]], np.uint8)
    ids = np.array([1, 2, 5, 9])  # 9 is absent from the map
    targets, purity = superpixel_targets(labels, sp, ids, 3)
    np.testing.assert_array_equal(targets, [0, 2, -1, -1])
    np.testing.assert_allclose(purity, [3 / 4, 2 / 3, 0.0, 0.0])
    assert targets.dtype == np.int64
    with pytest.raises(ValueError, match="outside"):
        superpixel_targets(labels, sp, ids, 2)
    # without an ignore value 255 is out of range
    with pytest.raises(ValueError, match="outside"):
        superpixel_targets(labels, sp, ids, 3, ignore_index=None)


def test_broadcast_shapes_values_and_uniform_fill():
    sp = np.array([[1, 1, 4], [0, 4, 7]], np.uint16)
    ids = np.array([1, 4])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    out = broadcast(probs, ids, sp, 3)
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 0], probs[0])
    np.testing.assert_allclose(out[:, 1, 1], probs[1])
    np.testing.assert_allclose(out[:, 1, 0], 1 / 3)  # superpixel 0
    np.testing.assert_allclose(out[:, 1, 2], 1 / 3)  # id 7 not in ids
    np.testing.assert_allclose(out.sum(axis=0), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        broadcast(probs[:, :2], ids, sp, 3)


# -- the out-of-fold classifier ------------------------------------------------------------


def _memorisation_groups(n_images: int, n_classes: int, seed: int = 0):
    """Each image has its own feature value and one random label: only memorising it helps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_images)
    groups = []
    for i in range(n_images):
        x = np.column_stack([np.full(20, float(i)), rng.normal(0, 0.01, 20)])
        groups.append((x, np.full(20, labels[i]), None))
    return groups, labels


@pytest.mark.parametrize("estimator", ["lgbm", "hgb", "rf", "logreg"])
def test_out_of_fold_never_predicts_from_a_model_that_saw_the_image(estimator):
    groups, labels = _memorisation_groups(40, 4)
    oof = OutOfFoldClassifier(4, n_folds=5, estimator=estimator, seed=0).fit(groups)
    assert not oof.in_sample
    hits = [oof.predict_proba(i, g[0]).argmax(1)[0] == labels[i] for i, g in enumerate(groups)]
    # chance level is 1/4: an in-sample model would be right almost always
    assert np.mean(hits) < 0.5
    if estimator != "logreg":  # a linear model cannot memorise; trees can
        ins = OutOfFoldClassifier(4, n_folds=1, estimator=estimator).fit(groups)
        assert ins.in_sample
        hits = [ins.predict_proba(i, g[0]).argmax(1)[0] == labels[i] for i, g in enumerate(groups)]
        # far above chance (0.25); lgbm, which sees half of the 2 features per tree, 0.85
        assert np.mean(hits) > 0.8


def test_fold_assignment_is_seeded_and_balanced():
    groups, _ = _memorisation_groups(23, 3)
    a = OutOfFoldClassifier(3, n_folds=5, seed=4, estimator="logreg").fit(groups)
    b = OutOfFoldClassifier(3, n_folds=5, seed=4, estimator="logreg").fit(groups)
    c = OutOfFoldClassifier(3, n_folds=5, seed=5, estimator="logreg").fit(groups)
    np.testing.assert_array_equal(a.folds_, b.folds_)
    assert (a.folds_ != c.folds_).any()
    counts = np.bincount(a.folds_)
    assert counts.size == 5 and counts.max() - counts.min() <= 1
    assert len(a.models_) == 5


def _separable_groups(n_images: int, classes: list[int], seed: int = 0, n: int = 30):
    """Features = one-hot-ish class centres + noise: any sensible model separates them."""
    rng = np.random.default_rng(seed)
    groups = []
    for _ in range(n_images):
        y = rng.choice(classes, n)
        x = np.eye(8)[y][:, :6] * 5.0 + rng.normal(0, 0.3, (n, 6))
        groups.append((x, y, rng.uniform(0.5, 2.0, n)))
    return groups


@pytest.mark.parametrize("estimator", ["lgbm", "hgb", "rf", "logreg"])
def test_columns_align_when_classes_are_missing(estimator):
    groups = _separable_groups(6, [0, 3, 5])
    oof = OutOfFoldClassifier(7, n_folds=3, estimator=estimator).fit(groups)
    for i, (x, y, _) in enumerate(groups):
        p = oof.predict_proba(i, x)
        assert p.shape == (len(x), 7)
        assert (p > 0).all()
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-9)
        assert (p.argmax(axis=1) == y).mean() > 0.9
        assert p[:, [1, 2, 4, 6]].max() < 0.01  # never-seen classes keep only the floor
    new = oof.predict_proba_new(groups[0][0])
    assert new.shape == (30, 7) and (new.argmax(1) == groups[0][1]).mean() > 0.9


def test_deterministic_predictions():
    groups = _separable_groups(8, [0, 1, 2], seed=3)
    runs = [OutOfFoldClassifier(3, seed=1).fit(groups) for _ in range(2)]
    for i, (x, _, _) in enumerate(groups):
        np.testing.assert_array_equal(runs[0].predict_proba(i, x), runs[1].predict_proba(i, x))


def test_single_class_fold_gets_constant_probabilities():
    rng = np.random.default_rng(0)
    groups = [(rng.normal(size=(15, 4)), np.full(15, 2), None) for _ in range(3)]
    oof = OutOfFoldClassifier(4, n_folds=3).fit(groups)
    p = oof.predict_proba(0, rng.normal(size=(5, 4)))
    assert p.shape == (5, 4)
    np.testing.assert_allclose(p, p[0][None].repeat(5, 0))
    assert p[0].argmax() == 2 and p[0, 2] > 0.99 and (p > 0).all()


def test_fewer_images_than_folds_and_single_image_in_sample():
    groups = _separable_groups(3, [0, 1], n=100)
    oof = OutOfFoldClassifier(2, n_folds=5).fit(groups)
    assert len(oof.models_) == 3 and sorted(oof.folds_.tolist()) == [0, 1, 2]
    one = OutOfFoldClassifier(2, n_folds=5).fit(groups[:1])
    assert one.in_sample and len(one.models_) == 1
    x, y, _ = groups[0]
    assert (one.predict_proba(0, x).argmax(1) == y).mean() > 0.9
    with pytest.raises(IndexError):
        one.predict_proba(1, x)


def test_empty_training_data_gives_uniform():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))
    groups = [(x, np.full(6, -1), None), (x, np.full(6, -1), None)]
    oof = OutOfFoldClassifier(5).fit(groups)
    np.testing.assert_allclose(oof.predict_proba(0, x), 0.2)
    np.testing.assert_allclose(oof.predict_proba_new(x), 0.2)
    none = OutOfFoldClassifier(5).fit([])
    np.testing.assert_allclose(none.predict_proba_new(x), 0.2)
    # too few rows (min_samples): the weighted class frequencies
    few = [(x[:3], np.array([0, 0, 1]), np.array([1.0, 1.0, 2.0]))] * 2
    p = OutOfFoldClassifier(3, n_folds=2, min_samples=10).fit(few).predict_proba(0, x)
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0], atol=2e-4)
    # zero weights and -1 targets are skipped, not trained on
    assert OutOfFoldClassifier(3).fit([(x, np.zeros(6, int), np.zeros(6))]).predict_proba(
        0, x
    ) == pytest.approx(np.full((6, 3), 1 / 3))


def test_invalid_fit_input():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="same superpixels"):
        OutOfFoldClassifier(2).fit([(x, np.zeros(3, int), None)])
    with pytest.raises(ValueError, match="targets"):
        OutOfFoldClassifier(2).fit([(x, np.full(4, 2), None)])
    with pytest.raises(ValueError, match="features"):
        OutOfFoldClassifier(2).fit(
            [(x, np.zeros(4, int), None), (np.zeros((4, 3)), np.zeros(4, int), None)]
        )
    with pytest.raises(ValueError, match="estimator"):
        OutOfFoldClassifier(2, estimator="svm")
    with pytest.raises(RuntimeError, match="fit"):
        OutOfFoldClassifier(2).predict_proba_new(x)
    oof = OutOfFoldClassifier(2).fit([(x, np.zeros(4, int), None)])
    with pytest.raises(ValueError, match="features"):
        oof.predict_proba(0, np.zeros((4, 5)))


# -- real data -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["lgbm", "hgb"])
def test_camvid_out_of_fold_beats_majority_baseline(estimator):
    if not CAMVID.is_dir():
        pytest.skip(f"real data folder {CAMVID} is absent (only on the project's machines)")
    from PIL import Image

    from alc_fiftyone.core.superpixels import slic

    files = sorted((CAMVID / "images").glob("*.png"))[::5][:20]
    assert len(files) == 20
    groups = []
    for f in files:
        image = np.asarray(Image.open(f).convert("RGB"))
        mask = np.asarray(Image.open(CAMVID / "masks" / f.name))
        sp = slic(image, n_segments=300)
        ids, feats = superpixel_features(image, sp)
        targets, purity = superpixel_targets(mask, sp, ids, 11, ignore_index=11)
        size = np.bincount(sp.ravel())[ids]
        groups.append((feats, targets, size * purity))
    oof = OutOfFoldClassifier(11, n_folds=5, estimator=estimator, seed=0).fit(groups)
    correct, total, all_targets = 0, 0, []
    for i, (feats, targets, _) in enumerate(groups):
        probs = oof.predict_proba(i, feats)
        assert probs.shape == (len(feats), 11)
        keep = targets >= 0
        correct += int((probs.argmax(1)[keep] == targets[keep]).sum())
        total += int(keep.sum())
        all_targets.append(targets[keep])
    accuracy = correct / total
    majority = np.bincount(np.concatenate(all_targets)).max() / total
    assert accuracy > majority + 0.2, (accuracy, majority)
    print(f"CamVid {estimator} out-of-fold accuracy {accuracy:.3f}, majority {majority:.3f}")


def test_block_folds_keep_neighbours_together():
    rng = np.random.default_rng(0)
    groups = [(rng.normal(size=(20, 3)), rng.integers(0, 2, 20), None) for _ in range(10)]
    clf = OutOfFoldClassifier(2, n_folds=5, estimator="logreg", fold_by="blocks").fit(groups)
    assert clf.folds_.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    with pytest.raises(ValueError, match="fold_by"):
        OutOfFoldClassifier(2, fold_by="nope")
