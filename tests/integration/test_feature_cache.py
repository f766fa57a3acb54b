"""Regions on all cores and features kept beside the regions, on real FiftyOne datasets:
the same masks as one process, progress that counts finished images, a failing sample
named, features reused by a second process, computed again when the regions change, and
removed with their masks by clean_files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import python_subprocess_env

import alc_fiftyone as alc
from alc_fiftyone.core import probabilities as cp
from alc_fiftyone.errors import SampleError
from alc_fiftyone.models import features as fm
from alc_fiftyone.models.base import FitContext
from alc_fiftyone.store.fields import read_current_labels
from alc_fiftyone.store.files import read_segmentation, write_png
from alc_fiftyone.store.sidecars import read_sidecar, sidecar_owner, sidecar_path


@pytest.fixture
def demo(unique_name, tmp_alc_dir):
    ds = alc.make_demo_dataset(name=unique_name, num_samples=6, size=(96, 72), seed=5)
    yield ds
    if not ds.deleted:
        ds.delete()


def _fit(ds, field="alc_superpixels", **kw):
    model = fm.FeatureModel(n_folds=3, **kw)
    model.fit(FitContext(ds, lambda s: read_current_labels(s, "pseudo", None), field, 5, 255))
    return model


def _masks(ds, field):
    return {s.id: read_segmentation(s, field) for s in ds.iter_samples()}


def test_regions_in_workers_are_those_of_one_process_and_progress_counts_them(demo):
    calls = []
    one = alc.compute_superpixels(demo, label_field="pseudo", field="one", workers=1)
    two = alc.compute_superpixels(
        demo,
        label_field="pseudo",
        field="two",
        workers=2,
        progress=lambda done, total, desc: calls.append((done, total, desc)),
    )
    assert one["processed"] == two["processed"] == 6
    assert one["mean_superpixels"] == two["mean_superpixels"]
    a, b = _masks(demo, "one"), _masks(demo, "two")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    a, b = _masks(demo, "one_level1"), _masks(demo, "two_level1")  # the finer level too
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # one report per finished image and level, counting up to all of them
    for desc in ("superpixels (label_aware)", "superpixels (level 1)"):
        mine = [(d, t) for d, t, x in calls if x == desc]
        assert [d for d, _ in mine] == list(range(7)) and {t for _, t in mine} == {6}
    s1 = alc.compute_superpixels(demo, method="slic", field="s1", n_segments=30, workers=1)
    s2 = alc.compute_superpixels(demo, method="slic", field="s2", n_segments=30, workers=2)
    assert s1["mean_superpixels"] == s2["mean_superpixels"]
    a, b = _masks(demo, "s1"), _masks(demo, "s2")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_sample_that_fails_in_a_worker_is_named(demo):
    bad = demo.skip(2).first()
    Path(bad.filepath).write_bytes(b"not an image")
    with pytest.raises(SampleError) as err:
        alc.compute_superpixels(demo, label_field="pseudo", workers=2)
    assert err.value.sample_id == bad.id and "cannot read image" in str(err.value)
    # the samples that finished are saved; skipping lists the failing one by id
    summary = alc.compute_superpixels(
        demo, label_field="pseudo", workers=2, skip_failures=True, overwrite=True
    )
    assert summary["processed"] == 5
    assert [f["id"] for f in summary["failed"]] == [bad.id]
    assert len(demo.exists("alc_superpixels")) == 5


def test_features_are_kept_beside_the_regions_and_read_by_another_process(demo, monkeypatch):
    alc.compute_superpixels(demo, label_field="pseudo")
    first = _fit(demo, workers=2)
    paths = demo.values("alc_superpixels.mask_path")
    for path, fp in zip(paths, demo.values("filepath")):
        side = sidecar_path(path, fm._kind(None))
        assert side.is_file() and sidecar_owner(side) == Path(path)
        assert read_sidecar(path, fm._kind(None), (fp,)) is not None
    # this process, another model instance, nothing in memory: read from the sidecars
    fm.clear_feature_cache()

    def refuse(*args, **kwargs):
        raise AssertionError("features computed again")

    monkeypatch.setattr(cp, "superpixel_features", refuse)
    again = _fit(demo, workers=1)
    for x, y in zip(first._features, again._features):
        np.testing.assert_array_equal(x, y)
    # another process reads them too
    demo.persistent = True
    code = (
        "import sys, fiftyone as fo\n"
        "import alc_fiftyone.core.probabilities as cp\n"
        "from alc_fiftyone.models.features import FeatureModel\n"
        "from alc_fiftyone.models.base import FitContext\n"
        "from alc_fiftyone.store.fields import read_current_labels\n"
        "def refuse(*a, **k): raise AssertionError('features computed again')\n"
        "cp.superpixel_features = refuse\n"
        "ds = fo.load_dataset(sys.argv[1])\n"
        "m = FeatureModel(n_folds=3, workers=1)\n"
        "m.fit(FitContext(ds, lambda s: read_current_labels(s, 'pseudo', None),"
        " 'alc_superpixels', 5, 255))\n"
        "print('fitted', len(m._features))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, demo.name],
        env=python_subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "fitted 6" in out.stdout


def test_features_are_computed_again_when_the_regions_change(demo):
    alc.compute_superpixels(demo, label_field="pseudo")
    _fit(demo, workers=1)
    sample = demo.first()
    path, kind = sample.alc_superpixels.mask_path, fm._kind(None)
    assert read_sidecar(path, kind, (sample.filepath,)) is not None
    # a map rewritten in place (not by alc-fiftyone): its sidecar no longer matches
    sp = read_segmentation(sample, "alc_superpixels")
    write_png(np.where(sp > 1, sp, 1), Path(path))
    assert read_sidecar(path, kind, (sample.filepath,)) is None
    model = _fit(demo, workers=1)
    i = model._index[sample.id]
    np.testing.assert_array_equal(
        model._ids[i], np.unique(read_segmentation(sample, "alc_superpixels"))
    )
    assert read_sidecar(path, kind, (sample.filepath,)) is not None  # written again
    # new regions are new files: their own sidecars
    alc.compute_superpixels(demo, label_field="pseudo", overwrite=True, min_area=64)
    new = demo.values("alc_superpixels.mask_path")
    assert path not in new
    model = _fit(demo, workers=2)
    for p, fp in zip(new, demo.values("filepath")):
        assert read_sidecar(p, kind, (fp,)) is not None


def test_clean_files_keeps_the_sidecars_of_kept_masks_and_removes_the_others(demo):
    alc.compute_superpixels(demo, label_field="pseudo")
    _fit(demo, workers=1)
    old = demo.values("alc_superpixels.mask_path")
    alc.compute_superpixels(demo, label_field="pseudo", overwrite=True, min_area=64)
    _fit(demo, workers=1)
    new = demo.values("alc_superpixels.mask_path")
    kind = fm._kind(None)
    summary = alc.clean_files(demo, min_age=0)
    for path in old:
        assert not Path(path).exists() and not sidecar_path(path, kind).exists()
    for path in new:
        assert Path(path).exists() and sidecar_path(path, kind).exists()
    assert summary["removed"] >= 2 * len(old)
