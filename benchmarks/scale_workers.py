"""Scale out: wall time of the same shard set with 1 and 2 ``fiftyone delegated launch`` workers.

A dataset of ``--samples`` generated images (``benchmarks/_generated.py``, the generator of ``scale.py``, default
2,000 of 64x48) goes through SLIC superpixels and ranking (``features`` model, ``sim``, 2%
budget), each queued as ``--shards`` delegated operations with ``alc.queue_shards`` and run by
1, then 2 worker processes (a fresh dataset each time, generated before the workers start).
The wall time runs from queueing to the last shard completed (for ranking: merged), with the
workers already started and idle; beside it the same steps in this process without shards.

    python benchmarks/scale_workers.py [--samples 2000] [--shards 4] [--workers 1,2]

The workers and this process share one MongoDB: ``FIFTYONE_DATABASE_URI`` when set, else a
private ``mongod`` (the bundled one) started on a free loopback port and stopped at the end.
Files go to a temporary ``ALC_FIFTYONE_DIR``; datasets and files are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mongod(tmp: Path) -> subprocess.Popen:
    """The bundled mongod on a free loopback port; sets FIFTYONE_DATABASE_URI."""
    import importlib.util

    spec = importlib.util.find_spec("fiftyone")  # does not import fiftyone
    mongod = Path(next(iter(spec.submodule_search_locations))) / "db" / "bin" / "mongod"
    port = _free_port()
    (tmp / "db").mkdir()
    log = open(tmp / "mongod.log", "wb")  # noqa: SIM115 (open while mongod runs)
    proc = subprocess.Popen(
        [str(mongod), "--dbpath", str(tmp / "db"), "--port", str(port)]
        + ["--bind_ip", "127.0.0.1", "--nounixsocket"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"mongod did not start, see {tmp / 'mongod.log'}") from None
            time.sleep(0.1)
    os.environ["FIFTYONE_DATABASE_URI"] = f"mongodb://127.0.0.1:{port}"
    return proc


def start_workers(count: int, tmp: Path) -> list[subprocess.Popen]:
    """``count`` workers; returns once each has printed that its service runs."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    cli = Path(sys.executable).parent / "fiftyone"
    procs, logs = [], []
    for i in range(count):
        log = tmp / f"worker-{uuid.uuid4().hex[:6]}-{i}.log"
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [str(cli), "delegated", "launch"],
                env=env,
                stdout=open(log, "wb"),  # noqa: SIM115 (the worker writes while it runs)
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    deadline = time.time() + 180
    while not all("service running" in p.read_text(errors="replace") for p in logs):
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            stop_workers(procs)
            raise SystemExit("workers did not start:\n" + "\n".join(p.read_text() for p in logs))
        time.sleep(0.2)
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(15)


def make_dataset(args, tag: str):
    import fiftyone as fo
    from _generated import generate

    name = f"alc-bench-workers-{tag}-{uuid.uuid4().hex[:8]}"
    generate(name, args.samples, args.wh, args.pool)
    return fo.load_dataset(name)


def delete_dataset(ds) -> None:
    from alc_fiftyone.store import files as storage

    folder = storage.dataset_dir(ds)
    ds.delete()
    shutil.rmtree(folder, ignore_errors=True)


def run_sharded(args, ds, tmp: Path, num_workers: int) -> dict:
    import alc_fiftyone as alc

    label_field = ds.info["alc"]["label_field"]
    procs = start_workers(num_workers, tmp)
    try:
        out = {}
        t = time.perf_counter()
        run = alc.queue_shards(
            ds, "compute_superpixels", {"n_segments": args.n_segments}, num_shards=args.shards
        )
        run.wait(poll=0.1)
        out["superpixels"] = time.perf_counter() - t
        t = time.perf_counter()
        run = alc.queue_shards(
            ds, "rank_superpixels", {"label_field": label_field}, num_shards=args.shards
        )
        run.wait(poll=0.1)
        out["rank"] = time.perf_counter() - t
        ds.reload()
        merged = ds.info["alc"]["rounds"][-1]
        out["queries"] = merged["num_queries"]
        return out
    finally:
        stop_workers(procs)


def run_in_process(args, ds) -> dict:
    import alc_fiftyone as alc

    label_field = ds.info["alc"]["label_field"]
    out = {}
    t = time.perf_counter()
    alc.compute_superpixels(ds, n_segments=args.n_segments)
    out["superpixels"] = time.perf_counter() - t
    t = time.perf_counter()
    record = alc.rank_superpixels(ds, label_field)
    out["rank"] = time.perf_counter() - t
    out["queries"] = record["num_queries"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--size", default="64x48", help="image size WxH")
    ap.add_argument("--n-segments", type=int, default=20, help="SLIC segments per image")
    ap.add_argument("--pool", type=int, default=200, help="distinct generated samples")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    args = ap.parse_args(argv)
    args.wh = tuple(int(v) for v in args.size.lower().split("x"))
    counts = [int(c) for c in args.workers.split(",") if c.strip()]

    tmp = Path(tempfile.mkdtemp(prefix="alc-bench-workers-"))
    os.environ["ALC_FIFTYONE_DIR"] = str(tmp / "alc")
    plugins = tmp / "plugins"
    plugins.mkdir()
    (plugins / "alc-fiftyone").symlink_to(REPO, target_is_directory=True)
    os.environ["FIFTYONE_PLUGINS_DIR"] = str(plugins)
    sys.path.insert(0, str(REPO / "benchmarks"))
    mongod = None if os.environ.get("FIFTYONE_DATABASE_URI") else start_mongod(tmp)
    results = {}
    try:
        ds = make_dataset(args, "inproc")
        try:
            results["in process, no shards"] = run_in_process(args, ds)
        finally:
            delete_dataset(ds)
        for w in counts:
            ds = make_dataset(args, f"{w}w")
            try:
                results[f"{w} worker(s), {args.shards} shards"] = run_sharded(args, ds, tmp, w)
            finally:
                delete_dataset(ds)
            sys.stderr.write(f"{w} worker(s) done\n")
    finally:
        if mongod is not None:
            mongod.send_signal(signal.SIGTERM)
            mongod.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(args, results)
    return 0


def print_table(args, results: dict) -> None:
    cpu = os.cpu_count()
    print(
        f"Scale out: {args.samples:,} generated images {args.size}, SLIC n_segments="
        f"{args.n_segments}, rank_superpixels(model='features', method='sim', budget 2%); "
        f"{cpu} CPU(s) ({platform.machine()}), python {platform.python_version()}"
    )
    print()
    print("| run | superpixels s | samples/s | rank s | samples/s | total s | queries |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    n = args.samples
    for name, r in results.items():
        total = r["superpixels"] + r["rank"]
        print(
            f"| {name} | {r['superpixels']:.1f} | {n / r['superpixels']:,.0f} | "
            f"{r['rank']:.1f} | {n / r['rank']:,.0f} | {total:.1f} | {r['queries']} |"
        )


if __name__ == "__main__":
    sys.exit(main())
