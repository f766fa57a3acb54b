"""Saving the result: VOC-style mask export and revised dataset versions."""

from __future__ import annotations

import json
import os
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
    ranked_label_field,
    read_current_labels,
    require_nonempty,
    set_values_by_id,
)
from .progress import ProgressCallback, track
from .ranking import ANSWERED
from .storage import open_new_file, os_error_text, png_bytes, write_bytes_atomic, write_mask

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
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    require_nonempty(samples)
    if label_field is None and _is_revised_field(samples._dataset, field):
        label_field = ranked_label_field(samples._dataset, revised_field=field)
    if not samples.has_field(field) and not label_field:
        raise ALCError(f"the dataset has no field {field!r} to export")
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

    ``label_field`` defaults to the field that was ranked (the label field of the latest
    round of ``queries_field`` / ``revised_field``): the corrections land there, and every
    other field of the clone stays as it was in the parent. The clone gets new mask files
    (its own, under ALC_FIFTYONE_DIR), provenance in ``info["alc"]["provenance"]`` (parent,
    rounds, answers, pixels changed per class, reviewers, time, ``complete``) and a saved
    view ``alc_answered`` of the answered regions.

    The version is built under a temporary name and takes ``name`` only when complete; with
    ``overwrite=True`` an existing dataset ``name`` is deleted only then. A failure deletes
    the partial clone and its files; a ``kill -9`` leaves at most an incomplete,
    non-persistent dataset under the temporary name, which the next call removes and lists
    in ``provenance["removed_incomplete"]``.

    A sample whose masks cannot be read stops the save with a SampleError naming it; with
    ``skip_failures=True`` its revision is not applied (it keeps the labels it had in the
    parent) and it is listed in ``provenance["failed"]``. A write error (disk full, read-only
    folder) is an OutputError naming the folder and the errno.
    """
    from . import replace

    dataset = dataset._dataset
    info = alc_info(dataset)
    label_field = label_field or ranked_label_field(dataset, queries_field, revised_field)
    if not label_field:
        raise ALCError("label_field is unknown: pass label_field=")
    require_nonempty(dataset)
    if not dataset.has_field(label_field):
        raise ALCError(f"the dataset has no label field {label_field!r}")
    try:
        replace.check_name(name, overwrite)
    except ValueError as e:
        raise ALCError(str(e)) from e
    names, _, _ = class_table(dataset, label_field)
    removed = replace.remove_leftovers(name)
    clone = dataset.clone(replace.temporary_name(name), persistent=False)
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
            "removed_incomplete": removed,
            "complete": True,
        }
        new_info = dict(info)
        new_info["provenance"] = provenance
        clone.info["alc"] = new_info
        clone.save()
        replace.publish(clone, name, persistent=True)
    except BaseException:
        replace.discard(clone)
        raise
    return clone
