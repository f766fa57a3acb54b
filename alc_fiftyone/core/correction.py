"""Label expansion and the simulated annotator of active label correction.

One correction query shows the annotator a superpixel s with its representative pixel rep(s);
the answer (a class) is written to every pixel of the expansion region
``E(s) = {x in s : cos(P(.|x), P(.|rep(s))) >= tau}`` (Kim, Hwang, Kwak and Ok, "Active Label
Correction for Semantic Segmentation with Foundation Models", ICML 2024). The simulated
annotator used to measure the method follows the paper's protocol: if more than half of E(s)
already matches the ground truth the query is a no-op, otherwise E(s) is relabelled with the
ground truth at rep(s) (the reference ALC code, rule ``"rep"``) or with the majority
ground-truth class of E(s) (A2LC, Jeon et al., arXiv 2506.11599, rule ``"majority"``, the
default: it never writes the ignore value). A no-op query still costs its click.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from alc_fiftyone.core.acquisition import expansion_mask

__all__ = [
    "ORACLE_RULES",
    "AnswerOutcome",
    "answer_query",
    "expand_answer",
    "majority_class",
    "oracle_answer",
    "oracle_gains",
    "region_mask",
    "restore_region",
    "write_region",
]

ORACLE_RULES = ("majority", "rep")


@dataclass
class AnswerOutcome:
    """Result of one query: pixels whose label changed, and the class written (None: no-op)."""

    changed: int
    answer: int | None


def _as_region(region: Any, shape: tuple[int, ...]) -> np.ndarray:
    region = np.asarray(region)
    if region.dtype != np.bool_:
        raise ValueError(f"region must be a boolean mask, got dtype {region.dtype}")
    if region.shape != tuple(shape):
        raise ValueError(f"region shape {region.shape} does not match {tuple(shape)}")
    return region


def write_region(labels: np.ndarray, region: Any, value: int, window=None) -> int:
    """Write ``value`` to every pixel of ``region`` of ``labels``, in place (the label
    expansion of one answer); returns how many pixels changed. With ``window`` (a pair of
    slices), ``region`` is the mask of that window of ``labels``."""
    target = labels if window is None else labels[window]
    region = _as_region(region, target.shape)
    changed = int(np.count_nonzero(target[region] != value))
    target[region] = value
    return changed


def restore_region(labels: np.ndarray, before: np.ndarray, region: Any, window=None) -> int:
    """Put back, in place, the labels ``before`` had on ``region`` (an answer taken back);
    returns how many pixels changed. ``window`` as in :func:`write_region`."""
    target = labels if window is None else labels[window]
    source = before if window is None else before[window]
    region = _as_region(region, target.shape)
    old = source[region]
    restored = int(np.count_nonzero(target[region] != old))
    target[region] = old
    return restored


def expand_answer(labels: Any, region: Any, answer: int) -> tuple[np.ndarray, int]:
    """Write ``answer`` to every pixel of ``region`` (label expansion).

    Args:
        labels: (H, W) integer label map; not modified.
        region: (H, W) bool mask, typically E(s) from :func:`region_mask`.
        answer: the class given by the annotator.

    Returns:
        ``(new_labels, pixels_changed)``: a copy of ``labels`` with the region relabelled, and
        the number of region pixels whose label actually changed.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (H, W), got shape {labels.shape}")
    region = _as_region(region, labels.shape)
    answer = int(answer)
    if np.issubdtype(labels.dtype, np.integer):
        info = np.iinfo(labels.dtype)
        if not info.min <= answer <= info.max:
            raise ValueError(f"answer {answer} does not fit the label dtype {labels.dtype}")
    new = labels.copy()
    return new, write_region(new, region, answer)


def region_mask(
    superpixels: Any, sp_id: int, probs: Any = None, rep_yx: Any = None, tau: float = 0.0
) -> np.ndarray:
    """E(s) as an (H, W) bool mask: all of superpixel ``sp_id`` when ``tau <= 0``.

    With ``tau > 0`` only the pixels whose probability vector has cosine >= tau with the
    representative's are kept; ``probs`` (C, H, W) and ``rep_yx`` are then required. The
    arithmetic is the one of :func:`alc_fiftyone.core.acquisition.score_superpixels`, so the
    mask's size equals its ``expanded_sizes`` entry.
    """
    if float(tau) > 0 and (probs is None or rep_yx is None):
        raise ValueError("tau > 0 needs probs and rep_yx to compute the expansion region")
    return expansion_mask(probs, superpixels, sp_id, rep_yx, tau)


def majority_class(values: Any, num_classes: int | None = None, ignore_index=None) -> int | None:
    """The most frequent class among ``values`` (any shape), ignore excluded, ties to the
    smallest class; with ``num_classes`` only classes 0..C-1 count. None when none is left."""
    v = np.asarray(values).ravel().astype(np.int64)
    if ignore_index is not None:
        v = v[v != ignore_index]
    if num_classes is not None:
        v = v[(v >= 0) & (v < num_classes)]
    if v.size == 0:
        return None
    return int(np.bincount(v, minlength=num_classes or 0).argmax())


def oracle_answer(
    gt: Any,
    labels: Any,
    region: Any,
    rule: str = "majority",
    rep_yx: Any = None,
    ignore_index: int | None = 255,
) -> int | None:
    """Simulated annotator for one query on ``region`` = E(s).

    If more than 50% of the region currently matches the ground truth (ground-truth ignore
    pixels count as mismatches) the answer is None: the annotator confirms, nothing changes,
    the click still counts. Otherwise (at most 50% match):

    - ``rule="majority"`` (A2LC): the most frequent ground-truth class of the region,
      ignore excluded, ties to the smallest class; None if the region's ground truth is all
      ignore. Never returns ``ignore_index``.
    - ``rule="rep"`` (reference ALC code): the ground truth at ``rep_yx``, returned as-is,
      which may be ``ignore_index``.

    An empty region gives None.
    """
    if rule not in ORACLE_RULES:
        raise ValueError(f"unknown oracle rule {rule!r}; expected one of {ORACLE_RULES}")
    gt = np.asarray(gt)
    labels = np.asarray(labels)
    if gt.ndim != 2 or gt.shape != labels.shape:
        raise ValueError(f"gt {gt.shape} and labels {labels.shape} must be equal (H, W) maps")
    region = _as_region(region, gt.shape)
    g = gt[region].astype(np.int64)
    n = g.shape[0]
    if n == 0:
        return None
    ok = labels[region].astype(np.int64) == g
    if ignore_index is not None:
        ok &= g != ignore_index
    if 2 * int(np.count_nonzero(ok)) > n:  # strictly more than half already right
        return None
    if rule == "rep":
        if rep_yx is None:
            raise ValueError("rule='rep' needs rep_yx")
        ry, rx = (int(v) for v in np.asarray(rep_yx).reshape(2))
        if not (0 <= ry < gt.shape[0] and 0 <= rx < gt.shape[1]):
            raise ValueError(f"rep_yx {(ry, rx)} is outside the {gt.shape} image")
        return int(gt[ry, rx])
    if ignore_index is not None:
        g = g[g != ignore_index]
    if g.shape[0] and g.min() < 0:
        raise ValueError(f"ground truth holds negative values other than ignore: {g.min()}")
    return majority_class(g)


def answer_query(
    gt: Any,
    labels: Any,
    region: Any,
    rule: str = "majority",
    rep_yx: Any = None,
    ignore_index: int | None = 255,
) -> tuple[np.ndarray, AnswerOutcome]:
    """Ask the simulated annotator about ``region`` and expand its answer.

    Returns ``(new_labels, AnswerOutcome)``; on a no-op the labels are returned unchanged (a
    copy) with ``changed == 0`` and ``answer is None``.
    """
    answer = oracle_answer(gt, labels, region, rule=rule, rep_yx=rep_yx, ignore_index=ignore_index)
    if answer is None:
        return np.array(labels, copy=True), AnswerOutcome(changed=0, answer=None)
    new, changed = expand_answer(labels, region, answer)
    return new, AnswerOutcome(changed=changed, answer=answer)


def oracle_gains(
    gt: Any,
    labels: Any,
    superpixels: Any,
    ids: Any = None,
    rule: str = "majority",
    rep_yx: Any = None,
    ignore_index: int | None = 255,
) -> np.ndarray:
    """How many pixels the simulated annotator's answer would change in each superpixel: the
    ranking of a ceiling that knows the ground truth (:func:`oracle_answer`, vectorised over
    the superpixels of one image, ``tau = 0`` so E(s) = s).

    For each id of ``ids`` (default: every id > 0 of ``superpixels``, ascending): 0 when more
    than half of the region already matches ``gt`` (ground-truth ignore counts as a mismatch)
    or when the answer would be None; else the number of region pixels whose label differs
    from the answer (the majority ground-truth class, or with ``rule="rep"`` the ground truth
    at ``rep_yx[i]``). Never a method for users: it reads the ground truth.
    """
    if rule not in ORACLE_RULES:
        raise ValueError(f"unknown oracle rule {rule!r}; expected one of {ORACLE_RULES}")
    gt = np.asarray(gt)
    labels = np.asarray(labels)
    sp = np.asarray(superpixels)
    if not (gt.shape == labels.shape == sp.shape) or gt.ndim != 2:
        raise ValueError(f"gt {gt.shape}, labels {labels.shape} and superpixels {sp.shape} differ")
    flat = sp.ravel().astype(np.int64)
    if ids is None:
        present = np.bincount(flat)
        ids = np.flatnonzero(present)
        ids = ids[ids > 0]
    ids = np.asarray(ids, dtype=np.int64)
    n_id = int(max(flat.max(initial=0), ids.max(initial=0))) + 1
    lut = np.full(n_id, -1, dtype=np.int64)
    lut[ids] = np.arange(ids.size)
    sid = lut[flat]
    keep = sid >= 0
    sid, g, lab = (
        sid[keep],
        gt.ravel()[keep].astype(np.int64),
        labels.ravel()[keep].astype(np.int64),
    )
    n = ids.size
    size = np.bincount(sid, minlength=n)
    ok = lab == g
    if ignore_index is not None:
        ok &= g != ignore_index
    right = np.bincount(sid, weights=ok, minlength=n)
    if rule == "rep":
        if rep_yx is None:
            raise ValueError("rule='rep' needs rep_yx")
        rep = np.asarray(rep_yx, dtype=np.int64).reshape(-1, 2)
        answer = gt[rep[:, 0], rep[:, 1]].astype(np.int64)
        valid = np.ones(n, dtype=bool)
    else:
        vals = g if ignore_index is None else np.where(g == ignore_index, -1, g)
        use = vals >= 0
        k = int(vals.max(initial=0)) + 1
        counts = np.bincount(sid[use] * k + vals[use], minlength=n * k).reshape(n, k)
        answer = counts.argmax(axis=1)  # ties to the smallest class, as oracle_answer
        valid = counts.sum(axis=1) > 0
    wrong = np.bincount(sid, weights=lab != answer[sid], minlength=n)
    gains = np.where((2 * right <= size) & valid & (size > 0), wrong, 0.0)
    return gains.astype(np.float64)
