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

import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from ..errors import ALCError
from ..store import changes, db
from ..store.fields import QUERIES_FIELD
from .claims import CLAIM_SECONDS, claim, free_for
from .queries import ANSWERED, STATUSES, attr, get_query, mix_text

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


CANDIDATES = 16  # queries fetched per attempt; more are fetched if others win them all
CACHED_CANDIDATES = 256  # queries fetched at once when next_query may cache (max_age > 0)
_INDEXED: set[tuple[str, str]] = set()  # (sample collection, queries field) indexed here


def _ensure_indexes(samples, queries_field: str) -> None:
    """Index the queries' status (once per collection and process): the review aggregations
    first match the samples holding queries of some status, so on a large dataset they read
    those samples only, not every sample."""
    key = (db.collection_key(samples), queries_field)
    if key not in _INDEXED:
        db.create_index(samples, f"{queries_field}.detections.status")
        _INDEXED.add(key)


def _slim(q: str, keys: tuple[str, ...]) -> dict:
    """``$project`` stage keeping, of each query of array ``q``, only ``keys``: the queries'
    masks (most of a sample document's size) never enter the unwind and sort."""
    return {
        "$project": {
            "q": {"$map": {"input": f"${q}", "as": "d", "in": {k: f"$$d.{k}" for k in keys}}}
        }
    }


def candidate_queries(
    samples,
    user: str | None,
    queries_field: str = QUERIES_FIELD,
    limit: int = CANDIDATES,
    skip_ids=(),
    held_only: bool = False,
) -> list[tuple[str, str]]:
    """(sample id, query id) of the best claimable queries of ``samples`` for ``user``, the
    queries ``user`` already holds first, then by score (one aggregation in the database);
    ``held_only``: only the queries ``user`` holds (it reads only the samples holding a
    claim)."""
    from bson import ObjectId

    samples = db.sample_level(samples)
    if not samples.has_field(queries_field):
        raise ALCError(f"no queries in field {queries_field!r}: run alc.rank_superpixels first")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    q = f"{queries_field}.detections"
    match = free_for(user, now, prefix="q.")
    statuses = ["pending", "claimed"]
    if held_only:
        match, statuses = {"q.status": "claimed", "q.claimed_by": user}, ["claimed"]
    if skip_ids:
        match = {
            "$and": [
                match,
                {"q._id": {"$nin": [ObjectId(i) for i in skip_ids if ObjectId.is_valid(i)]}},
            ]
        }
    _ensure_indexes(samples, queries_field)
    pipeline = [
        {"$match": {f"{q}.status": {"$in": statuses}}},  # indexed
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
    return [(str(d["_id"]), str(d["qid"])) for d in db.aggregate(samples, pipeline)]


def next_query(
    samples: SampleCollection,
    user: str | None,
    queries_field: str = QUERIES_FIELD,
    seconds: float = CLAIM_SECONDS,
    skip_ids: Iterable[str] = (),
    max_age: float = 0.0,
) -> dict | None:
    """Claim the next query of ``samples`` for ``user`` and return its description
    (:func:`query_info`), or None when the queue is empty. ``skip_ids``: queries not to serve
    (e.g. the one just released).

    ``max_age`` > 0 (the review panel) serves from a list of the best
    :data:`CACHED_CANDIDATES` queries kept in this process for up to ``max_age`` seconds, so
    most calls cost one claim instead of an aggregation over every sample with queries. Each
    query is still claimed atomically before it is served (a query another reviewer took, or
    that was answered, is passed over); what the list can miss until it is refilled are
    queries that became free after it was filled (an expired or released claim of another
    reviewer, an undo in another process). A new ranking in this process refills it at once.

    Parameters
    ----------
    samples
        The dataset or view to work on.
    user
        The reviewer's name (recorded with the answer; claims keep reviewers apart).
    queries_field
        The ``fo.Detections`` field holding the queries.
    seconds
        How long the claim holds.
    skip_ids
        Queries not to serve (e.g. the one just released).
    max_age
        Seconds the answer may come from this process's caches (0: read the database now).

    Returns
    -------
    dict or None
        The claimed query's description (:func:`query_info`), or None when the queue is empty.
    """
    samples = db.sample_level(samples)
    tried: set[str] = set(skip_ids)
    if max_age > 0:
        return _next_cached(samples, user, queries_field, seconds, tried, max_age)
    for _ in range(8):
        cands = candidate_queries(samples, user, queries_field, CANDIDATES, tried)
        if not cands:
            return None
        got = _claim_first(db.dataset_of(samples), cands, user, seconds, queries_field, tried)
        if got is not None:
            return got
    return None


def skipped_queries(
    samples: SampleCollection,
    user: str | None = None,
    queries_field: str = QUERIES_FIELD,
    limit: int = 50,
) -> list[dict]:
    """The skipped queries of ``samples`` (of ``user`` if given), the latest skip first:
    skipped queries are never served by :func:`next_query`; a reviewer revisits them from
    this list with :func:`unskip` (or takes the best one back with :func:`next_skipped`).

    Parameters
    ----------
    samples
        The dataset or view to work on.
    user
        Only the queries this reviewer skipped (None: everyone's).
    queries_field
        The ``fo.Detections`` field holding the queries.
    limit
        At most this many.

    Returns
    -------
    list of dict
        Their descriptions (:func:`query_info`).
    """
    samples = db.sample_level(samples)
    if not samples.has_field(queries_field):
        return []
    q = f"{queries_field}.detections"
    match = {"q.status": "skipped"}
    if user is not None:
        match["q.answered_by"] = user
    pipeline = [
        {"$match": {f"{q}.status": "skipped"}},  # indexed
        _slim(q, ("_id", "score", "status", "answered_by", "answered_at")),
        {"$unwind": "$q"},
        {"$match": match},
        {"$sort": {"q.answered_at": -1, "q._id": 1}},
        {"$limit": int(limit)},
        {"$project": {"_id": 1, "qid": "$q._id"}},
    ]
    dataset = db.dataset_of(samples)
    return [
        query_info(dataset, str(r["qid"]), queries_field, sample_id=str(r["_id"]))
        for r in db.aggregate(samples, pipeline)
    ]


def unskip(
    dataset: SampleCollection,
    query_id: str,
    user: str | None,
    queries_field: str = QUERIES_FIELD,
    seconds: float = CLAIM_SECONDS,
) -> bool:
    """Reopen a skipped query: it is claimed by ``user`` (one atomic update), to be answered
    now. False when it is no longer skipped.

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
    seconds
        How long the claim holds.

    Returns
    -------
    bool
        True when the query was reopened for ``user``.
    """
    from .queries import find_query_sample_id, object_id

    dataset = db.dataset_of(dataset)
    oid = object_id(query_id)
    sid = find_query_sample_id(dataset, query_id, queries_field)
    q = f"{queries_field}.detections"
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    res = db.update_sample(
        dataset,
        sid,
        {q: {"$elemMatch": {"_id": oid, "status": "skipped"}}},
        {
            "$set": {
                f"{q}.$[x].status": "claimed",
                f"{q}.$[x].claimed_by": user,
                f"{q}.$[x].claimed_at": now,
                f"{q}.$[x].claimed_until": now + timedelta(seconds=seconds),
                f"{q}.$[x].answered_by": None,
                f"{q}.$[x].answered_at": None,
            }
        },
        [{"x._id": oid, "x.status": "skipped"}],
    )
    changes.touched(dataset, sid)
    return res.modified_count == 1


def next_skipped(
    samples: SampleCollection,
    user: str | None,
    queries_field: str = QUERIES_FIELD,
    seconds: float = CLAIM_SECONDS,
) -> dict | None:
    """Reopen the latest query ``user`` skipped in ``samples`` (:func:`unskip`) and return
    its description, or None when they skipped none.

    Parameters
    ----------
    samples
        The dataset or view to work on.
    user
        The reviewer's name (recorded with the answer; claims keep reviewers apart).
    queries_field
        The ``fo.Detections`` field holding the queries.
    seconds
        How long the claim holds.

    Returns
    -------
    dict or None
        The reopened query's description (:func:`query_info`), or None.
    """
    for info in skipped_queries(samples, user, queries_field, limit=CANDIDATES):
        if unskip(samples, info["id"], user, queries_field, seconds):
            return query_info(samples, info["id"], queries_field, sample_id=info["sample_id"])
    return None


def _claim_first(dataset, cands, user, seconds, queries_field, tried, on_claim=None):
    """Claim the first free query of ``cands`` ((sample id, query id) pairs, a list, or a
    deque consumed from the left under its list's lock) and return its description; None
    when all were taken."""
    cands = cands if isinstance(cands, deque) else deque(cands)
    while cands:
        sample_id, query_id = cands.popleft()
        if query_id in tried:
            continue
        if claim(dataset, query_id, user, seconds, queries_field, sample_id=sample_id):
            if on_claim is not None:
                on_claim((sample_id, query_id))
            return query_info(dataset, query_id, queries_field, sample_id=sample_id)
        tried.add(query_id)
    return None


def view_key(samples) -> str:
    """The identity of a collection for the caches: its dataset and its view stages."""
    return db.view_identity(samples)


@dataclass
class _CandidateList:
    filled: float = float("-inf")  # time.monotonic() when filled
    epoch: int = -1  # changes.position()[0] when filled
    items: deque = field(default_factory=deque)
    held: tuple[str, str] | None = None  # the query last served from it
    lock: threading.Lock = field(default_factory=threading.Lock)


_candidate_lists: dict[tuple, _CandidateList] = {}
_cache_lock = threading.Lock()
MAX_CACHED = 256  # candidate lists kept (views x reviewers, a few KB each); oldest go first
# per-sample counts kept (views; ~250 B per sample holding queries, ~4 MB at 50k images)
MAX_COUNTS = 8


def _store(cache: dict, key, entry, limit: int) -> None:
    """Put ``entry`` in ``cache`` as its newest; the oldest go beyond ``limit``. Called with
    ``_cache_lock`` held."""
    cache.pop(key, None)
    cache[key] = entry
    while len(cache) > limit:
        cache.pop(next(iter(cache)))


def _next_cached(samples, user, queries_field, seconds, tried, max_age):
    dataset = db.dataset_of(samples)
    key = (view_key(samples), user, queries_field)
    with _cache_lock:  # get or create, atomically: two events at once share one list
        entry = _candidate_lists.get(key)
        if entry is None:
            entry = _CandidateList()
            _store(_candidate_lists, key, entry, MAX_CACHED)

    def remember(pair):
        entry.held = pair

    # one call at a time per view and reviewer (the App may send two events at once): the
    # second then gets the query the first claimed, as the uncached path would serve it
    with entry.lock:
        # the query this reviewer was last given, while they hold it (a reopened panel, a
        # released query shown again), as the uncached path serves a reviewer's claims first
        held = entry.held
        if held is not None and held[1] not in tried:
            got = _claim_first(dataset, [held], user, seconds, queries_field, tried, remember)
            if got is not None:
                return got
            entry.held = None  # answered, skipped or taken
        # other queries this reviewer holds (the pieces of a split, a query reopened from the
        # skipped list, one taken in another tab): served first, as the uncached path does;
        # this reads only the samples that hold a claim
        held = candidate_queries(samples, user, queries_field, CANDIDATES, tried, held_only=True)
        got = _claim_first(dataset, held, user, seconds, queries_field, tried, remember)
        if got is not None:
            return got
        fresh = (
            time.monotonic() - entry.filled <= max_age
            and entry.epoch == changes.position(dataset)[0]
        )
        if fresh:
            got = _claim_first(dataset, entry.items, user, seconds, queries_field, tried, remember)
            if got is not None:
                return got
        for _ in range(8):
            entry.epoch = changes.position(dataset)[0]
            entry.filled = time.monotonic()
            cands = candidate_queries(samples, user, queries_field, CACHED_CANDIDATES, tried)
            entry.items = deque(cands)
            if not cands:
                return None
            got = _claim_first(dataset, entry.items, user, seconds, queries_field, tried, remember)
            if got is not None:
                return got
    return None


def query_info(
    dataset: SampleCollection,
    query_id: str,
    queries_field: str = QUERIES_FIELD,
    sample_id: str | None = None,
):
    """What a reviewer needs to know of a query, as plain JSON-able values.

    Parameters
    ----------
    dataset
        The dataset (or a view of it) holding the queries.
    query_id
        The id of the query (its Detection id).
    queries_field
        The ``fo.Detections`` field holding the queries.
    sample_id
        The id of the sample holding the query, when known (saves a look-up).

    Returns
    -------
    dict
        The query's id, sample, label, suggestions, score, rank, round, status, claim and fields,
        as plain values.
    """
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
        "label_mix": [list(m) for m in attr(det, "label_mix") or []],
        "mix": mix_text(det),
        "parent_id": attr(det, "parent_id"),
    }


def review_progress(
    samples: SampleCollection,
    queries_field: str = QUERIES_FIELD,
    user: str | None = None,
    max_age: float = 0.0,
):
    """Counts of the queries of ``samples``: per status, answered and pixels changed, for the
    latest round and in total (and answered by ``user`` if given). One aggregation.

    ``max_age`` > 0 (the review panel) keeps the counts of every sample in this process for up
    to ``max_age`` seconds and re-reads only the samples whose queries changed through this
    package in this process since (answers, claims, skips, undos of every reviewer served
    by it; a new ranking re-reads everything), so the counts are exact for those; changes
    made by other processes show once the counts are older than ``max_age``.

    Parameters
    ----------
    samples
        The dataset or view to work on.
    queries_field
        The ``fo.Detections`` field holding the queries.
    user
        Also count the answers of this reviewer.
    max_age
        Seconds the answer may come from this process's caches (0: read the database now).

    Returns
    -------
    dict
        Counts per status, answered and pixels changed, for the latest round and in total.
    """
    samples = db.sample_level(samples)
    empty = {"total": {}, "round": {}, "latest_round": None}
    if not samples.has_field(queries_field):
        return empty
    _ensure_indexes(samples, queries_field)
    if max_age > 0:
        rows = _cached_counts(samples, queries_field, max_age).rows(user)
    else:
        rows = db.aggregate(samples, _count_pipeline(queries_field, user))
    return _summarize_progress(rows, user is not None)


def _count_pipeline(queries_field: str, user=None, per_sample: bool = False, ids=None) -> list:
    """Aggregation counting queries by round and status (and answered by ``user``); with
    ``per_sample`` by sample, round, status and answering user instead; ``ids``: only
    these samples."""
    q = f"{queries_field}.detections"
    key = {"round": "$q.round", "status": "$q.status"}
    group = {"n": {"$sum": 1}, "px": {"$sum": {"$ifNull": ["$q.pixels_changed", 0]}}}
    if per_sample:
        key.update(sample="$_id", by="$q.answered_by")
    else:
        group["mine"] = {"$sum": {"$cond": [{"$eq": ["$q.answered_by", user]}, 1, 0]}}
    match = {f"{q}.status": {"$in": list(STATUSES)}}  # indexed
    if ids is not None:
        from bson import ObjectId

        match["_id"] = {"$in": [ObjectId(i) for i in ids]}
    return [
        {"$match": match},
        _slim(q, ("round", "status", "pixels_changed", "answered_by")),
        {"$unwind": "$q"},
        {"$group": {"_id": key, **group}},
    ]


class _Counts:
    """Query counts of one collection kept per sample, so a change re-reads one sample."""

    def __init__(self, samples, queries_field: str):
        self.samples, self.queries_field = samples, queries_field
        self.position = changes.position(db.dataset_of(samples))  # before the read: nothing missed
        self.filled = time.monotonic()
        self.per_sample: dict[str, list[tuple]] = {}
        # (round, status) -> [queries, pixels changed, Counter of answering users]
        self.totals: dict[tuple, list] = {}
        self.lock = threading.Lock()  # one reader updates at a time; other caches go on
        self._add(self._read(None))

    def _read(self, ids) -> dict[str, list[tuple]]:
        pipeline = _count_pipeline(self.queries_field, per_sample=True, ids=ids)
        out: dict[str, list[tuple]] = {}
        for r in db.aggregate(self.samples, pipeline):
            k = r["_id"]
            row = (k.get("round"), k.get("status"), k.get("by"), r["n"], r["px"])
            out.setdefault(str(k["sample"]), []).append(row)
        return out

    def _add(self, per_sample: dict[str, list[tuple]], sign: int = 1) -> None:
        for sid, rows in per_sample.items():
            if sign > 0:
                self.per_sample[sid] = rows
            for rnd, status, by, n, px in rows:
                t = self.totals.setdefault((rnd, status), [0, 0, Counter()])
                t[0] += sign * n
                t[1] += sign * px
                t[2][by] += sign * n
                if not t[0]:
                    del self.totals[(rnd, status)]

    def update(self) -> bool:
        """Re-read the samples changed since the last read; False when all must be re-read."""
        ids, position = changes.since(db.dataset_of(self.samples), self.position)
        if ids is None:
            return False
        if ids:
            self._add({i: self.per_sample.pop(i) for i in ids if i in self.per_sample}, -1)
            self._add(self._read(sorted(ids)))
        self.position = position
        return True

    def rows(self, user) -> list[dict]:
        """Rows as the uncached aggregation gives them."""
        with self.lock:
            return [
                {"_id": {"round": r, "status": s}, "n": n, "px": px, "mine": by.get(user, 0)}
                for (r, s), (n, px, by) in self.totals.items()
            ]


_counts: dict[tuple, _Counts] = {}


def _cached_counts(samples, queries_field: str, max_age: float) -> _Counts:
    key = (view_key(samples), queries_field)
    with _cache_lock:
        entry = _counts.get(key)
    if entry is not None and time.monotonic() - entry.filled <= max_age:
        with entry.lock:
            ok = entry.update()
        if ok:
            return entry
    entry = _Counts(samples, queries_field)
    with _cache_lock:
        _store(_counts, key, entry, MAX_COUNTS)
    return entry


def _summarize_progress(rows, with_user: bool) -> dict:
    rounds = [r["_id"].get("round") for r in rows if r["_id"].get("round") is not None]
    latest = max(rounds) if rounds else None

    def summarize(rs) -> dict:
        by = {}
        px = mine = skipped_mine = 0
        for r in rs:
            st = r["_id"].get("status") or "pending"
            by[st] = by.get(st, 0) + r["n"]
            if st in ANSWERED:
                px += r["px"]
                mine += r["mine"]
            elif st == "skipped":
                skipped_mine += r["mine"]
        answered = sum(by.get(s, 0) for s in ANSWERED)
        return {
            "queries": sum(by.values()),
            "answered": answered,
            "queued": by.get("pending", 0) + by.get("claimed", 0),
            "skipped": by.get("skipped", 0),
            "claimed": by.get("claimed", 0),
            "confirmed": by.get("confirmed", 0),
            "corrected": by.get("corrected", 0),
            "split": by.get("split", 0),
            "pixels_changed": int(px),
            "answered_by_user": int(mine) if with_user else None,
            "skipped_by_user": int(skipped_mine) if with_user else None,
        }

    return {
        "total": summarize(rows),
        "round": summarize([r for r in rows if r["_id"].get("round") == latest]),
        "latest_round": latest,
    }
