"""Label quality per click: simulate the correction loop on real data with documented noise.

For each dataset of ../shared/data (CamVid val, 11 classes; Weizmann horses, 2 classes) the
ground truth is corrupted with ``alc.corrupt_labels`` (object-level class swaps, missed objects,
boundary shifts, spurious blobs) at ``--noise-rate`` with ``--noise-seed``; then ``alc.simulate``
runs ``--rounds`` rounds of ``--budget`` (share of the superpixels) with each acquisition method
and the majority oracle, and the data mIoU after every round is printed as one table.

    .venv/bin/python benchmarks/label_quality.py                    # the defaults below
    .venv/bin/python benchmarks/label_quality.py --datasets camvid --methods sim,random
    .venv/bin/python benchmarks/label_quality.py --model sam_head --sam-model-type vit_b \
        --random-sam-weights        # no SAM weights here: random ViT-B, timings only

With ``--model sam_head`` (or ``backbone:<resnet>``) the features of every image are computed
(and cached) once per dataset before the methods run, and that time is printed apart; the
s/round columns are then the head's training plus ranking (plus the simulated answers).

Uses FIFTYONE_DATABASE_URI when set, else FiftyOne's own database service.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"

CAMVID = [
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
]
DATASETS = {
    "camvid": {"folder": "camvid-val", "classes": CAMVID, "ignore_index": 11},
    "horse": {"folder": "weizmann-horse", "classes": ["background", "horse"], "threshold": 128},
}


def load(alc, key: str, limit: int | None):
    spec = dict(DATASETS[key])
    root = DATA / spec.pop("folder")
    images, masks = root / "images", root / "masks"
    if limit:
        tmp = Path(tempfile.mkdtemp(prefix=f"alc-bench-{key}-"))
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for p in sorted(images.iterdir())[:limit]:
            (tmp / "images" / p.name).symlink_to(p)
            for m in masks.glob(p.stem + ".*"):
                (tmp / "masks" / m.name).symlink_to(m)
        images, masks = tmp / "images", tmp / "masks"
    import inspect

    if limit and "follow_links" in inspect.signature(alc.load_image_masks).parameters:
        spec["follow_links"] = True  # our own folder of links to the shared data
    return alc.load_image_masks(images, masks, name=f"bench-{key}-{uuid.uuid4().hex[:6]}", **spec)


def fill_synthetic_embeddings(ds, sam, seed: int) -> None:
    """Seeded N(0, 1) embeddings of SAM's shape in the embeddings cache (timings only)."""
    import numpy as np
    import torch

    from alc_fiftyone.core.head import preprocess_shape
    from alc_fiftyone.core.sam import ImageEmbedding
    from alc_fiftyone.models import embeddings as fsam

    size = sam.image_encoder.img_size
    rng = np.random.default_rng(seed)
    for s in ds.select_fields(["metadata"]):
        from PIL import Image

        with Image.open(s.filepath) as im:
            W, H = im.size
        emb = torch.from_numpy(rng.standard_normal((256, size // 16, size // 16), np.float32))
        e = ImageEmbedding(emb, preprocess_shape(H, W, size), (H, W))
        fsam.save_embedding(fsam.embedding_path(ds, s.id, sam), e, s.filepath)


def plot_grid(curves, path) -> None:
    """One panel per dataset and superpixel kind, one line per method (same colour everywhere).

    ``curves``: (panel title, method, clicks per round, data mIoU % per round)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(c[0] for c in curves))
    methods = list(dict.fromkeys(c[1] for c in curves))
    colours = {m: f"C{i}" for i, m in enumerate(methods)}
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), dpi=110, squeeze=False)
    for ax, title in zip(axes.ravel(), panels):
        for _, method, clicks, miou in (c for c in curves if c[0] == title):
            ax.plot(clicks, miou, marker="o", color=colours[method], label=method)
        ax.set_title(title)
        ax.set_xlabel("clicks")
        ax.set_ylabel("data mIoU (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def curves_from_table(text: str, rounds_col: int = 3):
    """Rebuild the curves from a table this script printed (to re-plot without re-running)."""
    curves = []
    clicks_col = -2  # tables before the "auto px" and "rank s/round" columns
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if "clicks" in cells:
            clicks_col = cells.index("clicks")
            continue
        if len(cells) < 6 or not cells[3].replace(".", "").isdigit():
            continue
        dataset, sp, method = cells[0].split(" (")[0], cells[1].split(" (")[0], cells[2]
        mious = [float(c) for c in cells[rounds_col:clicks_col]]
        total = int(cells[clicks_col])
        per_round = total / (len(mious) - 1)
        clicks = [round(i * per_round) for i in range(len(mious))]
        curves.append((f"{dataset}, {sp}", method, clicks, mious))
    return curves


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="camvid,horse")
    ap.add_argument("--methods", default="random,entropy,cil_mean,sim")
    ap.add_argument("--superpixels", default="felzenszwalb,slic")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.02, help="share of superpixels per round")
    ap.add_argument("--noise-rate", type=float, default=0.3)
    ap.add_argument("--noise-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=100, help="images per dataset (0 = all)")
    ap.add_argument("--model", default="features")
    ap.add_argument(
        "--model-kwargs",
        default="{}",
        help='JSON keyword arguments of the model, e.g. \'{"granularity": "fine"}\'',
    )
    ap.add_argument(
        "--fine",
        action="store_true",
        help='shorthand for --model-kwargs \'{"granularity": "fine"}\'',
    )
    ap.add_argument(
        "--options",
        default="",
        help="comma-separated simulate options: propagate (A2LC automatic correction)",
    )
    ap.add_argument("--propagate-threshold", type=float, default=0.99)
    ap.add_argument("--sam-model-type", default="vit_h", help="SAM for --model sam_head")
    ap.add_argument("--sam-checkpoint", default=None, help="SAM checkpoint file (sam_head)")
    ap.add_argument(
        "--random-sam-weights",
        action="store_true",
        help="sam_head on a randomly initialised SAM (no checkpoint): timings only, the "
        "table says so",
    )
    ap.add_argument(
        "--synthetic-embeddings",
        action="store_true",
        help="sam_head: fill the embeddings cache with seeded Gaussian noise of SAM's shape "
        "instead of running the encoder (a CPU takes ~30 s per image with ViT-B): times the "
        "head's training and the ranking only; the table says so",
    )
    ap.add_argument("--plot", default=None, help="PNG path for mIoU-per-click curves")
    ap.add_argument(
        "--replot", metavar="TABLE.md", help="only re-plot a table printed before (needs --plot)"
    )
    args = ap.parse_args(argv)
    if args.replot:
        plot_grid(curves_from_table(Path(args.replot).read_text()), args.plot or "plot.png")
        return 0
    if not DATA.is_dir():
        print(f"no data folder at {DATA}", file=sys.stderr)
        return 1

    import json

    import alc_fiftyone as alc
    from alc_fiftyone.progress import TqdmProgress

    model_kwargs = json.loads(args.model_kwargs)
    if args.fine:
        model_kwargs["granularity"] = "fine"
    if args.model == "sam_head":
        model_kwargs.setdefault("model_type", args.sam_model_type)
        if args.random_sam_weights:
            model_kwargs["random_weights"] = True
        elif args.sam_checkpoint:
            model_kwargs["checkpoint"] = args.sam_checkpoint
    options = [o for o in args.options.split(",") if o]
    unknown = set(options) - {"propagate"}
    if unknown:
        ap.error(f"unknown --options {sorted(unknown)}")
    extra = {}
    if "propagate" in options:
        extra = {"propagate": True, "propagate_threshold": args.propagate_threshold}
    tag = "+".join(
        [
            *(
                [
                    f"sam_head {model_kwargs['model_type']}"
                    + (" RANDOM weights" if model_kwargs.get("random_weights") else "")
                    + (" SYNTHETIC embeddings" if args.synthetic_embeddings else "")
                ]
                if args.model == "sam_head"
                else [args.model]
                if args.model != "features"
                else []
            ),
            *(["fine"] if model_kwargs.get("granularity") == "fine" else []),
            *([model_kwargs["calibrate"]] if model_kwargs.get("calibrate") else []),
            *options,
        ]
    )

    sp_params = {
        "felzenszwalb": {"scale": 400, "sigma": 0.8, "min_size": 100},
        "slic": {"n_segments": 200, "compactness": 10},
    }
    lines = []
    curves = []
    header = (
        "| dataset | superpixels | method | "
        + " | ".join(["init"] + [f"r{r}" for r in range(1, args.rounds + 1)])
        + " | clicks | auto px | s/round | rank s/round |"
    )
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for key in args.datasets.split(","):
        ds = load(alc, key, args.limit or None)
        model = args.model
        try:
            if args.model == "sam_head" or args.model.startswith("backbone:"):
                # one model instance (one SAM in memory) for every method; features once
                from alc_fiftyone.models.registry import get_model

                model = get_model(args.model, **model_kwargs)
                t0 = time.perf_counter()
                if args.synthetic_embeddings:
                    fill_synthetic_embeddings(ds, model.embedder.sam, args.seed)
                model.embedder.prepare(ds, progress=TqdmProgress(file=sys.stderr, mininterval=30))
                print(
                    f"{key}: {args.model} features of {len(ds)} images "
                    f"({model.embedder.describe()}) in {time.perf_counter() - t0:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
            noise = alc.corrupt_labels(
                ds, "ground_truth", "noisy", rate=args.noise_rate, seed=args.noise_seed
            )
            for spm in args.superpixels.split(","):
                field = f"sp_{spm}"
                sp = alc.compute_superpixels(ds, method=spm, field=field, **sp_params[spm])
                for method in args.methods.split(","):
                    t0 = time.perf_counter()
                    res = alc.simulate(
                        ds,
                        "noisy",
                        "ground_truth",
                        rounds=args.rounds,
                        budget_per_round=args.budget,
                        method=method,
                        seed=args.seed,
                        model=model,
                        model_kwargs=model_kwargs if isinstance(model, str) else None,
                        superpixel_field=field,
                        **extra,
                    )
                    secs = (time.perf_counter() - t0) / args.rounds
                    rank_secs = sum(r.get("seconds_rank", 0.0) for r in res.rows) / args.rounds
                    auto = sum(r.get("auto_pixels", 0) for r in res.rows)
                    cells = " | ".join(f"{100 * m:.2f}" for m in res.mious)
                    name = method + (f" ({tag})" if tag else "")
                    lines.append(
                        f"| {key} ({len(ds)} img, noise {100 * noise['error_rate']:.1f}%) | "
                        f"{spm} (~{sp['mean_superpixels']:.0f}/img) | {name} | {cells} | "
                        f"{res.rows[-1]['total_clicks']} | {auto} | {secs:.1f} | "
                        f"{rank_secs:.1f} |"
                    )
                    print(lines[-1], file=sys.stderr, flush=True)
                    curves.append(
                        (
                            f"{key}, {spm}",
                            name,
                            [r["total_clicks"] for r in res.rows],
                            [100 * m for m in res.mious],
                        )
                    )
        finally:
            ds.delete()
    print("\n".join(lines))
    if args.plot:
        plot_grid(curves, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
