"""Label fields: the default field names, classes and the ignore value, the current labels,
checks of a collection's fields, and batched writes of one field.

The field names of the data model (docs/design.md) are defined here once; every function's
default and every operator's form take them from here.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..errors import ALCError, SampleError
from .db import dataset_of
from .files import read_segmentation
from .info import alc_info

#: the superpixel id maps (uint16 PNG, 0 = no superpixel)
SUPERPIXELS_FIELD = "alc_superpixels"
#: the correction queries (fo.Detections, one per ranked superpixel)
QUERIES_FIELD = "alc_queries"
#: the corrected labels (only on samples with answers)
REVISED_FIELD = "alc_revised"
#: SAM pseudo labels and their painted instances
PSEUDO_FIELD = "alc_pseudo"
PSEUDO_INSTANCES_FIELD = "alc_pseudo_instances"
#: the simulation's own queries and revised labels (a reviewer's fields are left alone)
SIM_QUERIES_FIELD = "alc_sim_queries"
SIM_REVISED_FIELD = "alc_sim_revised"

DEFAULT_IGNORE = 255


def get_ignore_index(dataset, field: str | None = None) -> int | None:
    """The value meaning "ignore" in the label masks (None: there is none). Recorded in
    ``info["alc"]`` by the loaders; otherwise guessed from a "void"-like mask target name,
    else 255 (VOC, Cityscapes)."""
    info = alc_info(dataset)
    if "ignore_index" in info:
        value = info["ignore_index"]
        return None if value is None else int(value)
    targets = mask_targets(dataset, field) if field else {}
    for value, name in targets.items():
        if str(name).lower() in ("void", "ignore", "unlabelled", "unlabeled"):
            return value
    return DEFAULT_IGNORE


def mask_targets(dataset, field: str) -> dict[int, str]:
    targets = (dataset.mask_targets or {}).get(field) or {}
    return {int(k): str(v) for k, v in targets.items()}


def class_names(dataset, field: str | None = None) -> dict[int, str]:
    """``{mask value: class name}`` of a Segmentation field (the ignore value included).

    Read from ``dataset.mask_targets[field]``; when the field has none, built from
    ``info["alc"]["classes"]`` (index order) and the recorded ignore value (named "void").
    ``field`` defaults to the recorded label field.
    """
    info = alc_info(dataset)
    field = field or info.get("label_field")
    names = dict(sorted(mask_targets(dataset, field).items())) if field else {}
    if names:
        return names
    names = {i: str(n) for i, n in enumerate(info.get("classes") or [])}
    ignore = info.get("ignore_index")
    if names and ignore is not None and int(ignore) not in names:
        names[int(ignore)] = "void"
    return names


def check_class_names(names, ignore_name: str | None = None, where: str = "classes") -> list:
    """``names`` (class names by index) as a list of str, or a ValueError that says what is
    wrong: a name that is None, empty or blank, a name listed twice (also when the two differ
    only by leading or trailing spaces), or a class named like the ignore value (answers are given by name, so each name must mean one value)."""
    out = []
    seen: dict[str, tuple[int, str]] = {}
    for i, name in enumerate(names):
        if name is None or not str(name).strip():
            raise ValueError(f"{where}: class {i} has an empty name ({name!r}); name every class")
        name = str(name)
        key = name.strip()  # " Sky " and "Sky" look the same in every list of the App
        if key in seen:
            j, first = seen[key]
            twice = (
                f"{name!r} is listed twice (classes {j} and {i})"
                if first == name
                else f"{first!r} and {name!r} (classes {j} and {i}) differ only by spaces"
            )
            raise ValueError(
                f"{where}: {twice}; each class needs its own name, since answers are given by name"
            )
        if ignore_name is not None and key.lower() == ignore_name.lower():
            raise ValueError(
                f"{where}: class {i} is named {name!r}, like the ignore value "
                f"({ignore_name!r}); rename it"
            )
        seen[key] = (i, name)
        out.append(name)
    return out


def class_table(dataset, field: str) -> tuple[dict[int, str], int | None, int]:
    """(names by value, ignore value, number of classes C) for a label field.

    C is one more than the largest non-ignore class value; class values are 0..C-1.
    """
    ignore = get_ignore_index(dataset, field)
    names = class_names(dataset, field)
    if not names:
        raise ALCError(
            f"no classes known for field {field!r}: set dataset.mask_targets[{field!r}] = "
            "{0: 'background', 1: ...}"
        )
    values = [v for v in names if v != ignore]
    if not values:
        raise ALCError(f"mask_targets of {field!r} hold no class besides the ignore value")
    seen: dict[str, int] = {}
    for value, name in sorted(names.items()):
        key = name.strip()  # names that differ only by spaces look the same in the App
        if key in seen:
            raise ALCError(
                f"mask_targets of {field!r} name {name!r} twice (values {seen[key]} and "
                f"{value}, at most spaces apart): an answer given by that name would be "
                f"ambiguous; rename one in dataset.mask_targets[{field!r}]"
            )
        seen[key] = value
    return names, ignore, max(values) + 1


def check_class_values(sample, labels: np.ndarray, num_classes: int, ignore, field: str) -> None:
    """SampleError when ``labels`` hold values that are neither a class nor the ignore value."""
    values = np.unique(labels)
    bad = values[(values >= num_classes) & (values != (ignore if ignore is not None else -1))]
    bad = bad[bad >= 0] if bad.dtype.kind == "i" else bad
    neg = values[values < 0] if values.dtype.kind == "i" else values[:0]
    bad = np.concatenate([neg, bad])
    if len(bad):
        raise SampleError(
            sample.id,
            f"{field!r} holds values {bad[:10].tolist()} that are not classes 0..{num_classes - 1}"
            + (f" or the ignore value {ignore}" if ignore is not None else ""),
            sample.filepath,
        )


def read_current_labels(sample, label_field: str, revised_field: str | None) -> np.ndarray:
    """The labels under review now: the revised field where it exists, else the label field."""
    if revised_field and sample.has_field(revised_field) and sample[revised_field] is not None:
        return read_segmentation(sample, revised_field)
    return read_segmentation(sample, label_field)


def require_field(samples, field: str, what: str, hint: str = "") -> None:
    """ALCError when the collection lacks ``field``; SampleError naming the first sample where
    it is empty."""
    if not samples.has_field(field):
        raise ALCError(
            f"the dataset has no {what} field {field!r}" + (f"; {hint}" if hint else "")
        )
    missing = samples.exists(field, False)
    if len(missing):
        first = missing.first()
        raise SampleError(
            first.id,
            f"{what} field {field!r} is missing on this sample and {len(missing) - 1} other(s)"
            + (f"; {hint}" if hint else ""),
            first.filepath,
        )


def require_nonempty(samples) -> None:
    if len(samples) == 0:
        raise ALCError("the view is empty: there are no samples to work on")


def set_values_by_id(samples, field: str, values: dict[str, object]) -> None:
    """Bulk write of one field on the samples whose ids are the keys (one database round)."""
    if values:
        dataset_of(samples).set_values(field, values, key_field="id")


def batched(items: Iterable, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def require_segmentation_field(samples, field_name: str, what: str, hint: str = "") -> None:
    """ALCError unless ``field_name`` is an ``fo.Segmentation`` field of the collection;
    SampleError naming the first sample where it is empty."""
    import fiftyone as fo

    f = samples.get_field(field_name) if samples.has_field(field_name) else None
    if f is not None and getattr(f, "document_type", None) is not fo.Segmentation:
        kind = type(f).__name__
        raise ALCError(
            f"{field_name!r} is not an fo.Segmentation field (it is a {kind}): choose the "
            f"{what} field that holds the masks"
        )
    require_field(samples, field_name, what, hint)


def level_field(field: str, level: int) -> str:
    """The field holding level ``level`` (1, 2, ...) of the region hierarchy whose top level
    is ``field`` (``alc.compute_superpixels(..., levels=...)``)."""
    return f"{field}_level{int(level)}"


def hierarchy_levels(dataset, field: str) -> list[str]:
    """The fields of the region hierarchy whose top level is ``field``, top first (``[field]``
    when it has no finer level), as ``dataset.info["alc"]`` records them."""
    rec = (alc_info(dataset).get("superpixels") or {}).get(field) or {}
    return [field, *[f for f in rec.get("levels") or [] if dataset.has_field(f)]]
