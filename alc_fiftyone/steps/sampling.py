"""The random sample beside a ranking (``rank_superpixels(..., estimate_share=s)``).

A share ``s`` of a round's budget goes to regions drawn at random from the round's *frame*:
every candidate of the finest level asked (its unanswered regions, those no kept query
excludes) that no ranked query of the round covers (the ranked query itself or a region
holding it: the rule of :class:`~alc_fiftyone.core.hierarchy.ConflictFreeSelector`, at the
finest level nothing lies inside a region). The frame is stratified by score quantiles and
each stratum sampled without replacement (:mod:`alc_fiftyone.core.estimation`); each drawn
query records ``purpose="estimate"``, ``inclusion_prob`` and ``stratum``, and the round's
record the strata (regions, draws, pixels), what :func:`alc_fiftyone.audit` estimates from.
"""

from __future__ import annotations

import numpy as np

from ..core.estimation import stratified_sample
from ..errors import SampleError
from .candidates import Candidate, region_payload

ESTIMATE_STRATA = 4  # strata of a round's random sample, by score quantiles


def check_estimate_share(share) -> float:
    """``share`` as a float in [0, 1); a ValueError for anything else (before any work)."""
    if isinstance(share, (bool, np.bool_)) or not isinstance(
        share, (int, float, np.integer, np.floating)
    ):
        raise ValueError(  # noqa: TRY004 (a bad option value, as the budget's errors)
            f"estimate_share must be a number in [0, 1), got {share!r}"
        )
    share = float(share)
    if not (np.isfinite(share) and 0 <= share < 1):
        raise ValueError(f"estimate_share must be a number in [0, 1), got {share!r}")
    return share


def draw_estimate(plan, ranked: list, frames: list, seed: int) -> tuple[list, dict]:
    """The random sample of a round: ``plan.estimate_n`` units drawn from every image's frame
    (the candidates of the finest level asked) that no ranked query of ``ranked`` covers,
    stratified by score (:func:`alc_fiftyone.core.estimation.stratified_sample`).

    Returns the units drawn, ``(order, sample id, level, region id, stratum, inclusion
    probability)``, and the record the audit estimates from (strata sizes and pixels)."""
    taken: dict[str, set] = {}
    for cand in ranked:
        taken.setdefault(cand.sample_id, set()).add(
            (int(cand.payload.get("level", 0)), int(cand.payload["superpixel_id"]))
        )
    rows = []
    for order, sid, units in frames:
        ok = units.outside(taken.get(sid, set()))
        if ok.any():
            idx = np.flatnonzero(ok)
            rows.append(
                (order, sid, units.level, units.ids[idx], units.scores[idx], units.sizes[idx])
            )
    scores = np.concatenate([r[4] for r in rows]) if rows else np.zeros(0)
    sizes = np.concatenate([r[5] for r in rows]) if rows else np.zeros(0, dtype=np.int64)
    owner = np.concatenate([np.full(r[3].size, k) for k, r in enumerate(rows)]) if rows else []
    ids = np.concatenate([r[3] for r in rows]) if rows else np.zeros(0, dtype=np.int64)
    n = min(plan.estimate_n, int(scores.size))
    # a stratum's variance needs a few draws: about five a stratum, at most ESTIMATE_STRATA
    num_strata = max(1, min(ESTIMATE_STRATA, n // 5))
    rng = np.random.default_rng([int(seed), 0xE571])
    idx, strata, probs, all_strata = stratified_sample(scores, n, num_strata, rng, sizes)
    drawn = [
        (rows[owner[i]][0], rows[owner[i]][1], rows[owner[i]][2], int(ids[i]), int(h), float(p))
        for i, h, p in zip(idx, strata, probs)
    ]
    num = int(all_strata.max()) + 1 if all_strata.size else 0
    strata_rec = []
    for h in range(num):
        members = all_strata == h
        strata_rec.append(
            {
                "stratum": h,
                "regions": int(members.sum()),
                "drawn": int((strata == h).sum()),
                "pixels": int(sizes[members].sum()),
                "score_total": float(scores[members].sum()),
                "score_min": float(scores[members].min()),
                "score_max": float(scores[members].max()),
            }
        )
    level = rows[0][2] if rows else plan.asked_levels - 1
    record = {
        "share": plan.estimate_share,
        "num_queries": len(drawn),
        "frame_level": int(level),
        "frame_field": plan.levels[level] if level < len(plan.levels) else None,
        "frame_regions": int(scores.size),
        "frame_pixels": int(sizes.sum()),
        "allocation": "proportional to pixels",
        "strata": strata_rec,
    }
    return drawn, record


def labelled_counts(labelled: np.ndarray, names: dict) -> dict:
    """The labelled pixels of the ranked samples (overall and per class), for the record."""
    return {
        "labelled_pixels": int(labelled.sum()),
        "labelled_pixels_by_class": {
            names.get(c, str(c)): int(n) for c, n in enumerate(labelled) if n
        },
    }


def estimate_candidates(drawn: list, work, read_and_score, maker) -> list[Candidate]:
    """The queries of the units ``drawn`` (:func:`draw_estimate`): their images are read and
    scored once more (``read_and_score(sample) -> (sample, (scores, labels, probs))``, as
    the ranking did) to build each query's content; best score first."""
    by_sample: dict[str, list] = {}
    for item in drawn:
        by_sample.setdefault(item[1], []).append(item)
    estimate: list[Candidate] = []
    for sample in work.select(list(by_sample)).iter_samples():
        _, got = read_and_score(sample)
        if isinstance(got, SampleError):  # it was read a moment ago: a real fault
            raise got
        scored, labels, probs = got
        windows: dict[int, list] = {}
        for order, sid, lv, rid, stratum, prob in by_sample[sample.id]:
            res = scored.results[lv]
            i = int(np.searchsorted(res.ids, rid))
            payload = region_payload(scored, windows, lv, i, probs, labels, maker)
            payload.update(purpose="estimate", inclusion_prob=float(prob), stratum=int(stratum))
            key = (float(res.scores[i]), -order, -lv, -rid)
            estimate.append(Candidate(key, sid, payload))
    estimate.sort(reverse=True)
    return estimate
