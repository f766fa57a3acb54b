"""Nothing lost, nothing half-written (issue 11): one regression test per hole found when the
SDK was tried as a new user would, on real FiftyOne datasets and the private test MongoDB.

Each test failed on the code before the fix; the item number of the issue is in its name.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import python_subprocess_env
from PIL import Image

import alc_fiftyone as alc
from alc_fiftyone.errors import ALCError, QueryError, SampleError


@pytest.fixture
def demo(unique_name, tmp_alc_dir):
    import fiftyone as fo

    ds = alc.make_demo_dataset(name=unique_name, num_samples=6, size=(64, 48), seed=4)
    yield ds
    for name in fo.list_datasets():
        if name.startswith(unique_name):
            fo.delete_dataset(name)


@pytest.fixture
def ranked(demo):
    alc.compute_superpixels(demo, method="slic", n_segments=30)
    alc.rank_superpixels(demo, "pseudo", budget=12)
    return demo


def _queries(ds, field="alc_queries"):
    ds.reload()
    out = []
    for dets in ds.values(f"{field}.detections"):
        out.extend(dets or [])
    return out


def _by_status(ds, field="alc_queries"):
    out: dict[str, list] = {}
    for d in _queries(ds, field):
        out.setdefault(d.status, []).append(d)
    return out


def _pairs(root: Path, n: int = 3, size=(24, 16), values=(0, 1)) -> tuple[Path, Path]:
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        w, h = size
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            images / f"img{i}.png"
        )
        mask = np.full((h, w), values[0], np.uint8)
        mask[: h // 2] = values[1]
        Image.fromarray(mask).save(masks / f"img{i}.png")
    return images, masks


# --- 1. answers given while a ranking runs ----------------------------------------------------


class _ReviewerDuringFit(alc.FeatureModel):
    """The features model, with a reviewer working while it fits: 5 answers, a claim and a
    skip, made between the ranking's reads and its writes (as process B did in the issue)."""

    def __init__(self, dataset, **kwargs):
        super().__init__(**kwargs)
        self.dataset = dataset
        self.done: dict[str, list] = {}

    def fit(self, ctx):
        if not self.done:
            answered = []
            for _ in range(5):
                q = alc.next_query(self.dataset, "bob")
                alc.answer(self.dataset, q["id"], 0, user="bob")
                answered.append(q["id"])
            held = alc.next_query(self.dataset, "carl")["id"]
            skipped = alc.next_query(self.dataset, "dora")["id"]
            alc.skip(self.dataset, skipped, user="dora")
            self.done = {"answered": answered, "claimed": [held], "skipped": [skipped]}
        super().fit(ctx)


def test_1_answers_claims_and_skips_during_a_ranking_are_kept(ranked):
    model = _ReviewerDuringFit(ranked)
    summary = alc.rank_superpixels(ranked, "pseudo", budget=12, model=model)
    by_id = {d.id: d for d in _queries(ranked)}
    for qid in model.done["answered"]:
        assert by_id[qid].status in ("confirmed", "corrected"), "an answer was lost"
        assert by_id[qid].answered_by == "bob"
    assert by_id[model.done["claimed"][0]].status == "claimed"
    assert by_id[model.done["claimed"][0]].claimed_by == "carl"
    assert by_id[model.done["skipped"][0]].status == "skipped"
    # no region is asked about twice: new queries avoid the regions kept on the same map
    kept = {
        (sid, d.superpixel_id)
        for sid, dets in zip(ranked.values("id"), ranked.values("alc_queries.detections"))
        for d in dets or []
        if d.status != "pending"
    }
    new = [
        (sid, d.superpixel_id)
        for sid, dets in zip(ranked.values("id"), ranked.values("alc_queries.detections"))
        for d in dets or []
        if d.status == "pending"
    ]
    assert not kept & set(new)
    assert len(new) == summary["num_queries"] > 0
    # every answer can still be undone (its record is there)
    for qid in model.done["answered"]:
        alc.undo(ranked, qid, user="bob")
    assert all(by_id[q].id in {d.id for d in _queries(ranked)} for q in model.done["answered"])


# --- 2. overwrite=True builds the new dataset before removing the old one ---------------------


def test_2_failed_overwrite_import_keeps_the_old_dataset(tmp_path, tmp_alc_dir, unique_name):
    import fiftyone as fo

    images, masks = _pairs(tmp_path / "good")
    base = alc.load_image_masks(images, masks, ["a", "b"], name=unique_name, persistent=True)
    try:
        alc.compute_superpixels(base, method="slic", n_segments=10)
        bad_images, bad_masks = _pairs(tmp_path / "bad", values=(0, 7))  # 7 is no class
        with pytest.raises(SampleError, match="outside the declared"):
            alc.load_image_masks(
                bad_images, bad_masks, ["a", "b"], name=unique_name, overwrite=True
            )
        assert fo.dataset_exists(unique_name)
        again = fo.load_dataset(unique_name)
        assert len(again) == 3 and again.has_field("alc_superpixels")
        assert all(Path(p).is_file() for p in again.values("ground_truth.mask_path"))
        # a successful overwrite replaces it, under the same name
        new = alc.load_image_masks(images, masks, ["a", "b"], name=unique_name, overwrite=True)
        assert new.name == unique_name and not new.has_field("alc_superpixels")
        assert [n for n in fo.list_datasets() if n.startswith(unique_name)] == [unique_name]
    finally:
        if fo.dataset_exists(unique_name):
            fo.delete_dataset(unique_name)


def test_2_failed_overwrite_of_a_version_keeps_the_old_version(ranked, tmp_path, monkeypatch):
    import fiftyone as fo

    name = f"{ranked.name}-v2"
    first = alc.save_revised_version(ranked, name, label_field="pseudo")
    n = len(first)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    monkeypatch.setenv("ALC_FIFTYONE_DIR", str(blocker / "alc"))
    with pytest.raises(alc.OutputError):
        alc.save_revised_version(ranked, name, label_field="pseudo", overwrite=True)
    assert fo.dataset_exists(name)
    kept = fo.load_dataset(name)
    assert len(kept) == n and kept.info["alc"]["provenance"]["parent"] == ranked.name
    assert [d for d in fo.list_datasets() if d.startswith(name)] == [name]


# --- 3. a revised version corrects the field that was ranked ----------------------------------


def _answer_some(ds, n=4, user="ana"):
    changed = 0
    for _ in range(n):
        q = alc.next_query(ds, user)
        changed += alc.answer(ds, q["id"], 0 if q["current_value"] else 1, user=user)
    return changed


def test_3_save_and_export_default_to_the_ranked_field(demo, tmp_path):
    alc.corrupt_labels(demo, "ground_truth", "noisy", rate=0.3, seed=1)
    alc.compute_superpixels(demo, method="slic", n_segments=30)
    alc.rank_superpixels(demo, "noisy", budget=10)
    assert demo.info["alc"]["label_field"] == "pseudo"  # the demo's own record
    assert _answer_some(demo) > 0
    version = alc.save_revised_version(demo, f"{demo.name}-v")
    from alc_fiftyone.store.files import read_segmentation

    for s, v in zip(demo.iter_samples(), version.iter_samples()):
        revised = read_segmentation(s, "alc_revised") if s.alc_revised else None
        expect = revised if revised is not None else read_segmentation(s, "noisy")
        assert np.array_equal(read_segmentation(v, "noisy"), expect)
        for other in ("ground_truth", "pseudo"):
            assert np.array_equal(read_segmentation(v, other), read_segmentation(s, other))
    assert version.info["alc"]["provenance"]["label_field"] == "noisy"

    summary = alc.export_masks(demo, "alc_revised", tmp_path / "out", format="index")
    assert summary["written"] == len(demo) and summary["label_field"] == "noisy"
    for s in demo.iter_samples():
        got = np.array(Image.open(tmp_path / "out" / f"{Path(s.filepath).stem}.png"))
        field = "alc_revised" if s.alc_revised else "noisy"
        assert np.array_equal(got, read_segmentation(s, field))


# --- 4. kill -9 during save_revised_version ----------------------------------------------------

_KILL_SAVE = r"""
import os, signal, sys
import fiftyone as fo
import alc_fiftyone as alc

ds = fo.load_dataset(sys.argv[1])

def progress(done, total, desc):
    if desc == "save version" and done == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # as `kill -9` does, mid-write

alc.save_revised_version(ds, sys.argv[2], label_field="pseudo", progress=progress)
"""


def test_4_kill_during_save_leaves_no_finished_looking_version(ranked):
    import fiftyone as fo

    _answer_some(ranked, 2)
    ranked.persistent = True  # the subprocess loads it
    name = f"{ranked.name}-killed"
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_SAVE, ranked.name, name],
        env=python_subprocess_env(),
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not fo.dataset_exists(name), "a half-built version looks finished"
    version = alc.save_revised_version(ranked, name, label_field="pseudo")
    prov = version.info["alc"]["provenance"]
    assert prov["complete"] is True
    assert prov["removed_incomplete"], "the rerun does not say what it found"
    assert [d for d in fo.list_datasets() if d.startswith(name)] == [name]


# --- 5. exclusion of answered regions follows their pixels -----------------------------------


def test_5_recomputed_superpixels_are_excluded_by_pixels_not_ids(ranked):
    from alc_fiftyone.store.files import read_segmentation

    q = alc.next_query(ranked, "ana")
    alc.answer(ranked, q["id"], 0, user="ana")
    sample = ranked[q["sample_id"]]
    det = next(d for d in sample.alc_queries.detections if d.id == q["id"])
    x0, y0, w, h = det.bbox_px
    answered = np.zeros(read_segmentation(sample, "alc_superpixels").shape, bool)
    answered[y0 : y0 + h, x0 : x0 + w] = det.mask
    alc.compute_superpixels(ranked, method="felzenszwalb", overwrite=True, scale=50, min_size=5)
    new_sp = read_segmentation(ranked[q["sample_id"]], "alc_superpixels")
    summary = alc.rank_superpixels(ranked, "pseudo", budget=1.0)  # every region not excluded
    ranked.reload()
    dets = [d for d in ranked[q["sample_id"]].alc_queries.detections if d.status == "pending"]
    asked = {d.superpixel_id for d in dets}
    for i in np.unique(new_sp):
        overlap = answered[new_sp == i].mean()
        if overlap > 0.5:
            assert i not in asked, f"region {i} lies in the answered region and is asked again"
        elif overlap == 0:
            assert i in asked, f"region {i} is unrelated to the answer but was excluded"
    assert summary["excluded_answered"] >= 1


# --- 6. compute_superpixels that computes nothing records nothing ------------------------------


def test_6_no_sample_processed_records_no_new_method(ranked):
    before = ranked.info["alc"]["superpixels"]["alc_superpixels"]
    summary = alc.compute_superpixels(ranked, method="felzenszwalb", scale=100)
    assert summary["processed"] == 0 and summary["skipped_existing"] == len(ranked)
    assert "overwrite=True" in summary["note"]
    ranked.reload()
    assert ranked.info["alc"]["superpixels"]["alc_superpixels"] == before
    assert before["method"] == "slic"


# --- 7. class lists --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "classes, match",
    [
        (["Sky", "Road", "Sky"], "'Sky' is listed twice"),
        (["Sky", ""], "empty"),
        (["Sky", None], "empty"),
        (["Sky", "  "], "empty"),
        (["Sky", "void"], "ignore value"),
        ({0: "Sky", 1: "Sky"}, "'Sky' is listed twice"),
    ],
)
def test_7_bad_class_lists_are_refused_at_import(
    tmp_path, tmp_alc_dir, unique_name, classes, match
):
    import fiftyone as fo

    images, masks = _pairs(tmp_path)
    with pytest.raises(ValueError, match=match):
        alc.load_image_masks(images, masks, classes, ignore_index=255, name=unique_name)
    assert not fo.dataset_exists(unique_name)


def test_7_bad_class_lists_are_refused_by_load_voc(tmp_path, tmp_alc_dir, unique_name):
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "JPEGImages" / "a.jpg")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "SegmentationClass" / "a.png")
    with pytest.raises(ValueError, match="listed twice"):
        alc.load_voc(root, name=unique_name, classes=["bg", "bg"])
    with pytest.raises(ValueError, match="ignore value"):
        alc.load_voc(root, name=unique_name, classes=["bg", "void"])


def test_7_a_dataset_with_ambiguous_mask_targets_refuses_answers(ranked):
    targets = dict(ranked.mask_targets["pseudo"])
    targets[2] = targets[1]  # two values named alike
    ranked.mask_targets = {**ranked.mask_targets, "pseudo": targets}
    q = alc.next_query(ranked, "ana")
    with pytest.raises(ALCError, match="twice"):
        alc.answer(ranked, q["id"], targets[1], user="ana")


# --- 8. thresholds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "threshold, match",
    [
        (300, "above 255"),
        (-1, "greater than 0"),
        (0, "greater than 0"),
        ("abc", "a number"),
        (float("nan"), "a number"),
        (True, "a number"),
    ],
)
def test_8_bad_thresholds_are_refused(tmp_path, tmp_alc_dir, unique_name, threshold, match):
    import fiftyone as fo

    images, masks = _pairs(tmp_path, values=(0, 255))
    with pytest.raises(ValueError, match=match):
        alc.load_image_masks(images, masks, ["bg", "fg"], threshold=threshold, name=unique_name)
    assert not fo.dataset_exists(unique_name)


def test_8_a_good_threshold_still_works(tmp_path, tmp_alc_dir, unique_name):
    images, masks = _pairs(tmp_path, values=(3, 250))
    ds = alc.load_image_masks(images, masks, ["bg", "fg"], threshold=128, name=unique_name)
    try:
        from alc_fiftyone.store.files import read_segmentation

        m = read_segmentation(ds.first(), "ground_truth")
        assert set(np.unique(m)) == {0, 1}
    finally:
        ds.delete()


# --- 9. answers respect claims -----------------------------------------------------------------


def test_9_answer_refuses_a_query_another_reviewer_holds(ranked):
    q = alc.next_query(ranked, "ana")
    with pytest.raises(QueryError, match="ana"):
        alc.answer(ranked, q["id"], 0, user="bob")
    with pytest.raises(QueryError, match="ana"):
        alc.answer(ranked, q["id"], 0)  # a script without a name
    with pytest.raises(QueryError, match="ana"):
        alc.skip(ranked, q["id"], user="bob")
    by = {d.id: d for d in _queries(ranked)}
    assert by[q["id"]].status == "claimed"
    alc.answer(ranked, q["id"], 0, user="bob", force=True)
    assert {d.id: d for d in _queries(ranked)}[q["id"]].answered_by == "bob"
    q2 = alc.next_query(ranked, "ana")
    alc.answer(ranked, q2["id"], 0, user="ana")  # the holder answers as before


# --- 10. budgets -------------------------------------------------------------------------------


def test_10_a_huge_budget_is_clipped_before_anything_runs(ranked):
    n = sum(ranked.values("alc_superpixels.num_superpixels"))
    summary = alc.rank_superpixels(ranked, "pseudo", budget=2**63)
    assert summary["budget"] == n and summary["budget_requested"] == 2**63
    assert "clipped" in summary["note"]
    assert summary["num_queries"] == n
    ranked.reload()
    assert ranked.info["alc"]["rounds"][-1]["budget"] == n


@pytest.mark.parametrize("budget", [0, -3, 1.5, float("nan"), True, "lots", 0.0])
def test_10_a_bad_budget_writes_nothing(ranked, budget):
    before = sorted(d.id for d in _queries(ranked))
    rounds = len(ranked.info["alc"]["rounds"])
    calls = []
    with pytest.raises(ValueError, match="budget"):
        alc.rank_superpixels(ranked, "pseudo", budget=budget, progress=lambda *a: calls.append(a))
    assert not calls, "the fit ran before the budget was checked"
    assert sorted(d.id for d in _queries(ranked)) == before
    ranked.reload()
    assert len(ranked.info["alc"]["rounds"]) == rounds


# --- 11. float TIFF masks ------------------------------------------------------------------------


def test_11_float_tiff_masks(tmp_path, tmp_alc_dir, unique_name):
    images, masks = _pairs(tmp_path)
    for p in sorted(masks.iterdir()):
        arr = np.array(Image.open(p)).astype(np.float32)
        p.unlink()
        Image.fromarray(arr, mode="F").save(p.with_suffix(".tif"))
    ds = alc.load_image_masks(images, masks, ["a", "b"], name=unique_name)
    try:
        from alc_fiftyone.store.files import read_segmentation

        assert set(np.unique(read_segmentation(ds.first(), "ground_truth"))) == {0, 1}
    finally:
        ds.delete()
    bad = masks / "img1.tif"
    arr = np.array(Image.open(bad))
    arr[0, 0] = 0.5
    Image.fromarray(arr, mode="F").save(bad)
    with pytest.raises(SampleError, match="img1.*not whole numbers"):
        alc.load_image_masks(images, masks, ["a", "b"], name=unique_name + "b")


# --- 13. clear errors ---------------------------------------------------------------------------


def test_13_ranking_a_field_that_is_no_segmentation(ranked):
    with pytest.raises(ALCError, match="'filepath' is not an fo.Segmentation field"):
        alc.rank_superpixels(ranked, "filepath")


def test_13_undo_on_a_never_ranked_dataset(demo):
    with pytest.raises(QueryError, match="no queries"):
        alc.undo(demo)
    with pytest.raises(QueryError, match="no queries"):
        alc.undo(demo, user="ana")


def test_13_ranking_skips_samples_without_superpixels(demo):
    bad = demo.skip(2).first()
    Path(bad.filepath).write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    sp = alc.compute_superpixels(demo, method="slic", n_segments=30, skip_failures=True)
    assert [f["id"] for f in sp["failed"]] == [bad.id]
    with pytest.raises(SampleError, match="skip_failures=True"):
        alc.rank_superpixels(demo, "pseudo", budget=5)
    summary = alc.rank_superpixels(demo, "pseudo", budget=5, skip_failures=True)
    assert [f["id"] for f in summary["failed"]] == [bad.id]
    assert "superpixel" in summary["failed"][0]["error"]
    assert summary["num_queries"] == 5


def test_13_a_query_gone_between_look_up_and_read_is_a_query_error(ranked, monkeypatch):
    from alc_fiftyone.review import answers

    q = alc.next_query(ranked, "ana")
    other = next(s for s in ranked.values("id") if s != q["sample_id"])
    monkeypatch.setattr(answers, "find_query_sample_id", lambda *a, **k: other)
    with pytest.raises(QueryError):
        alc.skip(ranked, q["id"], user="ana")
    with pytest.raises(QueryError):
        alc.answer(ranked, q["id"], 0, user="ana")


def test_13_a_read_only_export_folder_says_erofs(ranked, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(ro)],
        capture_output=True,
        check=False,
    )
    if res.returncode:
        pytest.skip("cannot mount a read-only tmpfs here (not root or no CAP_SYS_ADMIN)")
    try:
        with pytest.raises(alc.OutputError, match="EROFS"):
            alc.export_masks(ranked, "pseudo", ro)
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True, check=False)


# --- clean_files ---------------------------------------------------------------------------------


def test_clean_files_removes_only_unreferenced_files(ranked):
    from alc_fiftyone.store.files import dataset_dir, read_segmentation, write_mask

    q1 = alc.next_query(ranked, "ana")
    alc.answer(ranked, q1["id"], 1, user="ana")
    sample = ranked[q1["sample_id"]]
    q2 = next(d for d in sample.alc_queries.detections if d.status == "pending")
    alc.claim(ranked, q2.id, "ana")
    alc.answer(ranked, q2.id, 2, user="ana")  # its undo needs the mask of the first answer
    alc.compute_superpixels(ranked, method="slic", n_segments=20, overwrite=True)  # old maps
    orphans = [
        write_mask(np.zeros((48, 64), np.uint8), ranked, "pseudo", f"x{i}") for i in range(3)
    ]
    version = alc.save_revised_version(ranked, f"{ranked.name}-v", label_field="pseudo")
    folder = dataset_dir(ranked)
    before = {p for p in folder.rglob("*") if p.is_file()}

    dry = alc.clean_files(ranked, dry_run=True, min_age=0)
    assert {p for p in folder.rglob("*") if p.is_file()} == before
    summary = alc.clean_files(ranked, min_age=0)
    assert summary["removed"] == dry["removed"] >= 3 + len(ranked)  # orphans + old maps
    after = {p for p in folder.rglob("*") if p.is_file()}
    assert not any(Path(o) in after for o in orphans)
    for ds in (ranked, version):  # every mask still readable, in both datasets
        for s in ds.iter_samples():
            for field in ("ground_truth", "pseudo", "alc_superpixels"):
                read_segmentation(s, field)
    n = alc.undo(ranked, q2.id, user="ana")  # needs the revised mask from before q2
    assert n > 0
    # the mask after q2 is superseded by the undo's new mask now; the one after q1 stays:
    # the version's copy of q2 still names it as its undo record
    assert alc.clean_files(ranked, min_age=0)["removed"] == 1
    version.delete()
