"""The correction loop on real FiftyOne datasets: superpixels, ranking, answers, undo,
simulation, evaluation, export and revised versions."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import alc_fiftyone as alc
from alc_fiftyone.review.answers import attr, query_region
from alc_fiftyone.store.files import read_png_array, read_segmentation


@pytest.fixture
def demo(unique_name, tmp_alc_dir):
    ds = alc.make_demo_dataset(name=unique_name, num_samples=8, size=(96, 72), seed=3)
    yield ds
    if not ds.deleted:
        ds.delete()


@pytest.fixture
def ranked(demo):
    alc.compute_superpixels(demo, method="slic", n_segments=40)
    summary = alc.rank_superpixels(demo, "pseudo", budget=12)
    return demo, summary


def _queries(ds, field="alc_queries"):
    out = []
    for s in ds.select_fields(field):
        if s[field] is not None:
            out.extend((s.id, d) for d in s[field].detections)
    return out


def test_compute_superpixels_writes_uint16_maps_and_skips_done(demo):
    summary = alc.compute_superpixels(demo, method="slic", n_segments=40)
    assert summary["processed"] == len(demo) and not summary["failed"]
    for s in demo:
        sp = read_png_array(s.alc_superpixels.mask_path)
        assert sp.min() >= 1 and sp.max() == s.alc_superpixels.num_superpixels
        assert set(np.unique(sp)) == set(range(1, sp.max() + 1))
        assert sp.shape == (72, 96)
    paths = demo.values("alc_superpixels.mask_path")
    again = alc.compute_superpixels(demo, method="slic", n_segments=40)
    assert again["processed"] == 0 and again["skipped_existing"] == len(demo)
    assert demo.values("alc_superpixels.mask_path") == paths
    alc.compute_superpixels(demo, method="felzenszwalb", overwrite=True, scale=50)
    new = demo.values("alc_superpixels.mask_path")
    assert all(a != b for a, b in zip(paths, new))
    assert all(os.path.exists(p) for p in paths)  # old files are never rewritten in place
    assert "alc_superpixels" not in (demo.default_mask_targets or {})


def test_compute_superpixels_missing_image_reported_others_kept(demo):
    bad = demo.skip(3).first()
    os.remove(bad.filepath)
    with pytest.raises(alc.SampleError, match=bad.id):
        alc.compute_superpixels(demo, method="slic", n_segments=20)
    done = demo.exists("alc_superpixels")
    assert len(done) == 3  # the samples before the bad one were saved
    summary = alc.compute_superpixels(demo, method="slic", n_segments=20, skip_failures=True)
    assert [f["id"] for f in summary["failed"]] == [bad.id]
    assert len(demo.exists("alc_superpixels")) == len(demo) - 1


def test_rank_writes_global_top_b_queries(ranked):
    ds, summary = ranked
    qs = _queries(ds)
    assert len(qs) == summary["num_queries"] == 12
    scores = sorted((d.score for _, d in qs), reverse=True)
    ranks = {d.rank: d.score for _, d in qs}
    assert [ranks[r] for r in range(1, 13)] == scores
    for sid, d in qs:
        s = ds[sid]
        sp = read_segmentation(s, "alc_superpixels")
        labels = read_segmentation(s, "pseudo")
        slc, region = query_region(d, sp.shape)
        # the region is exactly the superpixel (tau = 0)
        full = np.zeros(sp.shape, bool)
        full[slc] = region
        assert np.array_equal(full, sp == d.superpixel_id)
        ry, rx = d.rep_yx
        assert sp[ry, rx] == d.superpixel_id
        # the question names the class most of the region holds (not the star's pixel's)
        majority = int(np.bincount(labels[full].astype(np.int64)).argmax())
        assert d.label == ds.mask_targets["pseudo"][majority]
        assert d.status == "pending" and d.round == 1
        assert d.num_pixels == full.sum()
    info = ds.info["alc"]
    assert info["rounds"][-1]["budget"] == 12 and info["rounds"][-1]["method"] == "sim"
    # the review queue is the patches view in score order
    queue = alc.review_queue(ds)
    assert len(queue) == 12
    assert queue.values("alc_queries.score") == scores


def test_rank_budget_fraction_counts_superpixels(ranked):
    ds, _ = ranked
    total = sum(ds.values("alc_superpixels.num_superpixels"))
    summary = alc.rank_superpixels(ds, "pseudo", budget=0.1, method="entropy")
    assert summary["budget"] == round(0.1 * total)
    assert summary["num_superpixels"] == total


def test_answer_expands_to_region_copy_on_write_and_undo(ranked):
    ds, _ = ranked
    sid, q = _queries(ds)[0]
    s = ds[sid]
    before = read_segmentation(s, "pseudo")
    pseudo_path = s.pseudo.mask_path
    slc, region = query_region(q, before.shape)
    target = next(
        n for v, n in ds.mask_targets["pseudo"].items() if v not in (255,) and n != q.label
    )
    value = {n: v for v, n in ds.mask_targets["pseudo"].items()}[target]
    expected = int((before[slc][region] != value).sum())
    changed = alc.answer(ds, q.id, target, user="ann")
    assert changed == expected > 0
    s.reload()
    revised = read_segmentation(s, "alc_revised")
    assert np.all(revised[slc][region] == value)
    mask_full = np.zeros(before.shape, bool)
    mask_full[slc] = region
    assert np.array_equal(revised[~mask_full], before[~mask_full])
    assert s.pseudo.mask_path == pseudo_path  # the label field is never touched
    assert np.array_equal(read_segmentation(s, "pseudo"), before)
    d = next(d for d in s.alc_queries.detections if d.id == q.id)
    assert d.status == "corrected" and d.answer == target and d.answered_by == "ann"
    assert d.pixels_changed == expected and d.answered_at is not None
    with pytest.raises(alc.QueryError, match="already answered"):
        alc.answer(ds, q.id, target)
    first_revised = s.alc_revised.mask_path
    restored = alc.undo(ds)  # the last answer
    assert restored == expected
    s.reload()
    assert s.alc_revised.mask_path != first_revised and os.path.exists(first_revised)
    assert np.array_equal(read_segmentation(s, "alc_revised"), before)
    d = next(d for d in s.alc_queries.detections if d.id == q.id)
    assert d.status == "pending" and attr(d, "answer") is None
    with pytest.raises(alc.ALCError):
        alc.undo(ds)


def test_answer_keep_confirm_and_errors(ranked):
    ds, _ = ranked
    (sid, q1), (_, q2) = _queries(ds)[:2]
    assert alc.answer(ds, q1.id, None) == 0
    d = next(d for d in ds[sid].alc_queries.detections if d.id == q1.id)
    assert d.status == "confirmed"
    with pytest.raises(alc.QueryError, match="not a class"):
        alc.answer(ds, q2.id, "no-such-class")
    with pytest.raises(alc.QueryError, match="no query"):
        alc.answer(ds, "0123456789abcdef01234567", "background")
    # confirming the current class fills the region with it and counts as confirmed
    n = alc.answer(ds, q2.id, q2.label)
    s2 = ds[find_sample(ds, q2.id)]
    d2 = next(d for d in s2.alc_queries.detections if d.id == q2.id)
    assert d2.status == "confirmed" and d2.pixels_changed == n


def find_sample(ds, qid):
    from alc_fiftyone.review.answers import find_query_sample_id

    return find_query_sample_id(ds, qid)


def test_answer_refused_when_superpixels_changed(ranked):
    ds, _ = ranked
    sid, q = _queries(ds)[0]
    alc.compute_superpixels(ds.select(sid), method="slic", n_segments=10, overwrite=True)
    with pytest.raises(alc.QueryError, match="changed since"):
        alc.answer(ds, q.id, q.label)


def test_rerank_keeps_answers_and_excludes_their_superpixels(ranked):
    ds, _ = ranked
    qs = _queries(ds)
    answered = {}
    for sid, q in qs[:4]:
        alc.answer(ds, q.id, "background")
        answered[q.id] = (sid, q.superpixel_id)
    summary = alc.rank_superpixels(ds, "pseudo", budget=12)
    assert summary["round"] == 2 and summary["excluded_answered"] == 4
    now = _queries(ds)
    kept = {d.id for _, d in now if d.status in ("confirmed", "corrected")}
    assert kept == set(answered)
    pending = [(sid, d) for sid, d in now if d.status == "pending"]
    assert len(pending) == 12
    assert not {(sid, d.superpixel_id) for sid, d in pending} & set(answered.values())


def test_failed_rank_leaves_previous_queries(ranked):
    ds, _ = ranked
    before = sorted(d.id for _, d in _queries(ds))
    victim = ds.skip(5).first()
    Image.fromarray(np.full((72, 96), 77, np.uint8)).save(victim.pseudo.mask_path)
    with pytest.raises(alc.SampleError, match=victim.id) as e:
        alc.rank_superpixels(ds, "pseudo", budget=12)
    assert "77" in str(e.value)
    assert sorted(d.id for _, d in _queries(ds)) == before
    assert len(ds.info["alc"]["rounds"]) == 1


def test_rank_bad_inputs(demo, make_dataset):
    with pytest.raises(alc.ALCError, match="alc_superpixels"):
        alc.rank_superpixels(demo, "pseudo")
    alc.compute_superpixels(demo.limit(5), n_segments=20)
    with pytest.raises(alc.SampleError, match="missing"):
        alc.rank_superpixels(demo, "pseudo")
    with pytest.raises(alc.ALCError, match="empty"):
        alc.rank_superpixels(demo.limit(0), "pseudo")
    with pytest.raises(ValueError, match="unknown method"):
        alc.rank_superpixels(demo.limit(5), "pseudo", method="nope")


@pytest.mark.parametrize(
    "method", ["sim", "cil_pixel", "cil_mean", "entropy", "margin", "random", "classbal", "abc"]
)
def test_every_method_ranks(ranked, method):
    ds, _ = ranked
    summary = alc.rank_superpixels(ds, "pseudo", method=method, budget=7, seed=1)
    qs = [d for _, d in _queries(ds) if d.status == "pending"]
    assert len(qs) == summary["num_queries"] == 7
    assert all(d.method == method for d in qs)


def test_user_probabilities_callable_and_field(ranked, tmp_path):
    ds, _ = ranked
    names = ds.mask_targets["pseudo"]
    C = max(k for k in names if k != 255) + 1

    def oracle_probs(sample, image):
        gt = read_segmentation(sample, "ground_truth")
        p = np.full((C,) + gt.shape, 0.01, np.float32)
        for c in range(C):
            p[c][gt == c] = 1.0
        return p / p.sum(0, keepdims=True)

    summary = alc.rank_superpixels(ds, "pseudo", model=oracle_probs, budget=5)
    assert summary["model"]["name"].startswith("callable")
    for s in ds:
        np.save(tmp_path / f"{s.id}.npy", oracle_probs(s, None))
        s["probs"] = str(tmp_path / f"{s.id}.npy")
        s.save()
    alc.rank_superpixels(ds, "pseudo", model="field:probs", budget=5)
    s = ds.first()
    np.save(s.probs, np.ones((C + 1, 2, 2), np.float32))
    with pytest.raises(alc.SampleError, match="probability map has shape"):
        alc.rank_superpixels(ds, "pseudo", model="field:probs", budget=5)


def test_simulate_improves_labels_and_reports(ranked, tmp_path):
    ds, _ = ranked
    res = alc.simulate(ds, "pseudo", "ground_truth", rounds=2, budget_per_round=0.1)
    assert [r["round"] for r in res.rows] == [0, 1, 2]
    assert res.rows[1]["clicks"] > 0
    assert res.rows[-1]["total_clicks"] == res.rows[1]["clicks"] + res.rows[2]["clicks"]
    assert res.rows[-1]["miou"] > res.rows[0]["miou"]
    start = alc.evaluate(ds, "pseudo", "ground_truth")["miou"]
    assert res.rows[0]["miou"] == pytest.approx(start)
    end = alc.evaluate(ds, "pseudo", "ground_truth", revised_field="alc_sim_revised")["miou"]
    assert res.rows[-1]["miou"] == pytest.approx(end)
    assert "data mIoU" in res.table() and res.table().count("\n") == 4
    png = res.plot(tmp_path / "sim.png")
    assert Image.open(png).size[0] > 100
    # the person's review fields were left alone
    assert not ds.has_field("alc_revised") or not len(ds.exists("alc_revised"))
    # the simulated answers are recorded like a person's
    sims = [d for _, d in _queries(ds, "alc_sim_queries")]
    assert all(d.answered_by == "oracle" for d in sims if d.status != "pending")


def test_evaluate_perfect_and_ignore(demo):
    r = alc.evaluate(demo, "ground_truth", "ground_truth")
    assert r["miou"] == pytest.approx(1.0)
    r2 = alc.evaluate(demo, "pseudo", "ground_truth")
    assert 0 < r2["miou"] < 1
    assert set(r2["per_class"]) == {n for v, n in demo.mask_targets["pseudo"].items() if v != 255}


def test_export_and_save_revised_version(ranked, tmp_path, unique_name):
    ds, _ = ranked
    qs = _queries(ds)
    for _, q in qs[:3]:
        alc.answer(ds, q.id, "background", user="ann")
    out = tmp_path / "export"
    summary = alc.export_masks(ds, "alc_revised", out, label_field="pseudo")
    assert summary["written"] == len(ds)
    for s in ds:
        im = Image.open(out / (os.path.splitext(os.path.basename(s.filepath))[0] + ".png"))
        assert im.mode == "P"
        want = read_segmentation(s, "alc_revised" if s.alc_revised else "pseudo")
        assert np.array_equal(np.array(im), want)
    assert (out / "classes.txt").read_text().split("\n")[0] == "background"
    with pytest.raises(alc.ALCError, match="exists"):
        alc.export_masks(ds, "alc_revised", out, label_field="pseudo")
    alc.export_masks(ds, "pseudo", tmp_path / "idx", format="index")
    assert Image.open(next((tmp_path / "idx").glob("0*.png"))).mode == "L"

    name = unique_name + "-v2"
    v2 = alc.save_revised_version(ds, name, label_field="pseudo")
    try:
        assert len(v2) == len(ds) and v2.persistent
        assert not v2.has_field("alc_revised")
        for s, t in zip(ds.sort_by("filepath"), v2.sort_by("filepath")):
            want = read_segmentation(s, "alc_revised" if s.alc_revised else "pseudo")
            assert np.array_equal(read_segmentation(t, "pseudo"), want)
            assert t.pseudo.mask_path not in (
                s.pseudo.mask_path,
                s.alc_revised.mask_path if s.alc_revised else None,
            )
        prov = v2.info["alc"]["provenance"]
        assert (
            prov["parent"] == ds.name
            and prov["answers"] == {"corrected": 3}
            or sum(prov["answers"].values()) == 3
        )
        assert prov["reviewers"] == {"ann": 3}
        assert prov["pixels_changed"] == sum(prov["pixels_changed_per_class"].values())
        assert (
            len(v2.load_saved_view("alc_answered").values("alc_queries.detections", unwind=True))
            == 3
        )
        with pytest.raises(alc.ALCError, match="exists"):
            alc.save_revised_version(ds, name, label_field="pseudo")
    finally:
        v2.delete()


def test_corrupt_labels_seeded_per_sample(demo):
    from alc_fiftyone.core.noise import error_rate

    summary = alc.corrupt_labels(demo, "ground_truth", "noisy", rate=0.2, seed=5)
    assert summary["processed"] == len(demo)
    assert demo.mask_targets["noisy"] == demo.mask_targets["ground_truth"]
    rates = [
        error_rate(read_segmentation(s, "noisy"), read_segmentation(s, "ground_truth"), 255)
        for s in demo
    ]
    assert abs(np.mean(rates) - 0.2) < 0.03
    first = [read_segmentation(s, "noisy") for s in demo]
    # the noise of a sample depends on the seed and its file name, not on the view
    alc.corrupt_labels(demo.skip(2), "ground_truth", "noisy", rate=0.2, seed=5)
    again = [read_segmentation(s, "noisy") for s in demo]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    alc.corrupt_labels(demo, "ground_truth", "noisy", rate=0.2, seed=6)
    other = [read_segmentation(s, "noisy") for s in demo]
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_rank_superpixels_of_another_size_named(ranked):
    ds, _ = ranked
    before = sorted(d.id for _, d in _queries(ds))
    victim = ds.skip(2).first()
    Image.fromarray(np.ones((10, 12), np.uint8)).save(victim.alc_superpixels.mask_path)
    with pytest.raises(alc.SampleError, match=victim.id) as e:
        alc.rank_superpixels(ds, "pseudo", budget=12)
    assert "differ in size" in str(e.value)
    assert sorted(d.id for _, d in _queries(ds)) == before


def test_concurrent_answers_on_one_sample_lose_nothing(ranked, monkeypatch):
    """A second reviewer's answer lands on the same sample between the first answer's read
    and its write: the first is re-applied on top, and both regions end up relabelled."""
    import alc_fiftyone.review.answers as answers_mod

    ds, _ = ranked
    by_sample: dict = {}
    for sid, d in _queries(ds):
        by_sample.setdefault(sid, []).append(d)
    sid, (q1, q2) = next((s, qs[:2]) for s, qs in by_sample.items() if len(qs) >= 2)
    real_write = answers_mod.write_mask
    calls = {"n": 0}

    def racing_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:  # the other reviewer answers q2 (and claims nothing else) first
            real = answers_mod.write_mask
            answers_mod.write_mask = real_write
            try:
                alc.answer(ds, q2.id, "square", user="bob")
            finally:
                answers_mod.write_mask = real
        return real_write(*args, **kwargs)

    monkeypatch.setattr(answers_mod, "write_mask", racing_write)
    alc.answer(ds, q1.id, "ring", user="ann")
    s = ds[sid]
    s.reload()
    revised = read_segmentation(s, "alc_revised")
    names = {n: v for v, n in ds.mask_targets["pseudo"].items()}
    for q, cls in ((q1, "ring"), (q2, "square")):
        slc, region = query_region(q, revised.shape)
        assert np.all(revised[slc][region] == names[cls])
    dets = {d.id: d for d in s.alc_queries.detections}
    assert dets[q1.id].answered_by == "ann" and dets[q2.id].answered_by == "bob"
    assert calls["n"] == 2  # the first write was refused and redone
    # a claim on a third query of the sample survives answers to the others
    others = [d for d in by_sample[sid] if d.id not in (q1.id, q2.id)]
    if others:
        assert alc.claim(ds, others[0].id, "carol")
        alc.undo(ds, q1.id)
        s.reload()
        d3 = next(d for d in s.alc_queries.detections if d.id == others[0].id)
        assert d3.status == "claimed" and d3.claimed_by == "carol"
