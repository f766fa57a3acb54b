"""Scale: samples per second and peak memory through superpixels, probabilities and ranking.

For each N of ``--sizes`` (default 1,000, 10,000 and 50,000) a dataset of N generated images
(``--size``, default 64x48) is built, then one process runs SLIC superpixels
(``alc.compute_superpixels``) and ``alc.rank_superpixels`` with the default ``features``
probability model and the default budget (2% of the superpixels). The rank step is split by
its progress reports into: features (per-superpixel features of every image), training (the
out-of-fold classifier), scoring (probabilities + acquisition of every image, global top-B)
and writing (the queries, in bulk). Prints one table: wall and CPU seconds (this process,
all its threads: on a shared machine the CPU time is the steadier figure), samples/s (wall)
and CPU seconds per 1,000 samples per stage, and the peak resident memory (RSS) of each stage
and of the whole process.

Each N runs in fresh processes, so peaks are per N: one process generates the dataset (its
memory is not counted), another runs the stages. Peak RSS per stage is sampled every 20 ms
(psutil) and the process peak is ``getrusage``'s ``ru_maxrss``.

Generation: ``alc.make_demo_dataset`` makes a pool of ``--pool`` distinct samples (its noise
model takes ~40 ms a sample, too slow for 50k); every further sample is a pool sample flipped,
cyclically shifted and with fresh pixel noise on the image, written as PNGs without fsync and
added with ``add_samples`` in batches of 1,000.

    python benchmarks/scale.py [--sizes 1000,10000,50000] [--size 64x48] [--mode single] [--keep]

Uses FIFTYONE_DATABASE_URI when set, else FiftyOne's own database. Files go under
ALC_FIFTYONE_DIR (a temporary folder unless set); datasets and files are deleted at the end.

Modes: a mode is a function ``(args, dataset name, N) -> list of stage rows`` in ``MODES``;
``single`` runs every stage in one process. ``--workers 1,2`` instead times the same shard
set run by 1, then 2 ``fiftyone delegated launch`` workers (``scale_workers.py``, which has
the details), for the first of ``--sizes``:

    python benchmarks/scale.py --workers 1,2 --sizes 2000 --shards 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
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


# --------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def maxrss_mib() -> float:
    """Peak RSS of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakSampler:
    """A thread sampling this process's RSS; ``mark()`` closes a stage and returns its peak."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self._peak = rss_mib()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            r = rss_mib()
            with self._lock:
                self._peak = max(self._peak, r)

    def mark(self) -> float:
        r = rss_mib()
        with self._lock:
            peak = max(self._peak, r)
            self._peak = r
        return peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Stages:
    """Stage timer: ``start(name)`` closes the previous stage (time and peak RSS)."""

    def __init__(self):
        self.sampler = PeakSampler()
        self.rows: list[dict] = []
        self._name: str | None = None
        self._t = self._cpu = 0.0

    def start(self, name: str | None) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if self._name is not None:
            self.rows.append(
                {
                    "stage": self._name,
                    "seconds": now - self._t,
                    "cpu_seconds": cpu - self._cpu,
                    "peak_mib": self.sampler.mark(),
                }
            )
        else:
            self.sampler.mark()
        self._name, self._t, self._cpu = name, now, cpu

    def finish(self) -> list[dict]:
        self.start(None)
        self.sampler.stop()
        return self.rows


# --------------------------------------------------------------------------------------------
# modes
# --------------------------------------------------------------------------------------------


def run_single(args, name: str, n: int) -> list[dict]:
    """Every stage in this process, one after the other."""
    import fiftyone as fo

    import alc_fiftyone as alc

    stages = Stages()
    stages.start("load dataset")
    ds = fo.load_dataset(name)
    label_field = ds.info["alc"]["label_field"]
    stages.start("superpixels (SLIC)")
    alc.compute_superpixels(ds, method="slic", n_segments=args.n_segments)

    current = {"desc": None}

    def progress(done: int, total: int, desc: str) -> None:
        # the rank step reports "features" (fit), then "ranking" (score); training lies between
        if desc != current["desc"]:
            current["desc"] = desc
            if desc == "features":
                stages.start("rank: features")
            elif desc == "ranking":
                stages.start("rank: score (P + acquisition)")
        if desc == "features" and done == total:
            stages.start("rank: training")
        elif desc == "ranking" and done == total:
            stages.start("rank: write queries")

    stages.start("rank: setup")
    record = alc.rank_superpixels(ds, label_field, progress=progress)
    rows = stages.finish()
    rows.append({"stage": "num_queries", "value": record["num_queries"]})
    rows.append({"stage": "num_superpixels", "value": record["num_superpixels"]})
    return rows


MODES = {"single": run_single}


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------


def child(args) -> int:
    """One phase for one N in this (fresh) process; prints a JSON line."""
    n = args.child_n
    if args.phase == "generate":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _generated import generate

        t = time.perf_counter()
        generate(args.name, n, args.wh, args.pool)
        out = {"seconds": time.perf_counter() - t, "peak_mib": maxrss_mib()}
    else:
        import fiftyone  # noqa: F401 (imports before the baseline)

        import alc_fiftyone  # noqa: F401

        base = rss_mib()
        rows = MODES[args.mode](args, args.name, n)
        out = {"rows": rows, "baseline_mib": base, "peak_mib": maxrss_mib()}
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def _spawn(args, phase: str, name: str, n: int, env: dict) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--phase",
        phase,
        "--child-n",
        str(n),
        "--name",
        name,
        "--size",
        args.size,
        "--pool",
        str(args.pool),
        "--n-segments",
        str(args.n_segments),
        "--mode",
        args.mode,
    ]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{phase} for N={n} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT ") :])


def _cleanup(name: str, env: dict) -> None:
    code = (
        "import fiftyone as fo, shutil, sys\n"
        "from alc_fiftyone.store import files as storage\n"
        f"name = {name!r}\n"
        "if fo.dataset_exists(name):\n"
        "    ds = fo.load_dataset(name)\n"
        "    folder = storage.dataset_dir(ds)\n"
        "    ds.delete()\n"
        "    shutil.rmtree(folder, ignore_errors=True)\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, cwd=str(REPO), check=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,50000", help="comma-separated sample counts")
    ap.add_argument("--size", default="64x48", help="image size WxH")
    ap.add_argument("--n-segments", type=int, default=20, help="SLIC segments per image")
    ap.add_argument("--pool", type=int, default=200, help="distinct generated samples")
    ap.add_argument("--mode", default="single", choices=sorted(MODES))
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the ranked datasets and their files (e.g. for panel_latency.py --dataset)",
    )
    ap.add_argument(
        "--workers",
        help="comma-separated worker counts: time the shard set with delegated workers instead",
    )
    ap.add_argument("--shards", type=int, default=4, help="with --workers: shards per step")
    ap.add_argument("--phase", choices=("generate", "run"), help=argparse.SUPPRESS)
    ap.add_argument("--child-n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--name", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.wh = tuple(int(v) for v in args.size.lower().split("x"))
    if args.phase:
        return child(args)
    if args.workers:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import scale_workers

        return scale_workers.main(
            [
                *("--samples", args.sizes.split(",")[0].replace("_", "")),
                *("--size", args.size, "--n-segments", str(args.n_segments)),
                *("--pool", str(args.pool), "--shards", str(args.shards)),
                *("--workers", args.workers),
            ]
        )

    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    env = dict(os.environ)
    own_dir = None
    if not env.get("ALC_FIFTYONE_DIR") and not args.keep:
        own_dir = tempfile.mkdtemp(prefix="alc-bench-scale-")
        env["ALC_FIFTYONE_DIR"] = own_dir
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    results = {}
    try:
        for n in sizes:
            name = f"alc-bench-scale-{n}-{uuid.uuid4().hex[:8]}"
            try:
                gen = _spawn(args, "generate", name, n, env)
                run = _spawn(args, "run", name, n, env)
            finally:
                if not args.keep:
                    _cleanup(name, env)
            if args.keep:
                sys.stderr.write(
                    f"kept dataset {name!r} (ALC_FIFTYONE_DIR={env['ALC_FIFTYONE_DIR']})\n"
                )
            results[n] = (gen, run)
            # each N's raw figures as soon as they exist (a long run can be read part way)
            sys.stderr.write(f"N={n} done: {json.dumps({'generate': gen, 'run': run})}\n")
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
    print_table(args, sizes, results)
    return 0


def print_table(args, sizes, results) -> None:
    import numpy as np
    import sklearn

    cpu = os.cpu_count()
    print(
        f"Scale, mode {args.mode}: generated images {args.size}, SLIC n_segments="
        f"{args.n_segments}, rank_superpixels(model='features', method='sim', budget 2%); "
        f"{cpu} CPU(s) ({platform.machine()}), python {platform.python_version()}, "
        f"numpy {np.__version__}, scikit-learn {sklearn.__version__}"
    )
    print()
    head = ["stage"]
    for n in sizes:
        head += [f"N={n:,} wall s", "CPU s", "samples/s", "CPU s/1k", "peak MiB"]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    order: list[str] = []
    for n in sizes:
        for r in results[n][1]["rows"]:
            if "seconds" in r and r["stage"] not in order:
                order.append(r["stage"])

    def cell(r, n):
        s, c = r["seconds"], r["cpu_seconds"]
        rate = n / s if s > 0 else float("inf")
        return f"{s:.1f} | {c:.1f} | {rate:,.0f} | {c / n * 1000:.2f} | {r['peak_mib']:,.0f}"

    for stage in order:
        cells = []
        for n in sizes:
            r = next((x for x in results[n][1]["rows"] if x.get("stage") == stage), None)
            cells.append(cell(r, n) if r else "-")
        print(f"| {stage} | " + " | ".join(cells) + " |")
    totals = []
    for n in sizes:
        rows = [r for r in results[n][1]["rows"] if "seconds" in r]
        rows = [r for r in rows if r["stage"] != "load dataset"]
        s = sum(r["seconds"] for r in rows)
        c = sum(r["cpu_seconds"] for r in rows)
        peak = results[n][1]["peak_mib"]
        totals.append(f"{s:.1f} | {c:.1f} | {n / s:,.0f} | {c / n * 1000:.2f} | {peak:,.0f}")
    print("| **all stages** (peak = process ru_maxrss) | " + " | ".join(totals) + " |")
    print()
    for n in sizes:
        gen, run = results[n]
        vals = {r["stage"]: r["value"] for r in run["rows"] if "value" in r}
        print(
            f"N={n:,}: {vals.get('num_superpixels', 0):,} superpixels, "
            f"{vals.get('num_queries', 0):,} queries; RSS after imports "
            f"{run['baseline_mib']:,.0f} MiB, peak {run['peak_mib']:,.0f} MiB; generation "
            f"{gen['seconds']:.0f} s (separate process, peak {gen['peak_mib']:,.0f} MiB)"
        )


if __name__ == "__main__":
    sys.exit(main())
