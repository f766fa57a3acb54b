"""The vectorised algorithm, written once against the primitives of a backend
(:mod:`.numpy_backend` or :mod:`.torch_backend`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import (
    _LOG_EPS,
    _LOW32,
    _TINY,
    SuperpixelScores,
    _empty_scores,
    _Image,
    _seq_norm_host,
    abc_class_weights,
    classbal_scores,
)


def _score(
    ops: Any,
    img: _Image,
    method: str,
    tau: float,
    ignore_index: int | None,
    seed: int | None,
    class_prior: Any,
    class_weights: Any,
    score_range: Any,
    selected: list[int] | None,
) -> SuperpixelScores:
    P = img.P
    num_classes, n_pix = P.shape
    n_sp = int(img.ids.shape[0])
    if n_sp == 0:
        return _empty_scores()
    if n_pix >= _LOW32:
        raise ValueError("images of 2**32 pixels or more are not supported")
    tau32 = np.float32(tau)
    need_second = method in ("margin", "classbal")
    need_w = method == "sim" or tau32 > 0

    # 1. argmax (first maximum) and top-two values of every pixel, one pass over the classes
    m1 = ops.copy(P[0])
    am = ops.class_index_array(n_pix, num_classes)
    m2 = ops.full(n_pix, -np.inf) if need_second else None
    for c in range(1, num_classes):
        pc = P[c]
        ops.argmax_update(am, pc > m1, c)
        if m2 is not None:
            ops.maximum_(m2, ops.minimum(m1, pc))
        ops.maximum_(m1, pc)
    am = ops.to_int64(am)

    # 2. dominant predicted class of every superpixel (ties: smallest class index)
    counts = ops.count(img.sid * num_classes + am, (n_sp + 1) * num_classes)
    counts = counts[: n_sp * num_classes].reshape(n_sp, num_classes)
    sizes = counts.sum(axis=1)
    dominant = counts.argmax(axis=1).astype(np.int64)
    n_dom = counts[np.arange(n_sp), dominant]
    is_dom = am == ops.take(ops.dev(np.append(dominant, -1)), img.sid)

    # 3. pixels grouped by superpixel; mean vector of the dominant-class pixels (float64
    #    sums, rounded to float32 so that both backends use the very same vector)
    lay = ops.layout(img, is_dom, sizes, n_dom)
    PL = lay.P
    mu = np.empty((num_classes, n_sp), dtype=np.float32)
    for c in range(num_classes):
        mu[c] = (lay.seg_sum_dom(PL[c]) / n_dom).astype(np.float32)
    mu_norm = _seq_norm_host(mu)
    mu = ops.dev(mu)

    # 4. cosine of every pixel to its superpixel's mean vector (float32, class order)
    sq = PL[0] * PL[0]
    dot = PL[0] * lay.expand(mu[0])
    for c in range(1, num_classes):
        pc = PL[c]
        sq += pc * pc
        dot += pc * lay.expand(mu[c])
    pnorm = ops.sqrt(sq)
    cos_mu = dot / ops.clamp_min(pnorm * lay.expand(ops.dev(mu_norm)), _TINY)

    # 5. representative: highest cosine among dominant pixels, then first in row-major order
    best = lay.seg_max_dom(ops.float_key(cos_mu))
    rep_pos = (_LOW32 - (best & _LOW32)).astype(np.int64)
    rep_flat = np.asarray(lay.flat(rep_pos), dtype=np.int64)
    rep_yx = np.stack([rep_flat // img.width, rep_flat % img.width], axis=1)
    rep_pos_dev = ops.dev(rep_pos)

    # 6. similarity to the representative, expansion region E(s)
    w = None
    in_e = None
    expanded_sizes = sizes.copy()
    if need_w:
        reps = PL[:, rep_pos_dev]  # (C, S) representative vectors
        rdot = PL[0] * lay.expand(reps[0])
        for c in range(1, num_classes):
            rdot += PL[c] * lay.expand(reps[c])
        w = rdot / ops.clamp_min(pnorm * lay.expand(pnorm[rep_pos_dev]), _TINY)
        w[rep_pos_dev] = 1.0  # the representative always belongs to its own E(s)
        if tau32 > 0:
            in_e = w >= tau32
            expanded_sizes = np.rint(lay.seg_sum(in_e)).astype(np.int64)

    # 7. CIL: a(x) = 1 - P(y'(x)|x), y' the current label or the argmax where it is ignore
    lab = y_cur = None
    if method in ("sim", "gain", "cil_pixel", "cil_mean", "abc"):
        lab = lay.to_layout(img.lab)
        y_cur = lab
        if ignore_index is not None:
            y_cur = ops.where(lab == ignore_index, lay.to_layout(am), lab)

    # 8. scores
    if method == "sim":
        contrib = w * (1.0 - ops.gather_rows(PL, y_cur))
        if in_e is not None:
            contrib = contrib * in_e
        scores = lay.seg_sum(contrib)
    elif method == "gain":
        # expected pixels made right by writing the region's expected answer c*: the class
        # with the largest summed probability over E(s); sum P(c*|x) - sum P(y'(x)|x)
        keep = in_e if in_e is not None else None
        sums = np.empty((num_classes, n_sp), dtype=np.float64)
        for c in range(num_classes):
            pc = PL[c] if keep is None else PL[c] * keep
            sums[c] = lay.seg_sum(pc)
        cstar = sums.argmax(axis=0)
        now = ops.gather_rows(PL, y_cur)
        if keep is not None:
            now = now * keep
        scores = np.maximum(sums[cstar, np.arange(n_sp)] - lay.seg_sum(now), 0.0)
    elif method == "cil_pixel":
        y_rep = y_cur[rep_pos_dev]
        scores = 1.0 - ops.host(PL[y_rep, rep_pos_dev]).astype(np.float64)
    elif method == "cil_mean":
        a = 1.0 - ops.gather_rows(PL, y_cur)
        if in_e is not None:
            scores = lay.seg_sum(a * in_e) / expanded_sizes
        else:
            scores = lay.seg_sum(a) / sizes
    elif method == "entropy":
        ent = None
        for c in range(num_classes):
            pc = PL[c]
            term = pc * ops.log(ops.clamp_min(pc, _LOG_EPS))
            ent = -term if ent is None else ent - term
        scores = lay.seg_sum(ent) / sizes
    elif method in ("margin", "classbal"):
        if num_classes == 1:
            unc = np.zeros(n_sp, dtype=np.float64)
        else:
            unc = lay.seg_sum(lay.to_layout(1.0 - (m1 - m2))) / sizes
        if method == "margin":
            scores = unc
        else:
            scores = classbal_scores(unc, dominant, num_classes, class_prior, score_range)
    elif method == "abc":
        a = 1.0 - ops.gather_rows(PL, y_cur)
        if class_weights is None:
            # labels were validated: anything outside [0, C) is the ignore value
            keep = (lab >= 0) & (lab < num_classes)
            if ignore_index is not None and 0 <= ignore_index < num_classes:
                keep = keep & (lab != ignore_index)
            if selected:
                unsel = ~np.isin(img.ids, np.asarray(selected, dtype=np.int64))
                keep = keep & lay.expand(ops.dev(unsel))
            weights = abc_class_weights(ops.count(lab[keep], num_classes))
        else:
            weights = np.asarray(class_weights, dtype=np.float64)
            if weights.shape != (num_classes,):
                raise ValueError(
                    f"class_weights must have shape ({num_classes},), got {weights.shape}"
                )
        w_pix = ops.take(ops.dev(weights.astype(np.float32)), y_cur)
        scores = lay.seg_sum(cos_mu * w_pix * a)
    elif method == "random":
        scores = np.random.default_rng(seed).random(n_sp)
    else:  # pragma: no cover - validated by the caller
        raise ValueError(method)

    scores = np.asarray(scores, dtype=np.float64)
    if selected:
        scores = np.where(np.isin(img.ids, np.asarray(selected, dtype=np.int64)), 0.0, scores)
    return SuperpixelScores(
        ids=img.ids.copy(),
        scores=scores,
        rep_yx=rep_yx,
        dominant=dominant,
        sizes=sizes.astype(np.int64),
        expanded_sizes=np.asarray(expanded_sizes, dtype=np.int64),
    )
