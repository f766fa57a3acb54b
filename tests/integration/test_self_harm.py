"""Nothing a user asks for destroys their labels or their dataset (issue 18): one test per
point of the issue, on real FiftyOne datasets, each checking that the data is intact after the
refusal (the label masks on disk, ``mask_targets``, the source dataset with its answers).

Each ``test_<n>_...`` failed on the code before the fix (commit 41745a6).
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import python_subprocess_env
from PIL import Image

import alc_fiftyone as alc
from alc_fiftyone.errors import ALCError, QueryError
from alc_fiftyone.store.datasets import TMP_MARK
from alc_fiftyone.store.files import dataset_dir, write_mask


@pytest.fixture
def demo(unique_name, tmp_alc_dir):
    import fiftyone as fo

    ds = alc.make_demo_dataset(name=unique_name, num_samples=6, size=(64, 48), seed=4)
    yield ds
    for name in fo.list_datasets():
        if name.startswith(unique_name):
            fo.delete_dataset(name)


@pytest.fixture
def answered(demo):
    """The demo ranked on its pseudo labels, with two answers."""
    alc.compute_superpixels(demo, method="slic", n_segments=30)
    alc.rank_superpixels(demo, "pseudo", budget=12)
    for value in (1, 2):
        q = alc.next_query(demo, "ana")
        alc.answer(demo, q["id"], value, user="ana")
    return demo


def snapshot(ds, field: str) -> dict:
    """What a field holds: per sample its mask path and the bytes of the file, and the
    field's mask_targets."""
    ds.reload()
    files = {}
    for sid, path in zip(ds.values("id"), ds.values(f"{field}.mask_path")):
        files[sid] = (path, hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None)
    return {"files": files, "targets": dict((ds.mask_targets or {}).get(field) or {})}


def answers_of(ds) -> dict:
    ds.reload()
    out = {}
    for dets in ds.values("alc_queries.detections"):
        for d in dets or []:
            out[d.id] = (d.status, d.get_field("answer"))
    return out


def add_mask_field(ds, field: str, fill, like: str = "pseudo") -> None:
    """A label field of masks ``fill(shape) -> array`` with the classes of ``like``."""
    import fiftyone as fo

    from alc_fiftyone.store.files import read_segmentation

    values = {}
    for s in ds.iter_samples():
        shape = read_segmentation(s, like).shape
        path = write_mask(fill(shape).astype(np.uint8), ds, field, s.id)
        values[s.id] = fo.Segmentation(mask_path=path)
    ds.set_values(field, values, key_field="id")
    ds.mask_targets = {**ds.mask_targets, field: ds.mask_targets[like]}


# --- the rule: no step writes over labels, a ground truth or another step's output ----------


@pytest.mark.parametrize("field", ["ground_truth", "pseudo"])
@pytest.mark.parametrize("overwrite", [True, False])
def test_1_superpixels_never_replace_the_labels(demo, field, overwrite):
    before = snapshot(demo, field)
    with pytest.raises(ALCError, match=f"into '{field}'.*nothing was written"):
        alc.compute_superpixels(demo, method="slic", field=field, overwrite=overwrite)
    with pytest.raises(ALCError, match=f"into '{field}'"):
        alc.compute_superpixels(demo, label_field="pseudo", field=field, overwrite=overwrite)
    assert snapshot(demo, field) == before
    assert field not in (demo.info["alc"].get("superpixels") or {})


def test_1_an_unrecorded_mask_field_is_not_overwritten_either(demo):
    """Masks no record explains (a user's own field, no mask_targets) may be labels."""
    demo.clone_sample_field("ground_truth", "mine")
    before = snapshot(demo, "mine")
    with pytest.raises(ALCError, match="no alc-fiftyone step recorded"):
        alc.compute_superpixels(demo, method="slic", field="mine", overwrite=True)
    with pytest.raises(ALCError, match="no alc-fiftyone step recorded"):
        alc.corrupt_labels(demo, "ground_truth", "mine")
    assert snapshot(demo, "mine") == before


def test_1_outputs_of_the_same_kind_are_rewritten_as_before(demo):
    """Recomputing superpixels (any recorded superpixel field: a finer level too) and
    re-corrupting a noisy field stay allowed; the labels they come from stay as they were."""
    gt = snapshot(demo, "ground_truth")
    alc.compute_superpixels(demo, method="slic", n_segments=20)
    alc.compute_superpixels(demo, method="slic", field="alc_superpixels_fine", n_segments=60)
    first = snapshot(demo, "alc_superpixels_fine")
    summary = alc.compute_superpixels(
        demo, method="slic", field="alc_superpixels_fine", n_segments=40, overwrite=True
    )
    assert summary["processed"] == len(demo)
    assert snapshot(demo, "alc_superpixels_fine")["files"] != first["files"]
    alc.corrupt_labels(demo, "ground_truth", "noisy", rate=0.2, seed=0)
    alc.corrupt_labels(demo, "ground_truth", "noisy", rate=0.3, seed=1)
    with pytest.raises((ALCError, ValueError), match="ground_truth"):
        alc.corrupt_labels(demo, "noisy", "ground_truth")  # the gt of the noise
    with pytest.raises(ALCError, match="noisy labels"):
        alc.compute_superpixels(demo, method="slic", field="noisy", overwrite=True)
    assert snapshot(demo, "ground_truth") == gt


def test_1_superpixels_operator_refuses_the_label_field_in_one_line(plugin, demo):
    import fiftyone.operators as foo

    before = snapshot(demo, "ground_truth")
    result = foo.execute_operator(
        "@alc/active-label-correction/compute_superpixels",
        ctx={
            "view": demo.view(),
            "params": {"method": "slic", "field": "ground_truth", "overwrite": True},
        },
    )
    error = result.result["error"]
    assert "'ground_truth'" in error and "\n" not in error and "Traceback" not in error
    assert snapshot(demo, "ground_truth") == before


def test_rule_simulation_and_ranking_never_write_over_a_ground_truth(demo):
    """simulate clears its own fields first: given a ground truth as its revised or queries
    field it would have wiped it; a ranking would have written answers into it."""
    alc.compute_superpixels(demo, method="slic", n_segments=30)
    gt = snapshot(demo, "ground_truth")
    with pytest.raises(ALCError, match="'ground_truth'"):
        alc.simulate(demo, "pseudo", "ground_truth", rounds=1, revised_field="ground_truth")
    with pytest.raises(ALCError, match="'ground_truth'"):
        alc.rank_superpixels(demo, "pseudo", budget=3, revised_field="ground_truth")
    assert snapshot(demo, "ground_truth") == gt
    assert not demo.has_field("alc_queries") and not demo.has_field("alc_sim_queries")


# --- 2. a version never replaces the dataset it is made from ---------------------------------


@pytest.mark.parametrize("overwrite", [True, False])
def test_2_save_over_itself_is_refused(answered, overwrite):
    import fiftyone as fo

    answered.persistent = True
    name = answered.name
    before = answers_of(answered)
    revised = snapshot(answered, "alc_revised")
    with pytest.raises(ALCError, match="never replaces the dataset it is made from") as err:
        alc.save_revised_version(answered, name, overwrite=overwrite)
    assert "overwrite=True" not in str(err.value)
    assert fo.dataset_exists(name)
    ds = fo.load_dataset(name)
    assert answers_of(ds) == before and snapshot(ds, "alc_revised") == revised
    assert "provenance" not in ds.info["alc"]
    assert alc.undo(ds, user="ana") >= 0  # the undo records are still there


def test_2_save_operator_over_itself_is_refused(plugin, answered):
    import fiftyone as fo
    import fiftyone.operators as foo

    answered.persistent = True
    before = answers_of(answered)
    result = foo.execute_operator(
        "@alc/active-label-correction/save_revised_version",
        ctx={"view": answered.view(), "params": {"name": answered.name, "overwrite": True}},
    )
    error = result.result["error"]
    assert "never replaces" in error and "overwrite" not in error.lower()
    assert fo.dataset_exists(answered.name)
    assert answers_of(fo.load_dataset(answered.name)) == before


def test_2_corrections_are_saved_only_into_the_field_that_was_ranked(answered):
    import fiftyone as fo

    with pytest.raises(ALCError, match="are of 'pseudo'"):
        alc.save_revised_version(answered, f"{answered.name}-v", label_field="ground_truth")
    assert not fo.dataset_exists(f"{answered.name}-v")


# --- 3. a model with nothing to learn from ---------------------------------------------------


@pytest.mark.parametrize(
    "fill, match",
    [
        (lambda shape: np.full(shape, 255), "no labelled pixel"),
        (lambda shape: np.full(shape, 1), "one class only: .* is 'disc'"),
    ],
)
def test_3_ranking_labels_without_two_classes_stops_before_any_query(demo, fill, match):
    add_mask_field(demo, "blank", fill)
    alc.compute_superpixels(demo, label_field="blank", field="sp_blank")
    rounds = list(demo.info["alc"].get("rounds") or [])
    with pytest.raises(ALCError, match=f"nothing to learn from.*{match}"):
        alc.rank_superpixels(demo, "blank", superpixel_field="sp_blank", budget=5)
    demo.reload()
    assert not demo.has_field("alc_queries") or demo.count("alc_queries.detections") == 0
    assert list(demo.info["alc"].get("rounds") or []) == rounds


# --- 4. superpixels must be superpixels -------------------------------------------------------


@pytest.mark.parametrize("superpixel_field", ["ground_truth", "pseudo"])
def test_4_class_labels_are_not_accepted_as_superpixels(demo, superpixel_field):
    gt = snapshot(demo, "ground_truth")
    with pytest.raises(ALCError, match=f"'{superpixel_field}'"):
        alc.rank_superpixels(demo, "ground_truth", superpixel_field=superpixel_field, budget=5)
    with pytest.raises(ALCError, match=f"'{superpixel_field}'"):
        alc.simulate(demo, "pseudo", "ground_truth", rounds=1, superpixel_field=superpixel_field)
    demo.reload()
    assert not demo.has_field("alc_queries") and not demo.has_field("alc_sim_queries")
    assert snapshot(demo, "ground_truth") == gt


# --- 5. leftovers of a kill -9 are found by what is on disk ----------------------------------

_KILL = r"""
import os, signal, sys
import fiftyone as fo
import alc_fiftyone as alc

def progress(done, total, desc):
    if desc in ("save version", "Reading masks") and done == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # as `kill -9` does, mid-write

if sys.argv[1] == "save":
    ds = fo.load_dataset(sys.argv[2])
    alc.save_revised_version(ds, sys.argv[3], label_field="pseudo", progress=progress)
else:
    alc.load_image_masks(sys.argv[2], sys.argv[3], ["a", "b"], name=sys.argv[4],
                         persistent=True, progress=progress)
"""


def _killed(*args) -> list[str]:
    """Run the step of ``args`` in a process killed half-way; drop its leftover dataset as
    FiftyOne does with non-persistent datasets; return the leftover's mask folder."""
    import fiftyone as fo

    proc = subprocess.run(
        [sys.executable, "-c", _KILL, *args],
        env=python_subprocess_env(),
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    leftovers = [n for n in fo.list_datasets() if TMP_MARK in n]
    assert len(leftovers) == 1
    folder = dataset_dir(fo.load_dataset(leftovers[0]))
    assert folder.is_dir()
    fo.delete_dataset(leftovers[0])  # FiftyOne drops it before the next run sees it
    return folder


def test_5_kill_during_save_leftover_files_are_removed_and_reported(answered):
    import fiftyone as fo

    answered.persistent = True  # the subprocess loads it
    name = f"{answered.name}-killed"
    folder = _killed("save", answered.name, name)
    version = alc.save_revised_version(answered, name, label_field="pseudo")
    prov = version.info["alc"]["provenance"]
    assert prov["complete"] is True
    assert prov["removed_incomplete"] and name in prov["removed_incomplete"][0]
    assert not folder.exists()
    assert [d for d in fo.list_datasets() if d.startswith(name)] == [name]
    assert dataset_dir(version).is_dir()  # its own folder, marker gone, is kept
    assert not list(dataset_dir(version).glob(".alc-incomplete"))


def test_5_kill_during_import_leftover_files_are_removed_and_reported(
    tmp_path, tmp_alc_dir, unique_name
):
    import fiftyone as fo

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(4):
        Image.fromarray(np.full((12, 16, 3), 40 * i, np.uint8)).save(images / f"i{i}.png")
        Image.fromarray((np.arange(16)[None].repeat(12, 0) > 7).astype(np.uint8)).save(
            masks / f"i{i}.png"
        )
    try:
        folder = _killed("import", str(images), str(masks), unique_name)
        ds = alc.load_image_masks(images, masks, ["a", "b"], name=unique_name)
        assert ds.info["alc"]["removed_incomplete"]
        assert not folder.exists()
    finally:
        if fo.dataset_exists(unique_name):
            fo.delete_dataset(unique_name)


# --- 6, 7. rounds must be a whole number of at least 1 ---------------------------------------


@pytest.mark.parametrize("rounds", [-1, 0, 1.5, "2", True])
def test_6_7_simulate_refuses_bad_rounds_before_anything_is_written(demo, rounds):
    alc.compute_superpixels(demo, method="slic", n_segments=30)
    with pytest.raises(ValueError, match="rounds must be a whole number of at least 1"):
        alc.simulate(demo, "pseudo", "ground_truth", rounds=rounds)
    demo.reload()
    assert not demo.has_field("alc_sim_queries")
    assert "ground_truth" not in (demo.info["alc"].get("ground_truth") or {})


def test_6_simulate_operator_refuses_negative_rounds(plugin, demo):
    """The form's own validation (min 1) refuses it before the SDK does; nothing is written."""
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionError

    alc.compute_superpixels(demo, method="slic", n_segments=30)
    with pytest.raises(ExecutionError, match="rounds"):
        foo.execute_operator(
            "@alc/active-label-correction/simulate",
            ctx={
                "view": demo.view(),
                "params": {"label_field": "pseudo", "gt_field": "ground_truth", "rounds": -1},
            },
        )
    assert not demo.has_field("alc_sim_queries")


def test_8_simulate_operator_shows_the_sdk_refusal_in_one_line(plugin, demo):
    """The simulate form declares the one-line ``error`` output the other operators have."""
    import fiftyone.operators as foo

    alc.compute_superpixels(demo, method="slic", n_segments=30)
    result = foo.execute_operator(
        "@alc/active-label-correction/simulate",
        ctx={
            "view": demo.view(),
            "params": {"label_field": "ground_truth", "gt_field": "ground_truth", "rounds": 1},
        },
    )
    assert "both 'ground_truth'" in result.result["error"]
    from alc_fiftyone.store.fields import SIM_QUERIES_FIELD

    assert not demo.has_field(SIM_QUERIES_FIELD)


# --- 8. clear errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "slic", "bogus": 3},
        {"method": "felzenszwalb", "bogus": 3},
        {"label_field": "pseudo", "bogus": 3},
        {"label_field": "pseudo", "base": "slic", "bogus": 3},
    ],
)
def test_8_unknown_superpixel_parameters_are_named(demo, kwargs):
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['bogus'\]"):
        alc.compute_superpixels(demo, **kwargs)
    assert not demo.has_field("alc_superpixels")


def test_8_an_empty_label_field_is_not_slic(demo):
    with pytest.raises(ValueError, match="label_field is empty"):
        alc.compute_superpixels(demo, label_field="")
    assert not demo.has_field("alc_superpixels")


@pytest.mark.parametrize("classes", [["Sky", " Sky "], ["Sky", "Road", "Sky  "]])
def test_8_class_names_that_differ_only_by_spaces_are_refused(
    tmp_path, tmp_alc_dir, unique_name, classes
):
    import fiftyone as fo

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "a.png")
    with pytest.raises(ValueError, match="differ only by spaces"):
        alc.load_image_masks(images, masks, classes, name=unique_name)
    assert not fo.dataset_exists(unique_name)


def test_8_a_bad_answer_value_names_the_void_value_too(answered):
    q = alc.next_query(answered, "bo")  # claims it
    before = answers_of(answered)
    with pytest.raises(QueryError, match=r"0\.\.4\) or the ignore value 255 \(void\)"):
        alc.answer(answered, q["id"], 99, user="bo")
    assert answers_of(answered) == before
    assert alc.answer(answered, q["id"], 255, user="bo") >= 0  # void is an answer


def test_8_simulate_with_the_ground_truth_as_labels_says_so(demo):
    alc.compute_superpixels(demo, label_field="ground_truth")
    with pytest.raises(ValueError, match="both 'ground_truth'") as err:
        alc.simulate(demo, "ground_truth", "ground_truth", rounds=1)
    assert "label_field='ground_truth'" not in str(err.value)
    assert not demo.has_field("alc_sim_queries")


def test_8_evaluate_names_a_missing_field(demo):
    with pytest.raises(ALCError, match="no ground-truth field 'nope'"):
        alc.evaluate(demo, "pseudo", "nope")
    with pytest.raises(ALCError, match="no label field 'nope'"):
        alc.evaluate(demo, "nope", "ground_truth")
