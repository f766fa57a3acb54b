"""Server time of the review panel from an answer to the next query rendered.

Builds a generated dataset (``make_demo_dataset``, default 5,000 images of 64x48), computes
SLIC superpixels and ranks them (``--budget`` queries, default 2,000), then answers queries
through the panel's own callbacks, run by FiftyOne's ExecutionContext as the App runs them:
each timing covers the answer written to the database (new revised mask + query update), the
claim of the next query, its PNG picture, the progress counts and the panel layout. The same
steps are then timed one by one through the SDK. Prints one table (milliseconds).
``--reviewers 2``: as many tabs of one App server (one panel, its state shared as the App shares
it, each tab its own reviewer) answer at the same time, each in its own thread as the App
server runs concurrent events; the table then has a row per reviewer and one for all, and
the run checks that no query was served to two of them and every answer carries its tab's name.

    python benchmarks/panel_latency.py [--samples 5000] [--budget 2000] [--answers 100] [--check]
    python benchmarks/panel_latency.py --reviewers 2          # two reviewers at once
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
import threading
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
    """Runs one panel callback as the App does for one tab: the card's identity (tab id,
    name, query on screen) sent with every event, the panel data the tab's own, the panel
    state the App session's (``state``: shared by the tabs of one App)."""

    def __init__(self, panel, dataset, panel_id: str, reviewer: str, state=None):
        self.panel, self.dataset, self.panel_id = panel, dataset, panel_id
        self.state = state if state is not None else {}
        self.tab, self.name, self.req = f"tab-{uuid.uuid4().hex[:8]}", reviewer, 0
        self.card: dict = {}

    @property
    def query(self):
        return self.card.get("query")

    def __call__(self, method: str, **params):
        from fiftyone.operators.executor import ExecutionContext, Executor

        q = self.query
        self.req += 1
        card = {
            "tab": self.tab,
            "reviewer": self.name,
            "shown": {"id": q["id"], "sample_id": q["sample_id"]} if q else None,
            "view_key": self.card.get("view_key"),
            "req": self.req,
        }
        req = {
            "dataset_name": self.dataset.name,
            "params": {
                "panel_id": self.panel_id,
                "panel_state": self.state,
                "card": card,
                **params,
            },
        }
        executor = Executor()
        ctx = ExecutionContext(request_params=req, executor=executor)
        getattr(self.panel, method)(ctx)
        self.panel.render(ctx).to_json()
        for r in executor._requests:
            r = r.to_json()
            if r["operator_uri"] == "patch_panel_data":
                for key, value in r["params"]["data"].items():
                    if key.startswith("review."):
                        self.card[key[len("review.") :]] = value
        return ctx


def answer_loop(call, classes, n: int, out: list, served: list) -> None:
    """``n`` answers through one tab's panel, as the card sends them (yes, or another class
    every other time); each time from the answer to the next query shown goes to ``out``."""
    for i in range(n):
        q = call.query
        if q is None:
            break
        served.append((q["id"], call.name))
        label = next(c for c in classes if c != q["label"]) if i % 2 else q["label"]
        t = time.perf_counter()
        call("answer", query_id=q["id"], label=label, asked=q["label"])
        out.append((time.perf_counter() - t) * 1000)
        message = call.card.get("message") or ""
        if not message.startswith("Saved"):
            raise RuntimeError(f"{call.name}: answer not saved: {message}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--size", default="64x48", help="image size WxH")
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--answers", type=int, default=100)
    ap.add_argument("--check", action="store_true")
    ap.add_argument(
        "--reviewers",
        type=int,
        default=1,
        help="tabs of one App server answering at the same time (each its own thread)",
    )
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
        shared: dict = {}  # the panel state, as the App shares it between its tabs
        names = ["bench"] if args.reviewers == 1 else [f"r{i + 1}" for i in range(args.reviewers)]
        calls = [PanelCall(panel, ds, "bench-panel", n, shared) for n in names]
        for call in calls:
            call("on_load")  # warm up: imports
            call("refresh", why="start")  # the card appears: its first claim
        per_reviewer = {n: [] for n in names}
        served: list = []
        threads = [
            threading.Thread(
                target=answer_loop,
                args=(c, classes, args.answers, per_reviewer[c.name], served),
            )
            for c in calls
        ]
        t_answers = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_answers = time.perf_counter() - t_answers
        panel_ms = [x for n in names for x in per_reviewer[n]]
        if len(calls) > 1:
            ids = [i for i, _ in served]
            dets = {d.id: d for d in ds.values("alc_queries.detections", unwind=True)}
            wrong = [(i, n) for i, n in served if dets[i].answered_by != n]
            if len(set(ids)) != len(ids) or wrong or len(panel_ms) != len(ids):
                raise RuntimeError(
                    f"reviewers collided: {len(ids) - len(set(ids))} queries served twice, "
                    f"{len(wrong)} answers under another name"
                )

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
    if len(names) > 1:
        print(
            f"{len(names)} reviewers (tabs of one App) at once, one thread each: "
            f"{len(panel_ms)} answers in {t_answers:.1f} s ({len(panel_ms) / t_answers:.1f}/s), "
            "no query served twice, every answer under its tab's name"
        )
    print(f"{'step (ms)':<34} {'n':>5} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}")
    rows = [("panel: answer -> next query shown", panel_ms)]
    if len(names) > 1:
        rows += [(f"  reviewer {n}", per_reviewer[n]) for n in names]
    rows += [(f"  sdk: {k}", v) for k, v in steps.items()]
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
