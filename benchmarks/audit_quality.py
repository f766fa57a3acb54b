"""Audit quality: does the error estimate of ``alc.audit`` hold the truth?

For each dataset of ../shared/data (CamVid val, Weizmann horses; the first ``--limit`` images
by name), each ``corrupt_labels`` rate and noise seed: label-aware regions (the library's
default hierarchy) on the corrupted labels, ``alc.simulate`` for ``--rounds`` rounds with
``estimate_share`` of each round's budget drawn at random, then ``alc.audit`` on the
simulation's fields. The truth is what the majority oracle would change on every region of
the last round's frame that is still unanswered (``steps.simulation.remaining_errors``).
``--auxiliary pixels,score`` (the default) estimates with each of ``alc.audit``'s auxiliaries
from the same simulation.

    .venv/bin/python benchmarks/audit_quality.py --limit 20

``--cost`` measures instead what the random share costs: data mIoU after ``--rounds`` rounds
(5 for that) with ``estimate_share`` 0 and ``--share``, at equal clicks.

    .venv/bin/python benchmarks/audit_quality.py --limit 20 --cost --rounds 5 --rates 0.3

Prints one markdown table: the estimate of the pixels still wrong (share of the labelled
pixels) with its 95% interval, the truth, whether the interval holds it, and the interval's
width over the estimate. Uses FIFTYONE_DATABASE_URI when set, else FiftyOne's own database.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# the datasets of ../shared/data and their loading are label_quality.py's
sys.path.insert(0, str(REPO / "benchmarks"))
from label_quality import DATA, load


def run_one(alc, ds, rate: float, seed: int, args) -> dict:
    """One simulation with random queries, its audit and the truth."""
    from alc_fiftyone.steps.simulation import remaining_errors

    alc.corrupt_labels(ds, "ground_truth", "noisy", rate=rate, seed=seed)
    alc.compute_superpixels(ds, label_field="noisy", overwrite=True)
    t0 = time.perf_counter()
    alc.simulate(
        ds,
        "noisy",
        "ground_truth",
        rounds=args.rounds,
        budget_per_round=args.budget,
        estimate_share=args.share,
        model="features",
        seed=seed,
    )
    seconds = time.perf_counter() - t0
    truth = remaining_errors(ds, "ground_truth", "alc_sim_queries")
    out = {}
    for aux in args.auxiliary.split(","):
        report = alc.audit(ds, "noisy", queries_field="alc_sim_queries", auxiliary=aux)
        out[aux] = {
            "estimate": report.error_rate["pixels"],
            "truth": truth["pixels"] / report.sample["labelled_pixels"],
            "random": report.counts["estimate_answered"],
            "frame": report.sample["frame_regions"],
            "seconds": seconds,
        }
    return out


def cost(alc, ds, key: str, rate: float, seed: int, args) -> str:
    """Data mIoU after each round with and without the random share, at equal clicks."""
    alc.corrupt_labels(ds, "ground_truth", "noisy", rate=rate, seed=seed)
    alc.compute_superpixels(ds, label_field="noisy", overwrite=True)
    mious = {}
    for share in (0.0, args.share):
        res = alc.simulate(
            ds,
            "noisy",
            "ground_truth",
            rounds=args.rounds,
            budget_per_round=args.budget,
            estimate_share=share,
            model="features",
            seed=seed,
        )
        mious[share] = [100 * m for m in res.mious]
    a, b = mious[0.0], mious[args.share]
    cells = " | ".join(f"{x:.2f} / {y:.2f}" for x, y in zip(a[1:], b[1:]))
    return f"| {key} | {rate} | {seed} | {a[0]:.2f} | {cells} | {b[-1] - a[-1]:+.2f} |"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="camvid,horse")
    ap.add_argument("--rates", default="0.05,0.3")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--budget",
        type=lambda t: float(t) if "." in t else int(t),
        default=100,
        help="queries per round: a count, or a fraction of the top regions (as simulate)",
    )
    ap.add_argument("--share", type=float, default=0.3, help="estimate_share")
    ap.add_argument("--limit", type=int, default=20, help="images per dataset")
    ap.add_argument("--cost", action="store_true", help="mIoU with and without the share")
    ap.add_argument(
        "--auxiliary",
        default="pixels,score",
        help="alc.audit's auxiliary: each one estimated from the same simulation",
    )
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"no data folder at {DATA}", file=sys.stderr)
        return 1

    import alc_fiftyone as alc

    print(
        f"{args.limit} images per dataset, {args.rounds} rounds, budget {args.budget} per "
        f"round, estimate_share {args.share}"
    )
    if args.cost:
        rounds = " | ".join(f"r{r} (0 / {args.share})" for r in range(1, args.rounds + 1))
        lines = [
            f"| dataset | rate | seed | init | {rounds} | cost after r{args.rounds} |",
            "|---|---|---|---|" + "---|" * args.rounds + "---|",
        ]
        for key in args.datasets.split(","):
            ds = load(alc, key, args.limit)
            try:
                for rate in (float(r) for r in args.rates.split(",")):
                    for seed in (int(s) for s in args.seeds.split(",")):
                        lines.append(cost(alc, ds, key, rate, seed, args))
                        print(lines[-1], flush=True)
            finally:
                ds.delete()
        print()
        print("\n".join(lines))
        return 0
    lines = [
        (
            "| dataset | rate | seed | auxiliary | estimate (low-high) | truth | covered? | "
            "width/estimate | random queries / frame regions | s |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in args.datasets.split(","):
        ds = load(alc, key, args.limit)
        try:
            for rate in (float(r) for r in args.rates.split(",")):
                for seed in (int(s) for s in args.seeds.split(",")):
                    for aux, r in run_one(alc, ds, rate, seed, args).items():
                        e, lo, hi = r["estimate"]
                        covered = lo <= r["truth"] <= hi
                        width = (hi - lo) / e if e > 0 else float("inf")
                        lines.append(
                            f"| {key} | {rate} | {seed} | {aux} | {100 * e:.2f}% ({100 * lo:.2f}-"
                            f"{100 * hi:.2f}%) | {100 * r['truth']:.2f}% | "
                            f"{'yes' if covered else 'no'} | {width:.2f} | {r['random']} / "
                            f"{r['frame']} | {r['seconds']:.0f} |"
                        )
                        print(lines[-1], flush=True)
        finally:
            ds.delete()
    print()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
