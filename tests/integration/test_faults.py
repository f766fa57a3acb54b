"""Faults on real datasets: a full disk, a read-only output folder, corrupt files in the middle
of a dataset. Every step reports them clearly (the sample, the folder, the errno), never
half-writes, and skips or stops by its ``skip_failures`` choice.
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

import alc_fiftyone as alc
from alc_fiftyone.errors import OutputError, SampleError
from alc_fiftyone.store import files as storage
from alc_fiftyone.store.files import read_png_array


@pytest.fixture
def demo(unique_name, tmp_alc_dir):
    ds = alc.make_demo_dataset(name=unique_name, num_samples=6, size=(64, 48), seed=4)
    yield ds
    if not ds.deleted:
        ds.delete()


@pytest.fixture
def ranked(demo):
    alc.compute_superpixels(demo, method="slic", n_segments=30)
    alc.rank_superpixels(demo, "pseudo", budget=8)
    return demo


def _corrupt(path: str) -> None:
    """Overwrite a file with bytes that are no image (a truncated, damaged file)."""
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _mount_tmpfs(path: Path, size: str = "64k", read_only: bool = False) -> bool:
    """Mount a small tmpfs at ``path`` (root in a container that allows it); False if not."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], check=False, capture_output=True
    )
    return res.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], check=False, capture_output=True)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (a real full disk: ENOSPC from the kernel); skipped where ``mount`` is
    not allowed (the monkeypatched tests below cover those machines)."""
    path = tmp_path / f"tiny-{uuid.uuid4().hex[:6]}"
    if not _mount_tmpfs(path):
        pytest.skip("cannot mount a tmpfs here (not root or no CAP_SYS_ADMIN)")
    yield path
    _umount(path)


@pytest.fixture
def read_only_dir(tmp_path):
    """A read-only tmpfs (EROFS from the kernel; chmod does not stop root)."""
    path = tmp_path / f"ro-{uuid.uuid4().hex[:6]}"
    if not _mount_tmpfs(path, read_only=True):
        pytest.skip("cannot mount a tmpfs here (not root or no CAP_SYS_ADMIN)")
    yield path
    _umount(path)


# --- disk full / read-only output folder -----------------------------------------------------


def test_export_to_a_full_disk_names_folder_and_errno(ranked, tiny_disk):
    """A real full disk (a 64 KiB tmpfs): the export stops with ENOSPC naming the folder;
    the files written are complete PNGs, no temporary file is left."""
    (tiny_disk / "filler").write_bytes(b"\0" * 60_000)  # leave room for a file or two
    with pytest.raises(OutputError) as info:
        alc.export_masks(ranked, "pseudo", tiny_disk / "out", format="index")
    msg = str(info.value)
    assert "ENOSPC" in msg and str(tiny_disk / "out") in msg
    names = _files(tiny_disk / "out")
    assert not [n for n in names if n.startswith(".")]  # no temporary file left
    for name in names:  # every file there is whole
        assert read_png_array(tiny_disk / "out" / name).shape == (48, 64)


def test_export_to_a_read_only_folder(ranked, read_only_dir):
    with pytest.raises(OutputError) as info:
        alc.export_masks(ranked, "pseudo", read_only_dir / "sub")
    assert "EROFS" in str(info.value) and str(read_only_dir / "sub") in str(info.value)
    with pytest.raises(OutputError, match="EROFS|not writable"):
        alc.export_masks(ranked, "pseudo", read_only_dir)


def test_masks_on_a_full_disk_leave_samples_on_their_old_masks(demo, tiny_disk, monkeypatch):
    """ALC_FIFTYONE_DIR on a full tmpfs: superpixels stop with an OutputError naming the
    folder (even with skip_failures: a full disk is not one sample's fault); samples done
    before keep complete masks, the others have none, no partial file exists."""
    monkeypatch.setenv("ALC_FIFTYONE_DIR", str(tiny_disk))
    (tiny_disk / "filler").write_bytes(b"\0" * 56_000)
    with pytest.raises(OutputError) as info:
        alc.compute_superpixels(demo, method="slic", n_segments=30, skip_failures=True)
    assert "ENOSPC" in str(info.value) and str(tiny_disk) in str(info.value)
    # with two workers both first masks may be written at once and the first one fail: then
    # no sample is done and the field was never declared
    has = demo.has_sample_field("alc_superpixels")
    done = [p for p in demo.values("alc_superpixels.mask_path") if p] if has else []
    assert len(done) < len(demo)
    for p in done:
        assert read_png_array(p).shape == (48, 64)
    assert not [n for n in _files(tiny_disk) if Path(n).name.startswith(".")]
    pngs = {str(tiny_disk / n) for n in _files(tiny_disk) if n.endswith(".png")}
    assert pngs == set(done)  # no mask on disk that no sample refers to


def _enospc_on_write(monkeypatch, after: int = 0):
    """Fault injected at the os level: ``os.write`` raises ENOSPC after ``after`` calls (for
    machines where no tmpfs can be mounted; the file objects of the library write through
    it)."""
    real_open = storage.open_new_file
    calls = {"n": 0}

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            calls["n"] += 1
            if calls["n"] > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(storage, "open_new_file", lambda path: Full(real_open(path)))


def test_disk_full_injected_export_and_save_version(ranked, tmp_path, monkeypatch):
    """ENOSPC injected at the lowest write call: export names folder and errno, leaves the
    complete files only; save_revised_version deletes its partial clone and its files."""
    import fiftyone as fo

    out = tmp_path / "export"
    _enospc_on_write(monkeypatch, after=2)
    with pytest.raises(OutputError, match="ENOSPC") as info:
        alc.export_masks(ranked, "pseudo", out)
    assert str(out) in str(info.value)
    assert _files(out) == sorted(f"{Path(p).stem}.png" for p in ranked.values("filepath")[:2])
    name = f"{ranked.name}-v"
    with pytest.raises(OutputError, match="ENOSPC"):
        alc.save_revised_version(ranked, name, label_field="pseudo")
    assert not fo.dataset_exists(name)


def test_write_mask_error_is_named_and_atomic(demo, tmp_alc_dir, monkeypatch):
    sample = demo.first()
    _enospc_on_write(monkeypatch)
    with pytest.raises(OutputError) as info:
        storage.write_mask(np.zeros((4, 4), np.uint8), demo, "f", sample.id)
    msg = str(info.value)
    assert sample.id in msg and "ENOSPC" in msg and "No space left" in msg
    assert not [p for p in tmp_alc_dir.rglob("*") if p.is_file() and "/f/" in str(p)]


# --- corrupt files in the middle of a dataset --------------------------------------------------


def test_corrupt_image_superpixels_skip_or_stop(demo):
    bad = demo.skip(2).first()
    _corrupt(bad.filepath)
    with pytest.raises(SampleError) as info:
        alc.compute_superpixels(demo, method="slic", n_segments=30)
    assert bad.id in str(info.value) and bad.filepath in str(info.value)
    summary = alc.compute_superpixels(demo, method="slic", n_segments=30, skip_failures=True)
    assert [f["id"] for f in summary["failed"]] == [bad.id]
    assert summary["processed"] == len(demo) - 3  # 2 done before the stop, the bad one left
    assert "cannot read image" in summary["failed"][0]["error"]


def test_corrupt_files_ranking_skip_or_stop(ranked):
    """A corrupt image (features need it) and a corrupt label mask, in the middle: ranking
    stops naming the sample and writes nothing; with skip_failures both are listed and left
    out, and the queries come from the other samples."""
    before = ranked.values("alc_queries.detections.id")
    rounds = len(ranked.info["alc"]["rounds"])
    bad_image = ranked.skip(1).first()
    bad_mask = ranked.skip(4).first()
    _corrupt(bad_image.filepath)
    _corrupt(bad_mask.pseudo.mask_path)
    with pytest.raises(SampleError) as info:
        alc.rank_superpixels(ranked, "pseudo", budget=8)
    assert bad_image.id in str(info.value) or bad_mask.id in str(info.value)
    ranked.reload()
    assert ranked.values("alc_queries.detections.id") == before  # nothing written
    assert len(ranked.info["alc"]["rounds"]) == rounds
    summary = alc.rank_superpixels(ranked, "pseudo", budget=8, skip_failures=True)
    assert {f["id"] for f in summary["failed"]} == {bad_image.id, bad_mask.id}
    assert summary["num_queries"] == 8
    ranked.reload()
    assert ranked.info["alc"]["rounds"][-1]["failed"] == summary["failed"]
    for sid in (bad_image.id, bad_mask.id):
        assert not ranked[sid].alc_queries or not any(
            d.status == "pending" for d in ranked[sid].alc_queries.detections
        )


def test_corrupt_image_ranking_with_a_field_model_fails_in_scoring(ranked):
    """A model that does not read images: a corrupt superpixel map is found while scoring."""
    bad = ranked.skip(3).first()
    _corrupt(bad.alc_superpixels.mask_path)

    from alc_fiftyone.store.fields import class_table

    c = class_table(ranked, "pseudo")[2]
    model = alc.CallableModel(lambda sample, image: np.full((c, *image.shape[:2]), 1.0 / c))
    with pytest.raises(SampleError, match=bad.id):
        alc.rank_superpixels(ranked, "pseudo", budget=5, model=model)
    summary = alc.rank_superpixels(ranked, "pseudo", budget=5, model=model, skip_failures=True)
    assert [f["id"] for f in summary["failed"]] == [bad.id]


def test_corrupt_mask_export_and_save_version(ranked, tmp_path):
    import fiftyone as fo

    bad = ranked.skip(2).first()
    _corrupt(bad.pseudo.mask_path)
    with pytest.raises(SampleError, match=bad.id):
        alc.export_masks(ranked, "pseudo", tmp_path / "a")
    summary = alc.export_masks(ranked, "pseudo", tmp_path / "b", skip_failures=True)
    assert [f["id"] for f in summary["failed"]] == [bad.id]
    assert summary["written"] == len(ranked) - 1
    assert not (tmp_path / "b" / f"{Path(bad.filepath).stem}.png").exists()

    name = f"{ranked.name}-v"
    with pytest.raises(SampleError, match="cannot read mask"):
        alc.save_revised_version(ranked, name, label_field="pseudo")
    assert not fo.dataset_exists(name)  # the partial clone is gone
    version = alc.save_revised_version(ranked, name, label_field="pseudo", skip_failures=True)
    try:
        failed = version.info["alc"]["provenance"]["failed"]
        assert len(failed) == 1 and "cannot read mask" in failed[0]["error"]
        assert failed[0]["filepath"] == bad.pseudo.mask_path  # the file at fault
    finally:
        version.delete()


def test_corrupt_image_pseudo_instances_and_noise_steps(demo):
    """The other per-sample steps built on compute_mask_field report the same way."""
    bad = demo.skip(1).first()
    _corrupt(bad.pseudo.mask_path)
    with pytest.raises(SampleError, match=bad.id):
        alc.corrupt_labels(demo, "pseudo", "noisy", rate=0.1)
    summary = alc.corrupt_labels(demo, "pseudo", "noisy", rate=0.1, skip_failures=True)
    assert [f["id"] for f in summary["failed"]] == [bad.id]
