"""SAM pseudo labels and SAM / pseudo-instance superpixels on real FiftyOne datasets.

A tiny randomly initialised SAM (``alc_fiftyone.core.sam.tiny_random_sam``) keeps these fast
on a CPU: the checks are coverage, ids, classes, painting order, skip-if-done, the embeddings
cache and error reporting, not mask quality.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import alc_fiftyone as alc
from alc_fiftyone.core import sam as csam
from alc_fiftyone.store.files import read_png_array

SIZE = (48, 36)  # width, height
NO_THRESHOLDS = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def tiny():
    return csam.tiny_random_sam(seed=0)


@pytest.fixture
def boxes_ds(make_dataset, tmp_path, tmp_alc_dir):
    """Three small images, each with two ground-truth boxes (a big 'dog', a small 'cat')."""
    import fiftyone as fo

    ds = make_dataset()
    rng = np.random.default_rng(0)
    samples = []
    for i in range(3):
        img = rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
        path = tmp_path / f"img{i}.png"
        Image.fromarray(img).save(path)
        dets = [
            fo.Detection(label="dog", bounding_box=[0.05, 0.05, 0.8, 0.8]),
            fo.Detection(label="cat", bounding_box=[0.3, 0.3, 0.3, 0.3]),
        ]
        if i == 2:
            dets.append(fo.Detection(label="zebra", bounding_box=[0.5, 0.5, 0.2, 0.2]))
        samples.append(fo.Sample(filepath=str(path), gt=fo.Detections(detections=dets)))
    ds.add_samples(samples)
    return ds


def _check_full_coverage(ds, field):
    for s in ds.select_fields(field):
        sp = read_png_array(s[field].mask_path)
        assert sp.shape == (SIZE[1], SIZE[0])
        assert sp.min() >= 1 and int(sp.max()) == s[field].num_superpixels
        assert set(np.unique(sp).tolist()) == set(range(1, int(sp.max()) + 1))


def test_pseudo_labels_classes_painting_and_skip(boxes_ds, tiny):
    ds = boxes_ds
    summary = alc.generate_pseudo_labels(
        ds, "gt", classes=["background", "cat", "dog"], sam=tiny, batch_size=2
    )
    assert summary["processed"] == 3 and not summary["failed"]
    assert summary["encoded"] == 3
    assert ds.mask_targets["alc_pseudo"] == {0: "background", 1: "cat", 2: "dog"}
    for s in ds:
        labels = read_png_array(s.alc_pseudo.mask_path)
        inst = read_png_array(s.alc_pseudo_instances.mask_path)
        assert labels.shape == inst.shape == (SIZE[1], SIZE[0])
        assert set(np.unique(labels).tolist()) <= {0, 1, 2}
        known = [d.label for d in s.gt.detections if d.label in ("cat", "dog")]
        assert s.alc_pseudo.num_boxes == len(known) == 2
        lut = np.array([0] + [{"cat": 1, "dog": 2}[c] for c in known])
        assert np.array_equal(lut[inst], labels)  # class of the visible (painted) box
        assert (labels[inst == 0] == 0).all()
        # the box masks stay near their boxes (5% margin)
        for k, d in enumerate(s.gt.detections[:2], start=1):
            ys, xs = np.nonzero(inst == k)
            if len(xs):
                x, y, w, h = d.bounding_box
                assert xs.min() >= (x - 0.05 * w) * SIZE[0] - 1
                assert xs.max() <= (x + 1.05 * w) * SIZE[0]
                assert ys.min() >= (y - 0.05 * h) * SIZE[1] - 1
                assert ys.max() <= (y + 1.05 * h) * SIZE[1]
    paths = ds.values("alc_pseudo.mask_path")
    again = alc.generate_pseudo_labels(ds, "gt", sam=tiny)
    assert again["processed"] == 0 and again["skipped_existing"] == 3
    assert ds.values("alc_pseudo.mask_path") == paths


def test_pseudo_labels_ignore_default_classes_and_unknown_labels(boxes_ds, tiny):
    ds = boxes_ds
    summary = alc.generate_pseudo_labels(
        ds, "gt", field="p2", instances_field="p2_inst", uncovered="ignore", sam=tiny
    )
    assert summary["classes"] == ["background", "cat", "dog", "zebra"]
    assert ds.mask_targets["p2"][255] == "void"
    for s in ds:
        labels = read_png_array(s.p2.mask_path)
        inst = read_png_array(s.p2_inst.mask_path)
        assert (labels[inst == 0] == 255).all() and (labels[inst > 0] != 255).all()
    with pytest.raises(alc.SampleError, match="zebra"):
        alc.generate_pseudo_labels(
            ds,
            "gt",
            field="p3",
            classes=["background", "cat", "dog"],
            unknown_labels="error",
            sam=tiny,
        )
    with pytest.raises(alc.ALCError, match="not a Detections field"):
        alc.generate_pseudo_labels(ds, "p2", sam=tiny)


def test_sam_superpixels_batched_cached_and_skip(boxes_ds, tiny):
    ds = boxes_ds
    kw = dict(sam=tiny, points_per_side=4, min_area=20, **NO_THRESHOLDS)
    summary = alc.compute_superpixels(ds, method="sam", batch_size=2, cache=True, **kw)
    assert summary["processed"] == 3 and summary["encoded"] == 3 and not summary["failed"]
    _check_full_coverage(ds, "alc_superpixels")
    first = [read_png_array(p) for p in ds.values("alc_superpixels.mask_path")]
    info = ds.info["alc"]["superpixels"]["alc_superpixels"]
    assert info["method"] == "sam" and "sam" not in info["params"]
    assert "alc_superpixels" in ds.mask_targets or not ds.default_mask_targets

    again = alc.compute_superpixels(ds, method="sam", **kw)
    assert again["processed"] == 0 and again["skipped_existing"] == 3

    # overwrite: embeddings come from the cache, results are identical
    redo = alc.compute_superpixels(ds, method="sam", overwrite=True, cache=True, **kw)
    assert redo["encoded"] == 0 and redo["embeddings_from_cache"] == 3
    for a, p in zip(first, ds.values("alc_superpixels.mask_path")):
        assert np.array_equal(a, read_png_array(p))
    emb = alc.get_embedding(ds.first(), tiny)
    assert emb is not None and emb.embedding.shape == (256, 16, 16)


def test_cache_embeddings_and_reuse_by_pseudo_labels(boxes_ds, tiny):
    ds = boxes_ds
    summary = alc.cache_embeddings(ds, sam=tiny, batch_size=2)
    assert summary["encoded"] == 3 and summary["skipped_existing"] == 0
    assert alc.cache_embeddings(ds, sam=tiny)["skipped_existing"] == 3
    out = alc.generate_pseudo_labels(ds, "gt", sam=tiny, cache=True)
    assert out["encoded"] == 0 and out["embeddings_from_cache"] == 3


def test_pseudo_instance_superpixels_paper_and_filled(boxes_ds, tiny):
    ds = boxes_ds
    with pytest.raises(alc.SampleError, match="generate_pseudo_labels"):
        alc.compute_superpixels(ds, method="pseudo_instances")
    alc.generate_pseudo_labels(ds, "gt", sam=tiny, box_margin=0.0)
    alc.compute_superpixels(ds, method="pseudo_instances", field="sp_paper")
    for s in ds:
        inst = read_png_array(s.alc_pseudo_instances.mask_path)
        sp = read_png_array(s.sp_paper.mask_path)
        assert np.array_equal(sp == 0, inst == 0)  # uncovered pixels are never queried
    alc.compute_superpixels(ds, method="pseudo_instances", field="sp_full", fill=True)
    _check_full_coverage(ds, "sp_full")


def test_failure_on_one_sample_reported_others_kept(boxes_ds, tiny):
    ds = boxes_ds
    bad = ds.skip(1).first()
    bad.filepath = bad.filepath + ".missing.png"
    bad.save()
    summary = alc.compute_superpixels(
        ds, method="sam", sam=tiny, points_per_side=2, skip_failures=True, batch_size=3
    )
    assert [f["id"] for f in summary["failed"]] == [bad.id]
    assert summary["processed"] == 2
    assert len(ds.exists("alc_superpixels")) == 2
    with pytest.raises(alc.SampleError, match=bad.id):
        alc.generate_pseudo_labels(ds, "gt", sam=tiny)
    assert len(ds.exists("alc_pseudo")) == 1  # the sample before the failure is saved
    assert len(ds.exists("alc_pseudo_instances")) == 1


def test_missing_checkpoint_is_a_clear_error_and_nothing_written(boxes_ds, tmp_path, monkeypatch):
    import fiftyone as fo

    monkeypatch.delenv(csam.ENV_CHECKPOINT, raising=False)
    monkeypatch.setattr(fo.config, "model_zoo_dir", str(tmp_path / "empty-zoo"))
    with pytest.raises(csam.SamCheckpointError, match="sam_vit_b_01ec64.pth"):
        alc.compute_superpixels(boxes_ds, method="sam", model_type="vit_b")
    with pytest.raises(csam.SamCheckpointError, match="empty-zoo"):
        alc.generate_pseudo_labels(boxes_ds, "gt", model_type="vit_b")
    assert not boxes_ds.has_field("alc_superpixels") or not len(boxes_ds.exists("alc_superpixels"))


# --- the operators, through FiftyOne's executor ------------------------------------------------

PLUGIN = "@alc/active-label-correction"


def _execute(name, ds, **params):
    import fiftyone.operators as foo

    return foo.execute_operator(f"{PLUGIN}/{name}", ctx={"view": ds.view(), "params": params})


def _resolve_input(name, ds, params=None):
    import asyncio

    from fiftyone.operators.executor import resolve_type
    from fiftyone.operators.registry import OperatorRegistry

    request = {"dataset_name": ds.name, "view": ds.view()._serialize(), "params": params or {}}
    prop = asyncio.run(resolve_type(OperatorRegistry(), f"{PLUGIN}/{name}", request))
    assert prop is not None and not hasattr(prop, "error"), getattr(prop, "error", None)
    return prop.type.properties


def test_operator_forms(plugin, boxes_ds):
    props = _resolve_input("generate_pseudo_labels", boxes_ds)
    assert [c.value for c in props["prompt_field"].view.choices] == ["gt"]
    assert props["uncovered"].default == "background" and "checkpoint" in props
    sam_form = _resolve_input("compute_sam_superpixels", boxes_ds, {"method": "sam"})
    assert "points_per_side" in sam_form and "fill" not in sam_form
    inst_form = _resolve_input("compute_sam_superpixels", boxes_ds, {"method": "pseudo_instances"})
    assert "fill" in inst_form and "points_per_side" not in inst_form


def test_operators_run_and_report(plugin, boxes_ds, tiny, tmp_path, monkeypatch):
    import fiftyone as fo

    ds = boxes_ds
    monkeypatch.delenv(csam.ENV_CHECKPOINT, raising=False)
    monkeypatch.setattr(fo.config, "model_zoo_dir", str(tmp_path / "empty-zoo"))
    # in the App a missing checkpoint is one line the form shows, naming the file to get
    missing = _execute("generate_pseudo_labels", ds, prompt_field="gt")
    assert "sam_vit_h_4b8939.pth" in missing.result["error"]
    assert "Traceback" not in missing.result["error"]
    assert not ds.has_field("alc_pseudo") or ds.count("alc_pseudo") == 0
    alc.generate_pseudo_labels(ds, "gt", sam=tiny)
    result = _execute(
        "compute_sam_superpixels", ds, method="pseudo_instances", fill=True, field="sp_op"
    )
    summary = result.result["summary"]
    assert summary["processed"] == 3 and summary["method"] == "pseudo_instances"
    _check_full_coverage(ds, "sp_op")
    again = _execute("compute_sam_superpixels", ds, method="pseudo_instances", field="sp_op")
    assert again.result["summary"]["skipped_existing"] == 3
