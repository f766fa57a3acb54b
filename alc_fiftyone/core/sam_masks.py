"""Automatic masks from a point grid, and painting masks into id and class maps.

The automatic-mask procedure follows Kirillov et al., "Segment Anything" (ICCV 2023), section
"automatic mask generation": a regular grid of single-point prompts, three masks per point,
masks kept when their predicted IoU and their stability score (the IoU of the mask thresholded
at ``t - offset`` and ``t + offset``) are high enough, then box non-maximum suppression. It is
our own implementation, written for throughput: every prompt of an image is decoded in large
batches, the filtering, the NMS (``torchvision.ops.batched_nms``) and the painting stay on the
device, and no mask is ever converted to run-length encoding.
"""

from __future__ import annotations

import numpy as np

from .sam import ImageEmbedding, decode, upscale


def point_grid(n_per_side: int) -> np.ndarray:
    """(n^2, 2) points (x, y) in [0, 1] at the centres of an n x n grid of cells."""
    if n_per_side < 1:
        raise ValueError(f"points_per_side must be >= 1, got {n_per_side}")
    centres = (np.arange(n_per_side, dtype=np.float64) + 0.5) / n_per_side
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def stability_score(logits, threshold: float, offset: float):
    """IoU between the masks ``logits > threshold + offset`` and ``logits > threshold - offset``
    (the first is contained in the second, so it is a ratio of counts)."""
    import torch

    inner = (logits > threshold + offset).flatten(1).sum(1, dtype=torch.int32)
    outer = (logits > threshold - offset).flatten(1).sum(1, dtype=torch.int32)
    return inner.float() / outer.float().clamp(min=1)


def masks_to_boxes(masks):
    """(K, H, W) bool -> (K, 4) xyxy float boxes (inclusive pixel bounds; 0s for empty)."""
    import torch

    K, H, W = masks.shape
    if K == 0:
        return torch.zeros((0, 4), device=masks.device)
    rows = masks.any(2)
    cols = masks.any(1)
    ar_h = torch.arange(H, device=masks.device)
    ar_w = torch.arange(W, device=masks.device)
    y0 = torch.where(rows, ar_h, H).min(1).values
    y1 = torch.where(rows, ar_h, -1).max(1).values
    x0 = torch.where(cols, ar_w, W).min(1).values
    x1 = torch.where(cols, ar_w, -1).max(1).values
    boxes = torch.stack([x0, y0, x1, y1], 1).float()
    empty = ~rows.any(1)
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes)


def automatic_masks(
    sam,
    emb: ImageEmbedding,
    points_per_side: int = 32,
    points_per_batch: int = 256,
    pred_iou_thresh: float = 0.88,
    stability_score_thresh: float = 0.95,
    stability_score_offset: float = 1.0,
    box_nms_thresh: float = 0.7,
    max_masks: int | None = None,
    exact_upscale: bool = False,
):
    """Masks of one image from a grid of ``points_per_side``^2 point prompts.

    Returns ``(masks, scores)``: (K, H, W) bool and (K,) float tensors on SAM's device, sorted
    by score (predicted IoU) descending, at most ``max_masks`` of them. The defaults are those
    of the paper's automatic generator (no crops). ``exact_upscale``: see
    :func:`alc_fiftyone.core.sam.upscale`.
    """
    import torch
    from torchvision.ops import batched_nms

    H, W = emb.original_size
    points = point_grid(points_per_side) * np.array([W, H], dtype=np.float64)
    threshold = float(sam.mask_threshold)
    kept_masks, kept_scores = [], []
    for start in range(0, len(points), max(1, int(points_per_batch))):
        pts = points[start : start + points_per_batch][:, None, :]
        low, iou = decode(sam, emb, points=pts, multimask=True)
        low = low.flatten(0, 1)[:, None]  # (N*3, 1, h', w')
        iou = iou.flatten()
        keep = iou > pred_iou_thresh if pred_iou_thresh > 0 else torch.ones_like(iou, dtype=bool)
        if not bool(keep.any()):
            continue
        logits = upscale(sam, low[keep], emb, exact=exact_upscale)[:, 0]
        iou = iou[keep]
        stable = stability_score(logits, threshold, stability_score_offset)
        keep = stable >= stability_score_thresh
        masks = logits[keep] > threshold
        kept_masks.append(masks)
        kept_scores.append(iou[keep])
        del logits
    if not kept_masks:
        dev = sam.device
        return torch.zeros((0, H, W), dtype=torch.bool, device=dev), torch.zeros(0, device=dev)
    masks = torch.cat(kept_masks)
    scores = torch.cat(kept_scores)
    nonempty = masks.flatten(1).any(1)
    masks, scores = masks[nonempty], scores[nonempty]
    boxes = masks_to_boxes(masks)
    keep = batched_nms(
        boxes,
        scores,
        torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device),
        box_nms_thresh,
    )  # sorted by score, descending
    if max_masks is not None:
        keep = keep[: int(max_masks)]
    return masks[keep], scores[keep]


def paint_masks_torch(masks, chunk: int = 64):
    """(K, H, W) bool masks -> (H, W) int64 map: each pixel takes 1 + the index of the
    smallest mask covering it (larger masks are painted first, smaller ones on top; equal
    areas: the later index wins), 0 where no mask covers it."""
    import torch

    K, H, W = masks.shape
    out = torch.zeros((H, W), dtype=torch.int64, device=masks.device)
    if K == 0:
        return out
    areas = masks.flatten(1).sum(1)
    order = torch.argsort(-areas, stable=True)  # largest first
    rank = torch.empty(K, dtype=torch.int64, device=masks.device)
    rank[order] = torch.arange(1, K + 1, device=masks.device)
    best = torch.zeros((H, W), dtype=torch.int64, device=masks.device)
    for s in range(0, K, chunk):
        r = masks[s : s + chunk] * rank[s : s + chunk, None, None]
        best = torch.maximum(best, r.max(0).values)
    lut = torch.zeros(K + 1, dtype=torch.int64, device=masks.device)
    lut[1:] = order + 1  # rank -> mask index + 1
    return lut[best]


def paint_classes(masks: np.ndarray, classes, fill_value: int) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo labels from instance masks, painted largest first so smaller masks win overlaps.

    Returns ``(labels, instances)``: the (H, W) class map (``fill_value`` where no mask covers)
    and the (H, W) uint16 instance map (1 + mask index of the visible mask, 0 uncovered).
    """
    from .superpixels import paint_masks

    masks = np.asarray(masks, dtype=bool)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if len(classes) != len(masks):
        raise ValueError(f"{len(masks)} masks but {len(classes)} classes")
    instances = paint_masks(masks)
    lut = np.concatenate([[fill_value], classes]).astype(np.int64)
    return lut[instances], instances.astype(np.uint16)
