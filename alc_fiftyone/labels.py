"""Shared helpers for label fields: classes, ignore value, current labels, batched writes."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .errors import ALCError, SampleError
from .storage import read_segmentation

DEFAULT_IGNORE = 255


def alc_info(dataset) -> dict:
    """``dataset.info["alc"]`` (a copy; write back with :func:`update_alc_info`)."""
    return dict((dataset.info or {}).get("alc") or {})


def update_alc_info(dataset, **changes) -> dict:
    """Set the keys ``changes`` of ``dataset.info["alc"]`` in the database, atomically.

    One MongoDB ``$set`` of ``info.alc.<key>`` per key (a key may be a dotted path, e.g.
    ``"shard_runs.<run>.<shard>"``), not a save of the whole dict: processes that update
    different keys at the same time (delegated workers on shards, a merge) never lose each
    other's update. The dataset is then reloaded and the new ``info["alc"]`` returned.
    """
    if not changes:
        return alc_info(dataset)
    sets = {f"info.alc.{key}": value for key, value in changes.items()}
    return _update_dataset_doc(dataset, {"$set": sets})


def append_alc_info(dataset, key: str, item) -> dict:
    """Append ``item`` to the list ``dataset.info["alc"][key]`` with one atomic ``$push``
    (rounds of two processes are both kept); reloads the dataset, returns ``info["alc"]``."""
    return _update_dataset_doc(dataset, {"$push": {f"info.alc.{key}": item}})


def _update_dataset_doc(dataset, update: dict) -> dict:
    """Apply one MongoDB ``update`` to the dataset's document, reload, return ``info["alc"]``."""
    import fiftyone.core.odm as foo

    foo.get_db_conn().datasets.update_one({"_id": dataset._doc.id}, update)
    dataset.reload()
    return alc_info(dataset)


def ranked_label_field(
    dataset, queries_field: str | None = None, revised_field: str | None = None
) -> str | None:
    """The label field of the latest ranking round whose queries field is ``queries_field``
    or whose revised field is ``revised_field`` (the field the corrections belong to), else
    the label field the dataset records (``info["alc"]["label_field"]``), else None."""
    info = alc_info(dataset)
    for record in reversed(info.get("rounds") or []):
        same = (queries_field and record.get("queries_field") == queries_field) or (
            revised_field and record.get("revised_field") == revised_field
        )
        if same and record.get("label_field"):
            return record["label_field"]
    return info.get("label_field")


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
    wrong: a name that is None, empty or blank, a name listed twice, or a class named like
    the ignore value (answers are given by name, so each name must mean one value)."""
    out = []
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name is None or not str(name).strip():
            raise ValueError(f"{where}: class {i} has an empty name ({name!r}); name every class")
        name = str(name)
        if name in seen:
            raise ValueError(
                f"{where}: {name!r} is listed twice (classes {seen[name]} and {i}); each class "
                "needs its own name, since answers are given by name"
            )
        if ignore_name is not None and name.strip().lower() == ignore_name.lower():
            raise ValueError(
                f"{where}: class {i} is named {name!r}, like the ignore value "
                f"({ignore_name!r}); rename it"
            )
        seen[name] = i
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
        if name in seen:
            raise ALCError(
                f"mask_targets of {field!r} name {name!r} twice (values {seen[name]} and "
                f"{value}): an answer given by that name would be ambiguous; rename one in "
                f"dataset.mask_targets[{field!r}]"
            )
        seen[name] = value
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
        samples._dataset.set_values(field, values, key_field="id")


def batched(items: Iterable, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
