"""export_masks: a segmentation field of a collection as VOC palette or index PNG masks."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import ALCError, OutputError, SampleError
from ..progress import ProgressCallback, track
from ..store.db import dataset_of
from ..store.faults import failure_record
from ..store.fields import class_table, read_current_labels, require_nonempty
from ..store.files import open_new_file, os_error_text, png_bytes, write_bytes_atomic
from ..store.info import alc_info, ranked_label_field

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


FORMATS = ("voc", "index")
ENV_EXPORT_ROOT = "ALC_FIFTYONE_EXPORT_ROOT"


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (n x 3 uint8): the bits of the class index spread over the
    high bits of R, G and B (Everingham et al., VOC development kit)."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def export_root() -> Path | None:
    """The folder every export must lie in (``$ALC_FIFTYONE_EXPORT_ROOT``), if one is set.

    Set it on a server whose App users choose export folders in a form: relative folders are
    then taken inside it, and a folder that resolves outside it (``..``, absolute, or through
    a link) is refused.
    """
    root = os.environ.get(ENV_EXPORT_ROOT)
    return Path(root).expanduser().resolve() if root else None


def _check_out_dir(out_dir) -> Path:
    if out_dir is None or str(out_dir).strip() == "" or "\x00" in str(out_dir):
        raise ALCError(f"export folder {out_dir!r} is not a usable path")
    path = Path(out_dir).expanduser()
    root = export_root()
    if root is not None and not path.is_absolute():
        path = root / path
    out = path.resolve()
    if root is not None and not out.is_relative_to(root):
        raise ALCError(
            f"export folder {path} resolves to {out}, outside the export root {root} "
            f"(${ENV_EXPORT_ROOT}): refused"
        )
    if out.exists() and not out.is_dir():
        raise ALCError(f"export folder {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create export folder {out}: {os_error_text(e)}") from e
    probe = out / f".alc-write-test-{os.getpid()}"
    try:  # a real write tells EROFS (read-only file system) from EACCES, os.access does not
        with open_new_file(probe) as f:
            f.write(b"")
    except OSError as e:
        raise OutputError(f"export folder {out} is not writable: {os_error_text(e)}") from e
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
    return out


def export_file_name(filepath: str, suffix: str = ".png") -> str:
    """The export file name of a sample: its image's file name with ``suffix`` instead of its
    extension. A name that could leave the export folder (empty, ``.``/``..``, separators, NUL)
    is refused."""
    stem = Path(str(filepath)).stem
    if stem in ("", ".", "..") or any(c in stem for c in ("/", "\\", "\x00")):
        raise ALCError(f"image file name of {filepath!r} cannot name an export file")
    return stem + suffix


def _write_export(out: Path, name: str, data: bytes, done: int) -> None:
    """One file of an export, atomically; a write error names the folder and the errno."""
    path = out / name
    if path.parent != out:  # export_file_name makes this impossible; kept as a guard
        raise ALCError(f"{name!r} is not a plain file name in {out}")
    try:
        write_bytes_atomic(data, path)
    except OSError as e:
        raise OutputError(
            f"cannot write {name} in export folder {out}: {os_error_text(e)}; {done} file(s) "
            "written before it are complete, nothing is half-written; free space or choose "
            "another folder and rerun with overwrite=True"
        ) from e


def export_masks(
    samples: SampleCollection,
    field: str,
    out_dir: str | os.PathLike,
    format: str = "voc",
    label_field: str | None = None,
    overwrite: bool = False,
    skip_failures: bool = False,
    progress: ProgressCallback | None = None,
) -> dict:
    """Write each sample's mask of ``field`` to ``out_dir/<image stem>.png`` plus
    ``classes.txt`` (one class name per line, in value order) and ``classes.json``.

    ``format="voc"``: palette PNGs with the VOC colour map (index = class value, 255 = void);
    ``"index"``: plain 8-bit index PNGs. Where a sample has no ``field`` (no answer yet), its
    ``label_field`` is exported instead; ``label_field`` defaults to the field that was ranked
    when ``field`` is a ranking's revised field (e.g. ``"alc_revised"``), so exporting the
    revised labels of a partly reviewed dataset gives every sample a mask. Existing files are
    refused unless ``overwrite``.

    ``out_dir`` must lie inside ``$ALC_FIFTYONE_EXPORT_ROOT`` when that is set (relative
    folders are taken inside it); files are only ever written directly in ``out_dir``, each
    atomically (a link found at a file's place is replaced, never followed). A sample whose
    mask cannot be read stops the export with a SampleError naming it, or with
    ``skip_failures=True`` is left out and listed in the summary's ``failed``. A write error
    (disk full, read-only or forbidden folder) is an OutputError naming the folder and errno.

    Parameters
    ----------
    samples
        The dataset or view to work on.
    field
        The masks to write (e.g. ``"alc_revised"``).
    out_dir
        The folder that receives one PNG per sample (inside ``$ALC_FIFTYONE_EXPORT_ROOT`` when
        set).
    format
        ``"voc"`` (palette PNG) or ``"index"`` (grayscale class ids).
    label_field
        Labels written where a sample has no ``field`` (default: the ranked field when ``field`` is
        a revised field).
    overwrite
        Replace files already in the folder.
    skip_failures
        Leave out (and list in the summary's ``failed``) samples whose files cannot be read,
        instead of stopping.
    progress
        ``progress(done, total, description)``, e.g. the CLI's tqdm bars.

    Returns
    -------
    dict
        ``out_dir``, ``field``, ``label_field``, ``written``, ``format``, ``classes``, ``failed``.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    require_nonempty(samples)
    if label_field is None and _is_revised_field(dataset_of(samples), field):
        label_field = ranked_label_field(dataset_of(samples), revised_field=field)
    if not samples.has_field(field) and not label_field:
        raise ALCError(f"the dataset has no field {field!r} to export")
    out = _check_out_dir(out_dir)
    ref_field = label_field or field
    names, ignore, num_classes = class_table(dataset_of(samples), ref_field)
    file_names = [export_file_name(p) for p in samples.values("filepath")]
    dup = [s for s, n in Counter(file_names).items() if n > 1]
    if dup:
        raise ALCError(
            f"several images share the file name stem {Path(dup[0]).stem!r}; cannot export by stem"
        )
    if not overwrite:
        # a link counts as a file (and is replaced, never followed, with overwrite)
        clash = [s for s in file_names if os.path.lexists(out / s)]
        if clash:
            raise ALCError(
                f"{out / clash[0]} exists; pass overwrite=True (CLI: --overwrite) to replace it"
            )
    pal = voc_palette().ravel().tolist()
    if ignore is not None and ignore < 256:
        pal[3 * ignore : 3 * ignore + 3] = [224, 224, 192]
    fields = [f for f in (field, label_field) if f and samples.has_field(f)]
    written = 0
    failed: list[dict] = []
    for sample in track(
        samples.select_fields(fields).iter_samples(), len(samples), progress, "export"
    ):
        try:
            if label_field:
                mask = read_current_labels(sample, label_field, field)
            else:
                mask = read_current_labels(sample, field, None)
            if mask.max(initial=0) > 255:
                raise SampleError(
                    sample.id, "values above 255 cannot be exported as VOC PNG", sample.filepath
                )
        except SampleError as e:
            if not skip_failures:
                raise
            failed.append(failure_record(e))
            continue
        im = Image.fromarray(mask.astype(np.uint8), mode="L")
        if format == "voc":
            im = im.convert("P")
            im.putpalette(pal)
        _write_export(out, export_file_name(sample.filepath), png_bytes(im), written)
        written += 1
    classes = [names.get(i, f"class_{i}") for i in range(num_classes)]
    _write_export(out, "classes.txt", ("\n".join(classes) + "\n").encode(), written)
    table = json.dumps({"classes": classes, "ignore_index": ignore}, indent=1)
    _write_export(out, "classes.json", table.encode(), written)
    return {
        "out_dir": str(out),
        "field": field,
        "label_field": label_field,
        "written": written,
        "format": format,
        "classes": classes,
        "failed": failed,
    }


def _is_revised_field(dataset, field: str) -> bool:
    rounds = alc_info(dataset).get("rounds") or []
    return any(r.get("revised_field") == field for r in rounds)
