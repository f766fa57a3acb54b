"""Server time of the review panel from an answer to the next query rendered.

Builds a generated dataset (``make_demo_dataset``, default 5,000 images of 64x48), computes
SLIC superpixels and ranks them (``--budget`` queries, default 2,000), then answers queries
through the panel's own callbacks, run by FiftyOne's ExecutionContext as the App runs them:
each timing covers the answer written to the database (new revised mask + query update), the
claim of the next query, its PNG picture, the progress counts and the panel layout. The same
steps are then timed one by one through the SDK. Prints one table (milliseconds).

    python benchmarks/panel_latency.py [--samples 5000] [--budget 2000] [--answers 100] [--check]
    python benchmarks/panel_latency.py --samples 50000 --pool 200 --ranked-subset 5000 \
        --budget 16000                     # 50k samples, fast generation, 5k of them ranked
    python benchmarks/panel_latency.py --dataset NAME   # an existing dataset (ranked if not)

Uses FIFTYONE_DATABASE_URI when set, else a private mongod started as the tests start theirs.
``--check`` exits with status 1 when the p95 of the panel's answer-to-next-query time is
300 ms or more.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
if not os.environ.get("FIFTYONE_DATABASE_URI"):
    sys.path.insert(0, str(REPO / "tests"))
    import conftest  # noqa: F401 (starts a private mongod, stopped at exit)

TARGET_P95_MS = 300.0


def percentile(values, q: float) -> float:
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class PanelCall:
    """Runs one panel callback as the App does (state carried between calls)."""

    def __init__(self, panel, dataset, panel_id: str, reviewer: str):
        self.panel, self.dataset, self.panel_id = panel, dataset, panel_id
        self.state = {"reviewer": reviewer}

    def __call__(self, method: str, **params):
        from fiftyone.operators.executor import ExecutionContext, Executor

        req = {
            "dataset_name": self.dataset.name,
            "params": {"panel_id": self.panel_id, "panel_state": self.state, **params},
        }
        ctx = ExecutionContext(request_params=req, executor=Executor())
        getattr(self.panel, method)(ctx)
        self.panel.render(ctx).to_json()
        return ctx


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--size", default="64x48", help="image size WxH")
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--answers", type=int, default=100)
    ap.add_argument("--check", action="store_true")
    ap.add_argument(
        "--dataset",
        help="use this existing dataset (e.g. one kept by scale.py --keep) instead of "
        "generating one; ranked here if it has no queries yet; answered into, not deleted",
    )
    ap.add_argument(
        "--pool",
        type=int,
        help="generate with scale.py's fast generator (this many distinct demo samples, the "
        "rest transformed copies) instead of make_demo_dataset",
    )
    ap.add_argument(
        "--ranked-subset",
        type=int,
        help="compute superpixels and rank only the first K samples (the others get copies "
        "of their superpixel fields, so every document has its full size): the whole "
        "dataset is served and counted, but only K samples hold queries",
    )
    ap.add_argument(
        "--cache-seconds",
        type=float,
        help="the panel's cache lifetime (panels.review.CACHE_SECONDS, default 60 s): a small "
        "value makes the panel refill its queue and counts often (their worst case)",
    )
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    os.environ.setdefault("ALC_FIFTYONE_DIR", tempfile.mkdtemp(prefix="alc-bench-"))
    import fiftyone as fo

    import alc_fiftyone as alc
    import panels.review
    from alc_fiftyone.review.queries import get_query
    from panels.review import ReviewPanel

    if args.cache_seconds is not None:
        panels.review.CACHE_SECONDS = args.cache_seconds
    cache_s = panels.review.CACHE_SECONDS

    t0 = time.perf_counter()
    if args.dataset:
        ds = fo.load_dataset(args.dataset)
        width, height = ds.first().metadata.width, ds.first().metadata.height
    elif args.pool:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from _generated import generate

        name = f"alc-bench-panel-{uuid.uuid4().hex[:8]}"
        generate(name, args.samples, (width, height), args.pool)
        ds = fo.load_dataset(name)
    else:
        name = f"alc-bench-panel-{uuid.uuid4().hex[:8]}"
        ds = alc.make_demo_dataset(
            name=name, num_samples=args.samples, size=(width, height), seed=0
        )
    t_make = time.perf_counter() - t0
    label_field = ds.info["alc"]["label_field"]
    args.samples = len(ds)
    t_sp = t_rank = float("nan")
    try:
        rounds = ds.info["alc"].get("rounds") or []
        if rounds:
            args.budget = rounds[-1]["num_queries"]
        else:
            k = min(args.ranked_subset or len(ds), len(ds))
            work = ds.limit(k) if k < len(ds) else ds
            t0 = time.perf_counter()
            alc.compute_superpixels(work, method="slic", n_segments=20)
            if k < len(ds):
                done = work.values("alc_superpixels")
                rest = ds.skip(k).values("id")
                copies = {sid: done[i % k].copy() for i, sid in enumerate(rest)}
                ds.set_values("alc_superpixels", copies, key_field="id")
            t_sp = time.perf_counter() - t0
            t0 = time.perf_counter()
            alc.rank_superpixels(work, label_field, budget=args.budget)
            t_rank = time.perf_counter() - t0
        classes = [n for v, n in ds.mask_targets[label_field].items() if v != 255]

        panel = ReviewPanel()
        call = PanelCall(panel, ds, "bench-panel", "bench")
        call("on_load")  # warm up: imports, first claim
        panel_ms = []
        for i in range(args.answers):
            q = call.state.get("query")
            if q is None:
                break
            t = time.perf_counter()
            # what the card sends: the query on screen and the class (yes, or another one)
            label = next(c for c in classes if c != q["label"]) if i % 2 else q["label"]
            call("answer", query_id=q["id"], label=label)
            panel_ms.append((time.perf_counter() - t) * 1000)

        # the same steps one by one, through the SDK: uncached (what the panel pays when its
        # cache is refilled) and cached as the panel calls them
        steps: dict[str, list[float]] = {
            "answer": [],
            "claim next (uncached)": [],
            "claim next (cached)": [],
            "render PNG": [],
            "progress (uncached)": [],
            "progress (cached)": [],
        }
        alc.review_progress(ds, user="sdk", max_age=cache_s)  # fill the counts once
        q = alc.next_query(ds, "sdk")
        for i in range(args.answers):
            if q is None:
                break
            t = time.perf_counter()
            alc.answer(ds, q["id"], None, user="sdk")
            t1 = time.perf_counter()
            q = alc.next_query(ds, "sdk", max_age=cache_s if i % 2 else 0)
            t2 = time.perf_counter()
            if q is None:
                break
            sample, det = get_query(ds, q["id"], sample_id=q["sample_id"])
            alc.render_query(  # as the panel draws it (its frame, no legend strip)
                sample,
                det,
                display_size=panels.review.PICTURE_SIZE,
                aspect=panels.review.FRAME_ASPECT,
                legend=False,
            )
            t3 = time.perf_counter()
            alc.review_progress(ds, user="sdk")
            t4 = time.perf_counter()
            alc.review_progress(ds, user="sdk", max_age=cache_s)
            t5 = time.perf_counter()
            steps["answer"].append((t1 - t) * 1000)
            steps["claim next (cached)" if i % 2 else "claim next (uncached)"].append(
                (t2 - t1) * 1000
            )
            steps["render PNG"].append((t3 - t2) * 1000)
            steps["progress (uncached)"].append((t4 - t3) * 1000)
            steps["progress (cached)"].append((t5 - t4) * 1000)
    finally:
        if not args.dataset:
            ds.delete()

    ranked = f" on the first {args.ranked_subset}" if args.ranked_subset else ""
    print(
        f"dataset: {args.samples} images {width}x{height}, {args.budget} queries{ranked} "
        f"(make {t_make:.0f} s, superpixels {t_sp:.0f} s, rank {t_rank:.0f} s); "
        f"panel cache {cache_s:g} s"
    )
    print(f"{'step (ms)':<34} {'n':>5} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}")
    rows = [("panel: answer -> next query shown", panel_ms)] + [
        (f"  sdk: {k}", v) for k, v in steps.items()
    ]
    for label, xs in rows:
        print(
            f"{label:<34} {len(xs):>5} {statistics.median(xs) if xs else float('nan'):>8.1f} "
            f"{percentile(xs, 0.95):>8.1f} {percentile(xs, 0.99):>8.1f} "
            f"{max(xs) if xs else float('nan'):>8.1f}"
        )
    p95 = percentile(panel_ms, 0.95)
    ok = p95 < TARGET_P95_MS
    print(f"target p95 < {TARGET_P95_MS:.0f} ms: {'met' if ok else 'NOT met'} ({p95:.1f} ms)")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
