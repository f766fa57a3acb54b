"""rank_superpixels: score every superpixel of a collection, write the global top-B as queries.

A ranking runs in four stages, each a function below: :func:`_plan` checks everything that
can be checked before any work (method, budget, fields, shard) and resolves the budget;
the probability model is fitted on the current labels (:func:`_fit_skipping_failures`);
:func:`_score` streams over the samples, scoring each image's superpixels and keeping the
global top-B in a heap (a query's content is built only for a superpixel that makes it in);
:func:`_write` writes the queries, merged per sample with what reviewers did meanwhile
(:func:`alc_fiftyone.review.queries.merge_queries`), and records the round. What a query holds
is defined in :mod:`alc_fiftyone.review.queries`.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import fiftyone as fo
import numpy as np
from scipy import ndimage

from ..core import acquisition as acq
from ..core.noise import sample_seed
from ..core.pool import thread_map
from ..errors import ALCError, SampleError
from ..models.base import FitContext, LabelCensus, ProbabilityModel
from ..models.levels import level_model
from ..models.registry import get_model
from ..progress import ProgressCallback, track
from ..review.queries import (
    QueryMaker,
    count_ranking,
    excluded_superpixels,
    kept_queries,
    merge_queries,
)
from ..store import changes, db
from ..store.faults import database_errors_of, failure_record, set_write_state
from ..store.fields import (
    QUERIES_FIELD,
    REVISED_FIELD,
    SUPERPIXELS_FIELD,
    batched,
    check_class_values,
    class_table,
    hierarchy_levels,
    read_current_labels,
    require_nonempty,
    require_segmentation_field,
)
from ..store.files import check_same_size, read_image, read_segmentation
from ..store.info import alc_info, append_alc_info, update_alc_info
from ..store.roles import check_ranking_fields
from .candidates import (
    FINER_LEVEL_WEIGHT,
    Candidate,
    FrameUnits,
    acquisition_scorer,
    frame_units,
    push_image,
    read_levels,
    score_image,
)
from .sampling import check_estimate_share, draw_estimate, estimate_candidates, labelled_counts
from .scorers import OracleScorer, ScoreContext, Scorer

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection

__all__ = [  # the scorers live in .scorers and are imported from here too
    "OracleScorer",
    "ScoreContext",
    "Scorer",
    "rank_superpixels",
    "rank_with",
    "resolve_budget",
    "samples_to_rank",
]

DEFAULT_BUDGET_FRACTION = 0.02
WRITE_BATCH = 1000  # samples whose queries are built and written at once


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


@dataclass
class _Plan:
    """Everything a ranking decided before it started the work."""

    full: object  # the collection ranked (all shards)
    samples: object  # the samples this process ranks (its shard, without failed samples)
    work: object  # ``samples`` with only the fields the model reads
    label_field: str
    superpixel_field: str
    queries_field: str
    revised_field: str
    method: str
    names: dict
    ignore: int | None
    num_classes: int
    model: ProbabilityModel
    budget: int
    budget_note: str | None
    total_superpixels: int
    total_all: int
    shard: object | None
    failed: list
    scorer: Scorer | None = None
    levels: list[str] = field(default_factory=list)  # the hierarchy's fields, top first
    asked_levels: int = 1  # how many of them (from the top) give candidates
    estimate_share: float = 0.0  # the share of the budget drawn at random (estimate queries)
    estimate_n: int = 0  # how many queries that is

    @property
    def ranked_budget(self) -> int:
        """The queries the ranking itself chooses (the budget less the random ones)."""
        return self.budget - self.estimate_n

    def read_labels(self, sample) -> np.ndarray:
        labels = read_current_labels(sample, self.label_field, self.revised_field)
        check_class_values(sample, labels, self.num_classes, self.ignore, self.label_field)
        return labels


def rank_superpixels(
    samples: SampleCollection,
    label_field: str,
    superpixel_field: str = SUPERPIXELS_FIELD,
    method: str = "sim",
    budget: float | None = None,
    queries_field: str = QUERIES_FIELD,
    exclude_answered: bool = True,
    model: str | Callable | ProbabilityModel = "auto",
    tau: float = 0.0,
    seed: int = 0,
    revised_field: str = REVISED_FIELD,
    device: str = "auto",
    model_kwargs: dict | None = None,
    num_suggestions: int = 3,
    skip_failures: bool = False,
    progress: ProgressCallback | None = None,
    shard: str | dict | None = None,
    run_id: str | None = None,
    levels: int | None = None,
    estimate_share: float = 0.0,
) -> dict:
    """Rank the superpixels of ``samples`` and write the global top-``budget`` as queries.

    Parameters
    ----------
    samples : fiftyone.core.collections.SampleCollection
        The dataset or view to rank.
    label_field : str
        The labels under review (an ``fo.Segmentation`` field). The current labels are
        ``revised_field`` where answers exist, else this field.
    superpixel_field : str
        The superpixel id maps (:func:`alc_fiftyone.compute_superpixels`).
    method : str
        The acquisition (:data:`alc_fiftyone.core.acquisition.METHODS`): ``"sim"`` is the
        look-ahead of Kim et al. (ICML 2024), the others are baselines.
    budget : int, float or None
        Queries to write: a count, or a fraction in (0, 1] of the superpixels (None: 2%).
        A count above the number of superpixels is clipped (the summary's ``note`` says so).
    queries_field : str
        The ``fo.Detections`` field receiving the queries.
    exclude_answered : bool
        Do not ask again about regions that have an answer (followed by their pixels when
        the superpixels were recomputed since).
    model : str, callable or ProbabilityModel
        P(class | pixel): ``"auto"`` (``"sam_head"`` where CUDA is available and a SAM
        checkpoint is found, else ``"features"``: :func:`alc_fiftyone.models.registry.
        default_model`), ``"features"``, ``"sam_head"``, ``"backbone:<resnet>"``,
        ``"field:<name>"``, a callable ``fn(sample, image) -> (C, H, W)`` or a
        :class:`~alc_fiftyone.models.base.ProbabilityModel`; fitted first, out of fold.
    tau : float
        Expansion threshold: an answer relabels the pixels of the superpixel whose
        probability vector has cosine >= ``tau`` with the representative's (0: all).
    seed : int
        Seed of the model and of ``method="random"``.
    revised_field : str
        The corrected labels the answers write.
    device : str
        Where the acquisition runs: ``"auto"`` (the torch backend on CUDA when available,
        else the CPU backend), ``"cpu"``, ``"cuda"``, ...
    model_kwargs : dict, optional
        Keyword arguments of the model (e.g. ``{"granularity": "fine"}``).
    num_suggestions : int
        Classes suggested per query (the model's best guesses for the region).
    skip_failures : bool
        Leave out samples whose files cannot be read (or that have no superpixels) and list
        them in the summary's ``failed``, instead of stopping.
    progress : callable, optional
        ``progress(done, total, description)`` for progress bars.
    shard : str, optional
        Rank one slice ``"i/n"`` of ``samples`` as part of a sharded run (see below).
    run_id : str, optional
        The id shared by the shards of that run.
    levels : int, optional
        How many levels of the region hierarchy of ``superpixel_field`` are candidates
        (``compute_superpixels(..., levels=...)``; None: all it has, 1: the top map only).
    estimate_share : float
        The share of the budget spent on regions drawn at random, stratified by score, from
        every candidate of the finest level asked that the ranked queries of this round do
        not cover (0: none, the default). Such queries carry ``purpose="estimate"`` and their
        ``inclusion_prob`` (the others ``purpose="ranked"``); answered, they let
        :func:`alc_fiftyone.audit` estimate how much is still wrong (docs/method.md,
        "What remains wrong"). 0.1 to 0.2 is the recommended value for an audit; not the
        default, since 0.2 cost up to 2.8 mIoU points at equal clicks (BENCHMARKS.md).

    Returns
    -------
    dict
        The round's record: ``round``, ``budget``, ``num_queries``, ``num_superpixels``,
        ``excluded_answered``, ``failed``, timings, ``top`` (the five best queries) and, when
        the budget was clipped, ``note`` and ``budget_requested``.

    Answered, skipped and claimed queries are kept (also those given while this ranking runs:
    the write merges with what each sample holds at that moment), and no new query covers
    their regions; the other pending queries are replaced. Nothing is written until every
    sample has been scored, so a failure leaves the old queries intact.

    A sample that cannot be read (corrupt or missing image or mask, bad class values, sizes
    that differ) stops the ranking with a SampleError naming it, before anything is written;
    with ``skip_failures=True`` it is left out instead and listed in the summary's ``failed``
    (``{"id", "filepath", "error"}``; also recorded with the round). A database failure (MongoDB
    unreachable or restarted) raises :class:`~alc_fiftyone.errors.DatabaseError` saying what
    was written; a rerun is safe.

    ``shard`` (``"i/n"``, see :mod:`alc_fiftyone.steps.sharding`) ranks only that slice of
    ``samples``, for delegated workers sharing the work: the budget is resolved over all of
    ``samples``, the shard writes the top-``budget`` queries of its own samples tagged
    ``shard_run=run_id`` and records itself; the last shard of the run to finish merges them
    into the global top-``budget`` and writes the round
    (:func:`alc_fiftyone.steps.sharding.merge_ranking`). The probability model is fitted on
    the shard's samples only (out of fold within the shard), not on the whole collection as
    in a single process: a model that learns from the labels (``"features"``) therefore gives
    slightly different scores than a one-process run; a fixed model (``"field:<name>"``, a
    callable) gives the same scores, and the merged queries equal the single-process ones.
    ``abc`` and ``classbal`` need statistics of the whole collection and cannot be sharded.

    A patches view (the review queue in the grid) ranks the collection it was made from.

    Over a region hierarchy every region of every level is a candidate, scored by the same
    acquisition; a region and one inside or around it are never queued in the same round;
    the regions inside an answered region stay candidates (scored on the labels it wrote),
    and a region holding answered pieces is scored, and answered, on its other pixels. A
    query records its ``level`` and the ``superpixel_field`` / ``superpixel_path`` of that
    level. ``method="classbal"`` ranks the top level only.
    """
    if method == "oracle":
        raise ValueError(
            "method 'oracle' reads the ground truth: it is the ceiling of a benchmark, not a "
            "ranking for reviewers; use alc.simulate(..., method='oracle')"
        )
    return rank_with(
        samples,
        label_field,
        superpixel_field=superpixel_field,
        method=method,
        budget=budget,
        queries_field=queries_field,
        exclude_answered=exclude_answered,
        model=model,
        tau=tau,
        seed=seed,
        revised_field=revised_field,
        device=device,
        model_kwargs=model_kwargs,
        num_suggestions=num_suggestions,
        skip_failures=skip_failures,
        progress=progress,
        shard=shard,
        run_id=run_id,
        levels=levels,
        estimate_share=estimate_share,
    )


def samples_to_rank(samples: SampleCollection) -> SampleCollection:
    """The samples :func:`rank_superpixels` ranks for ``samples``: a patches view (the review
    queue in the grid) stands for the collection it was made from.

    Parameters
    ----------
    samples
        The dataset or view to work on.

    Returns
    -------
    SampleCollection
        The collection ranked.
    """
    return db.patches_source(samples)


@database_errors_of("ranking superpixels")
def rank_with(
    samples,
    label_field: str,
    superpixel_field: str = SUPERPIXELS_FIELD,
    method: str | Scorer = "sim",
    budget=None,
    queries_field: str = QUERIES_FIELD,
    exclude_answered: bool = True,
    model="auto",
    tau: float = 0.0,
    seed: int = 0,
    revised_field: str = REVISED_FIELD,
    device: str = "auto",
    model_kwargs: dict | None = None,
    num_suggestions: int = 3,
    skip_failures: bool = False,
    progress: ProgressCallback | None = None,
    shard=None,
    run_id: str | None = None,
    levels: int | None = None,
    estimate_share: float = 0.0,
) -> dict:
    """:func:`rank_superpixels`, where ``method`` may also be a :class:`Scorer` (a benchmark's
    own acquisition, or the oracle ceiling of :func:`alc_fiftyone.simulate`)."""
    t_start = time.perf_counter()
    scorer = method if isinstance(method, Scorer) else None
    if scorer is not None:
        method = scorer.base_method
    plan = _plan(
        samples,
        label_field,
        superpixel_field,
        method,
        budget,
        queries_field,
        revised_field,
        get_model(model, **(model_kwargs or {})) if method in acq.METHODS else None,
        skip_failures,
        shard,
        run_id,
        scorer,
        levels,
        estimate_share,
    )
    kept = kept_queries(plan.samples, queries_field)
    census = LabelCensus(plan.read_labels, plan.names, plan.num_classes, plan.ignore)
    fit = FitContext(
        plan.work,
        census,
        superpixel_field,
        plan.num_classes,
        plan.ignore,
        progress,
    )
    plan.work = _fit_skipping_failures(plan.model, fit, skip_failures, plan.failed)
    census.require_learnable(plan.label_field, plan.revised_field)  # before any query
    t_fit = time.perf_counter() - t_start
    t0 = time.perf_counter()
    ranked, sp_paths, num_excluded, estimate = _score(
        plan, kept, exclude_answered, tau, seed, device, num_suggestions, skip_failures, progress
    )
    t_score = time.perf_counter() - t0
    record = _write(plan, ranked, sp_paths, tau, run_id, progress)
    if estimate is not None:
        record["estimate"] = estimate
    record.update(
        excluded_answered=num_excluded,
        seconds_fit=round(t_fit, 3),
        seconds_score=round(t_score, 3),
    )
    return _record_round(plan, record, ranked, budget, run_id, t_start)


def _plan(
    samples,
    label_field,
    superpixel_field,
    method,
    budget,
    queries_field,
    revised_field,
    prob_model,
    skip_failures,
    shard,
    run_id,
    scorer=None,
    levels=None,
    estimate_share=0.0,
) -> _Plan:
    """Check everything that can be checked before any work and resolve the budget; nothing
    is computed or written yet."""
    if method not in acq.METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {acq.METHODS}")
    resolve_budget(budget, 1)  # a bad budget is refused before anything runs
    estimate_share = check_estimate_share(estimate_share)
    if estimate_share and (shard is not None or method == "classbal"):
        raise ALCError(
            "estimate_share needs one ranking over the whole collection: it cannot be used "
            "with a sharded ranking or method 'classbal'"
        )
    # the queue in the grid (patches of the queries): rank the collection it was made from
    samples = db.patches_source(samples)
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
    check_ranking_fields(samples, label_field, superpixel_field, queries_field, revised_field)
    require_segmentation_field(samples, label_field, "label")
    failed: list[dict] = []
    samples = _with_superpixels(samples, superpixel_field, skip_failures, failed)
    names, ignore, num_classes = class_table(db.dataset_of(samples), label_field)
    if samples.has_field(queries_field) and not _is_detections(samples, queries_field):
        raise ALCError(f"field {queries_field!r} exists and is not an fo.Detections field")
    # every level is read (answers on any level keep their pixels), the first ``levels`` ask
    level_fields = hierarchy_levels(db.dataset_of(samples), superpixel_field)
    asked = len(level_fields)
    if levels is not None:
        if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
            raise ValueError(f"levels must be a positive number of levels, got {levels!r}")
        asked = min(asked, int(levels))
    if method == "classbal":
        asked = 1  # its dataset-level statistics are of one map
    prob_model = level_model(prob_model, level_fields[:asked])
    if prob_model.fields is None:
        work = samples
    else:
        fields = [label_field, *level_fields, *prob_model.fields]
        if scorer is not None:
            fields += [f for f in scorer.fields if f not in fields]
        if samples.has_field(revised_field):
            fields.append(revised_field)
        work = samples.select_fields(fields)
    total_sp = _count_superpixels(work, superpixel_field)
    total_all = total_sp
    if shard is not None:
        total_all = _count_superpixels(
            full.exists(superpixel_field).select_fields(superpixel_field), superpixel_field
        )
    n_budget, note = resolve_budget(budget, total_all)
    return _Plan(
        full=full,
        samples=samples,
        work=work,
        label_field=label_field,
        superpixel_field=superpixel_field,
        queries_field=queries_field,
        revised_field=revised_field,
        method=method,
        names=names,
        ignore=ignore,
        num_classes=num_classes,
        model=prob_model,
        budget=n_budget,
        budget_note=note,
        total_superpixels=total_sp,
        total_all=total_all,
        shard=shard,
        failed=failed,
        scorer=scorer,
        levels=level_fields,
        asked_levels=asked,
        estimate_share=estimate_share,
        estimate_n=round(estimate_share * n_budget) if estimate_share else 0,
    )


def _score(plan, kept, exclude_answered, tau, seed, device, num_suggestions, skip, progress):
    """Score every sample's superpixels and keep the global top-B; returns (candidates best
    first, superpixel mask path per sample, number of superpixels excluded, the record of
    the random sample or None). With ``plan.estimate_n`` the ranked top is that much smaller
    and the random queries follow it (:func:`_draw_estimate`)."""
    method = plan.method
    extra: dict = {}
    if method == "abc":
        extra["class_weights"] = _abc_weights(plan, kept, exclude_answered)
    score_method = "margin" if method == "classbal" else method
    maker = QueryMaker(plan.names, plan.ignore, tau, num_suggestions)
    if plan.scorer is not None:
        plan.scorer.start(
            ScoreContext(
                plan.work,
                plan.superpixel_field,
                plan.model,
                plan.read_labels,
                plan.num_classes,
                plan.ignore,
            )
        )
    heap: list[Candidate] = []
    classbal_rows: list[tuple] = []  # (sample order, sample id, raw scores, kept) for ClassBal
    num_excluded = 0
    sp_paths: dict[str, str] = {}
    work = plan.work

    def read_and_score(sample):
        """Read one sample and score every level of its hierarchy (in a thread)."""
        try:
            levels, labels, probs = _read_for_scoring(sample, plan)
        except SampleError as e:
            return sample, e
        score_level = acquisition_scorer(
            probs,
            labels,
            score_method,
            tau,
            plan.ignore,
            device,
            sample_seed(seed, sample.filepath),
            extra,
        )
        if plan.scorer is not None:
            base_score = score_level

            def score_level(lv, smap):
                res = base_score(lv, smap)
                if len(res):
                    res.scores = np.asarray(
                        plan.scorer(sample, probs[lv], smap, labels, res), np.float64
                    )
                return res

        scored = score_image(
            levels,
            labels,
            kept.get(sample.id, []),
            exclude_answered,
            score_level,
            plan.asked_levels,
        )
        return sample, (scored, labels, probs)

    # a few samples ahead in threads where the model allows it and the acquisition runs on
    # the CPU (the numba kernels and image decoding release the GIL); in order either way
    threads = 1 if not plan.model.thread_safe or not acq.runs_on_host(device) else None
    # estimates count a finer level's regions less; exact counts (the oracle) as they are
    weight = 1.0 if getattr(plan.scorer, "exact", False) else FINER_LEVEL_WEIGHT
    results = thread_map(read_and_score, work.iter_samples(), threads)
    frames: list[tuple[int, str, FrameUnits]] = []
    labelled = np.zeros(plan.num_classes, dtype=np.int64)
    for order, (sample, got) in enumerate(track(results, len(work), progress, "ranking")):
        if isinstance(got, SampleError):
            if not skip:
                raise got
            plan.failed.append(failure_record(got))
            continue
        scored, labels, probs = got
        sp_paths[sample.id] = scored.levels.paths[0]
        num_excluded += scored.num_excluded
        if method == "classbal":
            if len(scored.results[0]):
                classbal_rows.append((order, sample.id, scored.results[0], scored.keep[0]))
            continue
        push_image(
            heap, plan.ranked_budget, scored, order, sample.id, probs, labels, maker, weight
        )
        if plan.estimate_share:
            frames.append((order, sample.id, frame_units(scored)))
            vals = labels.ravel()
            if plan.ignore is not None:
                vals = vals[vals != plan.ignore]
            labelled += np.bincount(vals.astype(np.int64), minlength=plan.num_classes)[
                : plan.num_classes
            ]
    if method == "classbal":
        heap = _classbal_select(classbal_rows, plan, maker)
    ranked = sorted(heap, reverse=True)
    for cand in ranked:
        cand.payload["purpose"] = "ranked"
    if not plan.estimate_share:
        return ranked, sp_paths, num_excluded, None
    drawn, record = draw_estimate(plan, ranked, frames, seed)
    record.update(labelled_counts(labelled, plan.names))
    estimate = estimate_candidates(drawn, work, read_and_score, maker)
    return ranked + estimate, sp_paths, num_excluded, record


def _write(plan, ranked, sp_paths, tau, run_id, progress) -> dict:
    """Write the queries of ``ranked`` (merged with what each sample holds now) and return the
    round's record (not recorded yet)."""
    samples, queries_field = plan.samples, plan.queries_field
    dataset = db.dataset_of(samples)
    db.reload_dataset(dataset)  # the round history as it is now, not when this run began
    rounds = list(alc_info(dataset).get("rounds") or [])
    round_no = 1 + sum(1 for r in rounds if r.get("queries_field") == queries_field)
    now = datetime.now(timezone.utc)
    maker = QueryMaker(
        plan.names,
        plan.ignore,
        tau,
        0,
        round=round_no,
        fields={
            "method": plan.scorer.name if plan.scorer is not None else plan.method,
            "label_field": plan.label_field,
            "superpixel_field": plan.superpixel_field,
            "revised_field": plan.revised_field,
        },
        ranked_at=now,
    )
    by_sample: dict[str, list] = {}
    for rank, cand in enumerate(ranked, start=1):
        by_sample.setdefault(cand.sample_id, []).append((rank, cand))
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
    tags = {"ranking_id": ranking_id}
    if plan.shard is not None:
        tags["shard_run"] = run_id
    if not samples.has_field(queries_field):
        dataset.add_sample_field(
            queries_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections
        )
    try:
        # in batches: the Detections of one batch only are ever built (memory stays flat)
        for batch in batched(targets, WRITE_BATCH):
            new = {
                sid: [
                    maker.detection(cand.payload, rank, sp_paths.get(sid), **tags)
                    for rank, cand in by_sample.get(sid, [])
                ]
                for sid in batch
            }
            merge_queries(dataset, queries_field, new)
    finally:
        changes.reset(dataset)  # the review caches of this process re-read the queries
    num_written = len(ranked)
    if targets:
        db.create_index(dataset, f"{queries_field}.detections._id")
        num_written = count_ranking(dataset, queries_field, list(by_sample), ranking_id)
    label_field, revised_field = plan.label_field, plan.revised_field
    if label_field in (dataset.mask_targets or {}) and revised_field not in dataset.mask_targets:
        dataset.mask_targets = {
            **dataset.mask_targets,
            revised_field: dataset.mask_targets[label_field],
        }
    record = {
        "round": round_no,
        "ranking_id": ranking_id,
        "queries_field": queries_field,
        "label_field": label_field,
        "superpixel_field": plan.superpixel_field,
        "revised_field": revised_field,
        "method": plan.scorer.name if plan.scorer is not None else plan.method,
        "model": plan.model.describe(),
        "tau": tau,
        "budget": plan.budget,
        "num_queries": num_written,
        "num_samples": len(plan.work),
        "num_superpixels": plan.total_superpixels,
        "ranked_at": now.isoformat(),
        "failed": plan.failed,
    }
    if num_written < len(ranked):
        record["dropped_answered_meanwhile"] = len(ranked) - num_written
    return record


def _record_round(plan, record, ranked, budget, run_id, t_start) -> dict:
    """Record the round in ``info["alc"]`` (a shard records itself for the merge instead)
    and return the summary."""
    dataset = db.dataset_of(plan.samples)
    if plan.shard is not None:
        from .sharding import record_ranking_shard

        record.update(
            run_id=run_id,
            num_shards=plan.shard.count,
            num_superpixels_total=plan.total_all,
            ignore_index=plan.ignore,
            seconds_total=round(time.perf_counter() - t_start, 3),
        )
        return record_ranking_shard(plan.full, record, run_id, plan.shard)
    info = alc_info(dataset)
    append_alc_info(dataset, "rounds", record)  # atomic: no round of another process is lost
    update_alc_info(
        dataset,
        label_field=info.get("label_field", plan.label_field),
        ignore_index=plan.ignore,
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
    if plan.budget_note:
        record["note"] = plan.budget_note
        record["budget_requested"] = budget  # not in info["alc"]: it may not fit BSON
    return record


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


def _abc_weights(plan: _Plan, kept: dict, exclude: bool) -> np.ndarray:
    """ABC class weights from the current labels of the not-yet-answered superpixels."""
    counts = np.zeros(plan.num_classes, dtype=np.int64)
    for sample in plan.work.iter_samples():
        labels = plan.read_labels(sample)
        sp = read_segmentation(sample, plan.superpixel_field)
        keep = sp > 0
        path = sample[plan.superpixel_field].mask_path
        done = excluded_superpixels(kept.get(sample.id, []), sp, path, exclude)
        if done:
            keep &= ~np.isin(sp, list(done))
        vals = labels[keep]
        if plan.ignore is not None:
            vals = vals[vals != plan.ignore]
        counts += np.bincount(vals.astype(np.int64), minlength=plan.num_classes)[
            : plan.num_classes
        ]
    return acq.abc_class_weights(counts)


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


def _read_for_scoring(sample, plan: _Plan):
    """(levels of the region hierarchy, labels, probabilities) of one sample, validated."""
    levels = read_levels(sample, plan.levels)
    labels = plan.read_labels(sample)
    check_same_size(sample, "the superpixel map", levels.maps[0].shape, "the labels", labels.shape)
    image = read_image(sample) if plan.model.needs_image else None
    asked = levels.maps[: plan.asked_levels]
    return levels, labels, plan.model.predict_levels(sample, asked, image)


def _is_detections(samples, field_name: str) -> bool:
    f = samples.get_field(field_name)
    return getattr(f, "document_type", None) is fo.Detections


def _classbal_select(rows, plan: _Plan, maker) -> list:
    """ClassBal (Cai et al. 2021) needs dataset-level statistics: the share of regions per
    dominant class and the range of the uncertainty. The scores are finished with the
    acquisition's own :func:`~alc_fiftyone.core.acquisition.classbal_scores` over all
    images at once, then the winners' images are read once more to build their queries."""
    if not rows:
        return []
    num_classes = plan.num_classes
    dom = np.concatenate([r[2].dominant for r in rows])
    unc = np.concatenate([r[2].scores for r in rows])
    prior = acq.class_prior_from_dominant(np.bincount(dom, minlength=num_classes)[:num_classes])
    scores = acq.classbal_scores(
        unc, dom, num_classes, prior, (float(unc.min()), float(unc.max()))
    )
    best = []
    start = 0
    for order, sid, res, keep in rows:
        s = scores[start : start + len(res)]
        start += len(res)
        for i in np.flatnonzero(keep):
            best.append(((float(s[i]), -order, 0, -int(res.ids[i])), sid, res, i, s[i]))
    best.sort(key=lambda t: t[0], reverse=True)
    by_sample: dict[str, list] = {}
    for item in best[: plan.budget]:
        by_sample.setdefault(item[1], []).append(item)
    heap = []
    for sample in plan.work.select(list(by_sample)).iter_samples():
        sp = read_segmentation(sample, plan.superpixel_field)
        image = read_image(sample) if plan.model.needs_image else None
        probs = plan.model.predict(sample, sp, image)
        labels = plan.read_labels(sample)
        windows = ndimage.find_objects(sp)
        for key, sid, res, i, score in by_sample[sample.id]:
            sp_id = int(res.ids[i])
            payload = maker.payload(
                probs, sp, labels, windows[sp_id - 1], sp_id, res.rep_yx[i], score, res.sizes[i]
            )
            payload["superpixel_path"] = sample[plan.superpixel_field].mask_path
            heap.append(Candidate(key, sid, payload))
    return heap
