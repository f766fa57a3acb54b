"""save_revised_version: the corrected labels as a new dataset, with provenance."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import fiftyone as fo
from fiftyone import ViewField as F

from ..errors import ALCError, SampleError
from ..progress import ProgressCallback, track
from ..review.queries import ANSWERED, attr
from ..store import datasets as store_datasets
from ..store.db import dataset_id, dataset_of
from ..store.faults import failure_record
from ..store.fields import (
    QUERIES_FIELD,
    REVISED_FIELD,
    class_table,
    mask_targets,
    read_current_labels,
    require_nonempty,
    set_values_by_id,
)
from ..store.files import write_mask
from ..store.info import alc_info, ranked_label_field

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


def save_revised_version(
    dataset: SampleCollection,
    name: str,
    revised_field: str = REVISED_FIELD,
    label_field: str | None = None,
    queries_field: str = QUERIES_FIELD,
    overwrite: bool = False,
    skip_failures: bool = False,
    progress: ProgressCallback | None = None,
) -> fo.Dataset:
    """Save a new persistent dataset whose ``label_field`` holds the corrected masks.

    ``label_field`` defaults to the field that was ranked (the label field of the latest
    round of ``queries_field`` / ``revised_field``): the corrections land there, and every
    other field of the clone stays as it was in the parent. The clone gets new mask files
    (its own, under ALC_FIFTYONE_DIR), provenance in ``info["alc"]["provenance"]`` (parent,
    rounds, answers, pixels changed per class, reviewers, time, ``errata``: the number of
    correcting answers, ``audit``: the numbers of :func:`alc_fiftyone.audit` on the parent,
    the error rates with their intervals where random queries allow them, ``complete``) and
    a saved view ``alc_answered`` of the answered regions.

    The version is built under a temporary name and takes ``name`` only when complete; with
    ``overwrite=True`` an existing dataset ``name`` is deleted only then. ``name`` is never
    the name of ``dataset`` itself: a version does not replace the dataset it is made from. A failure deletes
    the partial clone and its files; a ``kill -9`` leaves at most an incomplete,
    non-persistent dataset under the temporary name, which the next call removes and lists
    in ``provenance["removed_incomplete"]``.

    A sample whose masks cannot be read stops the save with a SampleError naming it; with
    ``skip_failures=True`` its revision is not applied (it keeps the labels it had in the
    parent) and it is listed in ``provenance["failed"]``. A write error (disk full, read-only
    folder) is an OutputError naming the folder and the errno.

    Parameters
    ----------
    dataset
        The dataset (or a view of it) holding the queries.
    name
        The new dataset's name.
    revised_field
        The field of the corrected labels.
    label_field
        The field that receives the corrections (default: the field that was ranked).
    queries_field
        The ``fo.Detections`` field holding the queries.
    overwrite
        Replace a dataset of that name (only once the new one is complete).
    skip_failures
        Leave out (and list in the summary's ``failed``) samples whose files cannot be read,
        instead of stopping.
    progress
        ``progress(done, total, description)``, e.g. the CLI's tqdm bars.

    Returns
    -------
    fiftyone.core.dataset.Dataset
        The new, persistent dataset, its provenance in ``info["alc"]["provenance"]``.
    """
    dataset = dataset_of(dataset)
    info = alc_info(dataset)
    ranked = [
        r["label_field"]
        for r in info.get("rounds") or []
        if r.get("revised_field") == revised_field and r.get("label_field")
    ]
    if label_field and ranked and label_field not in ranked and dataset.has_field(revised_field):
        raise ALCError(
            f"the corrections in {revised_field!r} are of {ranked[-1]!r} (the field that was "
            f"ranked), not of {label_field!r}: the version's {label_field!r} would get another "
            f"field's labels; pass label_field={ranked[-1]!r}, or leave it out"
        )
    label_field = label_field or ranked_label_field(dataset, queries_field, revised_field)
    if not label_field:
        raise ALCError("label_field is unknown: pass label_field=")
    require_nonempty(dataset)
    if not dataset.has_field(label_field):
        raise ALCError(f"the dataset has no label field {label_field!r}")
    names, _, _ = class_table(dataset, label_field)
    audit_record = _audit_record(dataset, label_field, queries_field, revised_field)
    try:
        clone, removed = store_datasets.clone_for(dataset, name, overwrite)
    except ValueError as e:
        raise ALCError(str(e)) from e
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
            "parent_id": dataset_id(dataset),
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
            "errata": sum(1 for d in answered if d.get_field("status") == "corrected"),
            "audit": audit_record,
            "complete": True,
        }
        new_info = dict(info)
        new_info["provenance"] = provenance
        clone.info["alc"] = new_info
        clone.save()
        store_datasets.publish(clone, name, persistent=True)
    except BaseException:
        store_datasets.discard(clone)
        raise
    return clone


def _audit_record(dataset, label_field: str, queries_field: str, revised_field: str):
    """The audit of the review being saved (:func:`alc_fiftyone.review.audit.audit`) as
    plain values, or None where nothing was ranked in ``queries_field``."""
    from ..review.audit import audit

    if not dataset.has_field(queries_field):
        return None
    try:
        report = audit(dataset, label_field, queries_field, revised_field)
    except ALCError:
        return None
    out = report.summary()
    for key in ("error_rate", "error_rate_before"):
        if out[key] is not None:
            out[key] = {k: [float(v) for v in t] for k, t in out[key].items()}
    out["by_class"] = {k: [float(v) for v in t] for k, t in out["by_class"].items()}
    return out
