"""Speed of the superpixel acquisition functions on PASCAL-sized inputs (images per second).

Scores every superpixel of synthetic PASCAL VOC-sized images (21 classes, 500x375, ~50 SLIC
superpixels) with the look-ahead SIM of Kim et al. (ICML 2024) and every baseline, on the
numba path (the CPU default), the numpy path, the torch CPU path and, when available, CUDA
(inputs already on the GPU), and compares SIM, mean-CIL and pixel-CIL with ``score_loop``, a
plain per-superpixel Python loop of the same semantics (vectorised inside each superpixel),
and SIM with a per-pixel Python loop written the way the reference ALC code computes it.
Every path is warmed up (numba compiled) before timing; timings are medians over a fixed
number of images.

    python benchmarks/acquisition_speed.py [--threads 1] [--images 30] [--clock cpu] [--check]

``--clock cpu`` (the default with one thread) times the CPU paths by the CPU time of the
process (with one thread: the time one core spends on the work, whatever else the machine
runs); ``--clock wall`` (the default with more threads) by wall-clock time. CUDA is always
timed by wall clock (results come back to the host).

``--check`` exits with status 1 when SIM on the CPU default is below 30 images/s or less than
100x faster than the per-pixel loop.
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

from alc_fiftyone.core.acquisition import (
    METHODS,
    numba_available,
    score_loop,
    score_superpixels,
)

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


def time_per_image(fn, inputs: list, n_images: int, warmup: int = 2, clock=time.perf_counter):
    """Median seconds of ``fn(*inputs[i % len(inputs)])`` over ``n_images`` calls."""
    for i in range(warmup):
        fn(*inputs[i % len(inputs)])
    times = []
    for i in range(n_images):
        args = inputs[i % len(inputs)]
        t0 = clock()
        fn(*args)
        times.append(clock() - t0)
    return float(np.median(times))


def time_interleaved(cells: dict, n_images: int) -> dict:
    """Median seconds per image of several ``(fn, inputs, n, clock)`` cells, measured
    round-robin (image i in every cell, then image i + 1, ...) so that load from other
    processes falls on all of them alike; a cell stops after its own ``n`` images. Each timed
    call follows an untimed call on the same image, so the maps are in cache, as right after
    the model that wrote them (see :func:`time_cold` for maps that are not)."""
    times: dict = {name: [] for name in cells}
    for i in range(n_images):
        for name, (fn, inputs, n, clock) in cells.items():
            if i >= n:
                continue
            args = inputs[i % len(inputs)]
            fn(*args)
            t0 = clock()
            fn(*args)
            times[name].append(clock() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def time_cold(cells: dict, n_images: int, flush: np.ndarray) -> dict:
    """Like :func:`time_interleaved`, but every timed call follows a read of ``flush`` (larger
    than the caches; read, not written, so that no write-back competes with the timed call),
    so the maps come from main memory."""
    times: dict = {name: [] for name in cells}
    for i in range(n_images):
        for name, (fn, inputs, _, clock) in cells.items():
            args = inputs[i % len(inputs)]
            flush.sum()
            t0 = clock()
            fn(*args)
            times[name].append(clock() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


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
    parser.add_argument(
        "--cold-images",
        type=int,
        default=10,
        help="timed images for SIM with the maps evicted from the caches (0: skip)",
    )
    parser.add_argument(
        "--flush-mb", type=int, default=512, help="buffer read to evict the caches (MB)"
    )
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--segments", type=int, default=50, help="SLIC n_segments")
    parser.add_argument("--distinct", type=int, default=3, help="distinct synthetic images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-torch", action="store_true", help="skip the torch columns")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default=None,
        help="time CPU paths by process CPU time or wall clock (default: cpu with one "
        "thread, else wall)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if CPU-default SIM is below 30 images/s or below 100x the per-pixel loop",
    )
    args = parser.parse_args(argv)

    images = make_images(
        args.distinct, args.classes, args.height, args.width, args.segments, args.seed
    )
    n_sp = [len(np.unique(sp[sp > 0])) for _, sp, _ in images]
    loop_images = args.loop_images or args.images
    if args.clock is None:
        args.clock = "cpu" if args.threads == 1 else "wall"
    cpu_clock = time.process_time if args.clock == "cpu" else time.perf_counter
    numba = numba_available()

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

    # (column, device, inputs) of every vectorised path
    paths = []
    if numba:
        paths.append(("numba", "numba", images))
    paths.append(("numpy", "numpy", images))
    if torch is not None:
        paths.append(("torch", "torch", images))
    if cuda:
        paths.append(("cuda", "cuda", gpu_inputs))

    # warm every code path (numba compilation, allocator, caches, lazy imports) before timing
    t0 = time.perf_counter()
    for method in METHODS:
        for _, device, inputs in paths:
            for p, s, lab in inputs:
                score_superpixels(p, s, lab, method, seed=0, device=device)
    warmup_s = time.perf_counter() - t0

    rows = []
    for method in METHODS:
        cells = {
            column: (
                lambda p, s, lab, m=method, d=device: score_superpixels(
                    p, s, lab, m, seed=0, device=d
                ),
                inputs,
                args.images,
                time.perf_counter if column == "cuda" else cpu_clock,
            )
            for column, device, inputs in paths
        }
        if method in LOOP_METHODS:
            cells["loop"] = (
                lambda p, s, lab, m=method: score_loop(p, s, lab, m),
                images,
                loop_images,
                cpu_clock,
            )
        row = {"method": method}
        row.update(time_interleaved(cells, max(args.images, loop_images)))
        rows.append(row)

    # SIM with the maps evicted from the caches before every call
    cold_cells = {
        column: (
            lambda p, s, lab, d=device: score_superpixels(p, s, lab, "sim", device=d),
            images,
            args.cold_images,
            cpu_clock,
        )
        for column, device, _ in paths
        if column in ("numba", "numpy")
    }
    cold = {}
    if args.cold_images > 0:
        flush = np.ones(args.flush_mb * 2**20 // 8)
        cold = time_cold(cold_cells, args.cold_images, flush)
        del flush

    # the reference-style per-pixel loop takes seconds per image: a few images are enough
    ref_images = max(1, min(args.ref_images, len(images)))
    ref = time_per_image(
        lambda p, s, lab: sim_per_pixel_loop(p, s, lab),
        images,
        ref_images,
        warmup=0,
        clock=cpu_clock,
    )
    p0, s0, l0 = images[0]
    ref_scores = sim_per_pixel_loop(p0, s0, l0)
    same = {
        column: np.allclose(
            ref_scores, score_superpixels(p0, s0, l0, "sim", device=device).scores, rtol=1e-3
        )
        for column, device, _ in paths
        if column in ("numba", "numpy")
    }

    cpu = platform.processor() or platform.machine()
    print(
        f"Acquisition speed, images/s (median of {args.images} images; plain loop: "
        f"{loop_images}; {args.clock} clock"
        + (", CUDA wall clock" if cuda and args.clock == "cpu" else "")
        + "); "
        + f"{args.classes} classes, {args.width}x{args.height}, "
        f"{min(n_sp)}-{max(n_sp)} SLIC superpixels; {args.threads} CPU thread(s) ({cpu}); "
        f"numpy {np.__version__}"
        + (f", numba {_numba_version()}" if numba else ", numba not installed")
        + (f", torch {torch.__version__}" if torch else "")
        + (f", CUDA: {torch.cuda.get_device_name(0)} (inputs on the GPU)" if cuda else "")
        + f"; warm-up (numba compilation or cache load included) {warmup_s:.1f} s"
    )
    print()
    names = {
        "numba": "numba (CPU default)",
        "numpy": "numpy",
        "torch": "torch CPU",
        "cuda": "CUDA",
    }
    columns = [column for column, _, _ in paths]
    header = ["method"] + [names[c] for c in columns] + ["plain loop"]
    header += [f"{c} / loop" for c in columns if c in ("numba", "numpy")]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for row in rows:
        cells = [row["method"]] + [f"{1 / row[c]:.1f}" for c in columns]
        ratios = [c for c in columns if c in ("numba", "numpy")]
        if "loop" in row:
            cells.append(f"{1 / row['loop']:.1f}")
            cells += [f"{row['loop'] / row[c]:.1f}x" for c in ratios]
        else:
            cells += ["-"] + ["-"] * len(ratios)
        print("| " + " | ".join(cells) + " |")

    sim = rows[0]
    default = "numba" if numba else "numpy"
    print()
    print(
        f"reference-style per-pixel Python loop (SIM, {ref_images} image(s)): "
        f"{1 / ref:.2f} images/s ({ref:.2f} s per image); "
        + "; ".join(
            f"{c} SIM is {ref / sim[c]:.0f}x faster (same scores: {'yes' if ok else 'NO'})"
            for c, ok in same.items()
        )
    )
    if cold:
        print(
            f"maps not in cache (a {args.flush_mb} MB buffer read before each call, "
            f"{args.cold_images} images): "
            + "; ".join(
                f"{c} SIM {1 / t:.1f} images/s ({1000 * t:.1f} ms), {ref / t:.0f}x the "
                f"per-pixel loop (>= 100x: {'met' if ref / t >= 100 else 'NOT met'})"
                for c, t in cold.items()
            )
        )
    rate = 1 / sim[default]
    speedup = ref / sim[default]
    ok_rate = rate >= 30
    ok_speedup = speedup >= 100
    summary = (
        f"SIM on the CPU default ({default}), maps in cache: {rate:.1f} images/s "
        f"({1000 * sim[default]:.1f} ms per image; target >= 30: "
        f"{'met' if ok_rate else 'NOT met'}), {speedup:.0f}x the per-pixel loop "
        f"(target >= 100x: {'met' if ok_speedup else 'NOT met'})"
    )
    parts = [summary]
    if numba:
        np_rate = 1 / sim["numpy"]
        np_speedup = ref / sim["numpy"]
        parts.append(
            f"numpy SIM: {np_rate:.1f} images/s (>= 30: {'met' if np_rate >= 30 else 'NOT met'}), "
            f"{np_speedup:.0f}x the per-pixel loop "
            f"(>= 100x: {'met' if np_speedup >= 100 else 'NOT met'})"
        )
        parts.append(f"numba is {sim['numpy'] / sim['numba']:.1f}x numpy")
    print("; ".join(parts))
    if args.check and not (ok_rate and ok_speedup):
        return 1
    return 0


def _numba_version() -> str:
    import numba

    return numba.__version__


if __name__ == "__main__":
    sys.exit(main())
