"""evaluate: data mIoU of a label field against ground truth, streamed over a collection."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..core.metrics import ConfusionMatrix
from ..errors import ALCError
from ..progress import ProgressCallback, track
from ..store.db import dataset_of
from ..store.fields import (
    check_class_values,
    class_table,
    read_current_labels,
    require_nonempty,
    require_segmentation_field,
)
from ..store.files import check_same_size, read_segmentation

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


def confusion(
    samples,
    label_field: str,
    gt_field: str,
    revised_field: str | None = None,
    progress: ProgressCallback | None = None,
) -> ConfusionMatrix:
    """Confusion matrix of ``label_field`` (or ``revised_field`` where a sample has it) against
    ``gt_field``. Pixels where either holds the ignore value are left out (docs/method.md)."""
    require_nonempty(samples)
    require_segmentation_field(samples, gt_field, "ground-truth")
    if not samples.has_field(label_field):
        raise ALCError(f"the dataset has no label field {label_field!r}")
    _names, ignore, num_classes = class_table(dataset_of(samples), gt_field)
    cm = ConfusionMatrix(num_classes, ignore_index=ignore)
    fields = [label_field, gt_field] + ([revised_field] if revised_field else [])
    fields = [f for f in fields if samples.has_field(f)]
    view = samples.select_fields(fields)
    for sample in track(view.iter_samples(), len(view), progress, "evaluate"):
        pred = read_current_labels(sample, label_field, revised_field)
        gt = read_segmentation(sample, gt_field)
        check_same_size(sample, repr(label_field), pred.shape, repr(gt_field), gt.shape)
        check_class_values(sample, pred, num_classes, ignore, label_field)
        check_class_values(sample, gt, num_classes, ignore, gt_field)
        cm.update(pred, gt)
    return cm


def evaluate(
    samples: SampleCollection,
    label_field: str,
    gt_field: str,
    revised_field: str | None = None,
    progress: ProgressCallback | None = None,
) -> dict:
    """Data mIoU and per-class IoU of ``label_field`` against ``gt_field``.

    Returns ``{"miou", "pixel_accuracy", "per_class": {name: iou}, "confusion": [[...]]}``;
    classes absent from both maps have IoU ``nan`` and do not count in the mean.

    Parameters
    ----------
    samples
        The dataset or view to work on.
    label_field
        The labels to evaluate.
    gt_field
        The ground truth (an ``fo.Segmentation`` field).
    revised_field
        Corrected labels that take precedence where a sample has them.
    progress
        ``progress(done, total, description)``, e.g. the CLI's tqdm bars.

    Returns
    -------
    dict
        ``miou``, ``pixel_accuracy``, ``per_class`` (name -> IoU) and ``confusion``.
    """
    cm = confusion(samples, label_field, gt_field, revised_field, progress)
    names, _, num_classes = class_table(dataset_of(samples), gt_field)
    iou = cm.iou()
    return {
        "miou": float(cm.miou()),
        "pixel_accuracy": float(cm.pixel_accuracy()),
        "per_class": {names.get(c, str(c)): float(iou[c]) for c in range(num_classes)},
        "confusion": cm.matrix.tolist(),
    }


def format_per_class(result: dict) -> str:
    """A markdown table of per-class IoU (for the CLI)."""
    lines = ["| class | IoU (%) |", "|---|---|"]
    for name, v in result["per_class"].items():
        lines.append(f"| {name} | {'-' if np.isnan(v) else f'{100 * v:.2f}'} |")
    lines.append(f"| **mean** | {100 * result['miou']:.2f} |")
    return "\n".join(lines)
