"""What makes a round fast without changing what it computes: the worker pool, the default
estimator of the features model, the quantised features of ``hgb``, the shrunk Felzenszwalb
base, and the GPU defaults (selected by monkeypatching: no CUDA is needed)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from alc_fiftyone.core import pool
from alc_fiftyone.core.probabilities import ColumnQuantiser, OutOfFoldClassifier
from alc_fiftyone.errors import SampleError
from alc_fiftyone.steps import region_jobs

# --- tasks run by the pool: module-level, importable by the workers --------------------------


def square_after(x: int, seconds: float) -> int:
    import time

    time.sleep(seconds)
    return x * x


def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise SampleError(f"s{x}", "cannot read mask file: broken", f"/data/{x}.png")
    return x


def env_var(name: str) -> str | None:
    return os.environ.get(name)


def pool_file(_: int) -> str:
    from alc_fiftyone.core import pool as worker_pool

    return os.path.abspath(worker_pool.__file__)


def die_on(x: int, bad: int) -> int:
    if x == bad:
        os._exit(3)
    return x


def test_pool_returns_every_result_as_it_finishes():
    # the first task is the slowest: with 2 workers it finishes after others
    tasks = [(0, 0.6)] + [(i, 0.0) for i in range(1, 6)]
    got = list(pool.run_tasks(square_after, tasks, workers=2))
    assert sorted(i for i, _, _ in got) == list(range(6))
    assert all(ok for _, ok, _ in got)
    assert {i: v for i, _, v in got} == {i: i * i for i in range(6)}
    assert [i for i, _, _ in got][-1] == 0  # finished last, yielded last
    # in one process: the same results, in order
    here = list(pool.run_tasks(square_after, tasks, workers=1))
    assert here == [(i, True, i * i) for i in range(6)]


def test_pool_sends_a_tasks_error_back_with_its_sample():
    got = {i: (ok, v) for i, ok, v in pool.run_tasks(fail_on, [(i, 2) for i in range(4)], 2)}
    ok, err = got[2]
    assert not ok and isinstance(err, SampleError)
    assert err.sample_id == "s2" and "broken" in str(err)
    assert all(got[i] == (True, i) for i in (0, 1, 3))


def test_pool_survives_a_worker_that_dies():
    got = {i: (ok, v) for i, ok, v in pool.run_tasks(die_on, [(i, 1) for i in range(5)], 2)}
    ok, err = got[1]
    assert not ok and isinstance(err, pool.TaskFailed) and "died" in str(err)
    assert all(got[i] == (True, i) for i in (0, 2, 3, 4))
    # the pool is whole again for the next call
    assert [v for _, _, v in pool.run_tasks(square_after, [(3, 0.0), (4, 0.0)], 2)] != []


def test_pool_refuses_functions_the_workers_cannot_import():
    with pytest.raises(ValueError, match="module-level"):
        list(pool.run_tasks(lambda x: x, [(1,), (2,)], workers=2))


def test_pool_workers_use_one_thread_each_this_checkout_and_the_callers_environment(
    monkeypatch,
):
    monkeypatch.setenv("ALC_POOL_TEST", "first")
    got = {
        i: v for i, _, v in pool.run_tasks(env_var, [("OMP_NUM_THREADS",), ("ALC_POOL_TEST",)], 2)
    }
    assert got == {0: "1", 1: "first"}
    # workers live on between calls, and see what the caller sees now
    monkeypatch.setenv("ALC_POOL_TEST", "second")
    got = [v for _, _, v in pool.run_tasks(env_var, [("ALC_POOL_TEST",)] * 2, 2)]
    assert got == ["second", "second"]
    files = {v for _, _, v in pool.run_tasks(pool_file, [(0,), (1,)], 2)}
    assert files == {os.path.abspath(pool.__file__)}


# --- the features model's estimator -----------------------------------------------------------


def _groups(seed=0, n_images=10, rows=40, dim=6, classes=3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(classes, dim))
    out = []
    for _ in range(n_images):
        y = rng.integers(0, classes, rows)
        x = centres[y] + rng.normal(size=(rows, dim))
        out.append((x.astype(np.float32), y, rng.uniform(0.5, 2.0, rows)))
    return out


def test_lgbm_is_the_default_and_deterministic():
    groups = _groups()
    a = OutOfFoldClassifier(3, n_folds=5, seed=1).fit(groups)
    b = OutOfFoldClassifier(3, n_folds=5, seed=1).fit(groups)
    assert a.estimator == "lgbm"
    for i, (x, _, _) in enumerate(groups):
        pa = a.predict_proba(i, x)
        assert pa.shape == (len(x), 3)
        np.testing.assert_allclose(pa.sum(axis=1), 1.0, rtol=1e-9)
        np.testing.assert_array_equal(pa, b.predict_proba(i, x))


@pytest.mark.parametrize("estimator", ["lgbm", "et", "hgb", "logreg"])
def test_folds_fitted_in_threads_are_the_folds_fitted_one_after_the_other(estimator):
    groups = _groups(seed=3)
    one = OutOfFoldClassifier(3, n_folds=5, estimator=estimator, fold_threads=1).fit(groups)
    two = OutOfFoldClassifier(3, n_folds=5, estimator=estimator, fold_threads=3).fit(groups)
    for i, (x, _, _) in enumerate(groups):
        np.testing.assert_array_equal(one.predict_proba(i, x), two.predict_proba(i, x))


def test_estimator_params_replace_the_named_estimators_settings():
    groups = _groups(seed=4)
    clf = OutOfFoldClassifier(
        3, n_folds=3, estimator_params={"n_estimators": 7, "learning_rate": 0.3}
    ).fit(groups)
    model = clf.models_[0].model
    assert model.n_estimators == 7 and model.learning_rate == 0.3
    assert model.booster_.num_trees() == 7 * 3  # 7 rounds of one tree per class
    plain = OutOfFoldClassifier(3, n_folds=3).fit(groups)
    assert plain.models_[0].model.n_estimators == 100


def test_lgbm_is_as_accurate_as_hgb_out_of_fold():
    groups = _groups(seed=2, n_images=12, rows=60, dim=8, classes=4)

    def accuracy(estimator):
        clf = OutOfFoldClassifier(4, n_folds=4, estimator=estimator, seed=0).fit(groups)
        hits = [
            (clf.predict_proba(i, x).argmax(1) == y).mean() for i, (x, y, _) in enumerate(groups)
        ]
        return float(np.mean(hits))

    lgbm, hgb = accuracy("lgbm"), accuracy("hgb")
    assert lgbm > 0.8 and lgbm >= hgb - 0.03, (lgbm, hgb)


def test_quantiser_keeps_few_values_and_bins_the_others_by_quantiles():
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(size=5000), rng.integers(0, 7, 5000)], axis=1).astype(np.float32)
    q = ColumnQuantiser(255).fit(x)
    out = q.transform(x)
    assert np.unique(out[:, 0]).size <= 255
    np.testing.assert_array_equal(out[:, 1], x[:, 1])  # 7 values: unchanged
    # monotone, and every value mapped to the lower edge of its bin (never above it)
    order = np.argsort(x[:, 0])
    assert np.all(np.diff(out[order, 0]) >= 0) and np.all(out[:, 0] <= x[:, 0])
    # bins hold about the same number of rows
    counts = np.unique(out[:, 0], return_counts=True)[1]
    assert counts.max() < 3 * 5000 / 255
    # rows predicted later go through the same edges
    new = np.array([[x[0, 0], 3.0]], dtype=np.float32)
    assert q.transform(new)[0, 0] == out[0, 0]


def test_hgb_predicts_quantised_features_consistently():
    groups = _groups(seed=3)
    clf = OutOfFoldClassifier(3, n_folds=3, estimator="hgb", seed=0).fit(groups)
    assert clf.quantiser_ is not None
    x = groups[0][0]
    np.testing.assert_array_equal(
        clf.predict_proba(0, x), clf.predict_proba(0, clf.quantiser_.transform(x))
    )


# --- the shrunk Felzenszwalb base ------------------------------------------------------------


def test_felzenszwalb_base_runs_on_a_shrunk_image_and_covers_the_full_one():
    rng = np.random.default_rng(0)
    image = np.zeros((375, 500, 3), np.uint8)
    image[:, 250:] = 200
    image += rng.integers(0, 20, image.shape, dtype=np.uint8)
    assert region_jobs.work_factor(image.shape) == 2
    assert region_jobs.work_factor((195, 260)) == 1  # small images: full resolution
    base = region_jobs.base_regions(image, "felzenszwalb", {})
    assert base.shape == image.shape[:2] and base.dtype == np.uint16 and base.min() >= 1
    # the two halves of the image are never one region
    assert not set(np.unique(base[:, :240])) & set(np.unique(base[:, 260:]))
    full = region_jobs.base_regions(image, "felzenszwalb", {"work_pixels": 0})
    assert full.shape == base.shape
    small = region_jobs.grow(np.array([[1, 2], [3, 4]]), 2, (5, 5))
    assert small.tolist()[4] == [3, 3, 4, 4, 4] and small[:, 4].tolist() == [2, 2, 4, 4, 4]


# --- GPU defaults ----------------------------------------------------------------------------


def test_auto_model_is_sam_head_on_cuda_with_a_checkpoint(monkeypatch, tmp_path):
    from alc_fiftyone.core import sam as csam
    from alc_fiftyone.core.acquisition import common
    from alc_fiftyone.models import registry

    monkeypatch.setattr(common, "_cuda_available", lambda: False)
    assert registry.default_model() == "features"
    assert type(registry.get_model("auto")).__name__ == "FeatureModel"

    monkeypatch.setattr(common, "_cuda_available", lambda: True)
    monkeypatch.setattr(registry, "_zoo_dir", lambda: tmp_path)
    monkeypatch.delenv(csam.ENV_CHECKPOINT, raising=False)
    assert registry.default_model() == "features"  # CUDA but no SAM weights: CPU model

    monkeypatch.setattr(csam, "find_checkpoint", lambda *a, **k: tmp_path / "sam.pth")
    assert registry.default_model() == "sam_head"


def test_auto_device_is_cuda_when_available(monkeypatch):
    import torch

    from alc_fiftyone.core.acquisition import api

    monkeypatch.setattr(api, "_cuda_available", lambda: True)
    assert api._resolve_backend("auto", ()) == torch.device("cuda")
    monkeypatch.setattr(api, "_cuda_available", lambda: False)
    assert api._resolve_backend("auto", ()) == api._resolve_backend("cpu", ())


def test_no_gpu_driver_means_torch_is_not_imported_to_ask():
    code = (
        "import sys; from alc_fiftyone.core.acquisition import common as c; "
        "c._GPU_DEVICE_FILES = ('/nonexistent/nvidiactl',); "
        "print(c._cuda_available(), 'torch' in sys.modules)"
    )
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(pool.__file__))))
    env = dict(os.environ, PYTHONPATH=repo)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    if sys.platform.startswith("linux"):
        assert out == ["False", "False"]


def test_a_finer_levels_model_is_the_cheaper_fit_of_the_same_classifier():
    from alc_fiftyone.models.features import (
        LEVEL_ESTIMATOR_PARAMS,
        LEVEL_TRAIN_ROWS,
        FeatureModel,
    )

    top = FeatureModel(workers=1)
    sub = top.for_level("alc_superpixels_level1")
    assert sub is top.for_level("alc_superpixels_level1")  # kept: features computed once
    assert (sub.estimator, sub.n_folds, sub.workers) == ("lgbm", top.n_folds, 1)
    assert sub.estimator_params == LEVEL_ESTIMATOR_PARAMS
    assert sub.max_train_rows == LEVEL_TRAIN_ROWS
    assert sub.describe()["estimator_params"] == LEVEL_ESTIMATOR_PARAMS
    # a user's own choices are kept: another classifier, its settings, its folds
    other = FeatureModel(estimator="et", n_folds=2).for_level("f")
    assert (other.estimator, other.n_folds, other.estimator_params) == ("et", 2, {})
    mine = FeatureModel(estimator_params={"n_estimators": 20}).for_level("f")
    assert mine.estimator_params == {"n_estimators": 20}
