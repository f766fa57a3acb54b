"""Stratified random sampling of regions and the estimate of what remains wrong (arrays only).

A ranking that spends a share of its budget on regions drawn at random lets an auditor
estimate how much the regions *not* asked still hold (ranked queries are not a random sample,
so their hit rate says nothing about the rest). The frame (the regions that could be drawn)
is cut into strata by score quantiles; each stratum gets a simple random sample without
replacement (Cochran, *Sampling Techniques*, 3rd ed., 1977, ch. 5), so a region of stratum
``h`` is drawn with probability ``pi_h = n_h / N_h`` and the Horvitz-Thompson estimate of a
total is ``sum(y_i / pi_i)`` over the sample (Horvitz & Thompson, JASA 1952), which is the
stratified expansion estimate ``sum_h N_h * mean_h``. Its variance is estimated by
``sum_h N_h**2 * (1 - n_h / N_h) * s_h**2 / n_h`` (Cochran, eq. 5.7).

What the auditor wants is the total over the regions *not* in the sample (those answered are
fixed now): ``sum_h (N_h - n_h) * mean_h``, whose prediction error has the same variance as
the estimate of the whole total (the sampled part is known exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the normal quantile of a two-sided 95% interval
Z95 = 1.959963984540054


def score_strata(scores: np.ndarray, num_strata: int) -> np.ndarray:
    """(N,) int: the stratum of each frame region, 0 = lowest scores, by score quantiles:
    the regions sorted by score (ties by position) cut into ``num_strata`` groups of equal
    count (as near as the count allows)."""
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.size
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    num_strata = max(1, min(int(num_strata), n))
    order = np.lexsort((np.arange(n), scores))
    for h, part in enumerate(np.array_split(order, num_strata)):
        out[part] = h
    return out


def allocate(stratum_sizes, n: int, minimum: int = 2) -> np.ndarray:
    """Proportional allocation (Cochran 5.3) of ``n`` draws over strata of ``stratum_sizes``
    regions, at least ``minimum`` per stratum where the stratum and ``n`` allow (two are
    needed for a stratum's variance), at most a stratum's size; largest remainders first."""
    sizes = np.asarray(stratum_sizes, dtype=np.int64)
    total = int(sizes.sum())
    n = int(min(max(n, 0), total))
    if n == 0:
        return np.zeros(sizes.size, dtype=np.int64)
    target = n * sizes / total
    floor = np.minimum(sizes, minimum) if np.minimum(sizes, minimum).sum() <= n else 0
    alloc = np.maximum(np.floor(target).astype(np.int64), floor)
    alloc = np.minimum(alloc, sizes)
    remainder = target - alloc  # how far each stratum is below its proportional share
    while alloc.sum() < n:
        h = max((h for h in range(sizes.size) if alloc[h] < sizes[h]), key=lambda h: remainder[h])
        alloc[h] += 1
        remainder[h] -= 1
    while alloc.sum() > n:
        low = np.minimum(sizes, floor) if np.ndim(floor) else np.zeros_like(sizes)
        h = min((h for h in range(sizes.size) if alloc[h] > low[h]), key=lambda h: remainder[h])
        alloc[h] -= 1
        remainder[h] += 1
    return alloc


def allocate_by(totals, stratum_sizes, n: int, minimum: int = 2) -> np.ndarray:
    """:func:`allocate` with the draws proportional to ``totals`` (e.g. each stratum's pixels)
    instead of the stratum sizes, never more than a stratum's regions."""
    totals = np.asarray(totals, dtype=np.float64)
    sizes = np.asarray(stratum_sizes, dtype=np.int64)
    n = int(min(max(n, 0), int(sizes.sum())))
    if n == 0 or totals.sum() <= 0:
        return allocate(sizes, n, minimum)
    floor = np.minimum(sizes, minimum)
    if floor.sum() > n:
        floor = np.zeros_like(sizes)
    target = n * totals / totals.sum()
    alloc = np.minimum(np.maximum(np.floor(target).astype(np.int64), floor), sizes)
    remainder = target - alloc
    while alloc.sum() < n:
        h = max((h for h in range(sizes.size) if alloc[h] < sizes[h]), key=lambda h: remainder[h])
        alloc[h] += 1
        remainder[h] -= 1
    while alloc.sum() > n:
        h = min((h for h in range(sizes.size) if alloc[h] > floor[h]), key=lambda h: remainder[h])
        alloc[h] -= 1
        remainder[h] += 1
    return alloc


def stratified_sample(
    scores: np.ndarray,
    n: int,
    num_strata: int,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n`` of the frame regions whose scores are ``scores``: strata by score
    quantiles (:func:`score_strata`), allocation proportional to each stratum's total of
    ``weights`` (default: its count; the regions' pixels allocate by the pixels each stratum
    holds, since a region's error is at most its size: Cochran 5.9), at least two a stratum
    (:func:`allocate`), a simple random sample without replacement in each stratum.

    Returns ``(indices drawn, their strata, inclusion probability of each drawn region,
    stratum of every frame region)``.
    """
    strata = score_strata(scores, num_strata)
    num = int(strata.max()) + 1 if strata.size else 0
    sizes = np.bincount(strata, minlength=num)
    if weights is None:
        alloc = allocate(sizes, n)
    else:
        totals = np.bincount(strata, weights=np.asarray(weights, np.float64), minlength=num)
        alloc = allocate_by(totals, sizes, n)
    picked, picked_h, probs = [], [], []
    for h in range(num):
        members = np.flatnonzero(strata == h)
        if alloc[h] == 0:
            continue
        take = rng.choice(members, size=int(alloc[h]), replace=False)
        picked.append(np.sort(take))
        picked_h.append(np.full(take.size, h))
        probs.append(np.full(take.size, alloc[h] / sizes[h]))
    if not picked:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0), strata
    return (
        np.concatenate(picked),
        np.concatenate(picked_h),
        np.concatenate(probs),
        strata,
    )


@dataclass
class Estimate:
    """A total of the regions not sampled, with its standard error and 95% interval."""

    total: float
    se: float
    low: float
    high: float

    def scaled(self, denominator: float, offset: float = 0.0) -> tuple[float, float, float]:
        """``(estimate, low, high)`` of ``(offset + total) / denominator``."""
        if denominator <= 0:
            return (float("nan"),) * 3  # type: ignore[return-value]
        return (
            (offset + self.total) / denominator,
            (offset + self.low) / denominator,
            (offset + self.high) / denominator,
        )


def remaining_total(
    stratum_sizes,
    strata: np.ndarray,
    values: np.ndarray,
    upper: float | None = None,
    z: float = Z95,
    aux: np.ndarray | None = None,
    stratum_aux=None,
    combined: bool = False,
) -> Estimate:
    """The stratified estimate of the total of ``values`` over the frame regions *not* in the
    sample, with a normal interval.

    Parameters
    ----------
    stratum_sizes
        ``N_h``: the frame regions of each stratum.
    strata, values
        The stratum and the observed value (e.g. the pixels an answer changed) of each sampled
        region that was answered; the answered ones of a stratum are taken as its simple
        random sample.
    upper
        The largest the total can be (e.g. the pixels of the regions not sampled): the
        interval is clipped to ``[0, upper]``.
    z
        The normal quantile of the interval (1.96: 95%).
    aux, stratum_aux
        An auxiliary size known for every region (its pixels): ``aux`` of each sampled
        region, ``stratum_aux`` the stratum totals ``X_h``. Given, the separate ratio
        estimator (Cochran 6.10-6.13) is used: ``R_h = sum(y) / sum(x)`` over the stratum's
        sample, the remaining total ``R_h * (X_h - x_sampled)``; without, the expansion
        (Horvitz-Thompson) estimate ``(N_h - n_h) * mean_h``. The variance is
        ``sum_h N_h**2 (1 - n_h/N_h) s_h**2 / n_h`` of the values (their residuals
        ``y - R_h x`` for the ratio).
    combined
        With ``aux``: one ratio for all strata, ``B = Y_st / X_st`` from the stratified
        estimates of both totals (the combined ratio, Cochran 6.11), and the remaining total
        ``B * (X_h - x_sampled) + (N_h - n_h) * mean_h(y - B x)`` per stratum (the
        difference with the auxiliary, corrected by each stratum's mean residual); the
        variance from the residuals ``y - B x`` as above. Meant for an auxiliary that
        predicts the value (the acquisition's expected pixels per answer) and may be 0 on
        whole strata, where the separate ratio has nothing to scale.

    Small samples (docs/method.md, "What remains wrong"): a stratum with one answered draw,
    or whose draws are all alike (s_h = 0, e.g. all right), borrows the pooled variance of the
    whole sample (scaled by its mean size for the ratio); a stratum without an answered draw
    gets the pooled ratio or mean and a wide variance; and when no sampled region holds any
    error the upper bound is the rule of three (at most 3/n of what remains).
    """
    sizes = np.asarray(stratum_sizes, dtype=np.float64)
    strata = np.asarray(strata, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    ratio = aux is not None
    x = np.asarray(aux, dtype=np.float64) if ratio else np.ones(values.size)
    big_x = np.asarray(stratum_aux, dtype=np.float64) if ratio else sizes
    if values.size == 0:
        hi = float(upper) if upper is not None else float("inf")
        return Estimate(float("nan"), float("nan"), 0.0, hi)
    pooled_r = float(values.sum() / x.sum()) if x.sum() > 0 else 0.0
    if combined and ratio:
        y_st = x_st = 0.0
        for h, big_n in enumerate(sizes):
            mine = strata == h
            if mine.any():
                y_st += big_n * float(values[mine].mean())
                x_st += big_n * float(x[mine].mean())
        pooled_r = y_st / x_st if x_st > 0 else 0.0
    resid_all = values - pooled_r * x
    pooled_var = float(resid_all.var(ddof=1)) if values.size > 1 else 0.0
    pooled_x = float(x.mean())
    total = 0.0
    var = 0.0
    left = 0.0  # the auxiliary total not sampled (pixels, or regions)
    for h, big_n in enumerate(sizes):
        mine = strata == h
        y, xs = values[mine], x[mine]
        n = y.size
        rest_x = max(float(big_x[h] - xs.sum()), 0.0)
        if big_n <= 0 or big_n - n <= 0 or (rest_x <= 0 and not combined):
            continue
        left += rest_x
        scaled = ratio and not combined and pooled_x > 0  # residuals grow with the size
        scale = (xs.mean() / pooled_x) ** 2 if (scaled and n) else 1.0
        if n == 0:
            total += rest_x * pooled_r
            like = (big_x[h] / big_n / pooled_x) ** 2 if scaled else 1.0
            var += big_n**2 * pooled_var * like  # as if one draw: wide on purpose
            continue
        r_h = pooled_r if combined else (float(y.sum() / xs.sum()) if xs.sum() > 0 else pooled_r)
        d = y - r_h * xs
        s2 = float(d.var(ddof=1)) if n > 1 else 0.0
        if s2 <= 0:
            s2 = pooled_var * scale
        total += rest_x * r_h + ((big_n - n) * float(d.mean()) if combined else 0.0)
        var += big_n**2 * (1.0 - n / big_n) * s2 / n
    se = float(np.sqrt(var))
    total = max(total, 0.0)  # (the combined ratio's residual term can take it below 0)
    low = max(0.0, total - z * se)
    high = total + z * se
    if not (values > 0).any():  # nothing found: the rule of three (Hanley & Lippman-Hand 1983)
        # (of what is left; with a combined auxiliary of other units, of the bound given)
        rest = float(upper) if combined and upper is not None else left
        high = max(high, 3.0 / values.size * rest)
    if upper is not None:
        high = min(high, float(upper))
        total = min(total, float(upper))
    return Estimate(float(total), se, float(low), float(high))
