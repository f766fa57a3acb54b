"""Answering queries: store the answer on the query and expand it into the revised labels.

Every answer is written when it is given: the revised mask goes to a new file (the previous
file stays, so undo can restore exactly the pixels it changed), then one sample update stores
both the query's new status and the pointer to the new mask.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import fiftyone as fo
import numpy as np
from bson import ObjectId

from . import changes
from .errors import ALCError, QueryError
from .labels import class_table, mask_targets, read_current_labels
from .ranking import ANSWERED
from .storage import read_png_array, read_segmentation, write_mask

KEEP = object()  # answer meaning "the region's labels stay as they are"


def attr(det, name: str, default=None):
    """A query attribute, ``default`` where it was never set (None values are not stored)."""
    return det[name] if det.has_field(name) else default


def object_id(value, what: str = "query") -> ObjectId:
    """``value`` as an ObjectId; QueryError naming ``what`` when it is not one (ids come from
    the App's client and are not trusted)."""
    try:
        return ObjectId(str(value))
    except Exception as e:
        raise QueryError(f"{value!r} is not a {what} id") from e


def find_query_sample_id(dataset, query_id: str, queries_field: str = "alc_queries") -> str:
    """Id of the sample holding query ``query_id`` (indexed look-up in the database)."""
    oid = object_id(query_id)
    doc = dataset._sample_collection.find_one({f"{queries_field}.detections._id": oid}, {"_id": 1})
    if doc is None:
        raise QueryError(f"no query {query_id} in field {queries_field!r} of {dataset.name!r}")
    return str(doc["_id"])


def find_det(sample, queries_field: str, query_id: str):
    """The query Detection ``query_id`` of ``sample``; QueryError when it is not there (it
    may have been replaced by a new ranking since it was looked up)."""
    field = sample[queries_field] if sample.has_field(queries_field) else None
    for det in field.detections if field is not None else []:
        if det.id == query_id:
            return det
    raise QueryError(
        f"query {query_id} is no longer on sample {sample.id} (a new ranking may have "
        "replaced it); take the next query"
    )


def claim_holder(det, user: str | None, now: datetime | None = None) -> str | None:
    """The reviewer who holds a live claim on ``det``, when it is not ``user``; else None."""
    if attr(det, "status") != "claimed":
        return None
    holder = attr(det, "claimed_by")
    until = attr(det, "claimed_until")
    now = now or datetime.now(timezone.utc)
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=timezone.utc)
    if holder == user or (until is not None and until <= now):
        return None
    return str(holder)


def _refuse_held(det, user, action: str) -> None:
    holder = claim_holder(det, user)
    if holder is not None:
        until = attr(det, "claimed_until")
        raise QueryError(
            f"query {det.id} is claimed by {holder!r}"
            + (f" until {until:%H:%M:%S} UTC" if until else "")
            + f"; {action} it only if they gave it up (pass force=True to {action} anyway)"
        )


def _not_held_by_another(user) -> dict:
    """Condition on a query (fields prefixed ``q.`` in ``$elemMatch`` form: bare names) under
    which ``user`` may answer or skip it: no live claim of another reviewer."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return {
        "$or": [
            {"status": {"$ne": "claimed"}},
            {"claimed_by": user},
            {"claimed_until": {"$lt": now}},
        ]
    }


def query_region(det, shape) -> tuple[tuple[slice, slice], np.ndarray]:
    """(slices, bool mask) of a query's region in an image of ``shape`` (H, W)."""
    x0, y0, w, h = attr(det, "bbox_px")
    mask = np.asarray(det.mask, dtype=bool)
    if mask.shape != (h, w) or y0 + h > shape[0] or x0 + w > shape[1]:
        raise QueryError(
            f"query {det.id}: its region ({w}x{h} at {x0},{y0}) does not fit the labels "
            f"({shape[1]}x{shape[0]}); rank again"
        )
    return (slice(y0, y0 + h), slice(x0, x0 + w)), mask


def _class_value(label, names: dict[int, str], num_classes: int, ignore, query_id: str) -> int:
    """The value of an answer given as a class name or value; the ignore value (e.g. VOC's
    "void") is a valid answer too: it marks a region as not to be learned from."""
    allowed = {k: v for k, v in names.items() if k < num_classes or k == ignore}
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if 0 <= int(label) < num_classes or int(label) == ignore:
            return int(label)
        raise QueryError(f"query {query_id}: class value {label} is not in 0..{num_classes - 1}")
    by_name = {v: k for k, v in allowed.items()}
    if label in by_name:
        return by_name[label]
    raise QueryError(
        f"query {query_id}: {label!r} is not a class; classes are "
        f"{', '.join(allowed[k] for k in sorted(allowed))}"
    )


def _mask_path(sample, field: str) -> str | None:
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
        if user_claim[0]:
            q = {"$and": [q, _not_held_by_another(user_claim[1])]}
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
    res = dataset._sample_collection.update_one(
        {"_id": ObjectId(sample_id), "$and": conds}, {"$set": sets}, array_filters=filters
    )
    fo.Sample._reload_docs(dataset._sample_collection_name, sample_ids=[sample_id])
    changes.touched(dataset, sample_id)
    return res.matched_count == 1


def _ensure_revised_field(dataset, label_field: str, revised_field: str, names) -> None:
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
    dataset,
    sample_id: str,
    answers: Iterable[tuple[str, object]],
    user: str | None = None,
    queries_field: str = "alc_queries",
    force: bool = False,
) -> dict[str, int]:
    """Apply answers to queries of one sample in a single write; returns pixels changed per
    query id. A query another reviewer holds (a live claim) is refused with a QueryError
    naming them, unless ``force``. An answer is a class name or value (written to every pixel of the query's
    region) or :data:`KEEP` / ``None`` (the labels are right as they are: nothing changes).

    Safe with several reviewers: the write is conditional on the revised mask being the one
    read and on the queries being unanswered; when another answer on the same sample came
    first, the labels are read again and the answers re-applied.
    """
    answers = list(answers)
    if not answers:
        return {}
    for _ in range(MAX_ATTEMPTS):
        result = _try_apply(dataset, sample_id, answers, user, queries_field, force)
        if result is not None:
            return result
    raise QueryError(f"sample {sample_id} kept changing under the answer; try again")


def _try_apply(dataset, sample_id, answers, user, queries_field, force) -> dict[str, int] | None:
    sample = dataset[sample_id]
    sample.reload()
    first = find_det(sample, queries_field, answers[0][0])
    dets = {d.id: d for d in sample[queries_field].detections}
    label_field = attr(first, "label_field")
    revised_field = attr(first, "revised_field")
    sp_field = attr(first, "superpixel_field")
    names, ignore, num_classes = class_table(dataset, label_field)
    sp_now = _mask_path(sample, sp_field)
    labels = read_current_labels(sample, label_field, revised_field)
    before_path = _mask_path(sample, revised_field)
    now = datetime.now(timezone.utc)
    changed: dict[str, int] = {}
    updates: dict[str, dict] = {}
    for query_id, label in answers:
        det = dets.get(query_id)
        if det is None:
            raise QueryError(f"no query {query_id} on sample {sample_id}")
        if not force:
            _refuse_held(det, user, "answer")
        if attr(det, "status") in ANSWERED:
            raise QueryError(
                f"query {query_id} was already answered ({attr(det, 'answer')!r} by "
                f"{attr(det, 'answered_by')}); undo it first"
            )
        if attr(det, "superpixel_path") != sp_now:
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
            window = labels[slc]
            n = int((window[region] != value).sum())
            window[region] = value
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
    _ensure_revised_field(dataset, label_field, revised_field, names)
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
    )
    if not ok:
        if new_path:
            Path(new_path).unlink(missing_ok=True)  # never referenced
        return None
    return changed


def answer(
    dataset,
    query_id: str,
    label,
    user: str | None = None,
    queries_field: str = "alc_queries",
    force: bool = False,
) -> int:
    """Answer one query and return the number of pixels that changed.

    ``label`` is the right class (name or value) of the region: it is written to every pixel
    of the query's region in the revised labels, so confirming the current class also fills
    the region with it. ``None`` means "the labels here are right as they are" (no pixel
    changes). Either way the query counts as one click.

    A query that another reviewer holds (claimed, the claim not expired) is refused with a
    QueryError naming them; ``force=True`` answers it anyway (an admin's override).
    """
    dataset = dataset._dataset
    sample_id = find_query_sample_id(dataset, query_id, queries_field)
    res = apply_answers(dataset, sample_id, [(query_id, label)], user, queries_field, force)
    return res[query_id]


def skip(
    dataset,
    query_id: str,
    user: str | None = None,
    queries_field="alc_queries",
    force: bool = False,
) -> None:
    """Mark a query skipped: it stays unanswered and is kept (not asked again) by later
    rankings. A query another reviewer holds is refused unless ``force``."""
    dataset = dataset._dataset
    sample_id = find_query_sample_id(dataset, query_id, queries_field)
    sample = dataset[sample_id]
    sample.reload()
    det = find_det(sample, queries_field, query_id)
    if attr(det, "status") in ANSWERED:
        raise QueryError(f"query {query_id} is answered; undo it instead of skipping")
    if not force:
        _refuse_held(det, user, "skip")
    update = {"status": "skipped", "answered_by": user, "answered_at": datetime.now(timezone.utc)}
    arr = f"{queries_field}.detections"
    q = {"_id": ObjectId(query_id), "status": {"$nin": list(ANSWERED)}}
    if not force:
        q = {"$and": [q, _not_held_by_another(user)]}
    res = dataset._sample_collection.update_one(
        {"_id": ObjectId(sample_id), arr: {"$elemMatch": q}},
        {"$set": {f"{arr}.$[q].{k}": _db_value(v) for k, v in update.items()}},
        array_filters=[{"q._id": ObjectId(query_id)}],
    )
    fo.Sample._reload_docs(dataset._sample_collection_name, sample_ids=[sample_id])
    changes.touched(dataset, sample_id)
    if res.matched_count != 1:
        raise QueryError(
            f"query {query_id} was answered or claimed by another reviewer meanwhile; "
            "take the next query"
        )


def _db_value(value):
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def last_answered(dataset, queries_field: str = "alc_queries", user: str | None = None):
    """Id of the most recently answered query (by ``user`` if given), or None."""
    from fiftyone import ViewField as F

    if not dataset.has_field(queries_field):
        raise QueryError(
            f"no queries in field {queries_field!r} of {dataset.name!r}: nothing to undo "
            "(rank the superpixels and answer first)"
        )
    cond = F("status").is_in(list(ANSWERED))
    if user is not None:
        cond &= F("answered_by") == user
    view = dataset.filter_labels(queries_field, cond)
    ids = view.values(f"{queries_field}.detections.id", unwind=True)
    times = view.values(f"{queries_field}.detections.answered_at", unwind=True)
    if not ids:
        return None
    return ids[int(np.argmax([t.timestamp() if t else 0 for t in times]))]


def undo(
    dataset,
    query_id: str | None = None,
    user: str | None = None,
    queries_field: str = "alc_queries",
) -> int:
    """Take an answer back: restore the pixels of its region from the labels as they were
    before it, and return the query to the queue (``pending``). ``query_id=None`` undoes the
    last answer (of ``user`` if given). Returns the number of pixels restored."""
    dataset = dataset._dataset
    if query_id is None:
        query_id = last_answered(dataset, queries_field, user)
        if query_id is None:
            raise ALCError("there is no answer to undo")
    sample_id = find_query_sample_id(dataset, query_id, queries_field)
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
    current_path = _mask_path(sample, revised_field)
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
        window = current[slc]
        old = before[slc][region]
        restored = int((window[region] != old).sum())
        window[region] = old
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


# --- claims: several reviewers on one dataset -------------------------------------------------

CLAIM_SECONDS = 600  # a claim not answered within this time returns to the queue


def _free_for(user: str | None, now: datetime, prefix: str = "") -> dict:
    """Condition (on a query's fields, each name prefixed) under which ``user`` may claim it:
    pending, claimed with an expired claim, or already claimed by ``user``."""
    p = prefix
    alts = [
        {f"{p}status": "pending"},
        {f"{p}status": "claimed", f"{p}claimed_until": {"$lt": now}},
    ]
    if user is not None:
        alts.append({f"{p}status": "claimed", f"{p}claimed_by": user})
    return {"$or": alts}


def claim(
    dataset,
    query_id: str,
    user: str | None,
    seconds: float = CLAIM_SECONDS,
    queries_field: str = "alc_queries",
    sample_id: str | None = None,
) -> bool:
    """Claim query ``query_id`` for ``user`` for ``seconds``; True when the claim was won.

    One atomic MongoDB update with an array filter on the query's id, status and claim expiry:
    of two reviewers claiming the same query at once, exactly one wins. A query is claimable
    when pending, when its claim expired, or when ``user`` already holds it (the claim is then
    extended).
    """
    dataset = dataset._dataset
    oid = object_id(query_id)
    if sample_id is None:
        sample_id = find_query_sample_id(dataset, query_id, queries_field)
    object_id(sample_id, "sample")
    now = datetime.now(timezone.utc).replace(tzinfo=None)  # MongoDB stores naive UTC
    until = now + timedelta(seconds=seconds)
    arr = f"{queries_field}.detections"
    res = dataset._sample_collection.update_one(
        {"_id": ObjectId(sample_id), arr: {"$elemMatch": {"_id": oid, **_free_for(user, now)}}},
        {
            "$set": {
                f"{arr}.$[q].status": "claimed",
                f"{arr}.$[q].claimed_by": user,
                f"{arr}.$[q].claimed_at": now,
                f"{arr}.$[q].claimed_until": until,
            }
        },
        array_filters=[{"q._id": oid, **_free_for(user, now, "q.")}],
    )
    _reload_sample(dataset, sample_id)
    return res.modified_count == 1


def release(dataset, query_id: str, user: str | None, queries_field: str = "alc_queries") -> bool:
    """Give a claim of ``user`` back (the query is pending again); True if one was released."""
    dataset = dataset._dataset
    oid = object_id(query_id)
    sample_id = find_query_sample_id(dataset, query_id, queries_field)
    arr = f"{queries_field}.detections"
    res = dataset._sample_collection.update_one(
        {
            "_id": ObjectId(sample_id),
            arr: {"$elemMatch": {"_id": oid, "status": "claimed", "claimed_by": user}},
        },
        {
            "$set": {
                f"{arr}.$[q].status": "pending",
                f"{arr}.$[q].claimed_by": None,
                f"{arr}.$[q].claimed_until": None,
            }
        },
        array_filters=[{"q._id": oid, "q.status": "claimed", "q.claimed_by": user}],
    )
    _reload_sample(dataset, sample_id)
    return res.modified_count == 1


def _reload_sample(dataset, sample_id: str) -> None:
    """Refresh an in-memory copy of the sample after a direct database update, so that a
    later ``sample.save()`` of it does not write back what it held before; and tell the
    review caches."""
    fo.Sample._reload_docs(dataset._sample_collection_name, sample_ids=[sample_id])
    changes.touched(dataset, sample_id)
