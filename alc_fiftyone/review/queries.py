"""The correction queries: their statuses and attributes, how a ranking builds them, keeps a
reviewer's work when it writes new ones, and how they are found again.

A query is an ``fo.Detection`` in the queries field (default ``alc_queries``): ``label`` is
the current class of the region, ``mask`` / ``bounding_box`` the region E(s) an answer will
relabel, and the attributes say where it came from (``score``, ``rank``, ``round``,
``superpixel_id``, ``superpixel_path``, ``rep_point``, ``suggestions``, ``label_field``,
``revised_field``, ...) and what became of it (``status``, ``answer``, ``answered_by``,
``answered_at``, ``claimed_by``, ``claimed_until``, ``pixels_changed``, ``revised_before``).
``to_patches(queries_field)`` sorted by score is the review queue (:func:`review_queue`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import fiftyone as fo
import numpy as np
from bson import ObjectId

from ..core.acquisition import expansion_mask
from ..errors import ALCError, QueryError
from ..store import db
from ..store.fields import QUERIES_FIELD
from ..store.info import alc_info

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


#: every status a query can have
STATUSES = ("pending", "claimed", "confirmed", "corrected", "skipped", "split")
#: the statuses of an answered query
ANSWERED = ("confirmed", "corrected")
#: the statuses a reviewer's action leads to (what undo can take back)
ACTED = (*ANSWERED, "skipped", "split")


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


def find_query_sample_id(dataset, query_id: str, queries_field: str = QUERIES_FIELD) -> str:
    """Id of the sample holding query ``query_id`` (indexed look-up in the database)."""
    oid = object_id(query_id)
    sid = db.find_sample_id(dataset, {f"{queries_field}.detections._id": oid})
    if sid is None:
        raise QueryError(f"no query {query_id} in field {queries_field!r} of {dataset.name!r}")
    return sid


def queries_field_of(dataset) -> str:
    """The queries field of the latest ranking round of ``dataset`` (a person's review goes
    on there); :data:`~alc_fiftyone.store.fields.QUERIES_FIELD` when nothing was ranked."""
    rounds = alc_info(dataset).get("rounds") or []
    return (rounds[-1].get("queries_field") if rounds else None) or QUERIES_FIELD


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


def get_query(
    dataset: SampleCollection,
    query_id: str,
    queries_field: str = QUERIES_FIELD,
    sample_id: str | None = None,
):
    """(sample, query Detection) of a query id.

    Both ids may come from the App's client and are not trusted: an id that is malformed, a
    sample that is not in ``dataset`` or a query that is not on that sample is a QueryError,
    so only the dataset's own samples (and their files) are ever served.

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
    tuple
        ``(sample, Detection)`` of the query.
    """
    dataset = db.dataset_of(dataset)
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


# --- building a ranking's queries ----------------------------------------------------------


def region_classes(values, names: dict, ignore=None, floor: float = 0.0, most: int = 4):
    """(the class most of a region's pixels hold now, the mix) of the current labels
    ``values`` of the region's pixels: the mix is ``[[name, share], ...]`` of the (at most
    ``most``) classes holding more than ``floor`` of it, largest first, or ``[]`` when one
    class holds it all.
    A query asks about the class most of its region holds (never the class of a single
    pixel), so confirming it changes only the few pixels of other classes."""
    vals, counts = np.unique(np.asarray(values).ravel(), return_counts=True)
    if vals.size == 0:
        return 0, []
    order = np.lexsort((vals, -counts))  # most pixels first, ties to the smaller value
    current = int(vals[order[0]])
    if vals.size == 1:
        return current, []
    total = float(counts.sum())
    mix = []
    for i in order[:most]:
        share = counts[i] / total
        if share <= floor:
            break
        v = int(vals[i])
        name = names.get(v, "ignore" if v == ignore else str(v))
        mix.append([name, round(float(share), 4)])
    return current, mix if len(mix) > 1 else []


def refresh_label(dataset, sample, det, queries_field: str = QUERIES_FIELD) -> dict:
    """The class most of ``det``'s region holds now, and the mix, from the current labels
    (an answer to an overlapping query, or a split, may have changed them since the ranking);
    stored on the query when it changed. Returns ``{"label", "current_value", "label_mix"}``."""
    from bson import ObjectId

    from ..store.fields import class_table, read_current_labels

    label_field, revised_field = attr(det, "label_field"), attr(det, "revised_field")
    labels = read_current_labels(sample, label_field, revised_field)
    slc, region = query_region(det, labels.shape)
    names, ignore, _ = class_table(db.dataset_of(dataset), label_field)
    value, mix = region_classes(labels[slc][region], names, ignore)
    name = names.get(value, "ignore" if value == ignore else str(value))
    now = {"label": name, "current_value": value, "label_mix": mix}
    if (det.label, attr(det, "current_value"), attr(det, "label_mix") or []) != (name, value, mix):
        arr = f"{queries_field}.detections"
        oid = ObjectId(det.id)
        db.update_sample(
            dataset,
            sample.id,
            {arr: {"$elemMatch": {"_id": oid, "status": {"$nin": list(ANSWERED)}}}},
            {"$set": {f"{arr}.$[q].{k}": v for k, v in now.items()}},
            [{"q._id": oid}],
        )
        for k, v in now.items():
            det.set_field(k, v)
    return now


def mix_text(det) -> str:
    """The classes of a query's region as a reviewer reads them: "Sky 99%, Pavement 1%"
    (empty when one class holds the whole region)."""
    mix = attr(det, "label_mix") or []
    return ", ".join(
        f"{name} {'<1' if 0 < 100 * share < 1 else f'{100 * share:.0f}'}%" for name, share in mix
    )


@dataclass
class QueryMaker:
    """Builds the queries of one ranking while each image's arrays are in memory.

    :meth:`payload` takes what a query needs from the arrays (its region E(s), the class
    there, the model's suggestions) for a superpixel that made it into the top-B, and
    :meth:`detection` turns a payload into the ``fo.Detection`` that is written.
    """

    names: dict[int, str]
    ignore: int | None
    tau: float
    num_suggestions: int
    round: int = 0
    fields: dict | None = None  # method, label_field, superpixel_field, revised_field
    ranked_at: datetime | None = None

    def payload(self, probs, sp, labels, window, sp_id: int, rep_yx, score, size) -> dict:
        """A query's content, for superpixel ``sp_id`` whose bounding box in the image is
        ``window`` (slices); E(s) is computed by the acquisition's own
        :func:`~alc_fiftyone.core.acquisition.expansion_mask`, so the region of a query is
        exactly the one its score counted."""
        region = expansion_mask(probs, sp, sp_id, rep_yx, self.tau, window=window)
        rows = np.flatnonzero(region.any(axis=1))
        cols = np.flatnonzero(region.any(axis=0))
        y0, y1 = window[0].start + rows[0], window[0].start + rows[-1] + 1
        x0, x1 = window[1].start + cols[0], window[1].start + cols[-1] + 1
        crop = region[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        mean = probs[:, y0:y1, x0:x1][:, crop].mean(axis=1)
        top = np.argsort(-mean, kind="stable")[: self.num_suggestions]
        current, mix = region_classes(labels[y0:y1, x0:x1][crop], self.names, self.ignore)
        names = self.names
        return {
            "bbox_px": [int(x0), int(y0), int(x1 - x0), int(y1 - y0)],
            "mask": crop,
            "current_value": current,
            "label": self.name_of(current),
            "label_mix": mix,
            "num_pixels": int(crop.sum()),
            "suggestions": [names.get(int(c), str(int(c))) for c in top],
            "suggestion_scores": [round(float(mean[c]), 4) for c in top],
            "score": float(score),
            "superpixel_id": int(sp_id),
            "rep_yx": [int(rep_yx[0]), int(rep_yx[1])],
            "size": int(size),
            "shape": tuple(sp.shape),
        }

    def name_of(self, value: int) -> str:
        if value in self.names:
            return self.names[value]
        return "ignore" if value == self.ignore else str(value)

    def detection(
        self, p: dict, rank: int, superpixel_path: str | None = None, **extra
    ) -> fo.Detection:
        """The pending query of payload ``p`` at place ``rank``; ``extra`` attributes are set
        too (e.g. a sharded run's tag). A payload of a level of a region hierarchy carries its
        own ``level``, ``superpixel_field`` and ``superpixel_path`` (the map its
        ``superpixel_id`` refers to)."""
        superpixel_path = p.get("superpixel_path", superpixel_path)
        x0, y0, w, h = p["bbox_px"]
        H, W = p["shape"]
        det = fo.Detection(
            label=p["label"],
            bounding_box=[x0 / W, y0 / H, w / W, h / H],
            mask=p["mask"],
            score=float(p["score"]),
            rank=rank,
            round=self.round,
            superpixel_id=int(p["superpixel_id"]),
            rep_point=[(p["rep_yx"][1] + 0.5) / W, (p["rep_yx"][0] + 0.5) / H],
            rep_yx=[int(p["rep_yx"][0]), int(p["rep_yx"][1])],
            bbox_px=p["bbox_px"],
            image_size=[int(W), int(H)],
            current_value=p["current_value"],
            label_mix=p["label_mix"],
            suggested_label=p["suggestions"][0] if p["suggestions"] else None,
            suggestions=p["suggestions"],
            suggestion_scores=p["suggestion_scores"],
            num_pixels=p["num_pixels"],
            superpixel_size=int(p["size"]),
            status="pending",
            answer=None,
            answered_by=None,
            answered_at=None,
            **{
                **(self.fields or {}),
                **({"superpixel_field": p["superpixel_field"]} if "superpixel_field" in p else {}),
            },
            superpixel_path=superpixel_path,
            level=int(p.get("level", 0)),
            ranked_at=self.ranked_at,
        )
        det.set_field("purpose", p.get("purpose", "ranked"))
        if "inclusion_prob" in p:  # a query drawn at random (rank_superpixels' estimate_share)
            det.set_field("inclusion_prob", float(p["inclusion_prob"]))
            det.set_field("stratum", int(p["stratum"]))
        for key, value in extra.items():
            det.set_field(key, value)
        return det


# --- what a new ranking keeps, and the write that keeps it ---------------------------------


#: query statuses a new ranking keeps (with live claims): the reviewers' work and records
KEPT = ("confirmed", "corrected", "skipped", "split")


def kept_queries(samples, queries_field: str) -> dict[str, list]:
    """The queries of each sample of ``samples`` that a new ranking keeps, by sample id:
    answered, skipped and claimed ones (an expired claim counts as pending)."""
    from fiftyone import ViewField as F

    if not samples.has_field(queries_field):
        return {}
    out: dict[str, list] = {}
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    live = (F("status") == "claimed") & (F("claimed_until") > now)
    # filtered in the database: the pending queries (and their masks) of a large collection
    # are neither sent nor decoded
    view = samples.filter_labels(queries_field, F("status").is_in(list(KEPT)) | live)
    ids = view.values("id")
    dets = view.values(f"{queries_field}.detections")
    for sid, ds in zip(ids, dets):
        kept = [d for d in (ds or []) if d.get_field("status") in (*KEPT, "claimed")]
        if kept:
            out[sid] = kept
    return out


def answered_queries(samples, queries_field: str) -> dict[str, list]:
    """The answered query Detections of each sample of ``samples``, by sample id."""
    out = {}
    for sid, dets in kept_queries(samples, queries_field).items():
        answered = [d for d in dets if d.get_field("status") in ANSWERED]
        if answered:
            out[sid] = answered
    return out


def excluded_superpixels(
    dets: list, sp: np.ndarray, sp_path: str | None, exclude_answered: bool = True
) -> set[int]:
    """Ids of the superpixels of ``sp`` (mask file ``sp_path``) that a new ranking must not
    ask about, given the kept queries ``dets`` of the sample: the regions of skipped and
    claimed queries (they are still asked), and with ``exclude_answered`` those of answered
    ones.

    A query made on this very superpixel map excludes its own id. A query made on another
    map (the superpixels were recomputed since) is followed by its pixels: every superpixel
    more than half covered by such queries' regions is excluded, never a bare id that now
    names another region.
    """
    out: set[int] = set()
    moved = None
    for d in dets:
        status = d.get_field("status")
        if status in ANSWERED and not exclude_answered:
            continue
        if sp_path is not None and d.get_field("superpixel_path") == sp_path:
            out.add(int(d.get_field("superpixel_id")))
            continue
        x0, y0, w, h = d.get_field("bbox_px")
        mask = np.asarray(d.mask, dtype=bool)
        if mask.shape != (h, w) or y0 + h > sp.shape[0] or x0 + w > sp.shape[1]:
            continue  # made on an image of another size: it covers nothing here
        if moved is None:
            moved = np.zeros(sp.shape, dtype=bool)
        moved[y0 : y0 + h, x0 : x0 + w] |= mask
    if moved is not None and moved.any():
        flat = sp.ravel().astype(np.int64)
        sizes = np.bincount(flat)
        covered = np.bincount(flat, weights=moved.ravel(), minlength=sizes.size)
        ids = np.flatnonzero((2 * covered > sizes) & (sizes > 0))
        out.update(int(i) for i in ids if i > 0)
    return out


def level_exclusions(
    dets: list,
    maps: list[np.ndarray],
    paths: list[str | None],
    exclude_answered: bool = True,
) -> tuple[list[set[int]], list[np.ndarray | None]]:
    """What a ranking over a region hierarchy may not ask, per level, given the kept queries
    ``dets`` of a sample whose levels are the id maps ``maps`` (top first, mask files
    ``paths``). Returns ``(excluded ids per level, answered pixels per level)``.

    A query made on a level of this hierarchy (its ``superpixel_path`` is that level's map):

    - answered: its own region is not asked again (with ``exclude_answered``); the regions
      inside it stay candidates (they are scored on the labels it wrote), and the regions
      around it are scored on their other pixels (its pixels are returned for that);
    - skipped, claimed or split: its region is still being asked about, so neither it nor
      any region around or inside it is a candidate (a split's pieces stand for it).

    A query made on a map that is no longer part of the hierarchy (the regions were
    recomputed) is followed by its pixels, on every level, as
    :func:`excluded_superpixels` does for one map.
    """
    n = len(maps)
    excluded: list[set[int]] = [set() for _ in range(n)]
    answered: list[np.ndarray | None] = [None] * n
    others = []
    for d in dets:
        status = d.get_field("status")
        path = d.get_field("superpixel_path")
        level = paths.index(path) if path is not None and path in paths else None
        if level is None:
            others.append(d)
            continue
        sid = int(d.get_field("superpixel_id"))
        if status in ANSWERED:
            if exclude_answered:
                excluded[level].add(sid)
            x0, y0, w, h = d.get_field("bbox_px")
            mask = np.asarray(d.mask, dtype=bool)
            if mask.shape == (h, w):
                if answered[level] is None:
                    answered[level] = np.zeros(maps[level].shape, dtype=bool)
                answered[level][y0 : y0 + h, x0 : x0 + w] |= mask
            continue
        excluded[level].add(sid)
        if status == "split":
            continue
        x0, y0, w, h = d.get_field("bbox_px")
        mask = np.asarray(d.mask, dtype=bool)
        if mask.shape != (h, w):
            continue
        for other in range(n):
            if other != level:
                window = maps[other][y0 : y0 + h, x0 : x0 + w]
                excluded[other].update(int(v) for v in np.unique(window[mask]) if v > 0)
    if others:
        for level in range(n):
            excluded[level] |= excluded_superpixels(others, maps[level], None, exclude_answered)
    return excluded, answered


def merge_queries(dataset, queries_field: str, new: dict[str, list]) -> None:
    """Write the new (pending) queries of each sample of ``new`` (sample id -> Detections),
    merged in the database with what the sample holds at that moment: one atomic update per
    sample (an aggregation-pipeline update) that keeps every answered, skipped and live
    claimed query, drops the other pending ones, and adds the new queries except those on a
    superpixel (the same id of the same map) that a kept query covers. An answer, skip or
    claim made by a reviewer while the ranking ran is therefore never lost, whenever it
    came."""
    arr = f"${queries_field}.detections"
    keep = {
        "$or": [
            {"$in": ["$$d.status", list(KEPT)]},
            # the pieces of a split ("Mixed"): they stand for their query, answered or not
            {"$ne": [{"$ifNull": ["$$d.parent_id", None]}, None]},
            {
                "$and": [
                    {"$eq": ["$$d.status", "claimed"]},
                    {"$gt": ["$$d.claimed_until", "$$NOW"]},
                ]
            },
        ]
    }
    ops = {}
    for sid, dets in new.items():
        docs = [d.to_mongo() for d in dets]
        taken = {
            "$map": {
                "input": "$__alc_kept",
                "as": "d",
                "in": ["$$d.superpixel_path", "$$d.superpixel_id"],
            }
        }
        fresh = {
            "$filter": {
                "input": {"$literal": docs},
                "as": "n",
                "cond": {
                    "$not": [
                        {"$in": [["$$n.superpixel_path", "$$n.superpixel_id"], "$__alc_taken"]}
                    ]
                },
            }
        }
        pipeline = [
            {
                "$set": {
                    "__alc_kept": {
                        "$filter": {"input": {"$ifNull": [arr, []]}, "as": "d", "cond": keep}
                    }
                }
            },
            {"$set": {"__alc_taken": taken}},
            {"$set": {"__alc_all": {"$concatArrays": ["$__alc_kept", fresh]}}},
            {
                "$set": {
                    queries_field: {
                        "$cond": [
                            {"$gt": [{"$size": "$__alc_all"}, 0]},
                            {
                                "$mergeObjects": [
                                    {"_cls": "Detections"},
                                    {"$ifNull": [f"${queries_field}", {}]},
                                    {"detections": "$__alc_all"},
                                ]
                            },
                            None,
                        ]
                    },
                    "last_modified_at": "$$NOW",
                }
            },
            {"$unset": ["__alc_kept", "__alc_taken", "__alc_all"]},
        ]
        ops[sid] = pipeline
    db.bulk_update_samples(dataset, ops)


def count_ranking(dataset, queries_field: str, sample_ids: list, ranking_id: str) -> int:
    """How many queries of ranking ``ranking_id`` the samples hold (after the merge)."""
    if not sample_ids:
        return 0
    q = f"{queries_field}.detections"
    pipeline = [
        {"$match": {"_id": {"$in": [ObjectId(i) for i in sample_ids]}}},
        {
            "$project": {
                "q": {
                    "$filter": {
                        "input": f"${q}",
                        "as": "d",
                        "cond": {"$eq": ["$$d.ranking_id", ranking_id]},
                    }
                }
            }
        },
        {"$group": {"_id": None, "n": {"$sum": {"$size": "$q"}}}},
    ]
    rows = db.aggregate_raw(dataset, pipeline)
    return int(rows[0]["n"]) if rows else 0


def review_queue(
    samples: SampleCollection,
    queries_field: str = QUERIES_FIELD,
    status: str | Sequence[str] | None = "pending",
):
    """The queries as a patches view, best score first (the order a reviewer should take).

    ``status`` filters by query status (a string, a list, or ``None`` for all).

    Parameters
    ----------
    samples
        The dataset or view to work on.
    queries_field
        The ``fo.Detections`` field holding the queries.
    status
        Only queries of this status (a string, a list, or None for all).

    Returns
    -------
    fiftyone.core.patches.PatchesView
        The queries as patches, best score first.
    """
    from fiftyone import ViewField as F

    if not samples.has_field(queries_field):
        raise ALCError(f"no queries in field {queries_field!r}: run alc.rank_superpixels first")
    view = samples
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        view = view.filter_labels(queries_field, F("status").is_in(statuses))
    return view.to_patches(queries_field).sort_by(F(f"{queries_field}.score"), reverse=True)
