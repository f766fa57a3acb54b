"""Fine-grained feature probabilities and A2LC's confident automatic propagation."""

from __future__ import annotations

import numpy as np
import pytest

import alc_fiftyone as alc
from alc_fiftyone.models.base import FitContext
from alc_fiftyone.models.features import FeatureModel, fine_regions
from alc_fiftyone.store.fields import read_current_labels
from alc_fiftyone.store.files import read_image, read_segmentation
from alc_fiftyone.store.info import alc_info


@pytest.fixture
def demo(unique_name, tmp_alc_dir):
    ds = alc.make_demo_dataset(name=unique_name, num_samples=10, size=(96, 72), seed=5)
    alc.compute_superpixels(ds, method="slic", n_segments=40)
    yield ds
    if not ds.deleted:
        ds.delete()


def test_fine_regions_nest_in_superpixels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    sp = np.zeros((60, 80), dtype=np.uint16)
    sp[:, :40], sp[:, 40:70] = 1, 2  # columns 70.. have no superpixel
    regions, parent = fine_regions(image, sp, factor=4)
    assert (regions[sp == 0] == 0).all() and (regions[sp > 0] > 0).all()
    assert (parent[regions] == sp).all()
    assert len(np.unique(regions[sp > 0])) > 2


def _fit(ds, **kw):
    model = FeatureModel(**kw)
    model.fit(
        FitContext(ds, lambda s: read_current_labels(s, "pseudo", None), "alc_superpixels", 5, 255)
    )
    return model


def test_fine_model_varies_inside_superpixels_and_coarse_does_not(demo):
    coarse, fine = _fit(demo), _fit(demo, granularity="fine", n_folds=3)
    sample = demo.first()
    sp = read_segmentation(sample, "alc_superpixels")
    pc, pf = coarse.predict(sample, sp), fine.predict(sample, sp)
    assert pf.shape == pc.shape == (5, *sp.shape)
    assert np.allclose(pf.sum(axis=0), 1, atol=1e-4)

    def varying(p):
        return sum(int(np.ptp(p[:, sp == s], axis=1).max() > 1e-6) for s in np.unique(sp[sp > 0]))

    assert varying(pc) == 0 and varying(pf) > 0
    # an unseen sample (not in fit) is predicted from the image, with the same shape
    fresh = fine.predict(sample.copy(), sp, read_image(sample))
    assert fresh.shape == pf.shape
    assert fine.describe()["granularity"] == "fine"
    with pytest.raises(ValueError):
        FeatureModel(granularity="pixels")


def test_temperature_calibration_keeps_argmax(demo):
    plain, cal = _fit(demo), _fit(demo, calibrate="temperature")
    assert 0.05 <= cal.temperature <= 20 and cal.describe()["calibrate"] == "temperature"
    sample = demo.first()
    sp = read_segmentation(sample, "alc_superpixels")
    p, q = plain.predict(sample, sp), cal.predict(sample, sp)
    inside = sp > 0
    assert (p.argmax(0)[inside] == q.argmax(0)[inside]).all()
    assert np.allclose(q.sum(axis=0), 1, atol=1e-4)
    with pytest.raises(ValueError):
        FeatureModel(calibrate="isotonic")


def _state(ds, field):
    return {
        s.id: (None if s[field] is None else read_segmentation(s, field).copy())
        for s in ds.select_fields(field)
    }


def test_propagation_changes_only_unqueried_frequent_and_undoes_exactly(demo):
    res = alc.simulate(demo, "pseudo", "ground_truth", rounds=1, budget_per_round=0.15, reset=True)
    assert "auto_pixels" not in res.rows[1]
    before = _state(demo, "alc_sim_revised")
    before_paths = dict(zip(demo.values("id"), demo.values("alc_sim_revised.mask_path")))
    summary = alc.propagate_answers(
        demo,
        "pseudo",
        threshold=0.5,
        queries_field="alc_sim_queries",
        revised_field="alc_sim_revised",
    )
    assert summary["trained_on"] > 0
    assert summary["pixels"] > 0, summary
    # rarer half of the classes (by current pixel counts) never written
    allowed = set(alc_info(demo)["propagations"][-1]["allowed_classes"])
    assert len(allowed) == 3  # ceil(5 / 2)
    for s in demo:
        sp = read_segmentation(s, "alc_superpixels")
        old = before[s.id]
        if old is None:
            old = read_segmentation(s, "pseudo")
        new = read_current_labels(s, "pseudo", "alc_sim_revised")
        diff = new != old
        if not diff.any():
            continue
        queried = {int(d.superpixel_id) for d in s["alc_sim_queries"].detections}
        assert not set(np.unique(sp[diff]).tolist()) & queried
        assert set(np.unique(new[diff]).tolist()) <= allowed
        # a propagated superpixel is relabelled whole
        for sid in np.unique(sp[diff]):
            assert len(np.unique(new[sp == sid])) == 1
    restored = alc.undo_propagation(demo, queries_field="alc_sim_queries")
    assert restored == summary["pixels"]
    after = _state(demo, "alc_sim_revised")
    assert dict(zip(demo.values("id"), demo.values("alc_sim_revised.mask_path"))) == before_paths
    for sid, arr in before.items():
        assert (arr is None and after[sid] is None) or np.array_equal(arr, after[sid])
    assert not alc_info(demo).get("propagations")
    with pytest.raises(alc.ALCError):
        alc.undo_propagation(demo, queries_field="alc_sim_queries")


def test_undo_propagation_keeps_later_answers(demo):
    alc.simulate(demo, "pseudo", "ground_truth", rounds=1, budget_per_round=0.15)
    summary = alc.propagate_answers(
        demo,
        "pseudo",
        threshold=0.5,
        queries_field="alc_sim_queries",
        revised_field="alc_sim_revised",
    )
    assert summary["samples"] > 0
    rec = alc_info(demo)["propagations"][-1]
    sample_id, ch = next(iter(rec["changes"].items()))
    sample = demo[sample_id]
    sp = read_segmentation(sample, "alc_superpixels")
    # a later write (a person's answer) on one propagated superpixel, then undo
    labels = read_segmentation(sample, "alc_sim_revised")
    first = ch["superpixels"][0]
    other = (ch["values"][0] + 1) % 5
    labels[sp == first] = other
    import fiftyone as fo

    from alc_fiftyone.store.files import write_mask

    sample["alc_sim_revised"] = fo.Segmentation(
        mask_path=write_mask(labels, demo, "alc_sim_revised", sample_id)
    )
    sample.save()
    alc.undo_propagation(demo, queries_field="alc_sim_queries")
    now = read_segmentation(demo[sample_id], "alc_sim_revised")
    assert (now[sp == first] == other).all()


def test_simulate_with_propagation_counts_automatic_changes_apart(demo):
    plain = alc.simulate(demo, "pseudo", "ground_truth", rounds=2, budget_per_round=0.1)
    prop = alc.simulate(
        demo,
        "pseudo",
        "ground_truth",
        rounds=2,
        budget_per_round=0.1,
        propagate=True,
        propagate_threshold=0.6,
        model_kwargs={"granularity": "fine", "n_folds": 3},
    )
    assert prop.config["propagate"] and prop.config["model"]["granularity"] == "fine"
    assert [r["clicks"] for r in prop.rows] == [r["clicks"] for r in plain.rows]
    assert all("auto_pixels" in r for r in prop.rows[1:])
    assert "automatic" in prop.table()
    recs = alc_info(demo)["propagations"]
    assert sum(r["pixels"] for r in recs) == sum(r["auto_pixels"] for r in prop.rows[1:])
