"""numba backend: the same algorithm in four streaming passes over the pixels."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import numpy as np

from .common import (
    _LOW32,
    _LUT_MAX_ID,
    _TINY,
    SuperpixelScores,
    _bad_label_error,
    _check_prob_values,
    _check_shapes,
    _dense_ids_numpy,
    _empty_scores,
    _entropy_per_pixel,
    _seq_norm_host,
    _to_numpy,
    abc_class_weights,
    classbal_scores,
)

# ---------------------------------------------------------------------------------------------
# numba backend: the same algorithm in four streaming passes over the pixels
#
# The kernels below are plain Python functions compiled on first use by _numba_kernels() (numba
# is imported lazily: importing this module stays cheap, and a missing numba only disables the
# backend). They never call one another, so each compiles on its own. Every pass reads the
# probability rows sequentially (tiles of pixels, or runs of pixels of one superpixel within
# an image row), which the hardware prefetches well even when the maps are not in cache (a
# superpixel-at-a-time order was measured slower on cold maps). Per-pixel arithmetic is float32
# in class order, exactly as the numpy path computes it, so the same representative and
# expansion region are chosen (ties included); per-superpixel sums are float64.

_NB_RUN = 1024  # longest run of pixels processed at once (size of the kernels' scratch rows)


def _k_dense_ids(sp, max_id, max_run):  # pragma: no cover - compiled by numba
    """Ids present in ``sp`` (0 excluded), ascending; each pixel's index into them (int32; the
    number of ids for id 0); and the runs of pixels of one superpixel, (start, end) pairs in
    row-major order, at most ``max_run`` long. ``max_id`` is ``sp.max()``."""
    n = sp.shape[0]
    present = np.zeros(max_id + 1, np.bool_)
    for i in range(n):
        present[sp[i]] = True
    present[0] = False
    lut = np.zeros(max_id + 1, np.int32)
    n_sp = 0
    for v in range(max_id + 1):
        if present[v]:
            lut[v] = n_sp
            n_sp += 1
    lut[0] = n_sp
    ids = np.empty(n_sp, np.int64)
    for v in range(max_id + 1):
        if present[v]:
            ids[lut[v]] = v
    sid = np.empty(n, np.int32)
    runs = np.empty((n, 2), np.int64)
    n_runs = 0
    start = 0
    prev = -1
    for i in range(n):
        s = lut[sp[i]]
        sid[i] = s
        if s != prev or i - start == max_run:
            if prev >= 0 and prev < n_sp:
                runs[n_runs, 0] = start
                runs[n_runs, 1] = i
                n_runs += 1
            start = i
            prev = s
    if n > 0 and prev < n_sp:
        runs[n_runs, 0] = start
        runs[n_runs, 1] = n
        n_runs += 1
    return ids, sid, runs[:n_runs].copy()


def _k_pass_argmax(
    P,
    sid,
    n_sp,
    lab,
    ignore,
    has_ignore,
    margin,
    need_a,
    lab_hist,
    am,
    pnorm,
    val,
    counts,
    lab_counts,
):  # pragma: no cover - compiled by numba
    """Pass 1, in tiles of pixels: label check, argmax (first maximum), norm, class histogram
    of every superpixel (``counts`` is (4, S + 1, C): four interleaved copies, so that equal
    neighbours do not wait on one counter, and a row S for pixels of no superpixel). Per
    pixel ``val`` gets a(x) = 1 - P(y'(x)|x) with ``need_a``, or the margin uncertainty
    1 - (P1 - P2) with ``margin``; with ``lab_hist`` the histogram of the valid labels of
    every superpixel. Returns the number of label values outside [0, C) other than the
    ignore value (0: the labels are valid; otherwise the outputs are meaningless)."""
    num_classes, n = P.shape
    tile = _NB_RUN
    m1 = np.empty(tile, np.float32)
    m2 = np.empty(tile, np.float32)
    sq = np.empty(tile, np.float32)
    py = np.empty(tile, np.float32)
    amt = np.empty(tile, np.int32)
    yt = np.empty(tile, np.int32)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    bad = 0
    for j0 in range(0, n, tile):
        t = min(tile, n - j0)
        lab_t = lab[j0 : j0 + t]
        # the current label; -1 where it is the ignore value (y' is the argmax) or invalid
        for k in range(t):
            y = np.int64(lab_t[k])
            valid = y >= 0 and y < num_classes
            is_ign = has_ignore and y == ignore
            if not valid and not is_ign:
                bad += 1
            yt[k] = y if valid and not is_ign else -1
        row = P[0, j0 : j0 + t]
        for k in range(t):
            v = row[k]
            m1[k] = v
            sq[k] = v * v
            amt[k] = 0
            py[k] = v if yt[k] == 0 else zero
        if margin:
            for k in range(t):
                m2[k] = -np.inf
            for c in range(1, num_classes):
                row = P[c, j0 : j0 + t]
                for k in range(t):
                    v = row[k]
                    cur = m1[k]
                    amt[k] = c if v > cur else amt[k]
                    m2[k] = max(m2[k], min(cur, v))
                    m1[k] = max(cur, v)
                    sq[k] += v * v
        elif need_a:
            for c in range(1, num_classes):
                row = P[c, j0 : j0 + t]
                for k in range(t):
                    v = row[k]
                    cur = m1[k]
                    amt[k] = c if v > cur else amt[k]
                    m1[k] = max(cur, v)
                    sq[k] += v * v
                    py[k] = v if yt[k] == c else py[k]
        else:
            for c in range(1, num_classes):
                row = P[c, j0 : j0 + t]
                for k in range(t):
                    v = row[k]
                    cur = m1[k]
                    amt[k] = c if v > cur else amt[k]
                    m1[k] = max(cur, v)
                    sq[k] += v * v
        am_t = am[j0 : j0 + t]
        pn_t = pnorm[j0 : j0 + t]
        for k in range(t):
            am_t[k] = amt[k]
            pn_t[k] = np.sqrt(sq[k])
        if need_a:
            # P(y'|x): the label's probability, or the maximum where the label is ignore
            val_t = val[j0 : j0 + t]
            for k in range(t):
                val_t[k] = one - (m1[k] if yt[k] < 0 else py[k])
        elif margin:
            val_t = val[j0 : j0 + t]
            for k in range(t):
                val_t[k] = one - (m1[k] - m2[k])
        sid_t = sid[j0 : j0 + t]
        for k in range(t):
            counts[k & 3, sid_t[k], amt[k]] += 1
        if lab_hist:
            for k in range(t):
                y = yt[k]
                s = sid_t[k]
                if y >= 0 and s < n_sp:
                    lab_counts[s, y] += 1
    return bad


def _k_pass_mean(
    P, runs, sid, am, dominant, mu_sum, val, val_sum
):  # pragma: no cover - compiled by numba
    """Pass 2, in runs: float64 sums of the probability vectors of the dominant-class pixels,
    and (when ``val_sum`` is not empty) of the per-pixel values ``val`` of every superpixel."""
    num_classes = P.shape[0]
    sum_val = val_sum.shape[0] > 0
    is_dom = np.empty(_NB_RUN, np.bool_)
    for q in range(runs.shape[0]):
        i = runs[q, 0]
        j = runs[q, 1]
        t = j - i
        s = sid[i]
        if sum_val:
            v = val[i:j]
            acc = 0.0
            for k in range(t):
                acc += np.float64(v[k])
            val_sum[s] += acc
        d = dominant[s]
        am_r = am[i:j]
        for k in range(t):
            is_dom[k] = am_r[k] == d
        for c in range(num_classes):
            row = P[c, i:j]
            acc = 0.0
            for k in range(t):
                acc += np.float64(row[k]) if is_dom[k] else 0.0
            mu_sum[s, c] += acc


def _k_pass_rep(
    P,
    runs,
    sid,
    am,
    dominant,
    pnorm,
    mu,
    mu_norm,
    tiny,
    rep,
    abc,
    w_class,
    lab,
    ignore,
    has_ignore,
    a,
    abc_scores,
):  # pragma: no cover - compiled by numba
    """Pass 3, in runs: cosine of every pixel to its superpixel's mean vector; the
    representative is the dominant-class pixel of highest cosine, the first in row-major
    order on ties. With ``abc``, also the ABC sums of cos * W(y') * a."""
    num_classes = P.shape[0]
    n_sp = mu.shape[0]
    dot = np.empty(_NB_RUN, np.float32)
    best = np.full(n_sp, -np.inf, np.float32)
    for q in range(runs.shape[0]):
        i = runs[q, 0]
        j = runs[q, 1]
        t = j - i
        s = sid[i]
        m = mu[s, 0]
        row = P[0, i:j]
        for k in range(t):
            dot[k] = row[k] * m
        for c in range(1, num_classes):
            m = mu[s, c]
            row = P[c, i:j]
            for k in range(t):
                dot[k] += row[k] * m
        mn = mu_norm[s]
        pn = pnorm[i:j]
        for k in range(t):
            dot[k] = dot[k] / max(pn[k] * mn, tiny)
        d = dominant[s]
        am_r = am[i:j]
        b = best[s]
        r = rep[s]
        for k in range(t):
            if am_r[k] == d and dot[k] > b:
                b = dot[k]
                r = i + k
        best[s] = b
        rep[s] = r
        if abc:
            lab_r = lab[i:j]
            a_r = a[i:j]
            acc = 0.0
            for k in range(t):
                y = np.int64(lab_r[k])
                if has_ignore and y == ignore:
                    y = np.int64(am_r[k])
                acc += (dot[k] * w_class[y]) * a_r[k]
            abc_scores[s] += acc


def _k_pass_sim(
    P, runs, sid, pnorm, rep, a, tau, use_tau, tiny, mode, sums, expanded
):  # pragma: no cover - compiled by numba
    """Pass 4, in runs: w = cosine to the representative (1 at the representative itself),
    E(s) = {w >= tau} when ``use_tau``; |E(s)|, and the sum over E(s) of w * a (mode 1, SIM)
    or of a (mode 2, mean-CIL); mode 0 only counts."""
    num_classes = P.shape[0]
    dot = np.empty(_NB_RUN, np.float32)
    rv = np.empty(num_classes, np.float32)
    one = np.float32(1.0)
    for q in range(runs.shape[0]):
        i = runs[q, 0]
        j = runs[q, 1]
        t = j - i
        s = sid[i]
        r = rep[s]
        for c in range(num_classes):
            rv[c] = P[c, r]
        m = rv[0]
        row = P[0, i:j]
        for k in range(t):
            dot[k] = row[k] * m
        for c in range(1, num_classes):
            m = rv[c]
            row = P[c, i:j]
            for k in range(t):
                dot[k] += row[k] * m
        pr = pnorm[r]
        pn = pnorm[i:j]
        for k in range(t):
            dot[k] = dot[k] / max(pn[k] * pr, tiny)
        if i <= r < j:
            dot[r - i] = one
        a_r = a[i:j]
        if not use_tau:
            expanded[s] += t
            if mode == 1:
                # four independent float64 accumulators (a sum of float32 products)
                a0 = 0.0
                a1 = 0.0
                a2 = 0.0
                a3 = 0.0
                k = 0
                while k + 4 <= t:
                    a0 += dot[k] * a_r[k]
                    a1 += dot[k + 1] * a_r[k + 1]
                    a2 += dot[k + 2] * a_r[k + 2]
                    a3 += dot[k + 3] * a_r[k + 3]
                    k += 4
                while k < t:
                    a0 += dot[k] * a_r[k]
                    k += 1
                sums[s] += (a0 + a1) + (a2 + a3)
            continue
        acc = 0.0
        cnt = 0
        for k in range(t):
            if dot[k] >= tau:
                cnt += 1
                if mode == 1:
                    acc += dot[k] * a_r[k]
                elif mode == 2:
                    acc += a_r[k]
        sums[s] += acc
        expanded[s] += cnt


_NB_KERNELS = {
    "dense_ids": (_k_dense_ids, {}),
    "pass_argmax": (_k_pass_argmax, {}),
    # float64 sums of masked rows: reassociation lets them vectorise (the float32 mean is
    # rounded from them; the numpy and torch backends sum in other orders too)
    "pass_mean": (_k_pass_mean, {"fastmath": {"reassoc"}}),
    "pass_rep": (_k_pass_rep, {}),
    "pass_sim": (_k_pass_sim, {}),
}
_nb_state: dict[str, Any] = {}
_nb_lock = threading.Lock()


def _numba_kernels() -> Any:
    """The compiled kernels (a namespace), or None when numba cannot be imported.

    Kernels are compiled lazily, once per process and argument types, and cached on disk
    (``cache=True``: next to this module, or numba's user-wide cache directory when the
    package directory is read-only, or ``NUMBA_CACHE_DIR``); when no cache location is
    writable they are compiled without a cache.
    """
    if "ns" in _nb_state:
        return _nb_state["ns"]
    with _nb_lock:
        if "ns" not in _nb_state:
            _nb_state["ns"] = _build_numba_kernels()
    return _nb_state["ns"]


def _build_numba_kernels() -> Any:
    try:
        import numba
    except (ImportError, OSError):  # absent, refuses this numpy, or llvmlite cannot load
        return None
    ns = SimpleNamespace()
    for name, (func, options) in _NB_KERNELS.items():
        try:
            kernel = numba.njit(cache=True, nogil=True, **options)(func)
        except RuntimeError:  # no writable cache location: compile in memory only
            kernel = numba.njit(cache=False, nogil=True, **options)(func)
        setattr(ns, name, kernel)
    return ns


def numba_available() -> bool:
    """True when the numba backend can be used (numba importable)."""
    return _numba_kernels() is not None


# map dtypes the kernels take as they are (one compilation each); others are cast to int64
_NB_LABEL_TYPES = tuple(np.dtype(t) for t in (np.uint8, np.int32, np.int64))
_NB_ID_TYPES = tuple(np.dtype(t) for t in (np.uint16, np.int32, np.int64))


def _score_numba(
    probs: Any,
    superpixels: Any,
    labels: Any,
    method: str,
    tau: float,
    ignore_index: int | None,
    seed: int | None,
    class_prior: Any,
    class_weights: Any,
    score_range: Any,
    selected: list[int] | None,
) -> SuperpixelScores:
    nb = _numba_kernels()
    probs, superpixels, labels = (_to_numpy(x) for x in (probs, superpixels, labels))
    _check_shapes(
        probs.shape,
        np.issubdtype(probs.dtype, np.floating),
        superpixels.shape,
        np.issubdtype(superpixels.dtype, np.integer),
        labels.shape,
        np.issubdtype(labels.dtype, np.integer),
    )
    num_classes, height, width = probs.shape
    n_pix = height * width
    # no copy when probs is already float32 and C-contiguous
    P = np.ascontiguousarray(probs.reshape(num_classes, n_pix), dtype=np.float32)
    if n_pix:
        _check_prob_values(float(P.min()), float(P.max()))
    lab = labels.reshape(n_pix)
    if lab.dtype not in _NB_LABEL_TYPES:
        lab = lab.astype(np.int64)
    sp = superpixels.reshape(n_pix)
    if sp.dtype.kind == "i" and n_pix and sp.min() < 0:
        raise ValueError("superpixel ids must be non-negative (0 = no superpixel)")
    max_id = int(sp.max()) if n_pix else 0
    if max_id <= max(_LUT_MAX_ID, 4 * n_pix):
        if sp.dtype not in _NB_ID_TYPES:
            sp = sp.astype(np.int64)
        ids, sid, runs = nb.dense_ids(sp, max_id, _NB_RUN)
    else:
        ids, sid64 = _dense_ids_numpy(sp)
        sid = sid64.astype(np.int32)
        runs = _runs_numpy(sid, ids.shape[0])
    n_sp = int(ids.shape[0])
    if n_pix >= _LOW32:
        raise ValueError("images of 2**32 pixels or more are not supported")
    has_ignore = ignore_index is not None
    ignore = int(ignore_index) if has_ignore else 0
    tau32 = np.float32(tau)
    use_tau = bool(tau32 > 0)
    margin = method in ("margin", "classbal") and num_classes > 1
    need_a = method in ("sim", "cil_mean", "abc")
    lab_hist = method == "abc" and class_weights is None

    # pass 1: label check, argmax, pixel norms, a(x) or the margin, class histograms
    am = np.empty(n_pix, dtype=np.int16 if num_classes <= 32767 else np.int32)
    pnorm = np.empty(n_pix, dtype=np.float32)
    counts4 = np.zeros((4, n_sp + 1, num_classes), dtype=np.int32)  # < 2**32 pixels
    val = np.empty(n_pix if need_a or margin else 0, dtype=np.float32)
    lab_counts = np.zeros((n_sp, num_classes) if lab_hist else (0, 0), dtype=np.int64)
    bad = nb.pass_argmax(
        P,
        sid,
        n_sp,
        lab,
        ignore,
        has_ignore,
        margin,
        need_a,
        lab_hist,
        am,
        pnorm,
        val,
        counts4,
        lab_counts,
    )
    if bad:
        lab64 = lab.astype(np.int64)
        is_bad = (lab64 < 0) | (lab64 >= num_classes)
        if has_ignore:
            is_bad &= lab64 != ignore_index
        raise _bad_label_error(np.unique(lab64[is_bad]), num_classes, ignore_index)
    if n_sp == 0:
        return _empty_scores()
    counts = counts4[:, :n_sp].sum(axis=0, dtype=np.int64)
    sizes = counts.sum(axis=1)
    dominant = counts.argmax(axis=1).astype(np.int64)  # ties: smallest class index
    n_dom = counts[np.arange(n_sp), dominant]

    # pass 2: mean vector of the dominant-class pixels (float64 sums rounded to float32), and
    # the sums of a(x) (mean-CIL) or of the margin uncertainty (margin, ClassBal)
    mu_sum = np.zeros((n_sp, num_classes), dtype=np.float64)
    sum_val = margin or (method == "cil_mean" and not use_tau)
    val_sum = np.zeros(n_sp if sum_val else 0, dtype=np.float64)
    nb.pass_mean(P, runs, sid, am, dominant, mu_sum, val, val_sum)
    mu = (mu_sum / n_dom[:, None]).astype(np.float32)
    mu_norm = _seq_norm_host(mu.T)

    # pass 3: representative (and the ABC sums, which weigh by the cosine to the mean)
    abc = method == "abc"
    if abc:
        if class_weights is None:
            keep = np.ones(n_sp, dtype=bool)
            if selected:
                keep = ~np.isin(ids, np.asarray(selected, dtype=np.int64))
            weights = abc_class_weights(lab_counts[keep].sum(axis=0))
        else:
            weights = np.asarray(class_weights, dtype=np.float64)
            if weights.shape != (num_classes,):
                raise ValueError(
                    f"class_weights must have shape ({num_classes},), got {weights.shape}"
                )
        w_class = weights.astype(np.float32)
    else:
        w_class = np.zeros(0, dtype=np.float32)
    abc_scores = np.zeros(n_sp, dtype=np.float64)
    rep = np.zeros(n_sp, dtype=np.int64)
    nb.pass_rep(
        P,
        runs,
        sid,
        am,
        dominant,
        pnorm,
        mu,
        mu_norm,
        _TINY,
        rep,
        abc,
        w_class,
        lab,
        ignore,
        has_ignore,
        val,
        abc_scores,
    )
    rep_yx = np.stack([rep // width, rep % width], axis=1)

    # pass 4: similarity to the representative, E(s), and the SIM / mean-CIL sums
    expanded_sizes = sizes
    sums = np.zeros(n_sp, dtype=np.float64)
    if method == "sim" or use_tau:
        mode = 1 if method == "sim" else 2 if method == "cil_mean" else 0
        expanded_sizes = np.zeros(n_sp, dtype=np.int64)
        nb.pass_sim(
            P, runs, sid, pnorm, rep, val, tau32, use_tau, _TINY, mode, sums, expanded_sizes
        )

    if method == "sim":
        scores = sums
    elif method == "cil_pixel":
        y_rep = lab[rep].astype(np.int64)
        if has_ignore:
            y_rep = np.where(y_rep == ignore_index, am[rep], y_rep)
        scores = 1.0 - P[y_rep, rep].astype(np.float64)
    elif method == "cil_mean":
        if use_tau:
            scores = sums / expanded_sizes
        else:
            scores = val_sum / sizes
    elif method == "entropy":
        scores = np.bincount(sid, weights=_entropy_per_pixel(P), minlength=n_sp + 1)[:n_sp]
        scores = scores / sizes
    elif method in ("margin", "classbal"):
        unc = val_sum / sizes if margin else np.zeros(n_sp, dtype=np.float64)
        if method == "margin":
            scores = unc
        else:
            scores = classbal_scores(unc, dominant, num_classes, class_prior, score_range)
    elif method == "abc":
        scores = abc_scores
    elif method == "random":
        scores = np.random.default_rng(seed).random(n_sp)
    else:  # pragma: no cover - validated by the caller
        raise ValueError(method)

    scores = np.asarray(scores, dtype=np.float64)
    if selected:
        scores = np.where(np.isin(ids, np.asarray(selected, dtype=np.int64)), 0.0, scores)
    return SuperpixelScores(
        ids=ids,
        scores=scores,
        rep_yx=rep_yx,
        dominant=dominant,
        sizes=sizes.astype(np.int64),
        expanded_sizes=np.asarray(expanded_sizes, dtype=np.int64),
    )


def _runs_numpy(sid: np.ndarray, n_sp: int) -> np.ndarray:
    """(start, end) pairs of the runs of equal ``sid`` below ``n_sp``, at most _NB_RUN long."""
    n = sid.shape[0]
    starts = np.flatnonzero(np.diff(sid) != 0) + 1
    bounds = np.concatenate([[0], starts, [n]]).astype(np.int64)
    lengths = np.diff(bounds)
    pieces = -(-lengths // _NB_RUN)
    first = np.repeat(bounds[:-1], pieces)
    offset = np.arange(first.shape[0]) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    start = first + offset * _NB_RUN
    end = np.minimum(start + _NB_RUN, np.repeat(bounds[1:], pieces))
    runs = np.stack([start, end], axis=1)
    return np.ascontiguousarray(runs[sid[start] < n_sp])
