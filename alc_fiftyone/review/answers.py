"""Answering queries: store the answer on the query and expand it into the revised labels.

Every answer is written when it is given: the revised mask goes to a new file (the previous
file stays, so undo can restore exactly the pixels it changed), then one sample update stores
both the query's new status and the pointer to the new mask.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import fiftyone as fo
import numpy as np
from bson import ObjectId

from ..core.correction import restore_region, write_region
from ..errors import ALCError, QueryError
from ..store import changes, db
from ..store.fields import (
    QUERIES_FIELD,
    class_table,
    mask_targets,
    read_current_labels,
)
from ..store.files import read_png_array, read_segmentation, write_mask
from .claims import held_by, not_held_by_another, refuse_held, require_claim, reviewer_name
from .queries import ACTED, ANSWERED, attr, find_det, find_query_sample_id, query_region

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


KEEP = object()  # answer meaning "the region's labels stay as they are"


def answer_classes(dataset, label_field: str) -> list[str]:
    """The names a query on ``label_field`` can be answered with (the classes and the ignore
    value, in value order); empty when the field has no class table."""
    try:
        names, ignore, num = class_table(dataset, label_field)
    except ALCError:
        return []
    return [names[v] for v in sorted(names) if v < num or v == ignore]


def _class_value(label, names: dict[int, str], num_classes: int, ignore, query_id: str) -> int:
    """The value of an answer given as a class name or value; the ignore value (e.g. VOC's
    "void") is a valid answer too: it marks a region as not to be learned from."""
    allowed = {k: v for k, v in names.items() if k < num_classes or k == ignore}
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if 0 <= int(label) < num_classes or int(label) == ignore:
            return int(label)
        void = f" or the ignore value {ignore} ({names.get(ignore, 'void')})"
        raise QueryError(
            f"query {query_id}: class value {label} is not a class (0..{num_classes - 1})"
            + (void if ignore is not None else "")
        )
    by_name = {v: k for k, v in allowed.items()}
    if label in by_name:
        return by_name[label]
    raise QueryError(
        f"query {query_id}: {label!r} is not a class; classes are "
        f"{', '.join(allowed[k] for k in sorted(allowed))}"
    )


def mask_path_of(sample, field: str) -> str | None:
    seg = sample[field] if sample.has_field(field) else None
    return seg.mask_path if seg is not None else None


def _commit(
    dataset,
    sample_id: str,
    queries_field: str,
    query_updates: dict[str, dict],
    revised_field: str,
    expected_revised: str | None,
    new_revised: str | None,
    unanswered: tuple[str, ...] = (),
    answered: tuple[str, ...] = (),
    user_claim: tuple[bool, str | None] = (False, None),
    claimed_by: str | None = None,
) -> bool:
    """Write query attributes and the revised mask of one sample in one conditional update.

    Only the named queries' attributes are set (a claim another reviewer just took on another
    query of the sample survives), and only if the revised mask is still ``expected_revised``
    (nobody changed the labels since they were read: no lost update) and the queries in
    ``unanswered`` / ``answered`` still are (and, with ``user_claim = (True, user)``, the
    unanswered ones are not held by a live claim of another reviewer). Returns False when a
    condition failed.
    """
    arr = f"{queries_field}.detections"
    conds: list[dict] = [{f"{revised_field}.mask_path": expected_revised}]
    if expected_revised is None:  # matches a missing or empty field
        conds = [{f"{revised_field}.mask_path": {"$in": [None]}}]
    for qid in unanswered:
        q = {"_id": ObjectId(qid), "status": {"$nin": list(ANSWERED)}}
        if claimed_by is not None:
            q = {"$and": [q, held_by(claimed_by)]}
        elif user_claim[0]:
            q = {"$and": [q, not_held_by_another(user_claim[1])]}
        conds.append({arr: {"$elemMatch": q}})
    for qid in answered:
        conds.append(
            {arr: {"$elemMatch": {"_id": ObjectId(qid), "status": {"$in": list(ANSWERED)}}}}
        )
    sets: dict = {}
    filters = []
    for i, (qid, values) in enumerate(query_updates.items()):
        filters.append({f"q{i}._id": ObjectId(qid)})
        for key, value in values.items():
            sets[f"{arr}.$[q{i}].{key}"] = _db_value(value)
    if new_revised is not None:
        sets[revised_field] = fo.Segmentation(mask_path=new_revised).to_mongo()
    res = db.update_sample(dataset, sample_id, {"$and": conds}, {"$set": sets}, filters)
    changes.touched(dataset, sample_id)
    return res.matched_count == 1


def ensure_revised_field(dataset, label_field: str, revised_field: str, names) -> None:
    if not dataset.has_sample_field(revised_field):
        dataset.add_sample_field(
            revised_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Segmentation
        )
    if revised_field not in (dataset.mask_targets or {}):
        dataset.mask_targets = {
            **(dataset.mask_targets or {}),
            revised_field: mask_targets(dataset, label_field) or names,
        }


MAX_ATTEMPTS = 20


def apply_answers(
    dataset: SampleCollection,
    sample_id: str,
    answers: Iterable[tuple[str, object]],
    user: str | None = None,
    queries_field: str = QUERIES_FIELD,
    force: bool = False,
    claimed_by: str | None = None,
) -> dict[str, int]:
    """Apply answers to queries of one sample in a single write; returns pixels changed per
    query id. A query another reviewer holds (a live claim) is refused with a QueryError
    naming them, unless ``force``. An answer is a class name or value (written to every pixel
    of the query's region) or :data:`KEEP` / ``None`` (the labels are right as they are:
    nothing changes).

    Safe with several reviewers: the write is conditional on the revised mask being the one
    read and on the queries being unanswered; when another answer on the same sample came
    first, the labels are read again and the answers re-applied.

    Parameters
    ----------
    dataset
        The dataset (or a view of it) holding the queries.
    sample_id
        The sample whose queries are answered.
    answers
        ``(query id, label)`` pairs; a label is a class name or value, or None / ``KEEP``.
    user
        The reviewer's name (recorded with the answer; claims keep reviewers apart).
    queries_field
        The ``fo.Detections`` field holding the queries.
    force
        Act even on a query another reviewer holds (an administrator's override).
    claimed_by
        Write only if this reviewer holds the query (the panel's check, atomic).

    Returns
    -------
    dict
        Pixels changed per query id.
    """
    answers = list(answers)
    if not answers:
        return {}
    user = reviewer_name(user)
    for _ in range(MAX_ATTEMPTS):
        result = _try_apply(dataset, sample_id, answers, user, queries_field, force, claimed_by)
        if result is not None:
            return result
    raise QueryError(f"sample {sample_id} kept changing under the answer; try again")


def _try_apply(
    dataset, sample_id, answers, user, queries_field, force, claimed_by=None
) -> dict[str, int] | None:
    sample = dataset[sample_id]
    sample.reload()
    first = find_det(sample, queries_field, answers[0][0])
    dets = {d.id: d for d in sample[queries_field].detections}
    label_field = attr(first, "label_field")
    revised_field = attr(first, "revised_field")
    names, ignore, num_classes = class_table(dataset, label_field)
    labels = read_current_labels(sample, label_field, revised_field)
    before_path = mask_path_of(sample, revised_field)
    now = datetime.now(timezone.utc)
    changed: dict[str, int] = {}
    updates: dict[str, dict] = {}
    for query_id, label in answers:
        det = dets.get(query_id)
        if det is None:
            raise QueryError(f"no query {query_id} on sample {sample_id}")
        if claimed_by is not None:
            require_claim(det, claimed_by)
        elif not force:
            refuse_held(det, user, "answer")
        if attr(det, "status") in ANSWERED:
            raise QueryError(
                f"query {query_id} was already answered ({attr(det, 'answer')!r} by "
                f"{attr(det, 'answered_by')}); undo it first"
            )
        # each query against the map it was made on (queries of a hierarchy's levels differ)
        if attr(det, "superpixel_path") != mask_path_of(sample, attr(det, "superpixel_field")):
            raise QueryError(
                f"query {query_id}: the superpixels of sample {sample_id} changed since it was "
                "ranked; rank again"
            )
        slc, region = query_region(det, labels.shape)
        if label is None or label is KEEP:
            value, n = None, 0
            status = "confirmed"
        else:
            value = _class_value(label, names, num_classes, ignore, query_id)
            n = write_region(labels, region, value, window=slc)
            status = "confirmed" if value == attr(det, "current_value") else "corrected"
        updates[query_id] = {
            "status": status,
            "answer": names.get(value, str(value)) if value is not None else det.label,
            "answer_value": value,
            "answered_by": user,
            "answered_at": now,
            "pixels_changed": n,
            "revised_before": before_path,
        }
        changed[query_id] = n
    ensure_revised_field(dataset, label_field, revised_field, names)
    new_path = None
    if any(n for n in changed.values()) or before_path is None:
        new_path = write_mask(labels, dataset, revised_field, sample_id)
    ok = _commit(
        dataset,
        sample_id,
        queries_field,
        updates,
        revised_field,
        before_path,
        new_path,
        unanswered=tuple(updates),
        user_claim=(not force, user),
        claimed_by=claimed_by,
    )
    if not ok:
        if new_path:
            Path(new_path).unlink(missing_ok=True)  # never referenced
        return None
    return changed


def answer(
    dataset: SampleCollection,
    query_id: str,
    label: str | int | None,
    user: str | None = None,
    queries_field: str = QUERIES_FIELD,
    force: bool = False,
    claimed_by: str | None = None,
) -> int:
    """Answer one query and return the number of pixels that changed.

    ``label`` is the right class (name or value) of the region: it is written to every pixel
    of the query's region in the revised labels, so confirming the current class also fills
    the region with it. ``None`` means "the labels here are right as they are" (no pixel
    changes). Either way the query counts as one click.

    A query that another reviewer holds (claimed, the claim not expired) is refused with a
    QueryError naming them; ``force=True`` answers it anyway (an admin's override). With
    ``claimed_by`` (the review panel passes the reviewer) the answer is written only if that
    reviewer holds the query, in the same update; else a
    :class:`~alc_fiftyone.errors.NotClaimedError` says why (skipped, answered, held by
    another reviewer, claim given back).

    Parameters
    ----------
    dataset
        The dataset (or a view of it) holding the queries.
    query_id
        The id of the query (its Detection id).
    label
        The right class of the region (a name or value), or None for "the labels here are right"
        (nothing changes).
    user
        The reviewer's name (recorded with the answer; claims keep reviewers apart).
    queries_field
        The ``fo.Detections`` field holding the queries.
    force
        Act even on a query another reviewer holds (an administrator's override).
    claimed_by
        Write only if this reviewer holds the query (the panel's check, atomic).

    Returns
    -------
    int
        The number of pixels that changed in the revised labels.
    """
    dataset = db.dataset_of(dataset)
    sample_id = find_query_sample_id(dataset, query_id, queries_field)
    res = apply_answers(
        dataset, sample_id, [(query_id, label)], user, queries_field, force, claimed_by
    )
    return res[query_id]


def skip(
    dataset: SampleCollection,
    query_id: str,
    user: str | None = None,
    queries_field: str = QUERIES_FIELD,
    force: bool = False,
    claimed_by: str | None = None,
) -> None:
    """Mark a query skipped: it stays unanswered and is kept (not asked again) by later
    rankings. A query another reviewer holds is refused unless ``force``.

    Parameters
    ----------
    dataset
        The dataset (or a view of it) holding the queries.
    query_id
        The id of the query (its Detection id).
    user
        The reviewer's name (recorded with the answer; claims keep reviewers apart).
    queries_field
        The ``fo.Detections`` field holding the queries.
    force
        Act even on a query another reviewer holds (an administrator's override).
    claimed_by
        Write only if this reviewer holds the query (the panel's check, atomic).

    Returns
    -------
    None
    """
    user = reviewer_name(user)
    dataset = db.dataset_of(dataset)
    sample_id = find_query_sample_id(dataset, query_id, queries_field)
    sample = dataset[sample_id]
    sample.reload()
    det = find_det(sample, queries_field, query_id)
    if claimed_by is not None:
        require_claim(det, claimed_by)
    if attr(det, "status") in ANSWERED:
        raise QueryError(f"query {query_id} is answered; undo it instead of skipping")
    if not force and claimed_by is None:
        refuse_held(det, user, "skip")
    update = {"status": "skipped", "answered_by": user, "answered_at": datetime.now(timezone.utc)}
    arr = f"{queries_field}.detections"
    q = {"_id": ObjectId(query_id), "status": {"$nin": list(ANSWERED)}}
    if claimed_by is not None:
        q = {"$and": [q, held_by(claimed_by)]}
    elif not force:
        q = {"$and": [q, not_held_by_another(user)]}
    res = db.update_sample(
        dataset,
        sample_id,
        {arr: {"$elemMatch": q}},
        {"$set": {f"{arr}.$[q].{k}": _db_value(v) for k, v in update.items()}},
        [{"q._id": ObjectId(query_id)}],
    )
    changes.touched(dataset, sample_id)
    if res.matched_count != 1:
        raise QueryError(
            f"query {query_id} was answered or claimed by another reviewer meanwhile; "
            "take the next query"
        )


def _reopen(dataset, sample, query_id, user, queries_field, status) -> None:
    """A skipped or split query back to ``pending`` (a split's pieces removed, unless one of
    them was answered: those answers are taken back first)."""
    arr = f"${queries_field}.detections"
    oid = ObjectId(query_id)
    pieces = [d for d in sample[queries_field].detections if attr(d, "parent_id") == query_id]
    answered = [d for d in pieces if attr(d, "status") in ANSWERED]
    if answered:
        raise QueryError(
            f"query {query_id} was split and {len(answered)} of its pieces are answered: undo "
            "those answers first"
        )
    piece_ids = [ObjectId(d.id) for d in pieces]
    reopened = {
        "status": "pending",
        "answered_by": None,
        "answered_at": None,
        "split_into": None,
        "undone_by": user,
        "undone_at": _db_value(datetime.now(timezone.utc)),
    }
    pipeline = [
        {
            "$set": {
                f"{queries_field}.detections": {
                    "$map": {
                        "input": {
                            "$filter": {
                                "input": arr,
                                "as": "d",
                                "cond": {"$not": [{"$in": ["$$d._id", piece_ids]}]},
                            }
                        },
                        "as": "d",
                        "in": {
                            "$cond": [
                                {"$eq": ["$$d._id", oid]},
                                {"$mergeObjects": ["$$d", {"$literal": reopened}]},
                                "$$d",
                            ]
                        },
                    }
                },
                "last_modified_at": "$$NOW",
            }
        }
    ]
    cond = {f"{queries_field}.detections": {"$elemMatch": {"_id": oid, "status": status}}}
    res = db.update_sample(dataset, sample.id, cond, pipeline)
    changes.touched(dataset, sample.id)
    if res.matched_count != 1:
        raise QueryError(f"query {query_id} changed meanwhile; nothing was undone")


def split_query(
    dataset: SampleCollection,
    query_id: str,
    user: str | None = None,
    pieces: int | None = None,
    queries_field: str = QUERIES_FIELD,
    force: bool = False,
    claimed_by: str | None = None,
) -> list[str]:
    """The answer "Mixed": the region holds several classes, so it is split into finer pieces,
    which become queries of their own, claimed by ``user`` so that they are served to them
    next. The pieces are the regions of the next level of the query's region hierarchy
    (``compute_superpixels(..., levels=...)``; they are then queries of that level, as a
    ranking would make them) when it has 2 to :data:`MAX_LEVEL_PIECES` of them inside the
    region; else (or when ``pieces`` is given) SLIC restricted to the region (maskSLIC,
    Irving, arXiv:1606.09518). The query itself
    gets the status ``split`` (recorded with ``split_into``, the pieces' ids); :func:`undo`
    takes the split back (the pieces are removed). No label changes.

    Parameters
    ----------
    dataset
        The dataset (or a view of it) holding the queries.
    query_id
        The id of the query (its Detection id).
    user
        The reviewer's name (recorded with the answer; claims keep reviewers apart).
    pieces
        How many SLIC pieces to aim for (default: the next level's regions, else one per ~600
        pixels, 2 to 8).
    queries_field
        The ``fo.Detections`` field holding the queries.
    force
        Act even on a query another reviewer holds (an administrator's override).
    claimed_by
        Write only if this reviewer holds the query (the panel's check, atomic).

    Returns
    -------
    list of str
        The ids of the new queries, the largest piece first.
    """
    from ..store.files import read_image
    from .claims import CLAIM_SECONDS

    user = reviewer_name(user)
    dataset = db.dataset_of(dataset)
    sample_id = find_query_sample_id(dataset, query_id, queries_field)
    sample = dataset[sample_id]
    sample.reload()
    det = find_det(sample, queries_field, query_id)
    status = attr(det, "status")
    if claimed_by is not None:
        require_claim(det, claimed_by)
    if status in ANSWERED or status == "split":
        raise QueryError(f"query {query_id} is {status}; undo it first")
    if not force and claimed_by is None:
        refuse_held(det, user, "split")
    label_field, revised_field = attr(det, "label_field"), attr(det, "revised_field")
    labels = read_current_labels(sample, label_field, revised_field)
    slc, region = query_region(det, labels.shape)
    area = int(region.sum())
    ids, level = None, None
    if pieces is None:
        ids, level = _next_level_pieces(dataset, sample, det, slc, region)
    if ids is None:
        k = pieces or int(np.clip(round(area / 600), 2, 8))
        ids = _split_region(read_image(sample)[slc], region, k)
    names, ignore, _ = class_table(dataset, label_field)
    now = datetime.now(timezone.utc)
    until = now + timedelta(seconds=CLAIM_SECONDS)
    H, W = labels.shape
    x0, y0 = slc[1].start, slc[0].start
    new = []
    from scipy import ndimage

    from .queries import region_classes

    present = [int(i) for i in np.unique(ids) if i > 0]
    if len(present) < 2:
        raise QueryError(f"query {query_id}: its region is too small to split")
    for piece_id in present:
        piece = ids == piece_id
        rows, cols = np.flatnonzero(piece.any(1)), np.flatnonzero(piece.any(0))
        crop = piece[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        # the representative: the pixel deepest inside the piece (the star stays inside)
        depth = ndimage.distance_transform_edt(np.pad(crop, 1))[1:-1, 1:-1]
        ry, rx = np.unravel_index(int(np.argmax(depth)), crop.shape)
        py0, px0 = y0 + rows[0], x0 + cols[0]
        current, mix = region_classes(labels[slc][piece], names, ignore)
        h, w = crop.shape
        d = fo.Detection(
            label=names.get(current, str(current)),
            bounding_box=[px0 / W, py0 / H, w / W, h / H],
            mask=crop,
        )
        values = {
            "score": attr(det, "score"),
            "rank": attr(det, "rank"),
            "round": attr(det, "round"),
            "superpixel_id": attr(det, "superpixel_id") if level is None else piece_id,
            "superpixel_path": attr(det, "superpixel_path") if level is None else level[1],
            "level": attr(det, "level", 0) if level is None else attr(det, "level", 0) + 1,
            "rep_point": [(px0 + rx + 0.5) / W, (py0 + ry + 0.5) / H],
            "rep_yx": [int(py0 + ry), int(px0 + rx)],
            "bbox_px": [int(px0), int(py0), int(w), int(h)],
            "image_size": [int(W), int(H)],
            "current_value": current,
            "label_mix": mix,
            "suggested_label": attr(det, "suggested_label"),
            "suggestions": list(attr(det, "suggestions") or []),
            "suggestion_scores": list(attr(det, "suggestion_scores") or []),
            "num_pixels": int(crop.sum()),
            "superpixel_size": attr(det, "superpixel_size"),
            "status": "claimed",
            "claimed_by": user,
            "claimed_at": _db_value(now),
            "claimed_until": _db_value(until),
            "method": attr(det, "method"),
            "label_field": label_field,
            "superpixel_field": attr(det, "superpixel_field") if level is None else level[0],
            "revised_field": revised_field,
            "ranked_at": attr(det, "ranked_at"),
            "parent_id": query_id,
        }
        for key, value in values.items():
            d.set_field(key, value)
        new.append(d)
    new.sort(key=lambda d: -attr(d, "num_pixels"))
    oid = ObjectId(query_id)
    marked = {
        "status": "split",
        "answered_by": user,
        "answered_at": _db_value(now),
        "split_into": [d.id for d in new],
    }
    arr = f"${queries_field}.detections"
    pipeline = [
        {
            "$set": {
                f"{queries_field}.detections": {
                    "$concatArrays": [
                        {
                            "$map": {
                                "input": arr,
                                "as": "d",
                                "in": {
                                    "$cond": [
                                        {"$eq": ["$$d._id", oid]},
                                        {"$mergeObjects": ["$$d", {"$literal": marked}]},
                                        "$$d",
                                    ]
                                },
                            }
                        },
                        {"$literal": [d.to_mongo() for d in new]},
                    ]
                },
                "last_modified_at": "$$NOW",
            }
        }
    ]
    q = {"_id": oid, "status": {"$nin": [*ANSWERED, "split"]}}
    if claimed_by is not None:
        q = {"$and": [q, held_by(claimed_by)]}
    elif not force:
        q = {"$and": [q, not_held_by_another(user)]}
    res = db.update_sample(
        dataset, sample_id, {f"{queries_field}.detections": {"$elemMatch": q}}, pipeline
    )
    changes.touched(dataset, sample_id)
    if res.matched_count != 1:
        raise QueryError(f"query {query_id} was answered or taken meanwhile; nothing was split")
    return [d.id for d in new]


#: the most pieces of the next level a split serves; a region with more is split by SLIC
MAX_LEVEL_PIECES = 12


def _next_level_pieces(dataset, sample, det, slc, region):
    """(piece ids in the query's window, (field, mask path) of the next level) when the
    query's region has 2 to :data:`MAX_LEVEL_PIECES` regions of the next level of its
    hierarchy, else (None, None)."""
    from ..store.info import alc_info

    here = attr(det, "superpixel_field")
    records = alc_info(dataset).get("superpixels") or {}
    below = [f for f, r in records.items() if isinstance(r, dict) and r.get("parent") == here]
    for name in below:
        seg = sample[name] if sample.has_field(name) else None
        if seg is None or seg.get_field("parent_path") != attr(det, "superpixel_path"):
            continue
        window = read_segmentation(sample, name)[slc]
        ids = np.where(region, window, 0)
        n = len(np.unique(ids[region]))
        if 2 <= n <= MAX_LEVEL_PIECES:
            return ids, (name, seg.mask_path)
    return None, None


def _split_region(image: np.ndarray, region: np.ndarray, k: int) -> np.ndarray:
    """Pieces of ``region`` (an id map, 0 outside): SLIC restricted to the region with ``k``,
    then more, segments; a region SLIC keeps whole is cut in two across its longer side."""
    from ..core.superpixels import slic

    for n in (k, 2 * k, 4 * k):
        ids = np.where(region, slic(image, n_segments=n, compactness=10.0, mask=region), 0)
        if len(np.unique(ids[region])) >= 2:
            return ids
    ys, xs = np.nonzero(region)
    coord = ys if np.ptp(ys) >= np.ptp(xs) else xs
    ids = np.zeros(region.shape, dtype=np.int64)
    ids[ys, xs] = np.where(coord <= np.median(coord), 1, 2)
    return ids


def _db_value(value):
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def last_answered(dataset, queries_field: str = QUERIES_FIELD, user: str | None = None):
    """Id of the most recently answered query (by ``user`` if given), or None."""
    return last_action(dataset, queries_field, user, ANSWERED)


def last_action(
    dataset, queries_field: str = QUERIES_FIELD, user: str | None = None, statuses=ACTED
):
    """Id of the query of the most recent action (by ``user`` if given) among answers,
    skips and splits (``statuses``), or None."""
    from fiftyone import ViewField as F

    if not dataset.has_field(queries_field):
        raise QueryError(
            f"no queries in field {queries_field!r} of {dataset.name!r}: nothing to undo "
            "(rank the superpixels and answer first)"
        )
    cond = F("status").is_in(list(statuses))
    if user is not None:
        cond &= F("answered_by") == user
    view = dataset.filter_labels(queries_field, cond)
    ids = view.values(f"{queries_field}.detections.id", unwind=True)
    times = view.values(f"{queries_field}.detections.answered_at", unwind=True)
    if not ids:
        return None
    return ids[int(np.argmax([t.timestamp() if t else 0 for t in times]))]


def undo(
    dataset: SampleCollection,
    query_id: str | None = None,
    user: str | None = None,
    queries_field: str = QUERIES_FIELD,
) -> int:
    """Take the last action back: an answer (the pixels of its region get the labels they had
    before it), a skip, or a split (:func:`split_query`: its pieces are removed); the query
    returns to the queue (``pending``). ``query_id=None`` takes back the most recent action
    (of ``user`` if given), whatever it was. Returns the number of pixels restored (0 for a
    skip or a split).

    Parameters
    ----------
    dataset
        The dataset (or a view of it) holding the queries.
    query_id
        The query whose answer, skip or split to take back (None: the last action, of
        ``user`` if given).
    user
        The reviewer's name (recorded with the answer; claims keep reviewers apart).
    queries_field
        The ``fo.Detections`` field holding the queries.

    Returns
    -------
    int
        The number of pixels restored.
    """
    dataset = db.dataset_of(dataset)
    if query_id is None:
        query_id = last_action(dataset, queries_field, user)
        if query_id is None:
            raise ALCError("there is nothing to undo" + (f" for {user}" if user else ""))
    sample_id = find_query_sample_id(dataset, query_id, queries_field)
    sample = dataset[sample_id]
    sample.reload()
    status = attr(find_det(sample, queries_field, query_id), "status")
    if status in ("skipped", "split"):
        _reopen(dataset, sample, query_id, user, queries_field, status)
        return 0
    for _ in range(MAX_ATTEMPTS):
        restored = _try_undo(dataset, sample_id, query_id, user, queries_field)
        if restored is not None:
            return restored
    raise QueryError(f"sample {sample_id} kept changing under the undo; try again")


def _try_undo(dataset, sample_id, query_id, user, queries_field) -> int | None:
    sample = dataset[sample_id]
    sample.reload()
    det = find_det(sample, queries_field, query_id)
    if attr(det, "status") not in ANSWERED:
        raise QueryError(f"query {query_id} is {attr(det, 'status')!r}, not answered")
    label_field = attr(det, "label_field")
    revised_field = attr(det, "revised_field")
    current_path = mask_path_of(sample, revised_field)
    restored = 0
    new_path = None
    if attr(det, "answer_value") is not None:
        current = read_segmentation(sample, revised_field)
        before_path = attr(det, "revised_before")
        before = (
            read_png_array(before_path, sample.id)
            if before_path
            else read_segmentation(sample, label_field)
        )
        slc, region = query_region(det, current.shape)
        restored = restore_region(current, before, region, window=slc)
        new_path = write_mask(current, dataset, revised_field, sample.id)
    cleared = (
        "answer",
        "answer_value",
        "answered_by",
        "answered_at",
        "pixels_changed",
        "revised_before",
    )
    update = {name: None for name in cleared}
    update.update(status="pending", undone_by=user, undone_at=datetime.now(timezone.utc))
    ok = _commit(
        dataset,
        sample_id,
        queries_field,
        {query_id: update},
        revised_field,
        current_path,
        new_path,
        answered=(query_id,),
    )
    if not ok:
        if new_path:
            Path(new_path).unlink(missing_ok=True)
        return None
    return restored
