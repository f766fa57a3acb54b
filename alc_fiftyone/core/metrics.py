"""Segmentation metrics: streaming confusion matrix, IoU and data mIoU.

Data mIoU (Kim et al., "Active Label Correction for Semantic Segmentation with Foundation
Models", ICML 2024; A2LC, arXiv 2506.11599) compares the corrected training labels with the
ground truth. As in the reference code, pixels where *either* map holds the ignore value are
excluded (trap 4 of the method: not only ground-truth ignore), and the mean is taken over the
classes present in either map (nan-mean of the per-class IoU).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ConfusionMatrix", "data_miou"]


def _to_numpy(x: Any) -> np.ndarray:
    if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class ConfusionMatrix:
    """Streaming (C, C) confusion matrix, rows = ground truth, columns = prediction.

    Call :meth:`update` once per image; IoU and accuracy are computed from the totals.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred: Any, gt: Any) -> None:
        """Add one prediction / ground-truth pair (any matching shapes, integer values).

        Pixels where either map equals ``ignore_index`` are skipped. Any other value outside
        ``[0, num_classes)`` raises ValueError naming the values.
        """
        pred = _to_numpy(pred)
        gt = _to_numpy(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"pred shape {pred.shape} != gt shape {gt.shape}")
        for name, arr in (("pred", pred), ("gt", gt)):
            if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
                raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
        p = pred.reshape(-1).astype(np.int64)
        g = gt.reshape(-1).astype(np.int64)
        if self.ignore_index is not None:
            keep = (p != self.ignore_index) & (g != self.ignore_index)
            p = p[keep]
            g = g[keep]
        c = self.num_classes
        for name, arr in (("pred", p), ("gt", g)):
            bad = (arr < 0) | (arr >= c)
            if bad.any():
                values = np.unique(arr[bad])
                shown = ", ".join(str(int(v)) for v in values[:10])
                raise ValueError(
                    f"{name} holds values outside [0, {c}) that are not the ignore value "
                    f"{self.ignore_index}: {shown}"
                )
        self.matrix += np.bincount(g * c + p, minlength=c * c).reshape(c, c)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts into this one (in place) and return self."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"cannot merge {type(other).__name__} into a ConfusionMatrix")
        if other.num_classes != self.num_classes or other.ignore_index != self.ignore_index:
            raise ValueError("cannot merge confusion matrices of different classes or ignore")
        self.matrix += other.matrix
        return self

    def reset(self) -> None:
        """Zero the counts."""
        self.matrix[:] = 0

    @property
    def total(self) -> int:
        """Number of pixels counted."""
        return int(self.matrix.sum())

    def iou(self) -> np.ndarray:
        """Per-class IoU (float64); nan for a class absent from both maps (union 0)."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - np.diag(self.matrix)
        out = np.full(self.num_classes, np.nan)
        nz = union > 0
        out[nz] = tp[nz] / union[nz]
        return out

    def miou(self) -> float:
        """Mean IoU over the classes present (nan if none)."""
        iou = self.iou()
        if np.all(np.isnan(iou)):
            return float("nan")
        return float(np.nanmean(iou))

    def pixel_accuracy(self) -> float:
        """Share of counted pixels where prediction equals ground truth (nan if none)."""
        total = self.matrix.sum()
        if total == 0:
            return float("nan")
        return float(np.trace(self.matrix) / total)

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, "
            f"ignore_index={self.ignore_index}, total={self.total})"
        )


def data_miou(pred: Any, gt: Any, num_classes: int, ignore_index: int | None = 255) -> float:
    """mIoU of one label map (or a stack of them) against the ground truth.

    Pixels where either map is ``ignore_index`` are excluded; classes absent from both maps
    are left out of the mean.
    """
    cm = ConfusionMatrix(num_classes, ignore_index)
    cm.update(pred, gt)
    return cm.miou()
