"""Speed of the superpixel acquisition functions on PASCAL-sized inputs (images per second).

Scores every superpixel of synthetic PASCAL VOC-sized images (21 classes, 500x375, ~50 SLIC
superpixels) with the look-ahead SIM of Kim et al. (ICML 2024) and every baseline, on the
numpy path, the torch CPU path and, when available, CUDA (inputs already on the GPU), and
compares SIM, mean-CIL and pixel-CIL with ``score_loop``, a plain per-superpixel Python loop of
the same semantics (vectorised inside each superpixel), and SIM with a per-pixel Python loop
written the way the reference ALC code computes it. Timings are medians over a fixed number
of images.

    python benchmarks/acquisition_speed.py [--threads 1] [--images 30] [--check]

``--check`` exits with status 1 when numpy SIM is below 30 images/s.
"""

from __future__ import annotations

import os
import sys


def _threads_from_argv(argv: list[str]) -> int:
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return 1


# thread limits must be set before numpy / torch are imported
_THREADS = _threads_from_argv(sys.argv[1:])
for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
):
    os.environ[_var] = str(_THREADS)

import argparse
import platform
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alc_fiftyone.core.acquisition import METHODS, score_loop, score_superpixels

LOOP_METHODS = ("sim", "cil_mean", "cil_pixel")


def make_images(
    n_distinct: int, num_classes: int, height: int, width: int, n_segments: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Synthetic (probs, superpixels, labels) triples, generated once.

    Probabilities: softmax of blocky random logits plus pixel noise (spatially coherent like a
    segmentation model's output). Superpixels: SLIC on a random image. Labels: the argmax with
    20% of the pixels set to a random class and 5% to ignore (255).
    """
    from skimage.segmentation import slic

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_distinct):
        bh, bw = -(-height // 25), -(-width // 25)
        low = rng.normal(size=(num_classes, bh, bw)) * 3.0
        logits = np.kron(low, np.ones((25, 25)))[:, :height, :width]
        logits = logits + rng.normal(size=(num_classes, height, width))
        probs = np.exp(logits - logits.max(axis=0))
        probs = (probs / probs.sum(axis=0)).astype(np.float32)
        sp = slic(
            rng.random((height, width, 3)),
            n_segments=n_segments,
            start_label=1,
            channel_axis=-1,
            convert2lab=False,
        ).astype(np.uint16)
        labels = probs.argmax(axis=0).astype(np.uint8)
        noisy = rng.random((height, width)) < 0.2
        labels[noisy] = rng.integers(0, num_classes, size=int(noisy.sum()))
        labels[rng.random((height, width)) < 0.05] = 255
        images.append((probs, sp, labels))
    return images


def sim_per_pixel_loop(probs, sp, labels, ignore_index=255):
    """SIM written the way the reference ALC code computes it: a Python loop over the pixels of
    each superpixel for the dominant class, the representative and the cosine-weighted sum.
    Same semantics as ``score_superpixels(..., "sim")``; used only as a speed baseline."""
    ids = [int(i) for i in np.unique(sp) if i != 0]
    scores = []
    for sp_id in ids:
        ys, xs = np.nonzero(sp == sp_id)
        vecs = [probs[:, y, x] for y, x in zip(ys, xs)]
        preds = [int(v.argmax()) for v in vecs]
        counts = np.bincount(preds, minlength=probs.shape[0])
        dom = int(counts.argmax())
        members = [v for v, p in zip(vecs, preds) if p == dom]
        mean = np.sum(members, axis=0) / len(members)
        best, rep = -2.0, None
        for v in members:
            c = float(v @ mean) / (float(np.linalg.norm(v)) * float(np.linalg.norm(mean)))
            if c > best:
                best, rep = c, v
        rep_norm = float(np.linalg.norm(rep))
        total = 0.0
        for v, p, y, x in zip(vecs, preds, ys, xs):
            lab = int(labels[y, x])
            if lab == ignore_index:
                lab = p
            w = float(v @ rep) / (float(np.linalg.norm(v)) * rep_norm)
            total += w * (1.0 - float(v[lab]))
        scores.append(total)
    return np.array(scores)


def time_per_image(fn, inputs: list, n_images: int, warmup: int = 2) -> float:
    """Median seconds of ``fn(*inputs[i % len(inputs)])`` over ``n_images`` calls."""
    for i in range(warmup):
        fn(*inputs[i % len(inputs)])
    times = []
    for i in range(n_images):
        args = inputs[i % len(inputs)]
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--images", type=int, default=30, help="timed images per cell")
    parser.add_argument(
        "--loop-images",
        type=int,
        default=None,
        help="timed images for the plain loop (default: --images)",
    )
    parser.add_argument(
        "--ref-images", type=int, default=2, help="timed images for the per-pixel loop"
    )
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--segments", type=int, default=50, help="SLIC n_segments")
    parser.add_argument("--distinct", type=int, default=3, help="distinct synthetic images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-torch", action="store_true", help="skip the torch columns")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if numpy SIM is below 30 images/s"
    )
    args = parser.parse_args(argv)

    images = make_images(
        args.distinct, args.classes, args.height, args.width, args.segments, args.seed
    )
    n_sp = [len(np.unique(sp[sp > 0])) for _, sp, _ in images]
    loop_images = args.loop_images or args.images

    torch = None
    cuda = False
    if not args.no_torch:
        import torch

        torch.set_num_threads(args.threads)
        cuda = torch.cuda.is_available()
    gpu_inputs = []
    if cuda:
        gpu_inputs = [
            (
                torch.from_numpy(p).cuda(),
                torch.from_numpy(s.astype(np.int64)).cuda(),
                torch.from_numpy(lab).cuda(),
            )
            for p, s, lab in images
        ]

    # warm every code path (allocator, caches, lazy imports) before any timing
    for method in METHODS:
        for p, s, lab in images:
            score_superpixels(p, s, lab, method, seed=0)
            if torch is not None:
                score_superpixels(p, s, lab, method, seed=0, device="torch")

    rows = []
    for method in METHODS:
        row = {"method": method}
        row["numpy"] = time_per_image(
            lambda p, s, lab, m=method: score_superpixels(p, s, lab, m, seed=0),
            images,
            args.images,
        )
        if torch is not None:
            row["torch"] = time_per_image(
                lambda p, s, lab, m=method: score_superpixels(
                    p, s, lab, m, seed=0, device="torch"
                ),
                images,
                args.images,
            )
        if cuda:
            row["cuda"] = time_per_image(
                lambda p, s, lab, m=method: score_superpixels(p, s, lab, m, seed=0, device="cuda"),
                gpu_inputs,
                args.images,
            )
        if method in LOOP_METHODS:
            row["loop"] = time_per_image(
                lambda p, s, lab, m=method: score_loop(p, s, lab, m), images, loop_images, warmup=1
            )
        rows.append(row)

    # the reference-style per-pixel loop takes seconds per image: a few images are enough
    ref_images = max(1, min(args.ref_images, len(images)))
    ref = time_per_image(
        lambda p, s, lab: sim_per_pixel_loop(p, s, lab), images, ref_images, warmup=0
    )
    p0, s0, l0 = images[0]
    same = np.allclose(
        sim_per_pixel_loop(p0, s0, l0), score_superpixels(p0, s0, l0, "sim").scores, rtol=1e-3
    )

    cpu = platform.processor() or platform.machine()
    print(
        f"Acquisition speed, images/s (median of {args.images} images; plain loop: "
        f"{loop_images}); {args.classes} classes, {args.width}x{args.height}, "
        f"{min(n_sp)}-{max(n_sp)} SLIC superpixels; {args.threads} CPU thread(s) ({cpu}); "
        f"numpy {np.__version__}"
        + (f", torch {torch.__version__}" if torch else "")
        + (f", CUDA: {torch.cuda.get_device_name(0)} (inputs on the GPU)" if cuda else "")
    )
    print()
    header = ["method", "numpy"]
    if torch is not None:
        header.append("torch CPU")
    if cuda:
        header.append("CUDA")
    header += ["plain loop", "numpy / loop"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for row in rows:
        cells = [row["method"], f"{1 / row['numpy']:.1f}"]
        if torch is not None:
            cells.append(f"{1 / row['torch']:.1f}")
        if cuda:
            cells.append(f"{1 / row['cuda']:.1f}")
        if "loop" in row:
            cells += [f"{1 / row['loop']:.1f}", f"{row['loop'] / row['numpy']:.1f}x"]
        else:
            cells += ["-", "-"]
        print("| " + " | ".join(cells) + " |")

    sim = rows[0]
    sim_rate = 1 / sim["numpy"]
    print()
    print(
        f"numpy SIM: {sim_rate:.1f} images/s (target >= 30: "
        f"{'met' if sim_rate >= 30 else 'NOT met'}); "
        f"{sim['loop'] / sim['numpy']:.1f}x the plain loop (target >= 100x: "
        f"{'met' if sim['loop'] / sim['numpy'] >= 100 else 'NOT met'})"
    )
    print(
        f"reference-style per-pixel Python loop (SIM, {ref_images} image(s)): "
        f"{1 / ref:.2f} images/s; numpy SIM is {ref / sim['numpy']:.0f}x faster "
        f"(same scores: {'yes' if same else 'NO'})"
    )
    if args.check and sim_rate < 30:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
