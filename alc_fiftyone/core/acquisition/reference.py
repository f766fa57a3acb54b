"""A plain per-superpixel loop of the acquisition's semantics: a readable reference to
cross-check the fast backends, and the baseline of ``benchmarks/acquisition_speed.py``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import (
    _TINY,
    SuperpixelScores,
    _check_shapes,
    _seq_norm_host,
    _to_numpy,
)


def cos_to_vector(P: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Float32 cosine of the columns of P (C, n) to v (C,), same arithmetic as the fast path."""
    sq = P[0] * P[0]
    dot = P[0] * v[0]
    for c in range(1, P.shape[0]):
        sq = sq + P[c] * P[c]
        dot = dot + P[c] * v[c]
    vnorm = _seq_norm_host(v.reshape(-1, 1))
    return dot / np.maximum(np.sqrt(sq) * vnorm, _TINY)


def score_loop(
    probs: Any,
    superpixels: Any,
    labels: Any,
    method: str = "sim",
    tau: float = 0.0,
    ignore_index: int | None = 255,
) -> SuperpixelScores:
    """Plain per-superpixel Python loop with the semantics of :func:`score_superpixels`.

    A readable reference, one superpixel at a time, used to cross-check the vectorised
    implementation and as the baseline of ``benchmarks/acquisition_speed.py``. Cosines are
    computed in float32 in class order like the fast path (the representative is decided on
    float32 values, where saturated softmax vectors tie), sums in float64. Supports ``"sim"``,
    ``"gain"``, ``"cil_pixel"`` and ``"cil_mean"``.
    """
    if method not in ("sim", "gain", "cil_pixel", "cil_mean"):
        raise ValueError(f"score_loop supports sim, gain, cil_pixel and cil_mean, not {method!r}")
    P = _to_numpy(probs)
    sp = _to_numpy(superpixels)
    lab = _to_numpy(labels)
    _check_shapes(
        P.shape,
        np.issubdtype(P.dtype, np.floating),
        sp.shape,
        np.issubdtype(sp.dtype, np.integer),
        lab.shape,
        np.issubdtype(lab.dtype, np.integer),
    )
    P = P.astype(np.float32, copy=False)
    num_classes = P.shape[0]
    ids = np.unique(sp)
    ids = ids[ids != 0].astype(np.int64)
    n = len(ids)
    scores = np.zeros(n)
    rep_yx = np.zeros((n, 2), np.int64)
    dominant = np.zeros(n, np.int64)
    sizes = np.zeros(n, np.int64)
    expanded = np.zeros(n, np.int64)
    for i, sp_id in enumerate(ids):
        ys, xs = np.nonzero(sp == sp_id)  # row-major order
        vecs = P[:, ys, xs]  # (C, n_s) float32
        pred = vecs.argmax(axis=0)
        dom = int(np.bincount(pred, minlength=num_classes).argmax())
        dom_idx = np.flatnonzero(pred == dom)
        mean = (vecs[:, dom_idx].astype(np.float64).sum(axis=1) / len(dom_idx)).astype(np.float32)
        cos = cos_to_vector(vecs[:, dom_idx], mean)
        r = int(dom_idx[np.flatnonzero(cos == cos.max())[0]])  # first of the maxima
        w = cos_to_vector(vecs, vecs[:, r]).astype(np.float64)
        w[r] = 1.0
        in_e = w >= np.float32(tau) if tau > 0 else np.ones(len(w), bool)
        cur = lab[ys, xs].astype(np.int64)
        if ignore_index is not None:
            cur = np.where(cur == ignore_index, pred, cur)
        a = 1.0 - vecs[cur, np.arange(len(cur))].astype(np.float64)
        if method == "sim":
            scores[i] = float(np.sum(w[in_e] * a[in_e]))
        elif method == "gain":
            sums = vecs[:, in_e].astype(np.float64).sum(axis=1)
            now = vecs[cur, np.arange(len(cur))].astype(np.float64)[in_e].sum()
            scores[i] = max(float(sums.max()) - float(now), 0.0)
        elif method == "cil_mean":
            scores[i] = float(a[in_e].mean())
        else:
            scores[i] = float(a[r])
        rep_yx[i] = (ys[r], xs[r])
        dominant[i] = dom
        sizes[i] = len(ys)
        expanded[i] = int(in_e.sum())
    return SuperpixelScores(
        ids=ids,
        scores=scores,
        rep_yx=rep_yx,
        dominant=dominant,
        sizes=sizes,
        expanded_sizes=expanded,
    )
