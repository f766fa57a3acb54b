"""Importers and the demo dataset, on real FiftyOne datasets (tiny generated folders and a few
pairs of the real data in ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest
from PIL import Image

from alc_fiftyone.data import importers as ds_mod
from alc_fiftyone.data.demo import make_demo_dataset
from alc_fiftyone.data.importers import VOC_CLASSES, load_image_masks, load_voc
from alc_fiftyone.errors import SampleError
from alc_fiftyone.store.fields import class_names
from alc_fiftyone.store.fields import get_ignore_index as ignore_index
from alc_fiftyone.store.files import alc_dir
from alc_fiftyone.store.info import alc_info as get_alc_info

CAMVID = [
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
    "Pedestrian", "Bicyclist",
]  # fmt: skip


@pytest.fixture
def names(unique_name):
    """Dataset names for one test; whatever exists under them is deleted afterwards."""
    made: list[str] = []

    def factory(suffix: str = "") -> str:
        name = f"{unique_name}{suffix}-{len(made)}"
        made.append(name)
        return name

    yield factory
    for name in made:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _masks(dataset, field: str) -> list[np.ndarray]:
    """The stored masks as FiftyOne reads them (what the App and evaluation see)."""
    return [s[field].get_mask() for s in dataset.sort_by("filepath")]


def _palette_png(array: np.ndarray, path: Path) -> None:
    im = Image.fromarray(array.astype(np.uint8), mode="P")
    palette = np.random.default_rng(0).integers(0, 256, size=768).tolist()
    im.putpalette(palette)
    im.save(path)


# ------------------------------------------------------------------------------------------
# VOC
# ------------------------------------------------------------------------------------------

VOC_STEMS = ["2007_000001", "2007_000002", "2008_000003", "2008_000004", "2009_000005"]
VOC_SPLITS = {"train": VOC_STEMS[:3], "val": VOC_STEMS[3:]}


def _make_voc(
    root: Path,
    stems=VOC_STEMS,
    values=(0, 1, 8, 15, 20),
    size=(40, 30),
    objects=True,
    splits=VOC_SPLITS,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A tiny VOC folder: JPEG images, palette class masks with 255 borders, instance masks."""
    w, h = size
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    truth = {}
    for i, stem in enumerate(stems):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            root / "JPEGImages" / f"{stem}.jpg"
        )
        cls = np.zeros((h, w), np.uint8)
        inst = np.zeros((h, w), np.uint8)
        a, b = values[1 + i % (len(values) - 1)], values[1 + (i + 1) % (len(values) - 1)]
        cls[5:15, 5:20], inst[5:15, 5:20] = a, 1
        cls[18:27, 22:36], inst[18:27, 22:36] = b, 2
        for m in (cls, inst):  # void borders, as VOC draws them
            m[5, 5:20] = m[14, 5:20] = m[18, 22:36] = 255
        _palette_png(cls, root / "SegmentationClass" / f"{stem}.png")
        if objects:
            _palette_png(inst, root / "SegmentationObject" / f"{stem}.png")
        truth[stem] = (cls, inst)
    if not objects:
        (root / "SegmentationObject").rmdir()
    for split, members in splits.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(
            "".join(f"{s}\n" for s in members)
        )
    return truth


def test_load_voc_splits_masks_targets_info(tmp_path, tmp_alc_dir, names):
    root = tmp_path / "VOC"
    truth = _make_voc(root)
    calls = []
    train = load_voc(root, split="train", name=names(), progress=lambda *a: calls.append(a))
    val = load_voc(root, split="val", name=names())
    every = load_voc(root, name=names())
    assert (len(train), len(val), len(every)) == (3, 2, 5)
    assert calls[0] == (0, 3, "Reading VOC masks") and (3, 3, "Reading VOC masks") in calls

    for dataset, stems in ((train, VOC_SPLITS["train"]), (every, VOC_STEMS)):
        got = sorted(Path(s.filepath).stem for s in dataset)
        assert got == sorted(stems)
        for sample in dataset:
            stem = Path(sample.filepath).stem
            # images are referenced in place
            assert sample.filepath == str(root / "JPEGImages" / f"{stem}.jpg")
            cls, inst = truth[stem]
            mask = sample["ground_truth"].get_mask()
            assert mask.dtype == np.uint8 and mask.ndim == 2
            np.testing.assert_array_equal(mask, cls)  # indices, not palette colours
            assert (mask == 255).any()
            inst_mask = sample["ground_truth_instances"].get_mask()
            np.testing.assert_array_equal(inst_mask, np.where(inst == 255, 0, inst))
            # written copies under ALC_FIFTYONE_DIR, never the source palette PNG
            assert Path(sample["ground_truth"].mask_path).is_relative_to(tmp_alc_dir)
            assert sample.metadata.width == 40 and sample.metadata.height == 30

    targets = train.mask_targets["ground_truth"]
    assert targets[255] == "void" and targets[0] == "background" and targets[15] == "person"
    assert len(targets) == 22 and not train.default_mask_targets
    info = train.info["alc"]
    assert info["ignore_index"] == 255 and info["label_field"] == "ground_truth"
    assert info["classes"] == list(VOC_CLASSES)
    assert info["source"] == {"kind": "voc", "root": str(root), "split": "train"}
    assert every.name != train.name and every.info["alc"]["source"]["split"] is None


def test_load_voc_reloaded_and_helpers(tmp_path, tmp_alc_dir, names):
    root = tmp_path / "VOC"
    _make_voc(root, objects=False)
    name = names()
    load_voc(root, split="val", name=name, persistent=True, label_field="gt")
    dataset = fo.load_dataset(name)  # from the database, not the cached object
    dataset.reload()
    assert dataset.persistent and len(dataset) == 2
    assert "ground_truth_instances" not in dataset.get_field_schema()
    assert ignore_index(dataset) == 255
    assert get_alc_info(dataset)["label_field"] == "gt"
    cn = class_names(dataset)
    assert cn[20] == "tvmonitor" and cn[255] == "void" and all(isinstance(k, int) for k in cn)
    assert class_names(dataset, "gt") == cn
    # fallback to info["alc"]["classes"] when the field has no mask targets
    dataset.mask_targets = {}
    assert class_names(dataset, "gt") == {**dict(enumerate(VOC_CLASSES)), 255: "void"}


def test_load_voc_names_beyond_voc_and_override(tmp_path, tmp_alc_dir, names):
    root = tmp_path / "VOC"
    _make_voc(root, values=(0, 3, 30))
    dataset = load_voc(root, name=names())
    assert dataset.info["alc"]["classes"] == [f"class_{i}" for i in range(31)]
    assert dataset.mask_targets["ground_truth"][30] == "class_30"

    mine = [f"c{i}" for i in range(31)]
    dataset = load_voc(root, name=names(), classes=mine)
    assert dataset.info["alc"]["classes"] == mine

    name = names()
    with pytest.raises(SampleError, match=r"values \[30\] outside the 4 classes") as err:
        load_voc(root, name=name, classes=["a", "b", "c", "d"])
    assert "2007_000002" in str(err.value) or "2007_000001" in str(err.value)
    assert not fo.dataset_exists(name)


def test_load_voc_existing_name(tmp_path, tmp_alc_dir, names):
    root = tmp_path / "VOC"
    _make_voc(root)
    name = names()
    first = load_voc(root, split="train", name=name)
    with pytest.raises(ValueError, match=name):
        load_voc(root, split="val", name=name)
    assert len(fo.load_dataset(name)) == 3
    second = load_voc(root, split="val", name=name, overwrite=True)
    assert first.deleted and len(second) == 2 and fo.load_dataset(name).info["alc"]


@pytest.mark.parametrize("problem", ["missing_image", "size", "missing_mask", "bad_jpeg"])
def test_load_voc_bad_input_leaves_nothing(tmp_path, tmp_alc_dir, names, problem):
    root = tmp_path / "VOC"
    _make_voc(root)
    stem = VOC_STEMS[2]  # the last of "train": earlier samples were already written
    if problem == "missing_image":
        (root / "JPEGImages" / f"{stem}.jpg").unlink()
        expect = "no image"
    elif problem == "size":
        Image.fromarray(np.zeros((31, 40, 3), np.uint8)).save(root / "JPEGImages" / f"{stem}.jpg")
        expect = "mask is 40x30 but the image is 40x31"
    elif problem == "missing_mask":
        (root / "SegmentationClass" / f"{stem}.png").unlink()
        expect = "has no class mask"
    else:
        (root / "JPEGImages" / f"{stem}.jpg").write_bytes(b"not a jpeg")
        expect = "cannot read image"
    name = names()
    with pytest.raises(SampleError, match=expect) as err:
        load_voc(root, split="train", name=name)
    assert stem in str(err.value)
    assert not fo.dataset_exists(name)
    assert _files(tmp_alc_dir) == []


def test_load_voc_not_a_voc_folder(tmp_path, names):
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        load_voc(tmp_path, name=names())
    _make_voc(tmp_path / "VOC")
    with pytest.raises(FileNotFoundError, match="nosuch"):
        load_voc(tmp_path / "VOC", split="nosuch", name=names())


# ------------------------------------------------------------------------------------------
# images + masks: real data
# ------------------------------------------------------------------------------------------


def _subset(src: Path, dst: Path, stems: list[str] | None = None, n: int = 5) -> Path:
    """Symlink a few image/mask pairs of a real data set into ``dst`` (links out of the import
    folder: the loaders need ``follow_links=True`` for them)."""
    (dst / "images").mkdir(parents=True)
    (dst / "masks").mkdir()
    images = sorted((src / "images").iterdir())
    chosen = [p for p in images if p.stem in stems] if stems else images[:n]
    for image in chosen:
        mask = next((src / "masks").glob(f"{image.stem}.*"))
        (dst / "images" / image.name).symlink_to(image)
        (dst / "masks" / mask.name).symlink_to(mask)
    return dst


def test_camvid_ignore_remapped(shared_data, tmp_path, tmp_alc_dir, names):
    src = shared_data / "camvid-val"
    # pick pairs whose masks hold the Unlabelled value 11
    stems = []
    for mask in sorted((src / "masks").iterdir()):
        if (np.array(Image.open(mask)) == 11).any():
            stems.append(mask.stem)
        if len(stems) == 4:
            break
    assert stems, "expected some CamVid masks with Unlabelled pixels"
    root = _subset(src, tmp_path / "camvid", stems)
    dataset = load_image_masks(
        root / "images",
        root / "masks",
        CAMVID,
        ignore_index=11,
        name=names(),
        follow_links=True,
    )
    assert len(dataset) == len(stems)
    for sample in dataset:
        stem = Path(sample.filepath).stem
        assert sample.filepath == str(root / "images" / f"{stem}.png")
        source = np.array(Image.open(src / "masks" / f"{stem}.png"))
        stored = sample["ground_truth"].get_mask()
        assert stored.shape == (360, 480)
        np.testing.assert_array_equal(stored, np.where(source == 11, 255, source))
        assert (stored == 255).any() and not (stored == 11).any()
    targets = dataset.mask_targets["ground_truth"]
    assert targets == {**dict(enumerate(CAMVID)), 255: "void"}
    info = dataset.info["alc"]
    assert info["ignore_index"] == 255 and info["classes"] == CAMVID
    assert info["source"]["kind"] == "image_masks" and info["source"]["ignore_value"] == 11
    assert dataset.name.startswith("alc-test-")


def test_camvid_default_name(shared_data, tmp_path, tmp_alc_dir, names):
    root = _subset(shared_data / "camvid-val", tmp_path / "camvid-mini", n=2)
    name = "camvid-mini"
    if fo.dataset_exists(name):
        pytest.skip("a dataset named camvid-mini exists in this database")
    try:
        dataset = load_image_masks(
            root / "images", root / "masks", CAMVID, ignore_index=11, follow_links=True
        )
        assert dataset.name == name and len(dataset) == 2
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_weizmann_threshold(shared_data, tmp_path, tmp_alc_dir, names):
    src = shared_data / "weizmann-horse"
    root = _subset(src, tmp_path / "horses", n=5)
    dataset = load_image_masks(
        root / "images",
        root / "masks",
        ["background", "horse"],
        threshold=128,
        name=names(),
        follow_links=True,
    )
    assert len(dataset) == 5
    sizes = set()
    for sample in dataset:
        stem = Path(sample.filepath).stem
        with Image.open(sample.filepath) as im:
            assert im.mode == "L"  # gray JPEG images are accepted as they are
            sizes.add(im.size)
        assert (sample.metadata.width, sample.metadata.height) == im.size
        source = np.array(Image.open(src / "masks" / f"{stem}.jpg"))
        stored = sample["ground_truth"].get_mask()
        assert stored.shape == source.shape[:2] == im.size[::-1]
        assert set(np.unique(stored)) == {0, 1}
        # JPEG noise exists in the source and is gone in the stored mask
        assert len(np.unique(source)) > 2
        np.testing.assert_array_equal(stored, (source >= 128).astype(np.uint8))
    assert len(sizes) > 1, "the first horses differ in size"
    assert dataset.mask_targets["ground_truth"] == {0: "background", 1: "horse"}
    assert dataset.info["alc"]["ignore_index"] is None and ignore_index(dataset) is None


def test_weizmann_without_threshold_names_bad_values(shared_data, tmp_path, tmp_alc_dir, names):
    root = _subset(shared_data / "weizmann-horse", tmp_path / "horses", n=3)
    name = names()
    with pytest.raises(SampleError, match=r"horse001.*mask holds values .*outside the declared"):
        load_image_masks(
            root / "images", root / "masks", ["background", "horse"], name=name, follow_links=True
        )
    assert not fo.dataset_exists(name)
    assert _files(tmp_alc_dir) == []


def test_isbi_value_dict(shared_data, tmp_path, tmp_alc_dir, names):
    src = shared_data / "isbi2012-em"
    root = _subset(src, tmp_path / "isbi", n=3)
    dataset = load_image_masks(
        root / "images",
        root / "masks",
        {255: "cell", 0: "membrane"},
        name=names(),
        follow_links=True,
    )
    assert len(dataset) == 3
    # natural order of numeric stems
    assert [Path(s.filepath).stem for s in dataset] == ["0", "1", "10"]
    for sample in dataset:
        source = np.array(Image.open(src / "masks" / Path(sample.filepath).name))
        stored = sample["ground_truth"].get_mask()
        np.testing.assert_array_equal(stored, (source == 255).astype(np.uint8))
        assert stored.shape == (512, 512)
    assert dataset.mask_targets["ground_truth"] == {0: "membrane", 1: "cell"}
    info = dataset.info["alc"]
    assert info["classes"] == ["membrane", "cell"] and info["source"]["class_values"] == [0, 255]
    assert class_names(dataset) == {0: "membrane", 1: "cell"}


# ------------------------------------------------------------------------------------------
# images + masks: generated bad (and odd but fine) input
# ------------------------------------------------------------------------------------------


def _pairs(root: Path, n: int = 3, size=(24, 16), suffix: str = "") -> Path:
    """``n`` RGB PNG images and L masks (values 0..2) in root/images and root/masks."""
    w, h = size
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            root / "images" / f"img{i}.png"
        )
        mask = (np.arange(w)[None, :] * 3 // w + np.zeros((h, 1), int)).astype(np.uint8)
        Image.fromarray(mask).save(root / "masks" / f"img{i}{suffix}.png")
    return root


CLASSES3 = ["a", "b", "c"]


def _expect_failure(root, names, tmp_alc_dir, match, stem="img1", **kwargs):
    name = names()
    before = _files(tmp_alc_dir)
    with pytest.raises(SampleError, match=match) as err:
        load_image_masks(root / "images", root / "masks", CLASSES3, name=name, **kwargs)
    assert stem in str(err.value)
    assert not fo.dataset_exists(name)
    assert _files(tmp_alc_dir) == before
    return err.value


def test_image_masks_basic_and_suffix(tmp_path, tmp_alc_dir, names):
    root = _pairs(tmp_path / "d", suffix="_mask")
    dataset = load_image_masks(
        root / "images", root / "masks", CLASSES3, mask_suffix="_mask", name=names()
    )
    assert len(dataset) == 3
    for mask in _masks(dataset, "ground_truth"):
        assert set(np.unique(mask)) == {0, 1, 2}
    assert dataset.mask_targets["ground_truth"] == {0: "a", 1: "b", 2: "c"}
    # images and masks in one folder
    both = tmp_path / "both"
    both.mkdir()
    for p in list((root / "images").iterdir()) + list((root / "masks").iterdir()):
        (both / p.name).symlink_to(p)
    dataset = load_image_masks(
        both, both, CLASSES3, mask_suffix="_mask", name=names(), follow_links=True
    )
    assert len(dataset) == 3 and all("_mask" not in Path(s.filepath).name for s in dataset)


def test_image_masks_size_mismatch(tmp_path, tmp_alc_dir, names):
    root = _pairs(tmp_path / "d")
    Image.fromarray(np.zeros((17, 24), np.uint8)).save(root / "masks" / "img1.png")
    _expect_failure(root, names, tmp_alc_dir, "mask is 24x17 but the image is 24x16")


def test_image_masks_unknown_values(tmp_path, tmp_alc_dir, names):
    root = _pairs(tmp_path / "d")
    mask = np.zeros((16, 24), np.uint8)
    mask[0, :3] = [7, 9, 9]
    Image.fromarray(mask).save(root / "masks" / "img1.png")
    err = _expect_failure(root, names, tmp_alc_dir, r"values 7, 9 \(3 pixels\) outside")
    assert err.filepath.endswith("img1.png") and "masks" in err.filepath
    # the same values are fine once declared as ignore... only one ignore value exists
    mask[0, :3] = 7
    Image.fromarray(mask).save(root / "masks" / "img1.png")
    dataset = load_image_masks(
        root / "images", root / "masks", CLASSES3, ignore_index=7, name=names()
    )
    stored = dataset.match(fo.ViewField("filepath").ends_with("img1.png")).first()
    assert (stored["ground_truth"].get_mask()[0, :3] == 255).all()
    assert dataset.mask_targets["ground_truth"][255] == "void"


def test_image_masks_rgb_mask_refused(tmp_path, tmp_alc_dir, names):
    root = _pairs(tmp_path / "d")
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[..., 0] = 1
    Image.fromarray(rgb).save(root / "masks" / "img1.png")
    _expect_failure(root, names, tmp_alc_dir, "colour")


def test_image_masks_rgba_mask_refused(tmp_path, tmp_alc_dir, names):
    root = _pairs(tmp_path / "d")
    Image.fromarray(np.zeros((16, 24, 4), np.uint8)).save(root / "masks" / "img1.png")
    _expect_failure(root, names, tmp_alc_dir, "RGBA")


def test_image_masks_gray_rgb_mask_accepted(tmp_path, tmp_alc_dir, names):
    root = _pairs(tmp_path / "d")
    gray = np.array(Image.open(root / "masks" / "img1.png"))
    Image.fromarray(np.repeat(gray[..., None], 3, axis=2)).save(root / "masks" / "img1.png")
    dataset = load_image_masks(root / "images", root / "masks", CLASSES3, name=names())
    np.testing.assert_array_equal(_masks(dataset, "ground_truth")[1], gray)


def test_image_masks_palette_and_16bit(tmp_path, tmp_alc_dir, names):
    root = _pairs(tmp_path / "d")
    gray = np.array(Image.open(root / "masks" / "img0.png"))
    _palette_png(gray, root / "masks" / "img0.png")  # palette: indices are the classes
    Image.fromarray(gray.astype(np.uint16) * 1000).save(root / "masks" / "img1.png")  # 16-bit
    classes = {0: "a", 1000: "b", 2000: "c"}
    with pytest.raises(SampleError, match=r"img0.*values 1, 2 .*outside the declared"):
        load_image_masks(root / "images", root / "masks", classes, name=names())
    # 16-bit values that fit the classes are fine, and stored as 8-bit indices
    Image.fromarray(gray.astype(np.uint16) * 1000).save(root / "masks" / "img0.png")
    Image.fromarray(gray.astype(np.uint16) * 1000).save(root / "masks" / "img2.png")
    dataset = load_image_masks(root / "images", root / "masks", classes, name=names())
    for mask in _masks(dataset, "ground_truth"):
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, gray)
    # palette masks give their indices (not the palette colours)
    for i in range(3):
        _palette_png(gray, root / "masks" / f"img{i}.png")
    dataset = load_image_masks(root / "images", root / "masks", CLASSES3, name=names())
    for mask in _masks(dataset, "ground_truth"):
        np.testing.assert_array_equal(mask, gray)
    # a 16-bit value outside the classes is named
    big = gray.astype(np.uint16)
    big[3, 3] = 40000
    Image.fromarray(big).save(root / "masks" / "img1.png")
    _expect_failure(root, names, tmp_alc_dir, "values 40000")


def test_image_masks_gray_and_rgba_images_accepted(tmp_path, tmp_alc_dir, names):
    root = _pairs(tmp_path / "d")
    Image.fromarray(np.full((16, 24), 90, np.uint8)).save(root / "images" / "img0.png")
    Image.fromarray(np.full((16, 24, 4), 90, np.uint8)).save(root / "images" / "img1.png")
    (root / "images" / "img2.png").unlink()
    Image.fromarray(np.full((16, 24, 3), 90, np.uint8)).save(root / "images" / "img2.jpg")
    dataset = load_image_masks(root / "images", root / "masks", CLASSES3, name=names())
    channels = {Path(s.filepath).name: s.metadata.num_channels for s in dataset}
    assert channels == {"img0.png": 1, "img1.png": 4, "img2.jpg": 3}
    assert all(m.shape == (16, 24) for m in _masks(dataset, "ground_truth"))


def test_image_masks_missing_mask(tmp_path, tmp_alc_dir, names):
    root = _pairs(tmp_path / "d")
    (root / "masks" / "img1.png").unlink()
    err = _expect_failure(root, names, tmp_alc_dir, "1 image\\(s\\) have no mask")
    assert "require_masks=False" in str(err)
    dataset = load_image_masks(
        root / "images", root / "masks", CLASSES3, name=names(), require_masks=False
    )
    assert len(dataset) == 3 and len(dataset.exists("ground_truth")) == 2
    unlabeled = dataset.exists("ground_truth", False).first()
    assert unlabeled.filepath.endswith("img1.png")


def test_image_masks_missing_image(tmp_path, tmp_alc_dir, names):
    root = _pairs(tmp_path / "d")
    (root / "images" / "img1.png").unlink()
    _expect_failure(root, names, tmp_alc_dir, "1 mask\\(s\\) have no image")
    _expect_failure(root, names, tmp_alc_dir, "have no image", require_masks=False)


def test_image_masks_bad_arguments(tmp_path, tmp_alc_dir, names):
    root = _pairs(tmp_path / "d")
    load = ds_mod.load_image_masks
    with pytest.raises(ValueError, match="also a class"):
        load(root / "images", root / "masks", CLASSES3, ignore_index=1, name=names())
    with pytest.raises(FileNotFoundError, match="nosuch"):
        load(root / "nosuch", root / "masks", CLASSES3, name=names())
    with pytest.raises(TypeError):
        load(root / "images", root / "masks", "abc", name=names())
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load(empty / "images", empty / "masks", CLASSES3, name=names())
    assert _files(tmp_alc_dir) == []


# ------------------------------------------------------------------------------------------
# demo dataset
# ------------------------------------------------------------------------------------------


def test_demo_dataset(tmp_alc_dir, names):
    a = make_demo_dataset(name=names(), seed=3)
    assert len(a) == 24
    b = make_demo_dataset(name=names(), seed=3)
    c = make_demo_dataset(name=names(), seed=4, num_samples=4)

    gts_a, gts_b = _masks(a, "ground_truth"), _masks(b, "ground_truth")
    for x, y in zip(gts_a, gts_b, strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(_masks(a, "pseudo"), _masks(b, "pseudo"), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(_masks(c, "ground_truth")[0], gts_a[0])
    img_a = [np.array(Image.open(s.filepath)) for s in a.sort_by("filepath")]
    img_b = [np.array(Image.open(s.filepath)) for s in b.sort_by("filepath")]
    assert all(np.array_equal(x, y) for x, y in zip(img_a, img_b, strict=True))

    sample = a.first()
    assert Path(sample.filepath).is_relative_to(tmp_alc_dir)
    assert img_a[0].shape == (120, 160, 3) and img_a[0].std() > 10
    wrong = total = 0
    seen: set[int] = set()
    for gt, pseudo in zip(gts_a, _masks(a, "pseudo"), strict=True):
        assert gt.shape == (120, 160) and pseudo.shape == gt.shape
        seen.update(np.unique(gt).tolist())
        valid = gt != 255
        assert 0 < (~valid).mean() < 0.1  # a thin void border
        wrong += int((pseudo[valid] != gt[valid]).sum())
        total += int(valid.sum())
    assert seen <= {0, 1, 2, 3, 4, 255} and {0, 255} < seen and len(seen) >= 5
    assert abs(wrong / total - 0.25) < 0.05, f"noise rate {wrong / total:.3f}"

    names5 = ["background", "disc", "square", "triangle", "ring"]
    expected = {**dict(enumerate(names5)), 255: "void"}
    assert a.mask_targets == {"ground_truth": expected, "pseudo": expected}
    info = a.info["alc"]
    assert info["label_field"] == "pseudo" and info["gt_field"] == "ground_truth"
    assert info["classes"] == names5 and info["ignore_index"] == 255
    assert class_names(a) == expected


def test_demo_dataset_options_and_name_conflict(tmp_alc_dir, names):
    name = names()
    d = make_demo_dataset(
        name=name,
        num_samples=3,
        size=(64, 48),
        num_classes=9,
        noise_rate=0.0,
        seed=1,
        label_field="gt",
        pseudo_field="labels",
    )
    assert d.first().metadata.width == 64
    for gt, lab in zip(_masks(d, "gt"), _masks(d, "labels"), strict=True):
        assert gt.shape == (48, 64)
        valid = gt != 255
        np.testing.assert_array_equal(gt[valid], lab[valid])
    assert d.mask_targets["gt"][8] == "hexagon"
    with pytest.raises(ValueError, match="already exists"):
        make_demo_dataset(name=name, num_samples=2)
    files_before = len(_files(alc_dir()))
    d2 = make_demo_dataset(name=name, num_samples=2, overwrite=True)
    assert len(d2) == 2 and len(_files(alc_dir())) == files_before + 2 * 3
