"""Parameters that name paths or ids are validated: export folders and file names, SAM
checkpoints, import roots, and the ids the review panel's client sends back."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import alc_fiftyone as alc
from alc_fiftyone.core.sam import SamCheckpointError, find_checkpoint, load_sam
from alc_fiftyone.data.export import ENV_EXPORT_ROOT, export_file_name
from alc_fiftyone.errors import ALCError, OutputError, QueryError, SampleError
from alc_fiftyone.review.queries import get_query

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the plugin's panels/ package, as FiftyOne loads it
    sys.path.insert(0, str(REPO))


@pytest.fixture
def ranked(ranked_demo):
    return ranked_demo(num_samples=4, size=(48, 40), seed=6, n_segments=20, budget=4)


# --- export folders ----------------------------------------------------------------------------


def test_export_root_confines_the_export_folder(ranked, tmp_path, monkeypatch):
    root = tmp_path / "exports"
    root.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "link-out").symlink_to(outside, target_is_directory=True)
    monkeypatch.setenv(ENV_EXPORT_ROOT, str(root))
    for bad in (outside, "../elsewhere", root / ".." / "elsewhere", "link-out", root / "link-out"):
        with pytest.raises(ALCError, match="outside the export root"):
            alc.export_masks(ranked, "pseudo", bad)
    assert not list(outside.iterdir())  # nothing written outside
    summary = alc.export_masks(ranked, "pseudo", "mine/round1")  # relative: inside the root
    assert Path(summary["out_dir"]) == root / "mine" / "round1"
    assert summary["written"] == len(ranked)
    for bad in ("", None, "a\x00b"):
        with pytest.raises(ALCError):
            alc.export_masks(ranked, "pseudo", bad)


def test_export_never_follows_a_link_at_a_file_place(ranked, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    stem = Path(ranked.first().filepath).stem
    (out / f"{stem}.png").symlink_to(victim)
    (out / "classes.txt").symlink_to(victim)
    with pytest.raises(ALCError, match="exists"):
        alc.export_masks(ranked, "pseudo", out)
    alc.export_masks(ranked, "pseudo", out, overwrite=True)
    assert victim.read_text() == "precious"  # the link was replaced, not written through
    assert not (out / f"{stem}.png").is_symlink() and (out / f"{stem}.png").is_file()
    assert not (out / "classes.txt").is_symlink()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    "filepath", ["/data/..", "/data/..png", "C:\\data\\..\\x.png", "/data/a\x00b.png"]
)
def test_sample_file_names_cannot_escape_the_export_folder(filepath):
    with pytest.raises(ALCError, match="cannot name an export file"):
        export_file_name(filepath)


def test_export_file_names_are_plain():
    assert export_file_name("/a/b/2007_000032.jpg") == "2007_000032.png"
    assert export_file_name("/a/b/x.y.jpeg") == "x.y.png"


def test_export_with_a_hostile_file_name_writes_nothing(ranked, tmp_path):
    sample = ranked.first()
    # FiftyOne's setter refuses such a name; a dataset written by other means may hold it
    ranked._sample_collection.update_one(
        {"_id": sample._id}, {"$set": {"filepath": str(Path(sample.filepath).parent / "..jpg")}}
    )
    ranked.reload()
    with pytest.raises(ALCError, match="cannot name an export file"):
        alc.export_masks(ranked, "pseudo", tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())


def test_masks_are_not_written_through_a_link_out_of_the_alc_folder(ranked, tmp_alc_dir, tmp_path):
    from alc_fiftyone.store.files import field_dir, write_mask

    outside = tmp_path / "outside"
    outside.mkdir()
    target = field_dir(ranked, "evil")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutputError, match="outside"):
        write_mask(np.zeros((4, 4), np.uint8), ranked, "evil", ranked.first().id)
    assert not list(outside.iterdir())
    # a link higher up (the dataset's folder): not even a folder is created through it
    target.unlink()
    dataset_folder = target.parent
    for p in sorted(dataset_folder.rglob("*"), reverse=True):
        p.unlink() if p.is_file() or p.is_symlink() else p.rmdir()
    dataset_folder.rmdir()
    dataset_folder.symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutputError, match="outside"):
        write_mask(np.zeros((4, 4), np.uint8), ranked, "pseudo", ranked.first().id)
    assert not list(outside.iterdir())


# --- SAM checkpoints ---------------------------------------------------------------------------


def test_checkpoint_must_be_an_existing_regular_file(tmp_path, monkeypatch):
    monkeypatch.delenv("ALC_SAM_CHECKPOINT", raising=False)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    broken = tmp_path / "broken.pth"
    broken.symlink_to(tmp_path / "nowhere.pth")
    cases = {
        tmp_path / "missing.pth": "does not exist",
        tmp_path: "is a folder",
        empty: "is empty",
        broken: "broken link",
        Path("/dev/null"): "not a regular file",
    }
    for path, problem in cases.items():
        with pytest.raises(SamCheckpointError, match=problem) as info:
            find_checkpoint("vit_b", path)
        assert str(path) in str(info.value)
        monkeypatch.setenv("ALC_SAM_CHECKPOINT", str(path))
        with pytest.raises(SamCheckpointError, match=problem):
            find_checkpoint("vit_b")
        monkeypatch.delenv("ALC_SAM_CHECKPOINT")
    good = tmp_path / "sam_vit_b_01ec64.pth"
    good.write_bytes(b"x")
    assert find_checkpoint("vit_b", good) == good
    link = tmp_path / "link.pth"
    link.symlink_to(good)  # a link to a regular file is fine: checkpoints are read, not written
    assert find_checkpoint("vit_b", link) == link


def test_a_damaged_or_hostile_checkpoint_is_a_clear_error(tmp_path):
    """Garbage, and a pickle that would run code: refused (torch loads weights only), named."""
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(os.urandom(4096))
    hostile = tmp_path / "hostile.pth"
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    hostile.write_bytes(pickle.dumps(Boom()))
    for path in (garbage, hostile):
        with pytest.raises(SamCheckpointError, match="cannot load SAM vit_b checkpoint") as info:
            load_sam("vit_b", path, device="cpu")
        assert str(path) in str(info.value)
    assert not (tmp_path / "pwned").exists()


# --- import roots ------------------------------------------------------------------------------


def _voc(root: Path, stems=("a", "b")) -> Path:
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for stem in stems:
        Image.fromarray(np.full((8, 10, 3), 90, np.uint8)).save(
            root / "JPEGImages" / f"{stem}.jpg"
        )
        mask = np.zeros((8, 10), np.uint8)
        mask[2:5, 3:7] = 1
        Image.fromarray(mask).save(root / "SegmentationClass" / f"{stem}.png")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(stems) + "\n")
    return root


def test_voc_split_entries_cannot_leave_the_root(tmp_path, unique_name, tmp_alc_dir):
    root = _voc(tmp_path / "voc")
    secret = tmp_path / "secret"
    _voc(secret, stems=("s",))
    for entry in ("../../secret/SegmentationClass/s", "/etc/passwd", "..", "sub/a"):
        (root / "ImageSets/Segmentation/evil.txt").write_text(f"a\n{entry}\n")
        with pytest.raises(ValueError, match="not a plain file name"):
            alc.load_voc(root, split="evil", name=unique_name)


def test_voc_links_out_of_the_root_are_refused_unless_allowed(tmp_path, unique_name, tmp_alc_dir):
    import fiftyone as fo

    root = _voc(tmp_path / "voc")
    elsewhere = _voc(tmp_path / "elsewhere", stems=("c",))
    (root / "JPEGImages" / "c.jpg").symlink_to(elsewhere / "JPEGImages" / "c.jpg")
    (root / "SegmentationClass" / "c.png").symlink_to(elsewhere / "SegmentationClass" / "c.png")
    with pytest.raises(SampleError, match="outside the import folder") as info:
        alc.load_voc(root, name=unique_name)
    assert "follow_links=True" in str(info.value)
    assert not fo.dataset_exists(unique_name)
    ds = alc.load_voc(root, name=unique_name, follow_links=True)
    try:
        assert len(ds) == 3
    finally:
        ds.delete()
    # a link inside the root is fine
    (root / "JPEGImages" / "c.jpg").unlink()
    (root / "SegmentationClass" / "c.png").unlink()
    (root / "JPEGImages" / "d.jpg").symlink_to(root / "JPEGImages" / "a.jpg")
    (root / "SegmentationClass" / "d.png").symlink_to(root / "SegmentationClass" / "a.png")
    ds = alc.load_voc(root, name=unique_name)
    try:
        assert len(ds) == 3
    finally:
        ds.delete()


def test_image_masks_links_out_of_their_folders_are_refused(tmp_path, unique_name, tmp_alc_dir):
    images, masks, other = tmp_path / "images", tmp_path / "masks", tmp_path / "other"
    for d in (images, masks, other):
        d.mkdir()
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(images / "a.png")
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(other / "a.png")
    (masks / "a.png").symlink_to(other / "a.png")
    with pytest.raises(SampleError, match="outside the import folder"):
        alc.load_image_masks(images, masks, ["bg", "fg"], name=unique_name)
    ds = alc.load_image_masks(images, masks, ["bg", "fg"], name=unique_name, follow_links=True)
    ds.delete()


# --- review panel: only the dataset's own samples ----------------------------------------------


def test_get_query_refuses_forged_or_foreign_ids(ranked, make_dataset):
    import fiftyone as fo

    q = alc.next_query(ranked, "me")
    sample, det = get_query(ranked, q["id"], sample_id=q["sample_id"])
    assert sample.id == q["sample_id"] and det.id == q["id"]
    other = make_dataset()
    other.add_sample(fo.Sample(filepath="/etc/passwd"))
    foreign = other.first().id
    for query_id, sample_id in [
        ("not-an-id", None),
        (q["id"], "../../etc/passwd"),
        (q["id"], foreign),  # a sample of another dataset
        (q["id"], {"$ne": None}),  # an injection attempt through the client's state
        ("0" * 24, None),  # a well-formed id of no query
    ]:
        with pytest.raises(QueryError):
            get_query(ranked, query_id, sample_id=sample_id)
    with pytest.raises(QueryError):
        alc.claim(ranked, q["id"], "me", sample_id="../x")
    with pytest.raises(QueryError):
        alc.answer(ranked, "forged", "x")


def test_review_panel_serves_only_the_dataset_s_samples(ranked, make_dataset):
    """The browser tab's card (param ``card``, panels/keys.js) names the query on screen: a
    forged one (another dataset's sample, a path, a made-up id) never draws anything but this
    dataset's own queries, and answering or skipping it fails cleanly."""
    import fiftyone as fo
    import pydash
    from fiftyone.operators.executor import ExecutionContext, Executor

    from panels.review import ReviewPanel

    panel = ReviewPanel()
    other = make_dataset()
    other.add_sample(fo.Sample(filepath=str(REPO / "README.md")))
    card: dict = {"tab": "tab-1", "reviewer": "me", "shown": None, "req": 0}
    data: dict = {}

    def call(method, **params):
        card["req"] += 1
        req = {
            "dataset_name": ranked.name,
            "params": {"panel_id": "p1", "panel_state": {}, "card": dict(card), **params},
        }
        executor = Executor()
        ctx = ExecutionContext(request_params=req, executor=executor)
        getattr(panel, method)(ctx)
        for r in executor._requests:
            r = r.to_json()
            if r["operator_uri"] == "patch_panel_data":
                for key, value in r["params"]["data"].items():
                    pydash.set_(data, key, value)
        return ctx

    def shown():
        return (data.get("review") or {}).get("query")

    call("on_load")
    call("refresh", why="start")
    first = shown()
    assert first and first["image"].startswith("data:image/png")
    ids, paths = set(ranked.values("id")), set(ranked.values("filepath"))
    for forged in (
        {"id": "0" * 24, "sample_id": other.first().id},
        {"id": first["id"], "sample_id": "/etc/passwd"},
        {"id": "../../etc/passwd", "sample_id": first["sample_id"]},
    ):
        card["shown"] = forged
        data.clear()
        call("refresh")
        q = shown()
        if q:  # a picture is only ever one of this dataset's own queries
            assert q["sample_id"] in ids and q["image"].startswith("data:image/png")
            sample = ranked[q["sample_id"]]
            assert sample.filepath in paths and q["id"] in {
                d.id for d in sample["alc_queries"].detections
            }
        # answering a forged query (the card sends its id) fails cleanly, the panel keeps working
        card["shown"] = forged
        call("answer", query_id=forged["id"], label=first["label"], asked=first["label"])
        card["shown"] = forged
        call("skip", query_id=forged["id"])
    assert not other.has_field("alc_queries") or not other.count("alc_queries.detections")
    card["shown"] = None
    data.clear()
    call("refresh", why="start")
    assert shown() and shown()["sample_id"] in ids
