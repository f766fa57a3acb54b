"""What keeps the features model and the review queries cheap on large datasets."""

from __future__ import annotations

import numpy as np
import pytest

import alc_fiftyone as alc
from alc_fiftyone.models.base import FitContext
from alc_fiftyone.models.features import FeatureModel
from alc_fiftyone.store.fields import read_current_labels


@pytest.fixture
def demo(unique_name, tmp_alc_dir):
    ds = alc.make_demo_dataset(name=unique_name, num_samples=8, size=(64, 48), seed=3)
    alc.compute_superpixels(ds, method="slic", n_segments=20)
    yield ds
    if not ds.deleted:
        ds.delete()


def _fit(ds, **kw):
    model = FeatureModel(n_folds=3, **kw)
    model.fit(
        FitContext(ds, lambda s: read_current_labels(s, "pseudo", None), "alc_superpixels", 5, 255)
    )
    return model


def test_batched_predictions_equal_per_image_and_cap_keeps_out_of_fold(demo):
    full = _fit(demo)
    rows = full.train_rows[1]
    assert full.train_rows == (rows, rows) and "train_rows" not in full.describe()
    for i, feats in enumerate(full._features):
        # one call per fold and chunk gives what one call per image gave
        np.testing.assert_array_equal(full._probs[i], full._clf.predict_proba(i, feats))

    capped = _fit(demo, max_train_rows=rows // 2)
    assert capped.train_rows == (rows // 2, rows)
    assert capped.describe()["train_rows"] == rows // 2
    assert capped.describe()["train_rows_available"] == rows
    # every image is still predicted, by the model of the folds it was not in
    assert len(capped._probs) == len(demo)
    for i in range(len(demo)):
        assert capped._probs[i].shape == (len(capped._ids[i]), 5)
        np.testing.assert_allclose(capped._probs[i].sum(axis=1), 1.0, rtol=1e-6)
    assert capped._clf.folds_.tolist() == full._clf.folds_.tolist()
    with pytest.raises(ValueError, match="max_train_rows"):
        FeatureModel(max_train_rows=0)


def test_review_queries_are_indexed_by_status(demo):
    alc.rank_superpixels(demo, "pseudo", budget=10)
    q = alc.next_query(demo, "ann")
    assert q is not None
    keys = [next(iter(ix["key"])) for ix in demo._sample_collection.list_indexes()]
    assert "alc_queries.detections.status" in keys
    plan = demo._sample_collection.database.command(
        "aggregate",
        demo._sample_collection_name,
        pipeline=[{"$match": {"alc_queries.detections.status": {"$in": ["pending", "claimed"]}}}],
        explain=True,
    )
    assert "IXSCAN" in str(plan)
    progress = alc.review_progress(demo, user="ann")
    assert progress["total"]["queries"] == 10 and progress["total"]["claimed"] == 1


def _queries(ds):
    out = []
    for sid, dets in zip(ds.values("id"), ds.values("alc_queries.detections")):
        for d in dets or []:
            out.append((d.rank, d.round, sid, d.superpixel_id, round(d.score, 9), d.status))
    return sorted(out)


def test_queries_written_in_batches_equal_one_write(demo, monkeypatch):
    from alc_fiftyone.steps import ranking

    alc.rank_superpixels(demo, "pseudo", budget=12)
    want = _queries(demo)
    q = alc.next_query(demo, "ann")
    alc.answer(demo, q["id"], None, user="ann")
    alc.rank_superpixels(demo, "pseudo", budget=12)
    want2 = _queries(demo)

    copy = demo.clone()
    try:
        copy.delete_sample_field("alc_queries")
        # without the round records below nothing explains alc_revised any more, and a
        # ranking never writes into an unexplained field (issue 18): the copy starts fresh
        # (the answer given was "labels are right", so the labels are the same)
        copy.delete_sample_field("alc_revised")
        writes = []
        real = ranking.merge_queries
        monkeypatch.setattr(ranking, "WRITE_BATCH", 3)
        monkeypatch.setattr(
            ranking, "merge_queries", lambda *a: (writes.append(len(a[2])), real(*a))
        )
        copy.info["alc"]["rounds"] = []
        copy.save()
        alc.rank_superpixels(copy, "pseudo", budget=12)
        assert len(writes) > 1 and max(writes) <= 3
        assert _queries(copy) == want
        q2 = next(d for d in copy.values("alc_queries.detections", unwind=True) if d.rank == 1)
        alc.answer(copy, q2.id, None, user="ann")
        alc.rank_superpixels(copy, "pseudo", budget=12)  # round 2: old queries replaced
        assert _queries(copy) == want2
    finally:
        copy.delete()
