"""A reviewer's loop, for the review panel and for scripts: claim the next query, answer it,
see the progress.

Queries are served best score first among those the given collection shows (a view: a subset
of samples, or queries filtered by class with ``filter_labels``). Each is claimed for the
reviewer (:func:`alc_fiftyone.answers.claim`) before it is shown, so two reviewers never get
the same query; a claim that is not answered in time returns to the queue. A reviewer who
comes back gets the query they still hold first.

    >>> q = alc.next_query(view, user="ann")
    >>> alc.answer(view, q["id"], "dog", user="ann")
"""

from __future__ import annotations

from datetime import datetime, timezone

from .answers import CLAIM_SECONDS, _free_for, attr, claim
from .errors import ALCError, QueryError
from .ranking import ANSWERED, STATUSES

CANDIDATES = 16  # queries fetched per attempt; more are fetched if others win them all
_INDEXED: set[tuple[str, str]] = set()  # (sample collection, queries field) indexed here


def _ensure_indexes(samples, queries_field: str) -> None:
    """Index the queries' status (once per collection and process): the review aggregations
    first match the samples holding queries of some status, so on a large dataset they read
    those samples only, not every sample."""
    dataset = samples._dataset
    key = (dataset._sample_collection_name, queries_field)
    if key not in _INDEXED:
        # pymongo's create_index: idempotent and safe from several threads at once
        dataset._sample_collection.create_index(f"{queries_field}.detections.status")
        _INDEXED.add(key)


def _slim(q: str, keys: tuple[str, ...]) -> dict:
    """``$project`` stage keeping, of each query of array ``q``, only ``keys``: the queries'
    masks (most of a sample document's size) never enter the unwind and sort."""
    return {
        "$project": {
            "q": {"$map": {"input": f"${q}", "as": "d", "in": {k: f"$$d.{k}" for k in keys}}}
        }
    }


def _sample_level(samples):
    """A patches view (the review queue in the grid) becomes its samples."""
    if getattr(samples, "_is_patches", False):
        root = samples._root_dataset
        return root.select(samples.distinct("sample_id"))
    return samples


def candidate_queries(
    samples,
    user: str | None,
    queries_field: str = "alc_queries",
    limit: int = CANDIDATES,
    skip_ids=(),
) -> list[tuple[str, str]]:
    """(sample id, query id) of the best claimable queries of ``samples`` for ``user``, the
    queries ``user`` already holds first, then by score (one aggregation in the database)."""
    from bson import ObjectId

    samples = _sample_level(samples)
    if not samples.has_field(queries_field):
        raise ALCError(f"no queries in field {queries_field!r}: run alc.rank_superpixels first")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    q = f"{queries_field}.detections"
    match = _free_for(user, now, prefix="q.")
    if skip_ids:
        match = {
            "$and": [
                match,
                {"q._id": {"$nin": [ObjectId(i) for i in skip_ids if ObjectId.is_valid(i)]}},
            ]
        }
    _ensure_indexes(samples, queries_field)
    pipeline = [
        {"$match": {f"{q}.status": {"$in": ["pending", "claimed"]}}},  # indexed
        _slim(q, ("_id", "score", "status", "claimed_by", "claimed_until")),
        {"$unwind": "$q"},
        {"$match": match},
        {
            "$addFields": {
                "mine": {
                    "$cond": [
                        {
                            "$and": [
                                {"$eq": ["$q.status", "claimed"]},
                                {"$eq": ["$q.claimed_by", user]},
                            ]
                        },
                        1,
                        0,
                    ]
                }
            }
        },
        {"$sort": {"mine": -1, "q.score": -1, "q._id": 1}},
        {"$limit": int(limit)},
        {"$project": {"_id": 1, "qid": "$q._id"}},
    ]
    return [(str(d["_id"]), str(d["qid"])) for d in samples._aggregate(pipeline=pipeline)]


def next_query(
    samples,
    user: str | None,
    queries_field: str = "alc_queries",
    seconds: float = CLAIM_SECONDS,
    skip_ids=(),
) -> dict | None:
    """Claim the next query of ``samples`` for ``user`` and return its description
    (:func:`query_info`), or None when the queue is empty. ``skip_ids``: queries not to serve
    (e.g. the one just released)."""
    samples = _sample_level(samples)
    dataset = samples._dataset
    tried: set[str] = set(skip_ids)
    for _ in range(8):
        cands = candidate_queries(samples, user, queries_field, CANDIDATES, tried)
        if not cands:
            return None
        for sample_id, query_id in cands:
            if claim(dataset, query_id, user, seconds, queries_field, sample_id=sample_id):
                return query_info(dataset, query_id, queries_field, sample_id=sample_id)
            tried.add(query_id)
    return None


def get_query(dataset, query_id: str, queries_field: str = "alc_queries", sample_id=None):
    """(sample, query Detection) of a query id.

    Both ids may come from the App's client and are not trusted: an id that is malformed, a
    sample that is not in ``dataset`` or a query that is not on that sample is a QueryError,
    so only the dataset's own samples (and their files) are ever served.
    """
    from .answers import find_query_sample_id, object_id

    dataset = dataset._dataset
    object_id(query_id)
    if sample_id is None:
        sample_id = find_query_sample_id(dataset, query_id, queries_field)
    object_id(sample_id, "sample")
    try:
        sample = dataset[str(sample_id)]
    except KeyError as e:
        raise QueryError(f"no sample {sample_id} in dataset {dataset.name!r}") from e
    if not sample.has_field(queries_field):
        raise QueryError(f"dataset {dataset.name!r} has no queries field {queries_field!r}")
    for det in sample[queries_field].detections if sample[queries_field] else []:
        if det.id == query_id:
            return sample, det
    raise ALCError(f"query {query_id} is no longer on sample {sample_id}")


def query_info(dataset, query_id: str, queries_field: str = "alc_queries", sample_id=None):
    """What a reviewer needs to know of a query, as plain JSON-able values."""
    sample, det = get_query(dataset, query_id, queries_field, sample_id)
    until = attr(det, "claimed_until")
    return {
        "id": det.id,
        "sample_id": sample.id,
        "filepath": sample.filepath,
        "label": det.label,
        "current_value": attr(det, "current_value"),
        "suggestions": list(attr(det, "suggestions") or []),
        "suggestion_scores": list(attr(det, "suggestion_scores") or []),
        "score": attr(det, "score"),
        "rank": attr(det, "rank"),
        "round": attr(det, "round"),
        "status": attr(det, "status"),
        "num_pixels": attr(det, "num_pixels"),
        "claimed_by": attr(det, "claimed_by"),
        "claimed_until": until.isoformat() if until else None,
        "label_field": attr(det, "label_field"),
    }


def review_progress(samples, queries_field: str = "alc_queries", user: str | None = None):
    """Counts of the queries of ``samples``: per status, answered and pixels changed, for the
    latest round and in total (and answered by ``user`` if given). One aggregation."""
    samples = _sample_level(samples)
    empty = {"total": {}, "round": {}, "latest_round": None}
    if not samples.has_field(queries_field):
        return empty
    q = f"{queries_field}.detections"
    _ensure_indexes(samples, queries_field)
    rows = list(
        samples._aggregate(
            pipeline=[
                {"$match": {f"{q}.status": {"$in": list(STATUSES)}}},  # indexed
                _slim(q, ("round", "status", "pixels_changed", "answered_by")),
                {"$unwind": "$q"},
                {
                    "$group": {
                        "_id": {"round": "$q.round", "status": "$q.status"},
                        "n": {"$sum": 1},
                        "px": {"$sum": {"$ifNull": ["$q.pixels_changed", 0]}},
                        "mine": {"$sum": {"$cond": [{"$eq": ["$q.answered_by", user]}, 1, 0]}},
                    }
                },
            ]
        )
    )
    rounds = [r["_id"].get("round") for r in rows if r["_id"].get("round") is not None]
    latest = max(rounds) if rounds else None

    def summarize(rs) -> dict:
        by = {}
        px = mine = 0
        for r in rs:
            st = r["_id"].get("status") or "pending"
            by[st] = by.get(st, 0) + r["n"]
            if st in ANSWERED:
                px += r["px"]
                mine += r["mine"]
        answered = sum(by.get(s, 0) for s in ANSWERED)
        return {
            "queries": sum(by.values()),
            "answered": answered,
            "queued": by.get("pending", 0) + by.get("claimed", 0),
            "skipped": by.get("skipped", 0),
            "claimed": by.get("claimed", 0),
            "confirmed": by.get("confirmed", 0),
            "corrected": by.get("corrected", 0),
            "pixels_changed": int(px),
            "answered_by_user": int(mine) if user is not None else None,
        }

    return {
        "total": summarize(rows),
        "round": summarize([r for r in rows if r["_id"].get("round") == latest]),
        "latest_round": latest,
    }
