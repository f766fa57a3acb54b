"""Import segmentation data into FiftyOne datasets, and generate a demo dataset.

Three ways to get a dataset whose label masks alc-fiftyone can review:

- :func:`load_voc`: a PASCAL VOC-style folder (``JPEGImages``, ``SegmentationClass`` palette
  PNGs, optional ``SegmentationObject`` and ``ImageSets/Segmentation/<split>.txt``);
- :func:`load_image_masks`: any folder of images and a folder of masks paired by file stem;
- :func:`alc_fiftyone.data.demo.make_demo_dataset`: generated textured shapes (its own module).

Images are referenced in place. Label masks are validated and written as index PNGs under
``ALC_FIFTYONE_DIR`` (see :mod:`alc_fiftyone.store.files`); the source masks are never modified
(and FiftyOne reads palette PNGs as colours, so they could not be used as they are). Every
loader validates all samples before adding any: on an error nothing is left behind, neither the
dataset nor a mask file. The new dataset is built under a temporary name and takes its
real name only once complete: with ``overwrite=True`` the old dataset of that name is deleted
only then, so a failed or interrupted import leaves it as it was (the files it referenced are
left alone, since clones may point at them; see :mod:`alc_fiftyone.store.datasets`).

Class names are stored in ``dataset.mask_targets[<field>]`` (with the ignore value as
``"void"``) and, with the ignore value and the source, in ``dataset.info["alc"]``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from ..errors import SampleError
from ..progress import ProgressCallback, track
from ..store import files
from ..store.datasets import discard, new_dataset, publish
from ..store.fields import check_class_names

__all__ = ["IGNORE_INDEX", "IGNORE_NAME", "VOC_CLASSES", "load_image_masks", "load_voc"]

VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

#: The value stored masks use for "ignore" (VOC's void), whatever the source used.
IGNORE_INDEX = 255
IGNORE_NAME = "void"

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".gif")

_MIME = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
}
_CHANNELS = {
    "1": 1,
    "L": 1,
    "P": 3,
    "I": 1,
    "I;16": 1,
    "I;16B": 1,
    "I;16L": 1,
    "F": 1,
    "LA": 2,
    "RGB": 3,
    "RGBA": 4,
    "CMYK": 4,
    "YCbCr": 3,
}
_MAX_LISTED = 5


# --------------------------------------------------------------------------------------------
# shared machinery
# --------------------------------------------------------------------------------------------


def _natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _absolute(path: str | os.PathLike) -> Path:
    """Absolute and normalised, but symbolic links kept: images are referenced where the user
    put them."""
    return Path(os.path.abspath(os.path.expanduser(path)))


def _check_inside(path: Path, root: Path, key: str, follow_links: bool) -> None:
    """SampleError when ``path`` resolves (through links or ``..``) outside ``root`` (itself
    resolved), unless ``follow_links``: an import reads only files inside the folder given."""
    if follow_links:
        return
    real = path.resolve()
    if not real.is_relative_to(root):
        raise SampleError(
            key,
            f"resolves to {real}, outside the import folder {root}: files reached through "
            "links out of the folder are refused (pass follow_links=True to import them)",
            str(path),
        )


def _check_stem(stem: str, split_file: Path) -> str:
    """A stem from a split list must be a plain file name (no folders, ``..`` or NUL)."""
    if stem in (".", "..") or any(c in stem for c in ("/", "\\", "\x00")):
        raise ValueError(
            f"{split_file} lists {stem!r}, which is not a plain file name: entries of a split "
            "list cannot name folders or leave the dataset folder"
        )
    return stem


def _key(stem: str) -> str:
    """A file-name-safe key for the mask files of the sample whose source stem is ``stem``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip(".") or "sample"


@dataclass
class _ImageHeader:
    width: int
    height: int
    metadata: object


def _image_header(path: Path, key: str) -> _ImageHeader:
    """Open an image (header only) and return its size and FiftyOne metadata.

    Grayscale, palette, 16-bit and RGBA images are all accepted: the pixels are read later by
    :func:`alc_fiftyone.store.files.read_image`, which converts them to RGB.
    """
    import fiftyone as fo

    if not path.is_file():
        raise SampleError(key, "image file does not exist", str(path))
    try:
        with Image.open(path) as im:
            width, height = im.size
            mode, fmt = im.mode, im.format
    except Exception as e:  # PIL raises many types for corrupt or non-image files
        raise SampleError(key, f"cannot read image: {e}", str(path)) from e
    metadata = fo.ImageMetadata(
        size_bytes=path.stat().st_size,
        mime_type=_MIME.get(fmt or "", "image/" + (fmt or "unknown").lower()),
        width=width,
        height=height,
        num_channels=_CHANNELS.get(mode, 3),
    )
    return _ImageHeader(width, height, metadata)


def _check_size(
    key: str, image_path: Path, header: _ImageHeader, mask: np.ndarray, field: str
) -> None:
    files.check_same_size(
        SimpleNamespace(id=key, filepath=str(image_path)),
        f"{field!r} mask",
        mask.shape,
        "the image",
        (header.height, header.width),
    )


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def class_targets(names: Sequence[str], with_ignore: bool) -> dict[int, str]:
    """Mask targets ``{index: name}`` of a class list (and the ignore value as "void")."""
    targets = {i: str(n) for i, n in enumerate(names)}
    if with_ignore:
        targets[IGNORE_INDEX] = IGNORE_NAME
    return targets


def add_and_publish(
    dataset,
    samples: list,
    targets: dict[str, dict[int, str]],
    alc_info: dict,
    progress: ProgressCallback | None,
) -> None:
    """Add the validated ``samples`` to the dataset being built, record its classes and info
    (with ``removed_incomplete``: the leftovers of interrupted earlier builds removed first),
    and give it its real name (replacing the old dataset of that name) now that it is
    complete."""
    if progress is not None:
        progress(0, 1, "Adding samples")
    dataset.add_samples(samples, progress=False)
    dataset.mask_targets = targets
    target = dataset.info.pop("alc_target", None)
    if target is not None and target.get("removed_incomplete"):
        # leftovers of interrupted earlier imports of this name, removed before this one
        alc_info = {**alc_info, "removed_incomplete": list(target["removed_incomplete"])}
    dataset.info["alc"] = alc_info
    dataset.save()
    if target is not None:  # complete: now it replaces the old dataset of that name
        publish(dataset, target["name"], target["persistent"])
    if progress is not None:
        progress(1, 1, "Adding samples")


# --------------------------------------------------------------------------------------------
# PASCAL VOC
# --------------------------------------------------------------------------------------------


def _voc_stems(root: Path, split: str | None) -> list[str]:
    class_dir = root / "SegmentationClass"
    if split is None:
        stems = [p.stem for p in class_dir.iterdir() if p.suffix.lower() == ".png"]
        return sorted(stems, key=_natural_key)
    split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not split_file.is_file():
        lists = split_file.parent
        known = sorted(p.stem for p in lists.glob("*.txt")) if lists.is_dir() else []
        raise FileNotFoundError(
            f"split {split!r}: no list file {split_file}; "
            + (f"the splits there are {', '.join(known)}" if known else f"{lists} holds none")
        )
    stems: list[str] = []
    seen: set[str] = set()
    for line in split_file.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] not in seen:
            seen.add(parts[0])
            stems.append(_check_stem(parts[0], split_file))
    return stems


def _voc_image(root: Path, stem: str) -> Path:
    folder = root / "JPEGImages"
    for ext in (".jpg", ".jpeg", ".JPG", ".JPEG", ".png", ".PNG"):
        path = folder / f"{stem}{ext}"
        if path.is_file():
            return path
    raise SampleError(stem, f"no image {stem}.jpg in {folder} for its mask", str(folder / stem))


def _class_list(classes: Sequence[str] | Mapping[int, str]) -> list[str]:
    if isinstance(classes, Mapping):
        keys = sorted(int(k) for k in classes)
        if keys != list(range(len(keys))):
            raise ValueError(
                "load_voc: a classes dict must have the keys 0..C-1 (VOC masks hold the class "
                f"indices), got {keys}"
            )
        names = [classes[k] if k in classes else classes[str(k)] for k in keys]
    else:
        names = list(classes)
    return check_class_names(names, IGNORE_NAME, "load_voc")


def load_voc(
    root: str | os.PathLike,
    split: str | None = None,
    name: str | None = None,
    label_field: str = "ground_truth",
    instances_field: str = "ground_truth_instances",
    persistent: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    classes: Sequence[str] | Mapping[int, str] | None = None,
    follow_links: bool = False,
):
    """Load a PASCAL VOC-style segmentation folder as a FiftyOne dataset.

    ``root`` holds ``JPEGImages/<stem>.jpg`` and ``SegmentationClass/<stem>.png`` (palette or
    grayscale index PNGs, 255 = void), optionally ``SegmentationObject/<stem>.png`` (instance
    ids; stored in ``instances_field`` with the void border as 0 = no instance) and
    ``ImageSets/Segmentation/<split>.txt``. With ``split=None`` every stem with a class mask is
    loaded.

    Class names: ``classes`` if given (values outside raise a SampleError), else the 21 VOC
    names when no mask holds a value above 20, else ``class_<i>``.

    Returns the new dataset; name defaults to ``voc-<split or all>``. An existing dataset of
    that name raises ValueError unless ``overwrite=True``.

    Only files inside ``root`` are read: split entries must be plain file names, and a file
    (or sub-folder) that is a link resolving outside ``root`` is refused with a SampleError
    unless ``follow_links=True``.

    Parameters
    ----------
    root
        The folder holding ``JPEGImages/`` and ``SegmentationClass/``.
    split
        ``ImageSets/Segmentation/<split>.txt`` (None: every mask).
    name
        The dataset's name.
    label_field
        The field of the class masks.
    instances_field
        The field of the instance masks (when ``SegmentationObject/`` exists).
    persistent
        Whether the dataset outlives the session.
    overwrite
        Replace a dataset of that name (only once the new one is complete).
    progress
        ``progress(done, total, description)``, e.g. the CLI's tqdm bars.
    classes
        Class names by mask value: a list (value = position) or a ``{value: name}`` dict.
    follow_links
        Also read files reached through links leading out of the folder(s).

    Returns
    -------
    fiftyone.core.dataset.Dataset
        The new dataset.
    """
    root = _absolute(root)
    root_real = root.resolve()
    class_dir = root / "SegmentationClass"
    if not (root / "JPEGImages").is_dir() or not class_dir.is_dir():
        raise FileNotFoundError(
            f"{root} is not a VOC-style folder: it needs JPEGImages/ and SegmentationClass/"
        )
    stems = _voc_stems(root, split)
    if not stems:
        what = f"split {split!r}" if split else f"{class_dir}"
        raise ValueError(f"no samples to load: {what} lists no masks")
    object_dir = root / "SegmentationObject"
    has_objects = object_dir.is_dir()
    names = _class_list(classes) if classes is not None else None
    if names is not None and not 0 < len(names) <= IGNORE_INDEX:
        raise ValueError(f"load_voc: between 1 and 255 classes are supported, got {len(names)}")
    if instances_field == label_field:
        raise ValueError("label_field and instances_field must differ")

    import fiftyone as fo

    name = name or f"voc-{split or 'all'}"
    dataset = new_dataset(name, persistent, overwrite)
    try:
        samples = []
        max_value = -1
        has_void = False
        for stem in track(stems, len(stems), progress, "Reading VOC masks"):
            mask_path = class_dir / f"{stem}.png"
            if not mask_path.is_file():
                raise SampleError(
                    stem, f"listed in split {split!r} but has no class mask", str(mask_path)
                )
            image_path = _voc_image(root, stem)
            _check_inside(mask_path, root_real, stem, follow_links)
            _check_inside(image_path, root_real, stem, follow_links)
            header = _image_header(image_path, stem)
            mask = files.read_png_array(mask_path, stem)
            _check_size(stem, image_path, header, mask, label_field)
            values = np.unique(mask)
            is_void = values == IGNORE_INDEX
            has_void = has_void or bool(is_void.any())
            labels = values[~is_void]
            if labels.size:
                max_value = max(max_value, int(labels.max()))
                if max_value > IGNORE_INDEX - 1 and names is None:
                    raise SampleError(
                        stem,
                        f"class mask holds value {int(labels.max())}: class indices must lie "
                        f"in 0..{IGNORE_INDEX - 1} ({IGNORE_INDEX} = void)",
                        str(mask_path),
                    )
                if names is not None and labels.max() >= len(names):
                    bad = [int(v) for v in labels[labels >= len(names)]]
                    raise SampleError(
                        stem,
                        f"class mask holds values {bad} outside the {len(names)} classes "
                        f"(0..{len(names) - 1}, {IGNORE_INDEX} = void)",
                        str(mask_path),
                    )
            key = _key(stem)
            fields = {
                label_field: fo.Segmentation(
                    mask_path=files.write_mask(mask.astype(np.uint8), dataset, label_field, key)
                )
            }
            obj_path = object_dir / f"{stem}.png"
            if has_objects and obj_path.is_file():
                _check_inside(obj_path, root_real, stem, follow_links)
                inst = files.read_png_array(obj_path, stem)
                _check_size(stem, image_path, header, inst, instances_field)
                inst = np.where(inst == IGNORE_INDEX, 0, inst)
                fields[instances_field] = fo.Segmentation(
                    mask_path=files.write_mask(inst, dataset, instances_field, key)
                )
            samples.append(fo.Sample(filepath=str(image_path), metadata=header.metadata, **fields))
        if names is None:
            if max_value <= len(VOC_CLASSES) - 1:
                names = list(VOC_CLASSES)
            else:
                names = [f"class_{i}" for i in range(max_value + 1)]
        targets = {label_field: class_targets(names, with_ignore=True)}
        info = {
            "ignore_index": IGNORE_INDEX,
            "classes": names,
            "label_field": label_field,
            "source": {"kind": "voc", "root": str(root), "split": split},
        }
        if has_objects:
            info["instances_field"] = instances_field
        add_and_publish(dataset, samples, targets, info, progress)
    except BaseException:
        discard(dataset)
        raise
    return dataset


# --------------------------------------------------------------------------------------------
# any folder of images + masks
# --------------------------------------------------------------------------------------------


def _files_by_stem(
    folder: Path, extensions: Sequence[str], suffix: str, what: str, exclude_suffix: str = ""
) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in folder.iterdir():
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix.lower() not in extensions:
            continue
        stem = path.stem
        if suffix:
            if not stem.endswith(suffix):
                continue
            stem = stem[: -len(suffix)]
        elif exclude_suffix and stem.endswith(exclude_suffix):
            continue
        if stem in found:
            raise SampleError(
                stem,
                f"two {what} files share the stem {stem!r}: {found[stem].name} and {path.name}",
                str(path),
            )
        found[stem] = path
    return found


def _value_map(
    classes: Sequence[str] | Mapping[int, str], ignore_name: str | None = None
) -> tuple[list[int], list[str]]:
    """Source mask values and class names, in stored-index order (names checked: none empty,
    none twice, none named like the ignore value ``ignore_name``)."""
    if isinstance(classes, Mapping):
        pairs = sorted((int(v), n) for v, n in classes.items())
        values = [v for v, _ in pairs]
        names = [n for _, n in pairs]
    elif isinstance(classes, str):
        raise TypeError("classes must be a list of names or a {value: name} dict, not a str")
    else:
        names = list(classes)
        values = list(range(len(names)))
    names = check_class_names(names, ignore_name, "load_image_masks")
    if not 0 < len(names) <= IGNORE_INDEX:
        raise ValueError(f"between 1 and 255 classes are supported, got {len(names)}")
    if len(set(values)) != len(values):
        raise ValueError(f"class values must be distinct, got {values}")
    if values and (min(values) < 0 or max(values) > 65535):
        raise ValueError(f"class values must lie in 0..65535, got {values}")
    return values, names


def _check_threshold(threshold) -> float | None:
    """``threshold`` as a float, or a ValueError that says what is wrong with it."""
    if threshold is None:
        return None
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(
        threshold, (int, float, np.integer, np.floating)
    ):
        raise ValueError(  # noqa: TRY004 (a bad option value)
            f"threshold must be a number (mask values >= it become 1), got {threshold!r}"
        )
    value = float(threshold)
    if not np.isfinite(value):
        raise ValueError(f"threshold must be a number (mask values >= it become 1), got {value}")
    if value <= 0:
        raise ValueError(
            f"threshold must be greater than 0, got {value:g}: every pixel would become 1"
        )
    if value > 65535:
        raise ValueError(f"threshold {value:g} is above 65535, the largest mask value")
    return value


def _default_name(images_dir: Path, masks_dir: Path) -> str:
    if images_dir.parent == masks_dir.parent and images_dir != masks_dir:
        return images_dir.parent.name or images_dir.name
    return images_dir.name


def load_image_masks(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike,
    classes: Sequence[str] | Mapping[int, str],
    ignore_index: int | None = None,
    threshold: float | None = None,
    name: str | None = None,
    label_field: str = "ground_truth",
    mask_suffix: str = "",
    persistent: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    require_masks: bool = True,
    follow_links: bool = False,
    limit: int | None = None,
):
    """Load a folder of images and a folder of masks paired by file stem.

    A mask ``<stem><mask_suffix>.<ext>`` belongs to the image ``<stem>.<ext>`` (png, jpg,
    jpeg, bmp, tif). Images are referenced in place; masks are validated and written as index
    PNGs.

    - ``classes``: a list of names (mask value = index) or a ``{mask value: name}`` dict; dict
      values are remapped to the indices 0..C-1 in increasing value order (ISBI:
      ``{0: "membrane", 255: "cell"}`` stores 0 and 1).
    - ``ignore_index``: the source value meaning "ignore" (CamVid: 11); it is stored as 255.
    - ``threshold``: for binary masks saved with compression noise (Weizmann horses, gray
      JPEG): source values ``>= threshold`` become 1, the others 0, before the class lookup.
    - ``require_masks``: when False, images without a mask are added without labels.
    - ``limit``: only the first ``limit`` images, in natural file-name order.

    Any mask value that is neither a class nor the ignore value raises a SampleError naming the
    file and the values, as do size mismatches, colour masks, and masks without an image.
    Only files inside the two folders are read: a file that is a link resolving outside its
    folder is refused with a SampleError unless ``follow_links=True``.

    Parameters
    ----------
    images_dir
        The folder of images.
    masks_dir
        The folder of masks, paired with the images by file stem.
    classes
        Class names by mask value: a list (value = position) or a ``{value: name}`` dict.
    ignore_index
        The source value meaning "ignore" (stored as 255).
    threshold
        Binarise masks: values >= it become 1.
    name
        The dataset's name.
    label_field
        The field of the masks.
    mask_suffix
        Mask file = ``<image stem><mask_suffix>.<ext>``.
    persistent
        Whether the dataset outlives the session.
    overwrite
        Replace a dataset of that name (only once the new one is complete).
    progress
        ``progress(done, total, description)``, e.g. the CLI's tqdm bars.
    require_masks
        When False, images without a mask are added without labels.
    follow_links
        Also read files reached through links leading out of the folder(s).
    limit
        Only the first images, in natural file order.

    Returns
    -------
    fiftyone.core.dataset.Dataset
        The new dataset.
    """
    images_dir = _absolute(images_dir)
    masks_dir = _absolute(masks_dir)
    for folder, what in ((images_dir, "images"), (masks_dir, "masks")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{what} folder {folder} does not exist")
    values, names = _value_map(classes, IGNORE_NAME if ignore_index is not None else None)
    if ignore_index is not None:
        ignore_index = int(ignore_index)
        if ignore_index in values:
            raise ValueError(f"ignore_index {ignore_index} is also a class value")
        if not 0 <= ignore_index <= 65535:
            raise ValueError(f"ignore_index must lie in 0..65535, got {ignore_index}")
    if threshold is not None and ignore_index is not None:
        raise ValueError("threshold makes binary masks: it cannot be combined with ignore_index")
    threshold = _check_threshold(threshold)

    # lookup from source value (after thresholding) to stored index; -1 = not allowed
    lut = np.full(65536, -1, dtype=np.int32)
    lut[np.asarray(values, dtype=np.int64)] = np.arange(len(values), dtype=np.int32)
    if ignore_index is not None:
        lut[ignore_index] = IGNORE_INDEX

    same = images_dir == masks_dir
    if same and not mask_suffix:
        raise ValueError("images and masks share a folder: pass mask_suffix (like '_mask')")
    images = _files_by_stem(
        images_dir, IMAGE_EXTENSIONS, "", "image", exclude_suffix=mask_suffix if same else ""
    )
    masks = _files_by_stem(masks_dir, MASK_EXTENSIONS, mask_suffix, "mask")
    orphans = sorted(set(masks) - set(images), key=_natural_key)
    if orphans:
        raise SampleError(
            orphans[0],
            f"{len(orphans)} mask(s) have no image in {images_dir}: {_listing(orphans)}",
            str(masks[orphans[0]]),
        )
    unlabeled = sorted(set(images) - set(masks), key=_natural_key)
    if unlabeled and require_masks:
        raise SampleError(
            unlabeled[0],
            f"{len(unlabeled)} image(s) have no mask{' ' + repr(mask_suffix) if mask_suffix else ''}"
            f" in {masks_dir}: {_listing(unlabeled)} (pass require_masks=False to add them "
            "without labels)",
            str(images[unlabeled[0]]),
        )
    stems = sorted(images, key=_natural_key)
    if not stems:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {images_dir}")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise ValueError(f"limit must be a positive number of images, got {limit!r}")
        stems = stems[: int(limit)]

    import fiftyone as fo

    name = name or _default_name(images_dir, masks_dir)
    dataset = new_dataset(name, persistent, overwrite)
    try:
        samples = []
        for stem in track(stems, len(stems), progress, "Reading masks"):
            image_path = images[stem]
            _check_inside(image_path, images_dir.resolve(), stem, follow_links)
            header = _image_header(image_path, stem)
            fields = {}
            if stem in masks:
                mask_path = masks[stem]
                _check_inside(mask_path, masks_dir.resolve(), stem, follow_links)
                src = files.read_png_array(mask_path, stem, allow_float=threshold is not None)
                _check_size(stem, image_path, header, src, label_field)
                if threshold is not None:
                    if src.dtype == np.uint8 and threshold > 255:
                        raise ValueError(
                            f"threshold {threshold:g} is above 255, the largest value of the "
                            f"8-bit mask {mask_path}: every pixel would become 0 (background)"
                        )
                    src = (src >= threshold).astype(np.uint8)
                stored = lut[src]
                bad = stored < 0
                if bad.any():
                    bad_values = np.unique(src[bad])
                    allowed = f"classes {values}" + (
                        f", ignore {ignore_index}" if ignore_index is not None else ""
                    )
                    raise SampleError(
                        stem,
                        f"mask holds values {_listing([str(int(v)) for v in bad_values])} "
                        f"({int(bad.sum())} pixels) outside the declared {allowed}",
                        str(mask_path),
                    )
                fields[label_field] = fo.Segmentation(
                    mask_path=files.write_mask(
                        stored.astype(np.uint8), dataset, label_field, _key(stem)
                    )
                )
            samples.append(fo.Sample(filepath=str(image_path), metadata=header.metadata, **fields))
        targets = {label_field: class_targets(names, with_ignore=ignore_index is not None)}
        info = {
            "ignore_index": IGNORE_INDEX if ignore_index is not None else None,
            "classes": names,
            "label_field": label_field,
            "source": {
                "kind": "image_masks",
                "images_dir": str(images_dir),
                "masks_dir": str(masks_dir),
                "mask_suffix": mask_suffix,
                "class_values": values,
                "ignore_value": ignore_index,
                "threshold": threshold,
            },
        }
        add_and_publish(dataset, samples, targets, info, progress)
    except BaseException:
        discard(dataset)
        raise
    return dataset
