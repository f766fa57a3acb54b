"""Label quality per click: the correction loop on real data, region designs compared at an
equal number of clicks, with the oracle ceiling of each.

For each dataset of ../shared/data (CamVid val, 11 classes; Weizmann horses, 2 classes; the
first ``--limit`` images by name) and each kind of labels under review:

- ``corrupt``: the ground truth corrupted by ``alc.corrupt_labels`` (object-level class swaps,
  missed objects, boundary shifts, spurious blobs) at ``--noise-rate``, one row set per
  ``--noise-seeds`` value;
- ``weak``: the predictions of a weak segmenter trained on the other half of the same dataset
  (the ``features`` model on SLIC regions, fitted on the ground truth of the first half of the
  images to predict the second half, and the other way round: every image is labelled by a
  model that never saw it);

``alc.simulate`` runs ``--rounds`` rounds with each region design (``--regions``: SLIC,
Felzenszwalb, and label-aware regions that follow the labels under review, cut by either) and
each method (``--methods``; ``oracle`` is the ceiling: each round ranked by the pixels one
oracle answer would fix), with the majority oracle answering. Every design gets the same
number of clicks per round: ``--clicks``, by default 2% of the SLIC regions of that dataset
(printed). ``--extra`` adds, on label-aware Felzenszwalb regions, ``sim`` with A2LC's
automatic propagation (``propagate``) and a peer ranking (``cleanlab``: cleanlab's
``segmentation.filter.find_label_issues`` on the same out-of-fold probabilities, its flagged
pixels summed per region; needs ``pip install cleanlab``, a benchmark-only extra).

    .venv/bin/python benchmarks/label_quality.py                      # the full table
    .venv/bin/python benchmarks/label_quality.py --datasets camvid --labels corrupt \\
        --regions label_aware --methods sim,oracle --extra ""

Prints one markdown table: data mIoU (%) after each round, the clicks per round, the gap to
that design's oracle after the last round, and seconds per round. Uses FIFTYONE_DATABASE_URI
when set, else FiftyOne's own database service.
"""

from __future__ import annotations

import argparse
import json
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
# the region designs: (compute_superpixels method, parameters)
SLIC = {"n_segments": 200, "compactness": 10}
FELZENSZWALB = {"scale": 400, "sigma": 0.8, "min_size": 100}
REGIONS = {
    "slic": ("slic", SLIC),
    "felzenszwalb": ("felzenszwalb", FELZENSZWALB),
    # label-aware regions, one level (the default of the previous release)
    "label_aware": ("label_aware", {"base": "felzenszwalb", "levels": 1}),
    "label_aware_slic": ("label_aware", {"base": "slic", "levels": 1, **SLIC}),
    # the hierarchy (the library's default: label-aware regions and a finer level nested in
    # them), ranked over both levels; "coarse" and "fine" rank one of its levels alone
    "hierarchy": ("label_aware", {"base": "felzenszwalb"}),
    "coarse": ("label_aware", {"base": "felzenszwalb"}),
    "fine": ("label_aware", {"base": "felzenszwalb"}),
}
DESIGN_NAMES = {
    "coarse": "coarse level of the hierarchy",
    "fine": "fine level of the hierarchy",
    "hierarchy": "hierarchy (both levels, the default)",
}
# the weak segmenter: the features model on finer SLIC regions, 2 folds of contiguous halves
WEAK_REGIONS = {"n_segments": 400, "compactness": 20}


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
        spec["follow_links"] = True  # our own folder of links to the shared data
    name = f"bench-{key}-{uuid.uuid4().hex[:6]}"
    return alc.load_image_masks(images, masks, name=name, **spec)


def weak_labels(alc, ds, out_field: str, seed: int) -> None:
    """Labels from a weak segmenter that never saw the image (see the module docstring)."""
    import fiftyone as fo
    import numpy as np

    from alc_fiftyone.models.base import FitContext
    from alc_fiftyone.store.fields import class_table, read_current_labels
    from alc_fiftyone.store.files import read_segmentation, write_mask

    alc.compute_superpixels(ds, method="slic", field="sp_weak", **WEAK_REGIONS)
    _, ignore, num_classes = class_table(ds, "ground_truth")
    model = alc.FeatureModel(n_folds=2, fold_by="blocks", seed=seed)
    model.fit(
        FitContext(
            ds,
            lambda s: read_current_labels(s, "ground_truth", None),
            "sp_weak",
            num_classes,
            ignore,
        )
    )
    values = {}
    for s in ds.iter_samples():
        sp = read_segmentation(s, "sp_weak")
        pred = model.predict(s, sp).argmax(axis=0).astype(np.uint8)
        values[s.id] = fo.Segmentation(mask_path=write_mask(pred, ds, out_field, s.id))
    ds.set_values(out_field, values, key_field="id")
    ds.mask_targets = {**ds.mask_targets, out_field: ds.mask_targets["ground_truth"]}


def cleanlab_scorer():
    """A :class:`~alc_fiftyone.steps.ranking.Scorer` ranking the regions by cleanlab's
    per-pixel label issues (confident learning on the same out-of-fold probabilities, over
    all images of the round at once), summed per region. ImportError without cleanlab."""
    import numpy as np
    from cleanlab.segmentation.filter import find_label_issues

    from alc_fiftyone.steps.ranking import Scorer

    class CleanlabScorer(Scorer):
        name = "cleanlab"

        def start(self, context) -> None:
            ids, labels, probs = [], [], []
            for s in context.samples.iter_samples():
                p = context.probabilities(s)
                lab = context.read_labels(s).astype(np.int64)
                if context.ignore_index is not None:  # cleanlab needs a class everywhere
                    lab = np.where(lab == context.ignore_index, p.argmax(axis=0), lab)
                ids.append(s.id)
                labels.append(lab)
                probs.append(p)
            if len({x.shape for x in labels}) == 1:
                flags = find_label_issues(
                    np.stack(labels), np.stack(probs), n_jobs=1, verbose=False
                )
            else:  # images of different sizes: one call each
                flags = [
                    find_label_issues(lab[None], p[None], n_jobs=1, verbose=False)[0]
                    for lab, p in zip(labels, probs)
                ]
            self.flagged = dict(zip(ids, flags))

        def __call__(self, sample, probs, superpixels, labels, res):
            flags = self.flagged[sample.id]
            sums = np.bincount(
                superpixels.ravel().astype(np.int64),
                weights=flags.ravel(),
                minlength=int(res.ids.max()) + 1,
            )
            return sums[res.ids]

    return CleanlabScorer()


def regions_per_image(ds, field: str) -> float:
    counts = [n for n in ds.values(f"{field}.num_superpixels") if n is not None]
    return sum(counts) / max(len(counts), 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="camvid,horse")
    ap.add_argument("--labels", default="corrupt,weak", help="corrupt and/or weak")
    ap.add_argument("--noise-seeds", default="0", help="noise seeds of the corrupt labels")
    ap.add_argument("--noise-rate", type=float, default=0.3)
    ap.add_argument("--regions", default=",".join(REGIONS))
    ap.add_argument("--methods", default="random,cil_mean,sim,oracle")
    ap.add_argument("--extra", default="propagate,cleanlab", help="rows on label-aware regions")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--clicks", type=int, default=0, help="clicks per round (0: 2%% of the SLIC regions)"
    )
    ap.add_argument("--limit", type=int, default=100, help="images per dataset (0 = all)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the model and the ranking")
    ap.add_argument("--min-area", type=int, default=None, help="label-aware min_area")
    ap.add_argument("--json", default=None, help="also write every row as JSON lines here")
    ap.add_argument("--plot", default=None, help="a PNG of data mIoU against clicks")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"no data folder at {DATA}", file=sys.stderr)
        return 1

    import alc_fiftyone as alc

    methods = [m for m in args.methods.split(",") if m]
    extra = [e for e in args.extra.split(",") if e]
    header = (
        "| dataset | labels | regions (per image) | method | "
        + " | ".join(["init"] + [f"r{r}" for r in range(1, args.rounds + 1)])
        + " | clicks/round | oracle - this | s/round |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    out = open(args.json, "a") if args.json else None  # noqa: SIM115 (open for the whole run)

    def row(key, kind, design, per_image, name, res, clicks, ceiling, secs):
        cells = " | ".join(f"{100 * m:.2f}" for m in res.mious)
        gap = "" if ceiling is None else f"{100 * (ceiling - res.mious[-1]):.1f}"
        lines.append(
            f"| {key} | {kind} | {design} ({per_image:.0f}) | {name} | {cells} | {clicks} | "
            f"{gap} | {secs:.1f} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
        if out is not None:
            out.write(
                json.dumps(
                    {
                        "dataset": key,
                        "labels": kind,
                        "regions": design,
                        "per_image": per_image,
                        "method": name,
                        "miou": res.mious,
                        "clicks": clicks,
                        "rows": res.rows,
                    },
                    default=str,
                )
                + "\n"
            )
            out.flush()

    for key in args.datasets.split(","):
        ds = load(alc, key, args.limit or None)
        try:
            alc.compute_superpixels(ds, method="slic", field="sp_count", **SLIC)
            clicks = args.clicks or round(0.02 * sum(ds.values("sp_count.num_superpixels")))
            print(f"{key}: {len(ds)} images, {clicks} clicks per round", file=sys.stderr)
            kinds = []
            for kind in args.labels.split(","):
                if kind == "corrupt":
                    for ns in args.noise_seeds.split(","):
                        field = f"noisy{ns}"
                        alc.corrupt_labels(
                            ds, "ground_truth", field, rate=args.noise_rate, seed=int(ns)
                        )
                        kinds.append((f"corrupt (seed {ns})", field))
                elif kind == "weak":
                    weak_labels(alc, ds, "weak", args.seed)
                    kinds.append(("weak segmenter", "weak"))
                else:
                    ap.error(f"unknown --labels {kind!r}")
            for kind, label_field in kinds:
                for design in args.regions.split(","):
                    method, params = REGIONS[design]
                    params = dict(params)
                    if method == "label_aware":
                        params["label_field"] = label_field
                        if args.min_area is not None:
                            params["min_area"] = args.min_area
                    field = f"sp_{'hierarchy' if design in DESIGN_NAMES else design}_{label_field}"
                    alc.compute_superpixels(ds, method=method, field=field, **params)
                    sim_kw = {}
                    if design == "coarse":
                        sim_kw["levels"] = 1
                    elif design == "fine":
                        field, sim_kw["levels"] = f"{field}_level1", 1
                    per_image = regions_per_image(ds, field)
                    if design == "hierarchy":
                        per_image += regions_per_image(ds, f"{field}_level1")
                    names = list(methods)
                    if design == "label_aware":
                        names += [e for e in extra if e in ("propagate", "cleanlab")]
                    done = {}
                    for name in sorted(names, key=lambda n: n != "oracle"):  # ceiling first
                        kw = {}
                        if name == "propagate":
                            kw = {"method": "sim", "propagate": True}
                        elif name == "cleanlab":
                            try:
                                kw = {"method": cleanlab_scorer()}
                            except ImportError:
                                print("cleanlab is not installed: row left out", file=sys.stderr)
                                continue
                        else:
                            kw = {"method": name}
                        t0 = time.perf_counter()
                        res = alc.simulate(
                            ds,
                            label_field,
                            "ground_truth",
                            rounds=args.rounds,
                            budget_per_round=clicks,
                            seed=args.seed,
                            superpixel_field=field,
                            **sim_kw,
                            **kw,
                        )
                        secs = (time.perf_counter() - t0) / args.rounds
                        done[name] = res.mious[-1]
                        label = "sim + propagation" if name == "propagate" else name
                        row(
                            key,
                            kind,
                            DESIGN_NAMES.get(design, design),
                            per_image,
                            label,
                            res,
                            clicks,
                            done.get("oracle"),
                            secs,
                        )
        finally:
            ds.delete()
    print("\n".join(lines))
    if args.plot and out is not None:
        out.close()
        plot(args.json, args.plot)
    return 0


def plot(json_path: str, png: str) -> None:
    """Data mIoU against clicks, one panel per dataset and labels, a line per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(json_path) as fh:
        rows = [json.loads(line) for line in fh]
    panels = sorted({(r["dataset"], r["labels"]) for r in rows})
    cols = min(len(panels), 2)
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6.2 * cols, 4.6 * nrows), squeeze=False)
    # one colour per line of the legend, the same in every panel; the oracle dashed
    names = sorted({(r["regions"], r["method"]) for r in rows})
    palette = plt.get_cmap("tab10").colors
    color = {n: palette[i % len(palette)] for i, n in enumerate(names)}
    for ax, (key, kind) in zip(axes.ravel(), panels):
        for r in rows:
            if (r["dataset"], r["labels"]) != (key, kind):
                continue
            x = [row["total_clicks"] for row in r["rows"]]
            y = [100 * m for m in r["miou"]]
            style = "--" if r["method"] == "oracle" else "-"
            ax.plot(
                x,
                y,
                style,
                marker=".",
                color=color[(r["regions"], r["method"])],
                label=f"{r['regions']}: {r['method']}",
            )
        ax.set_title(f"{key}, {kind}")
        ax.set_xlabel("clicks")
        ax.set_ylabel("data mIoU (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
