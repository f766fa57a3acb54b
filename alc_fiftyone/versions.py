"""Saving the result: VOC-style mask export and revised dataset versions."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import fiftyone as fo
import numpy as np
from fiftyone import ViewField as F
from PIL import Image

from .answers import attr
from .errors import ALCError, OutputError, SampleError
from .faults import failure_record
from .labels import (
    alc_info,
    class_table,
    mask_targets,
    read_current_labels,
    require_nonempty,
    set_values_by_id,
)
from .progress import ProgressCallback, track
from .ranking import ANSWERED
from .storage import dataset_dir, os_error_text, png_bytes, write_bytes_atomic, write_mask

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
    if not os.access(out, os.W_OK):
        raise OutputError(f"export folder {out} is not writable: EACCES (Permission denied)")
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
    samples,
    field: str,
    out_dir,
    format: str = "voc",
    label_field: str | None = None,
    overwrite: bool = False,
    skip_failures: bool = False,
    progress: ProgressCallback | None = None,
) -> dict:
    """Write each sample's mask of ``field`` to ``out_dir/<image stem>.png`` plus
    ``classes.txt`` (one class name per line, in value order) and ``classes.json``.

    ``format="voc"``: palette PNGs with the VOC colour map (index = class value, 255 = void);
    ``"index"``: plain 8-bit index PNGs. Where a sample has no ``field`` (no answer yet) and
    ``label_field`` is given, its labels are exported instead. Existing files are refused
    unless ``overwrite``.

    ``out_dir`` must lie inside ``$ALC_FIFTYONE_EXPORT_ROOT`` when that is set (relative
    folders are taken inside it); files are only ever written directly in ``out_dir``, each
    atomically (a link found at a file's place is replaced, never followed). A sample whose
    mask cannot be read stops the export with a SampleError naming it, or with
    ``skip_failures=True`` is left out and listed in the summary's ``failed``. A write error
    (disk full, read-only or forbidden folder) is an OutputError naming the folder and errno.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    require_nonempty(samples)
    out = _check_out_dir(out_dir)
    ref_field = label_field or field
    names, ignore, num_classes = class_table(samples._dataset, ref_field)
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
            raise ALCError(f"{out / clash[0]} exists; pass overwrite=True to replace")
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
        "written": written,
        "format": format,
        "classes": classes,
        "failed": failed,
    }


def save_revised_version(
    dataset,
    name: str,
    revised_field: str = "alc_revised",
    label_field: str | None = None,
    queries_field: str = "alc_queries",
    overwrite: bool = False,
    skip_failures: bool = False,
    progress: ProgressCallback | None = None,
) -> fo.Dataset:
    """Save a new persistent dataset whose ``label_field`` holds the corrected masks.

    The clone gets new mask files (its own, under ALC_FIFTYONE_DIR), provenance in
    ``info["alc"]["provenance"]`` (parent, rounds, answers, pixels changed per class,
    reviewers, time) and a saved view ``alc_answered`` of the answered regions. On any failure
    the partly built clone is deleted.

    A sample whose masks cannot be read stops the save with a SampleError naming it; with
    ``skip_failures=True`` its revision is not applied (it keeps the labels it had in the
    parent) and it is listed in ``provenance["failed"]``. A write error (disk full, read-only
    folder) is an OutputError naming the folder and the errno.
    """
    dataset = dataset._dataset
    info = alc_info(dataset)
    label_field = label_field or info.get("label_field")
    if not label_field:
        raise ALCError("label_field is unknown: pass label_field=")
    require_nonempty(dataset)
    if fo.dataset_exists(name):
        if not overwrite:
            raise ALCError(f"a dataset named {name!r} exists; pass overwrite=True to replace it")
        fo.delete_dataset(name)
    names, _, _ = class_table(dataset, label_field)
    clone = dataset.clone(name, persistent=True)
    try:
        fields = [f for f in (label_field, revised_field) if clone.has_field(f)]
        values = {}
        failed: list[dict] = []
        for sample in track(
            clone.select_fields(fields).iter_samples(), len(clone), progress, "save version"
        ):
            try:
                mask = read_current_labels(sample, label_field, revised_field)
            except SampleError as e:
                if not skip_failures:
                    raise
                failed.append(failure_record(e))
                continue
            values[sample.id] = fo.Segmentation(
                mask_path=write_mask(mask, clone, label_field, sample.id)
            )
        set_values_by_id(clone, label_field, values)
        answered = []
        if clone.has_field(queries_field):
            done = clone.filter_labels(queries_field, F("status").is_in(list(ANSWERED)))
            for dets in done.values(f"{queries_field}.detections"):
                answered.extend(dets or [])
            clone.save_view("alc_answered", done)
        if clone.has_field(revised_field):
            clone.delete_sample_field(revised_field)
            clone.mask_targets = {
                k: v for k, v in (clone.mask_targets or {}).items() if k != revised_field
            }
        per_class: Counter = Counter()
        for d in answered:
            if attr(d, "answer") is not None:
                per_class[attr(d, "answer")] += int(attr(d, "pixels_changed") or 0)
        provenance = {
            "parent": dataset.name,
            "parent_id": str(dataset._doc.id),
            "label_field": label_field,
            "revised_field": revised_field,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "rounds": info.get("rounds", []),
            "answers": dict(Counter(d.get_field("status") for d in answered)),
            "pixels_changed": int(sum(per_class.values())),
            "pixels_changed_per_class": dict(per_class),
            "reviewers": dict(Counter(str(attr(d, "answered_by")) for d in answered)),
            "failed": failed,
            "classes": {
                str(k): v for k, v in (mask_targets(dataset, label_field) or names).items()
            },
        }
        new_info = dict(info)
        new_info["provenance"] = provenance
        clone.info["alc"] = new_info
        clone.save()
    except BaseException:
        folder = dataset_dir(clone)
        clone.delete()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return clone
