"""Speed of SAM superpixels at PASCAL size (500x375), beside the official automatic generator.

Columns, in images per second (median time over ``--images`` images, after one warm-up image):

- ``encoder b1`` / ``encoder bN``: ``Sam.image_encoder`` alone, 1 or ``--batch`` images per
  call (bf16 autocast on CUDA, float32 on CPU).
- ``ours masks``: encoder (batched) + our automatic masks (all prompts decoded in batches of
  ``--points-per-batch``, IoU / stability filtering and NMS on the device).
- ``ours pipeline``: the whole ``method="sam"`` superpixel pipeline: the above + painting
  small over large + SLIC gap filling + minimum-area merging, pipelined
  (``sam_superpixels_batch``: the CPU part runs in ``--workers`` threads while the device
  goes on with the next images).
- ``official``: ``segment_anything.SamAutomaticMaskGenerator.generate`` with the same grid,
  thresholds and NMS (its default ``points_per_batch`` of 64, RLE output).
- ``speedup``: ``ours pipeline`` / ``official``.
- ``masks ours/official``: mean number of masks kept per image by each.

Random weights (no checkpoint here): a random SAM's predicted IoUs and stability scores are
low, so with the official default thresholds (0.88 / 0.95) both keep almost no mask. The
comparison therefore runs with ``pred_iou_thresh = stability_score_thresh = 0`` for both and
the same box NMS (0.7), where both keep the same masks (the counts are printed). The images
are random noise of PASCAL size.

    python benchmarks/sam_speed.py                       # CUDA: ViT-B and ViT-H, 32x32 grid
    python benchmarks/sam_speed.py --models vit_b --points-per-side 8 --images 2 --batch 2
                                                         # what runs in minutes on a CPU
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alc_fiftyone.core import sam as csam
from alc_fiftyone.core.sam_masks import automatic_masks, sam_superpixels_batch


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rate(times: list[float], n_per_call: int = 1) -> float:
    return n_per_call / statistics.median(times) if times else float("nan")


def _timed(fn, device, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t)
    return out


def bench_model(model_type: str, args, device) -> dict:
    sam = csam.random_sam(model_type, seed=0, device=device)
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 255, (args.height, args.width, 3), dtype=np.uint8)
        for _ in range(max(args.images, args.batch))
    ]
    params = {
        "points_per_side": args.points_per_side,
        "points_per_batch": args.points_per_batch,
        "pred_iou_thresh": 0.0,
        "stability_score_thresh": 0.0,
        "box_nms_thresh": 0.7,
    }
    row = {"model": model_type}
    row["encoder b1"] = _rate(
        _timed(lambda: csam.encode_images(sam, images[:1]), device, args.images)
    )
    row[f"encoder b{args.batch}"] = _rate(
        _timed(
            lambda: csam.encode_images(sam, images[: args.batch], args.batch),
            device,
            max(1, args.images // args.batch),
        ),
        args.batch,
    )

    counts = []

    def ours_masks():
        for emb in csam.encode_images(sam, images[: args.images], args.batch):
            masks, _ = automatic_masks(sam, emb, **params)
            counts.append(len(masks))

    row["ours masks"] = _rate(_timed(ours_masks, device, 1), args.images)

    def ours_pipeline():
        for _ in sam_superpixels_batch(
            images[: args.images], sam, batch_size=args.batch, workers=args.workers, **params
        ):
            pass

    row["ours pipeline"] = _rate(_timed(ours_pipeline, device, 1), args.images)

    from segment_anything import SamAutomaticMaskGenerator

    official = SamAutomaticMaskGenerator(
        sam,
        points_per_side=args.points_per_side,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=0.7,
    )
    off_counts = []
    use_autocast = [True]

    def run_official():
        for img in images[: args.images]:
            if use_autocast[0]:
                try:
                    with csam.autocast(device):
                        off_counts.append(len(official.generate(img)))
                    continue
                except RuntimeError:  # dtype mismatch inside the official code: run it fp32
                    use_autocast[0] = False
            off_counts.append(len(official.generate(img)))

    row["official"] = _rate(_timed(run_official, device, 1), args.images)
    if device.type == "cuda":
        row["official dtype"] = "bf16" if use_autocast[0] else "fp32"
    row["speedup"] = row["ours pipeline"] / row["official"]
    row["masks ours/official"] = (
        f"{np.mean(counts[-args.images :]):.0f}/{np.mean(off_counts[-args.images :]):.0f}"
    )
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["vit_b", "vit_h"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--points-per-batch", type=int, default=256)
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--height", type=int, default=375)
    ap.add_argument("--workers", type=int, default=4, help="CPU threads of the pipeline")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument(
        "--check",
        action="store_true",
        help="exit 1 unless ViT-H pipeline >= 8 img/s and >= 5x official (CUDA)",
    )
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = csam.resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"# SAM speed, random weights, {args.width}x{args.height}, device {device} ({name}), "
        f"grid {args.points_per_side}x{args.points_per_side}, {args.images} images, "
        f"encoder batch {args.batch}, thresholds 0 (IoU, stability), box NMS 0.7, "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    rows = []
    for m in args.models:
        rows.append(bench_model(m, args, device))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = [f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        print("| " + " | ".join(cells) + " |")
    print("(images/s; speedup = ours pipeline / official)")
    if args.check:
        h = next((r for r in rows if r["model"] == "vit_h"), None)
        if h is None or h["ours pipeline"] < 8 or h["speedup"] < 5:
            print("CHECK FAILED: ViT-H pipeline below 8 img/s or below 5x the official generator")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
