"""rank_superpixels: score every superpixel of a collection, write the global top-B as queries.

A query is an ``fo.Detection`` in ``queries_field`` (DESIGN.md, data model): ``label`` is the
current class at the representative pixel, ``mask`` / ``bounding_box`` the region E(s) that an
answer will relabel, and the attributes say where it came from and what became of it.
``to_patches(queries_field)`` sorted by score is the review queue (:func:`review_queue`).
"""

from __future__ import annotations

import dataclasses
import heapq
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import fiftyone as fo
import numpy as np
from bson import ObjectId
from scipy import ndimage

from . import changes
from .core import acquisition as acq
from .errors import ALCError, SampleError
from .faults import database_errors_of, failure_record, set_write_state
from .labels import (
    alc_info,
    append_alc_info,
    batched,
    check_class_values,
    class_table,
    read_current_labels,
    require_field,
    require_nonempty,
    update_alc_info,
)
from .noise import sample_seed
from .probabilities import FitContext, ProbabilityModel, get_model
from .progress import ProgressCallback, track
from .storage import check_same_size, read_image, read_segmentation

ANSWERED = ("confirmed", "corrected")
STATUSES = ("pending", "claimed", "confirmed", "corrected", "skipped")
DEFAULT_BUDGET_FRACTION = 0.02
WRITE_BATCH = 1000  # samples whose queries are built and written at once


@dataclass(order=True)
class _Candidate:
    key: tuple  # (score, -sample order, -superpixel id): larger is asked first
    sample_id: str = field(compare=False)
    payload: dict = field(compare=False)


def resolve_budget(budget, total_superpixels: int) -> tuple[int, str | None]:
    """(number of queries, note) for ``budget``: ``None`` is 2% of the superpixels, a float
    in (0, 1] that share, an int that count. A count above ``total_superpixels`` is clipped to
    it (the note says so); anything else (0, negative, NaN, a bool, a string, a float above 1)
    is a ValueError, raised before any work is done."""
    if budget is None:
        budget = DEFAULT_BUDGET_FRACTION
    note = None
    if isinstance(budget, (bool, np.bool_)) or not isinstance(
        budget, (int, float, np.integer, np.floating)
    ):
        raise ValueError(  # noqa: TRY004 (a bad option value, as the other budget errors)
            f"budget must be a positive count or a fraction in (0, 1], got {budget!r}"
        )
    if isinstance(budget, (float, np.floating)):
        if not (np.isfinite(budget) and 0 < budget <= 1):
            raise ValueError(
                f"budget must be a positive count or a fraction in (0, 1], got {budget!r} "
                "(a float is a share of the superpixels)"
            )
        return max(1, round(float(budget) * total_superpixels)), note
    if budget <= 0:
        raise ValueError(f"budget must be a positive count or a fraction in (0, 1], got {budget}")
    n = int(budget)
    if n > total_superpixels:
        note = (
            f"budget {n} clipped to the {total_superpixels} superpixels of the collection "
            "(every superpixel is asked about at most once per round)"
        )
        n = total_superpixels
    return max(n, 1) if total_superpixels else 0, note


#: query statuses a new ranking keeps (with live claims): the reviewers' work and records
KEPT = ("confirmed", "corrected", "skipped")


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


def _count_superpixels(samples, superpixel_field: str) -> int:
    counts = samples.values(f"{superpixel_field}.num_superpixels")
    total = 0
    missing = []
    for sid, n in zip(samples.values("id"), counts):
        if n is None:
            missing.append(sid)
        else:
            total += int(n)
    if missing:
        for sample in samples.select(missing).select_fields(superpixel_field):
            total += len(np.unique(read_segmentation(sample, superpixel_field))) - 1
    return total


def _abc_weights(samples, read_labels, superpixel_field, kept, exclude, num_classes, ignore):
    """ABC class weights from the current labels of the not-yet-answered superpixels."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for sample in samples.iter_samples():
        labels = read_labels(sample)
        sp = read_segmentation(sample, superpixel_field)
        keep = sp > 0
        path = sample[superpixel_field].mask_path
        done = excluded_superpixels(kept.get(sample.id, []), sp, path, exclude)
        if done:
            keep &= ~np.isin(sp, list(done))
        vals = labels[keep]
        if ignore is not None:
            vals = vals[vals != ignore]
        counts += np.bincount(vals.astype(np.int64), minlength=num_classes)[:num_classes]
    return acq.abc_class_weights(counts)


@dataclass
class _QueryMaker:
    """Builds a query's content while the image's arrays are in memory."""

    names: dict[int, str]
    ignore: int | None
    tau: float
    num_suggestions: int

    def candidate(self, key, sample_id, image, res, i, score) -> _Candidate:
        """The query for superpixel ``res.ids[i]``; ``image`` = (probs, sp, labels, slices)."""
        probs, sp, labels, slices = image
        sp_id = int(res.ids[i])
        rep_yx = res.rep_yx[i]
        slc = slices[sp_id - 1]
        region = sp[slc] == sp_id
        if self.tau > 0:
            p = probs[:, slc[0], slc[1]]
            rep = probs[:, rep_yx[0], rep_yx[1]]
            num = np.tensordot(rep, p, axes=(0, 0))
            den = np.linalg.norm(p, axis=0) * (np.linalg.norm(rep) + 1e-12) + 1e-12
            region &= (num / den) >= self.tau
            region[rep_yx[0] - slc[0].start, rep_yx[1] - slc[1].start] = True
        rows = np.flatnonzero(region.any(axis=1))
        cols = np.flatnonzero(region.any(axis=0))
        y0, y1 = slc[0].start + rows[0], slc[0].start + rows[-1] + 1
        x0, x1 = slc[1].start + cols[0], slc[1].start + cols[-1] + 1
        crop = region[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        mean = probs[:, y0:y1, x0:x1][:, crop].mean(axis=1)
        top = np.argsort(-mean, kind="stable")[: self.num_suggestions]
        current = int(labels[rep_yx[0], rep_yx[1]])
        names = self.names
        payload = {
            "bbox_px": [int(x0), int(y0), int(x1 - x0), int(y1 - y0)],
            "mask": crop,
            "current_value": current,
            "label": names.get(current, "ignore" if current == self.ignore else str(current)),
            "num_pixels": int(crop.sum()),
            "suggestions": [names.get(int(c), str(int(c))) for c in top],
            "suggestion_scores": [round(float(mean[c]), 4) for c in top],
            "score": float(score),
            "superpixel_id": sp_id,
            "rep_yx": rep_yx.tolist(),
            "size": int(res.sizes[i]),
            "shape": sp.shape,
        }
        return _Candidate(key, sample_id, payload)


@database_errors_of("ranking superpixels")
def rank_superpixels(
    samples,
    label_field: str,
    superpixel_field: str = "alc_superpixels",
    method: str = "sim",
    budget=None,
    queries_field: str = "alc_queries",
    exclude_answered: bool = True,
    model="features",
    tau: float = 0.0,
    seed: int = 0,
    revised_field: str = "alc_revised",
    device: str = "cpu",
    model_kwargs: dict | None = None,
    num_suggestions: int = 3,
    skip_failures: bool = False,
    progress: ProgressCallback | None = None,
    shard=None,
    run_id: str | None = None,
) -> dict:
    """Rank the superpixels of ``samples`` and write the global top-``budget`` as queries.

    The current labels are ``revised_field`` where answers exist, else ``label_field``. The
    class-probability ``model`` (``"features"``, ``"field:<name>"``, a callable or a
    :class:`~alc_fiftyone.probabilities.ProbabilityModel`) is fitted on them first, out of fold.
    Answered queries are kept and, with ``exclude_answered``, their superpixels are not asked
    again; pending, skipped and claimed queries of the previous round are replaced. Nothing is
    written until every sample has been scored, so a failure leaves the old queries intact.

    Returns a summary dict (round, budget, num_queries, num_superpixels, timings, ...).

    A sample that cannot be read (corrupt or missing image or mask, bad class values, sizes
    that differ) stops the ranking with a SampleError naming it, before anything is written;
    with ``skip_failures=True`` it is left out instead and listed in the summary's ``failed``
    (``{"id", "filepath", "error"}``; also recorded with the round). A database failure (MongoDB
    unreachable or restarted) raises :class:`~alc_fiftyone.errors.DatabaseError` saying what
    was written; a rerun is safe.

    ``shard`` (``"i/n"``, see :mod:`alc_fiftyone.sharding`) ranks only that slice of
    ``samples``, for delegated workers sharing the work: the budget is resolved over all of
    ``samples``, the shard writes the top-``budget`` queries of its own samples tagged
    ``shard_run=run_id`` and records itself; the last shard of the run to finish merges them
    into the global top-``budget`` and writes the round (:func:`alc_fiftyone.sharding.merge_ranking`).
    The probability model is fitted on the shard's samples only (out of fold within the
    shard), not on the whole collection as in a single process: a model that learns from the
    labels (``"features"``) therefore gives slightly different scores than a one-process run
    (less data per fit, but each shard's fit is as large as the workers' memory allows); a
    fixed model (``"field:<name>"``, a callable) gives the same scores, and the merged queries
    equal the single-process ones. ``abc`` and ``classbal`` need statistics of the whole
    collection and cannot be sharded.
    """
    t_start = time.perf_counter()
    if method not in acq.METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {acq.METHODS}")
    resolve_budget(budget, 1)  # a bad budget is refused before anything runs
    require_nonempty(samples)
    full = samples
    if shard is not None:
        from .sharding import parse_shard, shard_view

        shard = parse_shard(shard)
        if shard.index is None or not run_id:
            raise ALCError(
                f"ranking shard {shard.label}: a sharded ranking needs its place 'i/n' and "
                "a run_id shared by its shards (use alc.queue_shards)"
            )
        if method in ("abc", "classbal"):
            raise ALCError(
                f"ranking shard {shard.label}: method {method!r} needs statistics of the whole "
                "collection; rank it in one process"
            )
        samples = shard_view(samples, shard)
    require_segmentation_field(samples, label_field, "label")
    failed: list[dict] = []
    samples = _with_superpixels(samples, superpixel_field, skip_failures, failed)
    dataset = samples._dataset
    names, ignore, num_classes = class_table(dataset, label_field)
    if samples.has_field(queries_field) and not _is_detections(samples, queries_field):
        raise ALCError(f"field {queries_field!r} exists and is not an fo.Detections field")
    prob_model: ProbabilityModel = get_model(model, **(model_kwargs or {}))
    if prob_model.fields is None:
        work = samples
    else:
        fields = [label_field, superpixel_field, *prob_model.fields]
        if samples.has_field(revised_field):
            fields.append(revised_field)
        work = samples.select_fields(fields)

    def read_labels(sample):
        labels = read_current_labels(sample, label_field, revised_field)
        check_class_values(sample, labels, num_classes, ignore, label_field)
        return labels

    kept = kept_queries(samples, queries_field)
    total_sp = _count_superpixels(work, superpixel_field)
    if shard is None:
        n_budget, budget_note = resolve_budget(budget, total_sp)
    else:
        total_all = _count_superpixels(
            full.exists(superpixel_field).select_fields(superpixel_field), superpixel_field
        )
        n_budget, budget_note = resolve_budget(budget, total_all)

    fit = FitContext(work, read_labels, superpixel_field, num_classes, ignore, progress)
    work = _fit_skipping_failures(prob_model, fit, skip_failures, failed)
    t_fit = time.perf_counter() - t_start

    extra: dict = {}
    if method == "abc":
        extra["class_weights"] = _abc_weights(
            work,
            read_labels,
            superpixel_field,
            kept,
            exclude_answered,
            num_classes,
            ignore,
        )
    score_method = "margin" if method == "classbal" else method
    maker = _QueryMaker(names, ignore, tau, num_suggestions)
    heap: list[_Candidate] = []
    classbal_rows: list[tuple] = []  # (sample order, ids, raw scores, dominant) for ClassBal
    num_excluded = 0
    sp_paths: dict[str, str] = {}
    order_of: dict[str, int] = {}
    t0 = time.perf_counter()
    for order, sample in enumerate(track(work.iter_samples(), len(work), progress, "ranking")):
        order_of[sample.id] = order
        try:
            sp, labels, probs = _read_for_scoring(
                sample, superpixel_field, read_labels, prob_model
            )
        except SampleError as e:
            if not skip_failures:
                raise
            failed.append(failure_record(e))
            continue
        sp_paths[sample.id] = sample[superpixel_field].mask_path
        res = acq.score_superpixels(
            probs,
            sp,
            labels,
            method=score_method,
            tau=tau,
            ignore_index=ignore,
            device=device,
            seed=sample_seed(seed, sample.filepath),
            **extra,
        )
        if len(res) == 0:
            continue
        keep = np.ones(len(res), dtype=bool)
        done = excluded_superpixels(
            kept.get(sample.id, []), sp, sp_paths[sample.id], exclude_answered
        )
        if done:
            keep = ~np.isin(res.ids, list(done))
            num_excluded += int((~keep).sum())
        if method == "classbal":
            classbal_rows.append((order, sample.id, res, keep))
            continue
        _push_candidates(heap, n_budget, res, keep, order, sample.id, (probs, sp, labels), maker)
    if method == "classbal":
        heap = _classbal_select(
            classbal_rows,
            n_budget,
            num_classes,
            work,
            superpixel_field,
            read_labels,
            prob_model,
            maker,
        )
    t_score = time.perf_counter() - t0

    ranked = sorted(heap, reverse=True)
    dataset.reload()  # the round history as it is now, not as it was when this run began
    info = alc_info(dataset)
    rounds = list(info.get("rounds") or [])
    round_no = 1 + sum(1 for r in rounds if r.get("queries_field") == queries_field)
    now = datetime.now(timezone.utc)
    by_sample: dict[str, list] = {}
    for rank, cand in enumerate(ranked, start=1):
        by_sample.setdefault(cand.sample_id, []).append((rank, cand))

    def detection(rank, cand):
        p = cand.payload
        sid = cand.sample_id
        x0, y0, w, h = p["bbox_px"]
        H, W = p["shape"]
        det = fo.Detection(
            label=p["label"],
            bounding_box=[x0 / W, y0 / H, w / W, h / H],
            mask=p["mask"],
            score=float(p["score"]),
            rank=rank,
            round=round_no,
            superpixel_id=int(p["superpixel_id"]),
            rep_point=[(p["rep_yx"][1] + 0.5) / W, (p["rep_yx"][0] + 0.5) / H],
            rep_yx=[int(p["rep_yx"][0]), int(p["rep_yx"][1])],
            bbox_px=p["bbox_px"],
            image_size=[int(W), int(H)],
            current_value=p["current_value"],
            suggested_label=p["suggestions"][0] if p["suggestions"] else None,
            suggestions=p["suggestions"],
            suggestion_scores=p["suggestion_scores"],
            num_pixels=p["num_pixels"],
            superpixel_size=int(p["size"]),
            status="pending",
            answer=None,
            answered_by=None,
            answered_at=None,
            method=method,
            label_field=label_field,
            superpixel_field=superpixel_field,
            revised_field=revised_field,
            superpixel_path=sp_paths[sid],
            ranked_at=now,
        )
        if shard is not None:
            det.set_field("shard_run", run_id)
        return det

    had = set()
    if samples.has_field(queries_field):
        from fiftyone import ViewField as F

        # ids only: the old queries themselves are not loaded
        had = set(samples.match(F(f"{queries_field}.detections").length() > 0).values("id"))
    targets = sorted(set(by_sample) | had)
    set_write_state(
        f"the new queries of {queries_field!r} may be partly written and info['alc'] does not "
        "record the round yet: rerun rank_superpixels to replace them (answered, skipped and "
        "claimed queries are kept either way)"
    )
    ranking_id = uuid.uuid4().hex[:12]
    if not samples.has_field(queries_field):
        dataset.add_sample_field(
            queries_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections
        )
    try:
        # in batches: the Detections of one batch only are ever built (memory stays flat)
        for batch in batched(targets, WRITE_BATCH):
            new = {}
            for sid in batch:
                dets = [detection(rank, cand) for rank, cand in by_sample.get(sid, [])]
                for det in dets:
                    det.set_field("ranking_id", ranking_id)
                new[sid] = dets
            merge_queries(dataset, queries_field, new, sp_paths)
    finally:
        changes.reset(dataset)  # the review caches of this process re-read the queries
    num_written = len(ranked)
    if targets:
        dataset.create_index(f"{queries_field}.detections._id")
        num_written = _count_ranking(dataset, queries_field, list(by_sample), ranking_id)
    if label_field in (dataset.mask_targets or {}) and revised_field not in dataset.mask_targets:
        dataset.mask_targets = {
            **dataset.mask_targets,
            revised_field: dataset.mask_targets[label_field],
        }

    model_desc = prob_model.describe()
    record = {
        "round": round_no,
        "ranking_id": ranking_id,
        "queries_field": queries_field,
        "label_field": label_field,
        "superpixel_field": superpixel_field,
        "revised_field": revised_field,
        "method": method,
        "model": model_desc,
        "tau": tau,
        "budget": n_budget,
        "num_queries": num_written,
        "num_samples": len(work),
        "num_superpixels": total_sp,
        "excluded_answered": num_excluded,
        "ranked_at": now.isoformat(),
        "seconds_fit": round(t_fit, 3),
        "seconds_score": round(t_score, 3),
        "failed": failed,
    }
    if shard is not None:
        from .sharding import record_ranking_shard

        record.update(
            run_id=run_id,
            num_shards=shard.count,
            num_superpixels_total=total_all,
            ignore_index=ignore,
            ranked_at=now.isoformat(),
            seconds_total=round(time.perf_counter() - t_start, 3),
        )
        return record_ranking_shard(full, record, run_id, shard)
    append_alc_info(dataset, "rounds", record)  # atomic: no round of another process is lost
    update_alc_info(
        dataset,
        label_field=info.get("label_field", label_field),
        ignore_index=ignore,
    )
    record["seconds_total"] = round(time.perf_counter() - t_start, 3)
    record["top"] = [
        {
            "sample_id": c.sample_id,
            "superpixel_id": c.payload["superpixel_id"],
            "score": float(c.payload["score"]),
            "label": c.payload["label"],
        }
        for c in ranked[:5]
    ]
    if budget_note:
        record["note"] = budget_note
        record["budget_requested"] = budget  # not in info["alc"]: it may not fit BSON
    if num_written < len(ranked):
        record["dropped_answered_meanwhile"] = len(ranked) - num_written
    return record


def merge_queries(dataset, queries_field: str, new: dict[str, list], sp_paths: dict) -> None:
    """Write the new (pending) queries of each sample of ``new`` (sample id -> Detections),
    merged in the database with what the sample holds at that moment: one atomic update per
    sample (an aggregation-pipeline update) that keeps every answered, skipped and live
    claimed query, drops the other pending ones, and adds the new queries except those on a
    superpixel (of the same map) that a kept query covers. An answer, skip or claim made by
    a reviewer while the ranking ran is therefore never lost, whenever it came."""
    from pymongo import UpdateOne

    arr = f"${queries_field}.detections"
    keep = {
        "$or": [
            {"$in": ["$$d.status", list(KEPT)]},
            {
                "$and": [
                    {"$eq": ["$$d.status", "claimed"]},
                    {"$gt": ["$$d.claimed_until", "$$NOW"]},
                ]
            },
        ]
    }
    ops = []
    for sid, dets in new.items():
        docs = [d.to_mongo() for d in dets]
        path = sp_paths.get(sid)
        taken = {
            "$map": {
                "input": {
                    "$filter": {
                        "input": "$__alc_kept",
                        "as": "d",
                        "cond": {"$eq": ["$$d.superpixel_path", {"$literal": path}]},
                    }
                },
                "as": "d",
                "in": "$$d.superpixel_id",
            }
        }
        fresh = {
            "$filter": {
                "input": {"$literal": docs},
                "as": "n",
                "cond": {"$not": [{"$in": ["$$n.superpixel_id", "$__alc_taken"]}]},
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
        ops.append(UpdateOne({"_id": ObjectId(sid)}, pipeline))
    if ops:
        dataset._sample_collection.bulk_write(ops, ordered=False)
        fo.Sample._reload_docs(dataset._sample_collection_name, sample_ids=list(new))


def _count_ranking(dataset, queries_field: str, sample_ids: list, ranking_id: str) -> int:
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
    rows = list(dataset._sample_collection.aggregate(pipeline))
    return int(rows[0]["n"]) if rows else 0


def require_segmentation_field(samples, field_name: str, what: str, hint: str = "") -> None:
    """ALCError unless ``field_name`` is an ``fo.Segmentation`` field of the collection;
    SampleError naming the first sample where it is empty."""
    f = samples.get_field(field_name) if samples.has_field(field_name) else None
    if f is not None and getattr(f, "document_type", None) is not fo.Segmentation:
        kind = type(f).__name__
        raise ALCError(
            f"{field_name!r} is not an fo.Segmentation field (it is a {kind}): choose the "
            f"{what} field that holds the masks"
        )
    require_field(samples, field_name, what, hint)


def _with_superpixels(samples, superpixel_field: str, skip_failures: bool, failed: list):
    """The samples that have superpixels. Without ``skip_failures`` a sample without them is
    a SampleError; with it, such samples are left out and listed in ``failed``."""
    hint = (
        "run alc.compute_superpixels first (a sample it could not process has none: pass "
        "skip_failures=True to rank without such samples)"
    )
    if not samples.has_field(superpixel_field) or not skip_failures:
        require_segmentation_field(samples, superpixel_field, "superpixel", hint)
        return samples
    missing = samples.exists(superpixel_field, False)
    for sid, path in zip(*missing.values(["id", "filepath"])):
        failed.append(
            {
                "id": sid,
                "filepath": path,
                "error": f"no superpixels in {superpixel_field!r}; {hint.split(' (')[0]}",
            }
        )
    if len(missing):
        samples = samples.exists(superpixel_field)
        require_nonempty(samples)
    return samples


def _fit_skipping_failures(prob_model, fit: FitContext, skip_failures: bool, failed: list):
    """Fit ``prob_model``; with ``skip_failures`` a sample whose files cannot be read is
    recorded in ``failed``, left out, and the fit repeated without it (models cache what they
    computed per sample, so a repeat costs little). Returns the samples fitted on."""
    work = fit.samples
    skipped: set[str] = set()
    while True:
        try:
            prob_model.fit(fit)
            return work
        except SampleError as e:
            if not skip_failures or e.sample_id is None or e.sample_id in skipped:
                raise
            skipped.add(e.sample_id)
            failed.append(failure_record(e))
            work = work.exclude([e.sample_id])
            fit = dataclasses.replace(fit, samples=work)


def _read_for_scoring(sample, superpixel_field: str, read_labels, prob_model):
    """(superpixels, labels, probabilities) of one sample, validated."""
    sp = read_segmentation(sample, superpixel_field)
    labels = read_labels(sample)
    check_same_size(sample, "the superpixel map", sp.shape, "the labels", labels.shape)
    image = read_image(sample) if prob_model.needs_image else None
    return sp, labels, prob_model.predict(sample, sp, image)


def _is_detections(samples, field_name: str) -> bool:
    f = samples.get_field(field_name)
    return getattr(f, "document_type", None) is fo.Detections


def _push_candidates(heap, budget, res, keep, order, sample_id, arrays, maker):
    """Offer an image's superpixels to the global top-``budget`` heap (best first; a query's
    content is built only for superpixels that make it in)."""
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        return
    # best first within the image; ties by smaller superpixel id (ids ascending already)
    idx = idx[np.argsort(-res.scores[idx], kind="stable")]
    image = None
    for i in idx:
        key = (float(res.scores[i]), -order, -int(res.ids[i]))
        if len(heap) >= budget and key <= heap[0].key:
            break
        if image is None:
            image = (*arrays, ndimage.find_objects(arrays[1]))
        cand = maker.candidate(key, sample_id, image, res, i, res.scores[i])
        if len(heap) < budget:
            heapq.heappush(heap, cand)
        else:
            heapq.heapreplace(heap, cand)


def _classbal_select(
    rows, budget, num_classes, work, superpixel_field, read_labels, prob_model, maker
):
    """ClassBal (Cai et al. 2021) needs dataset-level statistics: the share of regions per
    dominant class and the range of the uncertainty. Scores are finished here, then the
    winners' images are read once more to build their queries."""
    if not rows:
        return []
    dom = np.concatenate([r[2].dominant for r in rows])
    unc = np.concatenate([r[2].scores for r in rows])
    prior = np.bincount(dom, minlength=num_classes)[:num_classes] / max(len(dom), 1)
    lo, hi = float(unc.min()), float(unc.max())
    span = hi - lo if hi > lo else 1.0
    best = []
    for order, sid, res, keep in rows:
        s = (res.scores - lo) / span * np.exp(-prior[res.dominant])
        for i in np.flatnonzero(keep):
            best.append(((float(s[i]), -order, -int(res.ids[i])), sid, res, i, s[i]))
    best.sort(key=lambda t: t[0], reverse=True)
    by_sample: dict[str, list] = {}
    for item in best[:budget]:
        by_sample.setdefault(item[1], []).append(item)
    heap = []
    for sample in work.select(list(by_sample)).iter_samples():
        sp = read_segmentation(sample, superpixel_field)
        image = read_image(sample) if prob_model.needs_image else None
        probs = prob_model.predict(sample, sp, image)
        arrays = (probs, sp, read_labels(sample), ndimage.find_objects(sp))
        for key, sid, res, i, score in by_sample[sample.id]:
            heap.append(maker.candidate(key, sid, arrays, res, i, score))
    return heap


def review_queue(samples, queries_field: str = "alc_queries", status="pending"):
    """The queries as a patches view, best score first (the order a reviewer should take).

    ``status`` filters by query status (a string, a list, or ``None`` for all).
    """
    from fiftyone import ViewField as F

    if not samples.has_field(queries_field):
        raise ALCError(f"no queries in field {queries_field!r}: run alc.rank_superpixels first")
    view = samples
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        view = view.filter_labels(queries_field, F("status").is_in(statuses))
    return view.to_patches(queries_field).sort_by(F(f"{queries_field}.score"), reverse=True)
