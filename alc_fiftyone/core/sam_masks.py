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

from typing import Any

import numpy as np

from .sam import ImageEmbedding, decode, encode_images, upscale
from .superpixels import paint_masks, superpixels_from_regions


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
    masks = np.asarray(masks, dtype=bool)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if len(classes) != len(masks):
        raise ValueError(f"{len(masks)} masks but {len(classes)} classes")
    instances = paint_masks(masks)
    lut = np.concatenate([[fill_value], classes]).astype(np.int64)
    return lut[instances], instances.astype(np.uint16)


# --- SAM superpixels: automatic masks painted small over large, gaps filled with SLIC ---------


_SAM_MASK_PARAMS = (
    "points_per_side",
    "points_per_batch",
    "pred_iou_thresh",
    "stability_score_thresh",
    "stability_score_offset",
    "box_nms_thresh",
    "max_masks",
    "exact_upscale",
)
_FILL_PARAMS = ("min_area", "fill_segment_area", "compactness")


def split_sam_params(params: dict) -> tuple[dict, dict]:
    unknown = set(params) - set(_SAM_MASK_PARAMS) - set(_FILL_PARAMS)
    if unknown:
        raise TypeError(f"unknown SAM superpixel parameters: {sorted(unknown)}")
    masks = {k: v for k, v in params.items() if k in _SAM_MASK_PARAMS}
    fill = {k: v for k, v in params.items() if k in _FILL_PARAMS}
    fill.setdefault("min_area", 100)
    return masks, fill


def sam_regions(image: np.ndarray, sam, embedding=None, **mask_params: Any) -> np.ndarray:
    """The device part of :func:`sam_superpixels`: automatic masks of one image painted small
    over large, as an (H, W) int64 region map on the CPU (0 = no mask)."""
    image = np.asarray(image)
    if embedding is None:
        embedding = encode_images(sam, [image])[0]
    if tuple(embedding.original_size) != tuple(image.shape[:2]):
        raise ValueError(
            f"embedding is for a {embedding.original_size} image, got {image.shape[:2]}"
        )
    masks, _ = automatic_masks(sam, embedding, **mask_params)
    return paint_masks_torch(masks).cpu().numpy()


def sam_superpixels(
    image: np.ndarray,
    sam,
    points_per_side: int = 32,
    points_per_batch: int = 256,
    pred_iou_thresh: float = 0.88,
    stability_score_thresh: float = 0.95,
    stability_score_offset: float = 1.0,
    box_nms_thresh: float = 0.7,
    max_masks: int | None = None,
    min_area: int = 100,
    fill_segment_area: int = 1024,
    compactness: float = 10.0,
    embedding=None,
) -> np.ndarray:
    """Full-coverage superpixels of one (H, W, 3) uint8 image from SAM automatic masks.

    Automatic masks from a point grid (:func:`alc_fiftyone.core.sam_masks.automatic_masks`)
    are painted small over large on the device, then split into connected pieces, the
    uncovered pixels filled with SLIC and pieces under ``min_area`` pixels merged into their
    neighbour (:func:`superpixels_from_regions`). Returns a ``uint16`` id map, ids 1..N, no 0.
    ``embedding`` (an :class:`~alc_fiftyone.core.sam.ImageEmbedding` of this image) skips the
    encoder, e.g. when images were encoded in a batch.
    """
    regions = sam_regions(
        image,
        sam,
        embedding=embedding,
        points_per_side=points_per_side,
        points_per_batch=points_per_batch,
        pred_iou_thresh=pred_iou_thresh,
        stability_score_thresh=stability_score_thresh,
        stability_score_offset=stability_score_offset,
        box_nms_thresh=box_nms_thresh,
        max_masks=max_masks,
    )
    return superpixels_from_regions(
        regions,
        image=image,
        fill=True,
        min_area=min_area,
        fill_segment_area=fill_segment_area,
        compactness=compactness,
    )


def sam_superpixels_batch(
    images, sam, batch_size: int = 8, workers: int = 4, embeddings=None, **params: Any
):
    """:func:`sam_superpixels` of many images, pipelined: images go through the encoder
    ``batch_size`` at a time, masks are decoded and painted on the device, and the CPU part
    (connected pieces, SLIC gap filling, merging) runs in ``workers`` threads while the device
    goes on with the next images. Yields the ``uint16`` id maps in input order.

    ``embeddings`` (optional, one per image or None) skips the encoder for those images.
    """
    from concurrent.futures import ThreadPoolExecutor

    mask_params, fill_params = split_sam_params(params)
    images = list(images)
    embeddings = list(embeddings) if embeddings is not None else [None] * len(images)
    pending = []
    with ThreadPoolExecutor(max(1, int(workers))) as pool:
        for start in range(0, len(images), max(1, int(batch_size))):
            chunk = images[start : start + batch_size]
            embs = embeddings[start : start + batch_size]
            missing = [i for i, e in enumerate(embs) if e is None]
            if missing:
                new = encode_images(sam, [chunk[i] for i in missing], batch_size)
                for i, e in zip(missing, new):
                    embs[i] = e
            for image, emb in zip(chunk, embs):
                regions = sam_regions(image, sam, embedding=emb, **mask_params)
                pending.append(
                    pool.submit(superpixels_from_regions, regions, image, True, **fill_params)
                )
            while pending and pending[0].done():
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()
