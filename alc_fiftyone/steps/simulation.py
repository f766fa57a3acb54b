"""simulate: the correction loop with an oracle answering from ground truth.

It runs the same code a person's review runs (rank_superpixels, then apply_answers on each
query), with the panel replaced by the simulated annotator of docs/method.md, and measures data mIoU
after every round.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from fiftyone import ViewField as F

from ..core.correction import oracle_answer
from ..errors import ALCError
from ..models.registry import get_model
from ..progress import ProgressCallback, prefixed, track
from ..review.answers import KEEP, apply_answers
from ..review.queries import query_region
from ..store.db import dataset_of
from ..store.fields import (
    SIM_QUERIES_FIELD,
    SIM_REVISED_FIELD,
    SUPERPIXELS_FIELD,
    class_table,
    read_current_labels,
    require_field,
)
from ..store.files import read_segmentation
from ..store.info import alc_info, update_alc_info
from ..store.roles import LABELS, check_ranking_fields, require_readable
from .evaluation import evaluate
from .propagation import propagate_answers
from .ranking import OracleScorer, Scorer, rank_with

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


COLUMNS = [
    ("round", "round", "{}"),
    ("clicks", "clicks", "{}"),
    ("total_clicks", "total clicks", "{}"),
    ("corrected", "corrected", "{}"),
    ("pixels_changed", "pixels changed", "{}"),
    ("auto_superpixels", "automatic changes (superpixels)", "{}"),
    ("auto_pixels", "automatic pixels", "{}"),
    ("miou", "data mIoU (%)", "{:.2f}"),
    ("seconds", "seconds", "{:.1f}"),
]


@dataclass
class SimulationResult:
    """Per-round results of :func:`simulate` (row 0 is the state before any answer)."""

    rows: list[dict]
    config: dict = field(default_factory=dict)

    def table(self) -> str:
        """A markdown table: clicks, pixels changed and data mIoU per round."""
        # the automatic-change columns only where propagation ran
        cols = [c for c in COLUMNS if any(r.get(c[0]) is not None for r in self.rows)]
        head = "| " + " | ".join(c[1] for c in cols) + " |"
        sep = "|" + "---|" * len(cols)
        body = []
        for r in self.rows:
            cells = []
            for key, _, fmt in cols:
                v = r.get(key)
                cells.append(fmt.format(100 * v if key == "miou" else v) if v is not None else "")
            body.append("| " + " | ".join(cells) + " |")
        return "\n".join([head, sep, *body])

    def __str__(self) -> str:
        return self.table()

    @property
    def mious(self) -> list[float]:
        return [r["miou"] for r in self.rows]

    def plot(self, path, title: str | None = None, ax=None):
        """Plot data mIoU against total clicks; save to ``path`` (PNG) when given."""
        import matplotlib

        if ax is None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig = None
        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        x = [r["total_clicks"] for r in self.rows]
        y = [100 * r["miou"] for r in self.rows]
        ax.plot(x, y, marker="o", label=self.config.get("method", "sim"))
        ax.set_xlabel("clicks")
        ax.set_ylabel("data mIoU (%)")
        ax.grid(alpha=0.3)
        ax.set_title(title or "active label correction (simulated annotator)")
        ax.legend()
        if fig is not None and path is not None:
            fig.tight_layout()
            fig.savefig(path)
            plt.close(fig)
        return path

    def to_dict(self) -> dict:
        return {"rows": self.rows, "config": self.config}


def _answer_round(
    dataset, samples, queries_field, round_no, gt_field, oracle, ignore, user, progress
):
    view = samples.filter_labels(
        queries_field, (F("round") == round_no) & (F("status") == "pending")
    )
    clicks = changed = corrected = 0
    for sample in track(view.iter_samples(), len(view), progress, "oracle answers"):
        det0 = sample[queries_field].detections[0]
        labels = read_current_labels(
            sample, det0.get_field("label_field"), det0.get_field("revised_field")
        )
        gt = read_segmentation(sample, gt_field)
        answers = []
        for det in sample[queries_field].detections:
            slc, region = query_region(det, labels.shape)
            ry, rx = det.get_field("rep_yx")
            ans = oracle_answer(
                gt[slc],
                labels[slc],
                region,
                rule=oracle,
                rep_yx=(ry - slc[0].start, rx - slc[1].start),
                ignore_index=ignore,
            )
            answers.append((det.id, KEEP if ans is None else int(ans)))
        result = apply_answers(dataset, sample.id, answers, user, queries_field)
        clicks += len(result)
        changed += sum(result.values())
        corrected += sum(1 for n in result.values() if n > 0)
    return clicks, changed, corrected


def simulate(
    samples: SampleCollection,
    label_field: str,
    gt_field: str,
    rounds: int = 5,
    budget_per_round: float = 0.02,
    method: str | Scorer = "sim",
    oracle: str = "majority",
    seed: int = 0,
    model: Any = "auto",
    superpixel_field: str = SUPERPIXELS_FIELD,
    queries_field: str = SIM_QUERIES_FIELD,
    revised_field: str = SIM_REVISED_FIELD,
    tau: float = 0.0,
    exclude_answered: bool = True,
    reset: bool = True,
    model_kwargs: dict | None = None,
    device: str = "auto",
    levels: int | None = None,
    propagate: bool = False,
    propagate_threshold: float = 0.99,
    propagate_classifier: Any = "mlp",
    progress: ProgressCallback | None = None,
    estimate_share: float = 0.0,
) -> SimulationResult:
    """Run ``rounds`` of rank -> answer with an oracle reading ``gt_field``.

    ``oracle`` is ``"majority"`` (A2LC: the majority ground-truth class of the region) or
    ``"rep"`` (reference ALC code: the ground truth at the representative pixel); either
    relabels a region only when at most half of it matches the ground truth, and every query
    costs one click. The simulation writes its own fields (``queries_field``,
    ``revised_field``; ``reset`` clears them first) and leaves a person's review fields alone.

    ``method="oracle"`` ranks each round by the pixels one answer of the oracle would fix
    (:class:`~alc_fiftyone.steps.ranking.OracleScorer`): it reads the ground truth, so it is
    a ceiling to measure the other methods and the regions against (how far a method is from
    it tells whether the ranking or the regions limit a dataset), never a method for
    reviewers; :func:`~alc_fiftyone.rank_superpixels` refuses it. A
    :class:`~alc_fiftyone.steps.ranking.Scorer` instance plugs in an acquisition of one's own
    (benchmarks).

    ``propagate=True`` adds A2LC's automatic correction after each round's answers
    (:func:`~alc_fiftyone.propagation.propagate_answers` with ``propagate_threshold`` and
    ``propagate_classifier``, using the round's fitted model); its changes are reported in
    the ``auto_superpixels`` / ``auto_pixels`` columns and never counted as clicks.

    Parameters
    ----------
    samples
        The dataset or view to work on.
    label_field
        The labels under review (an ``fo.Segmentation`` field).
    gt_field
        The ground truth (an ``fo.Segmentation`` field).
    rounds
        Number of rounds.
    budget_per_round
        Queries per round: a count or a fraction in (0, 1] of the superpixels.
    method
        The acquisition (:data:`~alc_fiftyone.ACQUISITION_METHODS`), ``"oracle"`` (the
        ceiling) or a :class:`~alc_fiftyone.steps.ranking.Scorer`.
    oracle
        ``"majority"`` (A2LC) or ``"rep"`` (the reference ALC code).
    seed
        Seed of everything random in the step.
    model
        P(class | pixel): ``"auto"`` (``"sam_head"`` on a CUDA machine with a SAM checkpoint,
        else ``"features"``), ``"features"``, ``"sam_head"``, ``"backbone:<resnet>"``,
        ``"field:<name>"``, a callable ``fn(sample, image) -> (C, H, W)`` or a
        :class:`~alc_fiftyone.models.base.ProbabilityModel`.
    superpixel_field
        The superpixel id maps.
    queries_field
        The simulation's own queries field (a reviewer's is left alone).
    revised_field
        The simulation's own corrected labels.
    tau
        Expansion threshold: an answer relabels the superpixel pixels whose probabilities have
        cosine >= ``tau`` with the representative's (0: all).
    exclude_answered
        Do not ask again about answered regions.
    reset
        Clear the simulation's fields first.
    model_kwargs
        Keyword arguments of the model.
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
    levels
        Levels of the region hierarchy of ``superpixel_field`` that are candidates (None:
        all it has; 1: the top map only). With ``method="oracle"`` the ceiling picks from
        every level too.
    propagate
        Add A2LC's automatic correction after each round.
    propagate_threshold
        Its confidence threshold.
    propagate_classifier
        Its classifier.
    progress
        ``progress(done, total, description)``, e.g. the CLI's tqdm bars.
    estimate_share
        The share of each round's budget drawn at random for :func:`alc_fiftyone.audit`
        (``rank_superpixels(..., estimate_share=...)``); the oracle answers those queries too
        and they count as clicks.

    Returns
    -------
    SimulationResult
        The rows (clicks, pixels changed, data mIoU per round) and the configuration.
    """
    if oracle not in ("majority", "rep"):
        raise ValueError("oracle must be 'majority' or 'rep'")
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise ValueError(f"rounds must be a whole number of at least 1, got {rounds!r}")
    if label_field == gt_field:
        raise ValueError(
            f"label_field and gt_field are both {gt_field!r}: the simulation corrects the "
            "labels under review against a different field, the ground truth"
        )
    require_field(samples, gt_field, "ground-truth")
    require_readable(samples, gt_field, LABELS, "gt_field")
    # before the reset below clears the simulation's own fields: never someone's labels
    check_ranking_fields(
        samples, label_field, superpixel_field, queries_field, revised_field, reset=reset
    )
    dataset = dataset_of(samples)
    _, ignore, _ = class_table(dataset, gt_field)
    followed = (
        set(samples.distinct(f"{superpixel_field}.label_field"))
        if samples.has_field(superpixel_field)
        else set()
    )
    if gt_field in followed:
        raise ALCError(
            f"the superpixels in {superpixel_field!r} follow {gt_field!r}, the ground truth: "
            "regions cut along the truth would measure nothing; compute them with "
            f"label_field={label_field!r}"
        )
    if method == "oracle":
        method = OracleScorer(gt_field, oracle, ignore)
    elif not isinstance(method, (str, Scorer)):
        raise ValueError(f"method must be a method name or a Scorer, got {method!r}")
    # what gt_field holds, for the rule of store.roles (no step ever writes into it)
    update_alc_info(
        dataset,
        **{
            f"ground_truth.{gt_field}": {
                "by": "simulate",
                "label_field": label_field,
                "queries_field": queries_field,
                "revised_field": revised_field,
            }
        },
    )
    if reset:
        for f in (queries_field, revised_field):
            if samples.has_field(f):
                samples.set_field(f, None).save()
        info = alc_info(dataset)
        kept = [r for r in info.get("rounds", []) if r.get("queries_field") != queries_field]
        props = [
            p for p in info.get("propagations", []) if p.get("queries_field") != queries_field
        ]
        update_alc_info(dataset, rounds=kept, propagations=props)
    config = {
        "label_field": label_field,
        "gt_field": gt_field,
        "rounds": rounds,
        "budget_per_round": budget_per_round,
        "method": method.name if isinstance(method, Scorer) else method,
        "oracle": oracle,
        "seed": seed,
        "model": model if isinstance(model, str) else getattr(model, "name", "custom"),
        "superpixel_field": superpixel_field,
        "levels": levels,
        "tau": tau,
        "exclude_answered": exclude_answered,
        "num_samples": len(samples),
        "propagate": propagate,
        "estimate_share": estimate_share,
    }
    if propagate:
        config["propagate_threshold"] = propagate_threshold
        config["propagate_classifier"] = str(propagate_classifier)
    # one model instance for every round, so what it caches (features) is computed once
    prob_model = get_model(model, **(model_kwargs or {}))
    config["model"] = prob_model.describe()
    miou0 = evaluate(samples, label_field, gt_field, revised_field)["miou"]
    rows = [
        {
            "round": 0,
            "clicks": 0,
            "total_clicks": 0,
            "corrected": 0,
            "pixels_changed": 0,
            "miou": miou0,
            "seconds": 0.0,
            **({"auto_superpixels": 0, "auto_pixels": 0} if propagate else {}),
        }
    ]
    total = 0
    outer = progress
    for r in range(1, rounds + 1):
        t0 = time.perf_counter()
        progress = prefixed(outer, f"round {r}/{rounds}: ")
        summary = rank_with(
            samples,
            label_field,
            superpixel_field=superpixel_field,
            method=method,
            budget=budget_per_round,
            queries_field=queries_field,
            exclude_answered=exclude_answered,
            model=prob_model,
            tau=tau,
            seed=seed + r,
            revised_field=revised_field,
            device=device,
            progress=progress,
            levels=levels,
            estimate_share=estimate_share,
        )
        clicks, changed, corrected = _answer_round(
            dataset,
            samples,
            queries_field,
            summary["round"],
            gt_field,
            oracle,
            ignore,
            "oracle",
            progress,
        )
        total += clicks
        auto = None
        if propagate:
            auto = propagate_answers(
                samples,
                label_field,
                round=summary["round"],
                model=prob_model,
                fitted=True,
                threshold=propagate_threshold,
                classifier=propagate_classifier,
                superpixel_field=superpixel_field,
                queries_field=queries_field,
                revised_field=revised_field,
                seed=seed + r,
                progress=progress,
            )
        miou = evaluate(samples, label_field, gt_field, revised_field)["miou"]
        rows.append(
            {
                "round": r,
                "clicks": clicks,
                "total_clicks": total,
                "corrected": corrected,
                "pixels_changed": changed,
                "miou": miou,
                "seconds": time.perf_counter() - t0,
                "seconds_rank": summary["seconds_total"],
                **(
                    {"auto_superpixels": auto["superpixels"], "auto_pixels": auto["pixels"]}
                    if auto is not None
                    else {}
                ),
            }
        )
    return SimulationResult(rows=rows, config=config)


def remaining_errors(
    samples: SampleCollection,
    gt_field: str,
    queries_field: str = SIM_QUERIES_FIELD,
    round: int | None = None,
    oracle: str = "majority",
) -> dict:
    """The truth :func:`alc_fiftyone.audit` estimates, from the ground truth (for tests and
    benchmarks): over the frame of a round with random queries (default: the latest), the
    regions still unanswered and not covered by that round's ranked queries, how many pixels
    (and regions) one answer of the simulated annotator would change in each, on the labels
    as they are now.

    Parameters
    ----------
    samples
        The dataset or view simulated on.
    gt_field
        The ground truth.
    queries_field
        The queries field of the simulation.
    round
        The round whose frame is measured (default: the latest with random queries).
    oracle
        The annotator's rule.

    Returns
    -------
    dict
        ``pixels``, ``regions`` (the totals), ``frame_regions`` (the regions measured) and
        ``round``.
    """
    from ..core.correction import oracle_gains
    from ..core.hierarchy import parents_of, unanswered_map
    from ..review.queries import kept_queries, level_exclusions
    from ..store.fields import hierarchy_levels
    from .candidates import read_levels

    dataset = dataset_of(samples)
    rounds = [
        r
        for r in alc_info(dataset).get("rounds") or []
        if r.get("queries_field") == queries_field and r.get("estimate")
    ]
    if round is not None:
        rounds = [r for r in rounds if r["round"] == round]
    if not rounds:
        raise ALCError(f"no round with random queries in {queries_field!r}")
    rec = rounds[-1]
    lv = int(rec["estimate"]["frame_level"])
    label_field, revised_field = rec["label_field"], rec["revised_field"]
    level_fields = hierarchy_levels(dataset, rec["superpixel_field"])
    _, ignore, _ = class_table(dataset, gt_field)
    kept = kept_queries(samples, queries_field)
    total_pixels = total_regions = frame = 0
    for sample in samples.iter_samples():
        levels = read_levels(sample, level_fields)
        if lv >= len(levels):
            continue
        dets = kept.get(sample.id, [])
        excluded, answered = level_exclusions(dets, levels.maps, levels.paths, True)
        finer = None
        for k in range(len(levels) - 1, lv, -1):
            if answered[k] is not None:
                finer = answered[k] if finer is None else (finer | answered[k])
        smap = unanswered_map(levels.maps[lv], finer)
        ids = np.unique(smap[smap > 0]).astype(np.int64)
        ok = ~np.isin(ids, np.fromiter(excluded[lv], np.int64, len(excluded[lv])))
        # the regions inside a ranked query of that round were never in its frame
        anc = {lv: ids}
        cur = ids
        for up in range(lv - 1, -1, -1):
            p = parents_of(levels.maps[up + 1], levels.maps[up])
            cur = np.where(cur < p.size, p[np.minimum(cur, p.size - 1)], 0)
            anc[up] = cur
        for d in dets:
            if d.get_field("round") != rec["round"] or d.get_field("purpose") == "estimate":
                continue
            qlv = int(d.get_field("level") or 0)
            if qlv <= lv and d.get_field("superpixel_path") == levels.paths[qlv]:
                ok &= anc[qlv] != int(d.get_field("superpixel_id"))
        ids = ids[ok]
        frame += ids.size
        if not ids.size:
            continue
        labels = read_current_labels(sample, label_field, revised_field)
        gt = read_segmentation(sample, gt_field)
        gains = oracle_gains(gt, labels, smap, ids, oracle, None, ignore)
        total_pixels += int(gains.sum())
        total_regions += int((gains > 0).sum())
    return {
        "round": rec["round"],
        "pixels": total_pixels,
        "regions": total_regions,
        "frame_regions": frame,
    }
