"""Image and mask files: reading with validation, writing copy-on-write.

Masks written by alc-fiftyone live under ``ALC_FIFTYONE_DIR`` (default ``~/fiftyone/alc``) /
``<dataset>`` / ``<field>``. A mask is never rewritten in place: a new file is written beside a
temporary name, flushed, renamed into place, and only then is the sample pointed at it, so a
crash leaves the sample on its old mask or on the complete new one.
"""

from __future__ import annotations

import errno
import io
import os
import re
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import OutputError, SampleError
from .db import dataset_id

ENV_DIR = "ALC_FIFTYONE_DIR"


def alc_dir() -> Path:
    """Root folder for the files alc-fiftyone writes (``$ALC_FIFTYONE_DIR``)."""
    return (
        Path(os.environ.get(ENV_DIR) or Path.home() / "fiftyone" / "alc").expanduser().absolute()
    )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "dataset"


_DIRS: dict[tuple[str, str], Path] = {}  # (root, dataset id) -> its folder, once found


def dataset_dir(dataset) -> Path:
    """Folder of one dataset's files, ``<name>-<id>``: found by the dataset's id, so a rename
    (e.g. a dataset built under a temporary name, then given its own) keeps its folder; a new
    folder takes the name the dataset has when its first file is written (see
    :func:`make_dataset_dir`)."""
    root = alc_dir()
    did = dataset_id(dataset)
    key = (str(root), did)
    found = _DIRS.get(key)
    if found is not None and found.is_dir():
        return found
    matches = sorted(root.glob(f"*-{did}")) if root.is_dir() else []
    if matches:
        _DIRS[key] = matches[0]
        return matches[0]
    return root / f"{_safe(dataset.name)}-{did}"


def make_dataset_dir(dataset, name: str) -> Path:
    """Create the folder of ``dataset``'s files now, named after ``name`` (the name it will
    have: it may be built under a temporary one); :func:`dataset_dir` finds it by id later."""
    folder = alc_dir() / f"{_safe(name)}-{dataset_id(dataset)}"
    try:
        _check_inside_alc_dir(folder)
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the folder {folder}: {os_error_text(e)}") from e
    _DIRS[(str(alc_dir()), dataset_id(dataset))] = folder
    return folder


def field_dir(dataset, field: str) -> Path:
    return dataset_dir(dataset) / _safe(field)


def os_error_text(error: OSError) -> str:
    """An OSError as ``"ENOSPC (No space left on device)"``: the errno name and its meaning."""
    code = errno.errorcode.get(error.errno) if error.errno else None
    meaning = error.strerror or str(error)
    return f"{code} ({meaning})" if code else meaning


def open_new_file(path: Path):
    """Open ``path`` for binary writing only if nothing, not even a link, is there yet
    (``O_EXCL | O_NOFOLLOW``): a temporary file is never written through a planted link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags, 0o644), "wb")


def write_bytes_atomic(data: bytes, path: Path) -> Path:
    """Write ``data`` to ``path`` atomically: a new temporary file beside it, fsync, rename.

    A link already at ``path`` is replaced by the file, never followed. On any error the
    temporary file is removed and ``path`` is left as it was; the OSError propagates.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open_new_file(tmp) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
    return path


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def write_png(array: np.ndarray, path: Path) -> Path:
    """Write a 2-D integer array as a PNG atomically (temporary file, fsync, rename).

    Values below 256 are stored as 8-bit, larger ones as 16-bit grayscale.
    """
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"a mask must be 2-D, got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() > 65535):
        raise ValueError("mask values must lie in 0..65535")
    out = (
        array.astype(np.uint8)
        if (array.size == 0 or array.max() < 256)
        else array.astype(np.uint16)
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(png_bytes(Image.fromarray(out)), path)


def new_mask_path(dataset, field: str, sample_id: str) -> Path:
    """A fresh, unique file name for a new version of a sample's mask in ``field``."""
    return field_dir(dataset, field) / f"{sample_id}-{uuid.uuid4().hex[:12]}.png"


def _check_inside_alc_dir(folder: Path) -> None:
    root = alc_dir().resolve()
    real = folder.resolve()
    if not real.is_relative_to(root):
        raise OutputError(
            f"mask folder {folder} resolves to {real}, outside {root} (${ENV_DIR}): a link "
            "leads out of it; refusing to write there"
        )


def write_mask(array: np.ndarray, dataset, field: str, sample_id: str) -> str:
    """Write a new mask file for ``sample_id`` in ``field`` and return its path.

    A write error (disk full, read-only or forbidden folder) is an OutputError naming the
    sample, the folder and the errno; the sample keeps its previous mask and no partial file
    remains.
    """
    path = new_mask_path(dataset, field, sample_id)
    try:
        _check_inside_alc_dir(path.parent)  # before creating anything (resolve is not strict)
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(write_png(array, path))
    except OSError as e:
        raise OutputError(
            f"sample {sample_id}: cannot write the {field!r} mask in {path.parent}: "
            f"{os_error_text(e)}; the sample keeps its previous mask and nothing was "
            "half-written"
        ) from e


def ready_mask_dir(dataset, field: str) -> Path:
    """The folder of ``field``'s masks, created (inside ``ALC_FIFTYONE_DIR``, checked):
    where :func:`compute_mask_file` writes. OutputError when it cannot be made."""
    folder = field_dir(dataset, field)
    try:
        _check_inside_alc_dir(folder)
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the folder {folder}: {os_error_text(e)}") from e
    return folder


def compute_mask_file(compute, args: tuple, path: str, sample_id: str, field: str):
    """``compute(*args) -> (mask, attributes)``, the mask written to ``path`` (a new file of
    :func:`new_mask_path` in a :func:`ready_mask_dir`); returns ``(path, attributes)``. A pure
    function of files, run in a worker process by :func:`alc_fiftyone.store.masks.
    compute_mask_field`; a write error is an OutputError as in :func:`write_mask`."""
    mask, attrs = compute(*args)
    try:
        write_png(mask, Path(path))
    except OSError as e:
        raise OutputError(
            f"sample {sample_id}: cannot write the {field!r} mask in {Path(path).parent}: "
            f"{os_error_text(e)}; the sample keeps its previous mask and nothing was "
            "half-written"
        ) from e
    return path, attrs


def read_png_array(
    path: str | Path, sample_id: str | None = None, allow_float: bool = False
) -> np.ndarray:
    """Read a mask file as a 2-D integer array.

    Palette PNGs give their indices; 16-bit files stay 16-bit; RGB masks whose three channels
    are equal are read as grayscale; other RGB or RGBA masks are refused (they need a colour
    table to become class indices). Floating-point masks (32-bit TIFF) holding whole numbers
    in 0..65535 are read as integers; other float masks are refused, unless ``allow_float``
    (they are then returned as float64, for a threshold to binarise).
    """
    path = str(path)
    if not os.path.exists(path):
        raise SampleError(sample_id, "mask file does not exist", path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.array(im)
    except Exception as e:  # PIL raises many types for corrupt files
        raise SampleError(sample_id, f"cannot read mask file: {e}", path) from e
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise SampleError(sample_id, "float mask holds NaN or infinite values", path)
        if allow_float:
            return arr.astype(np.float64)
        if not np.array_equal(arr, np.round(arr)):
            raise SampleError(
                sample_id,
                f"mask ({mode}, floating point) holds values that are not whole numbers, e.g. "
                f"{float(arr[arr != np.round(arr)].flat[0]):g}: class masks hold class values "
                "(pass threshold= to binarise a soft mask)",
                path,
            )
        arr = arr.astype(np.int64)
    if mode in ("I", "I;16", "I;16B", "I;16L") or arr.dtype in (np.int32, np.uint16, np.int64):
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise SampleError(sample_id, "mask values outside 0..65535", path)
        return arr.astype(np.uint16)
    if arr.ndim == 3:
        if (
            arr.shape[2] == 3
            and np.array_equal(arr[..., 0], arr[..., 1])
            and np.array_equal(arr[..., 0], arr[..., 2])
        ):
            return np.ascontiguousarray(arr[..., 0])
        raise SampleError(
            sample_id,
            f"mask is a colour ({mode}) image; class masks must be index images "
            "(grayscale or palette PNG)",
            path,
        )
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    return arr


def read_segmentation(sample, field: str) -> np.ndarray:
    """The class (or id) map of ``sample[field]`` (an ``fo.Segmentation``), validated."""
    seg = sample[field] if sample.has_field(field) else None
    if seg is None:
        raise SampleError(sample.id, f"field {field!r} is empty", sample.filepath)
    if getattr(seg, "mask_path", None):
        return read_png_array(seg.mask_path, sample.id)
    if getattr(seg, "mask", None) is not None:
        arr = np.array(seg.mask)  # a copy: callers modify it
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if arr.ndim != 2:
            raise SampleError(sample.id, f"{field!r} mask has shape {arr.shape}, expected 2-D")
        return arr
    raise SampleError(sample.id, f"{field!r} has neither a mask nor a mask_path", sample.filepath)


def read_image(sample_or_path, sample_id: str | None = None) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB: grayscale is repeated, alpha dropped, 16-bit
    grayscale scaled to 8 bits."""
    path = getattr(sample_or_path, "filepath", sample_or_path)
    sample_id = getattr(sample_or_path, "id", sample_id)
    if not os.path.exists(path):
        raise SampleError(sample_id, "image file does not exist", path)
    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.array(im).astype(np.float64)
                hi = arr.max() if arr.size and arr.max() > 0 else 1.0
                arr = np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8)
                return np.repeat(arr[..., None], 3, axis=2)
            return np.array(im.convert("RGB"))
    except Exception as e:
        raise SampleError(sample_id, f"cannot read image: {e}", path) from e


def check_same_size(sample, what: str, shape, other: str, other_shape) -> None:
    """SampleError naming the sample when two of its arrays differ in (height, width)."""
    if tuple(shape[:2]) != tuple(other_shape[:2]):
        raise SampleError(
            sample.id,
            f"{what} is {shape[1]}x{shape[0]} but {other} is {other_shape[1]}x{other_shape[0]} "
            "(width x height): they differ in size",
            sample.filepath,
        )
