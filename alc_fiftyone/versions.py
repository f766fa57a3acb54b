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
from .errors import ALCError
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
from .storage import dataset_dir, write_mask

FORMATS = ("voc", "index")


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


def _check_out_dir(out_dir) -> Path:
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ALCError(f"export folder {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ALCError(f"cannot create export folder {out}: {e}") from e
    if not os.access(out, os.W_OK):
        raise ALCError(f"export folder {out} is not writable")
    return out


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def export_masks(
    samples,
    field: str,
    out_dir,
    format: str = "voc",
    label_field: str | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> dict:
    """Write each sample's mask of ``field`` to ``out_dir/<image stem>.png`` plus
    ``classes.txt`` (one class name per line, in value order) and ``classes.json``.

    ``format="voc"``: palette PNGs with the VOC colour map (index = class value, 255 = void);
    ``"index"``: plain 8-bit index PNGs. Where a sample has no ``field`` (no answer yet) and
    ``label_field`` is given, its labels are exported instead. Existing files are refused
    unless ``overwrite``.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    require_nonempty(samples)
    out = _check_out_dir(out_dir)
    ref_field = label_field or field
    names, ignore, num_classes = class_table(samples._dataset, ref_field)
    stems = [Path(p).stem for p in samples.values("filepath")]
    dup = [s for s, n in Counter(stems).items() if n > 1]
    if dup:
        raise ALCError(
            f"several images share the file name stem {dup[0]!r}; cannot export by stem"
        )
    if not overwrite:
        clash = [s for s in stems if (out / f"{s}.png").exists()]
        if clash:
            raise ALCError(f"{out / (clash[0] + '.png')} exists; pass overwrite=True to replace")
    pal = voc_palette().ravel().tolist()
    if ignore is not None and ignore < 256:
        pal[3 * ignore : 3 * ignore + 3] = [224, 224, 192]
    fields = [f for f in (field, label_field) if f and samples.has_field(f)]
    written = 0
    for sample in track(
        samples.select_fields(fields).iter_samples(), len(samples), progress, "export"
    ):
        if label_field:
            mask = read_current_labels(sample, label_field, field)
        else:
            mask = read_current_labels(sample, field, None)
        if mask.max(initial=0) > 255:
            raise ALCError(f"sample {sample.id}: values above 255 cannot be exported as VOC PNG")
        im = Image.fromarray(mask.astype(np.uint8), mode="L")
        if format == "voc":
            im = im.convert("P")
            im.putpalette(pal)
        _write_atomic(
            out / f"{Path(sample.filepath).stem}.png", lambda p, im=im: im.save(p, format="PNG")
        )
        written += 1
    classes = [names.get(i, f"class_{i}") for i in range(num_classes)]
    _write_atomic(out / "classes.txt", lambda p: p.write_text("\n".join(classes) + "\n"))
    _write_atomic(
        out / "classes.json",
        lambda p: p.write_text(json.dumps({"classes": classes, "ignore_index": ignore}, indent=1)),
    )
    return {"out_dir": str(out), "written": written, "format": format, "classes": classes}


def save_revised_version(
    dataset,
    name: str,
    revised_field: str = "alc_revised",
    label_field: str | None = None,
    queries_field: str = "alc_queries",
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> fo.Dataset:
    """Save a new persistent dataset whose ``label_field`` holds the corrected masks.

    The clone gets new mask files (its own, under ALC_FIFTYONE_DIR), provenance in
    ``info["alc"]["provenance"]`` (parent, rounds, answers, pixels changed per class,
    reviewers, time) and a saved view ``alc_answered`` of the answered regions. On any failure
    the partly built clone is deleted.
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
        for sample in track(
            clone.select_fields(fields).iter_samples(), len(clone), progress, "save version"
        ):
            mask = read_current_labels(sample, label_field, revised_field)
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
