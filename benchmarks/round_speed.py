"""Round speed: regions and two rankings on real-size images, per stage, old code against new.

What a reviewer waits for when pressing Rank again, and what a round of a PASCAL-size dataset
costs. Two image sets, both made from ../shared/data:

- ``camvid``: the first ``--camvid`` (default 100) CamVid val frames, 480x360, 11 classes;
- ``pascal``: ``--pascal`` (default 1,464, PASCAL VOC 2012 train's size) images of PASCAL's
  typical 500x375, made from the 101 CamVid frames: image ``i`` is frame ``i mod 101``, cropped
  to a window of 84-100 % of its width and height at an offset and size set by ``i // 101``,
  flipped left-right for odd ``i // 101``, and resized to 500x375 (bilinear for the image,
  nearest for the mask). Written once as PNGs into a temporary folder (not timed).

The labels under review are ``alc.corrupt_labels(ds, "ground_truth", "noisy", rate=0.3,
seed=0)`` (object-level noise). Stages, each in the same process as a user's session: the
README's calls, ``alc.compute_superpixels(ds, label_field="noisy")`` (regions), then
``alc.rank_superpixels(ds, "noisy")`` twice on ``camvid`` (the second on unchanged regions:
"Rank again" before any answer) and once on ``pascal`` (a round); on ``camvid`` also ``alc.simulate`` of 5 rounds of 348 clicks (the clicks
of benchmarks/label_quality.py on these 100 frames) on the same regions, whose data mIoU after
the last round shows that speed was not bought with quality (its time is not a target).

``--levels 2,1`` runs the new code once per value of ``compute_superpixels(levels=...)``
(the hierarchy against its top level alone); ``--rounds 0`` leaves the simulation out.

Per stage: wall seconds, CPU seconds (this process and every worker process it started, from
the operating system's accounting), peak resident memory of the process and its workers
(sampled every 50 ms), and the load average of the machine before and after (a shared
machine: prefer CPU seconds). ``--vs DIR`` runs the same stages with the code of another
checkout (e.g. ``git worktree add /tmp/old-41745a6 41745a6``) in the same run, old and new in
turn, each in its own process with ``PYTHONPATH=DIR``; the numba cache of each checkout is
warmed first by a small untimed run, so neither pays numba's one-time compilation.

    python benchmarks/round_speed.py --vs /tmp/old-41745a6            # both sets
    python benchmarks/round_speed.py --sets camvid --levels 2,1 --rounds 0  # hierarchy vs 1 level
    python benchmarks/round_speed.py --sets camvid --camvid 100 --vs /tmp/old-41745a6

Prints one markdown table. Uses FIFTYONE_DATABASE_URI when set, else FiftyOne's own database;
files go to a temporary folder (ALC_FIFTYONE_DIR unless set), removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")

REPO = Path(__file__).resolve().parents[1]
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
PASCAL_SIZE = (500, 375)
SIM_CLICKS = 348


# --------------------------------------------------------------------------------------------
# the image sets
# --------------------------------------------------------------------------------------------


def camvid_set(folder: Path, count: int) -> Path:
    """Links to the first ``count`` CamVid frames and masks."""
    src = DATA / "camvid-val"
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for p in sorted((src / "images").iterdir())[:count]:
        (folder / "images" / p.name).symlink_to(p)
        (folder / "masks" / p.name).symlink_to(src / "masks" / p.name)
    return folder


def pascal_set(folder: Path, count: int) -> Path:
    """``count`` PASCAL-size images made from the CamVid frames (see the module docstring)."""
    import numpy as np
    from PIL import Image

    src = DATA / "camvid-val"
    frames = sorted((src / "images").iterdir())
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for i in range(count):
        frame = frames[i % len(frames)]
        k = i // len(frames)
        image = Image.open(frame).convert("RGB")
        mask = Image.open(src / "masks" / frame.name)
        w, h = image.size
        share = 1.0 - 0.02 * (k % 9)  # 100 % .. 84 %
        cw, ch = round(w * share), round(h * share)
        x0 = ((k * 37) % 5) * (w - cw) // 4
        y0 = ((k * 53) % 5) * (h - ch) // 4
        box = (x0, y0, x0 + cw, y0 + ch)
        image = image.crop(box).resize(PASCAL_SIZE, Image.BILINEAR)
        mask = mask.crop(box).resize(PASCAL_SIZE, Image.NEAREST)
        if k % 2:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
            mask = mask.transpose(Image.FLIP_LEFT_RIGHT)
        name = f"{i:05d}.png"
        image.save(folder / "images" / name, compress_level=1)
        Image.fromarray(np.asarray(mask)).save(folder / "masks" / name, compress_level=1)
    return folder


# --------------------------------------------------------------------------------------------
# one set, one checkout (the child process)
# --------------------------------------------------------------------------------------------


class Meter:
    """CPU seconds and peak memory of this process and the worker processes it started."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.cpu_seen: dict[int, float] = {}
        self.peak = 0.0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _tree(self):
        """This process and its workers (not a database server it may have started)."""
        procs = [self.proc]
        try:
            kids = self.proc.children(recursive=True)
        except Exception:  # noqa: BLE001 (a child that just ended)
            kids = []
        for p in kids:
            with contextlib.suppress(Exception):
                if "mongod" not in p.name():
                    procs.append(p)
        return procs

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = 0
            for p in self._tree():
                with contextlib.suppress(Exception):
                    rss += p.memory_info().rss
            self.peak = max(self.peak, rss / 2**20)
            time.sleep(0.05)

    def cpu(self) -> float:
        """CPU seconds (user + system) of this process and its live workers so far, plus the
        workers that ended and were waited for."""
        t = self.proc.cpu_times()
        live = {}
        for p in self._tree()[1:]:
            with contextlib.suppress(Exception):
                c = p.cpu_times()
                live[p.pid] = c.user + c.system
        self.cpu_seen = live
        return t.user + t.system + t.children_user + t.children_system + sum(live.values())

    def stage(self):
        self.peak = 0.0
        return time.perf_counter(), self.cpu(), os.getloadavg()[0]

    def done(self, start) -> dict:
        t0, c0, load0 = start
        return {
            "wall": time.perf_counter() - t0,
            "cpu": self.cpu() - c0,
            "peak_mib": self.peak,
            "load": (load0, os.getloadavg()[0]),
        }


def child(args) -> int:
    import alc_fiftyone as alc

    out = {"code": str(Path(alc.__file__).resolve().parents[1]), "stages": {}}
    folder = Path(args.data)
    classes = CAMVID
    ds = alc.load_image_masks(
        folder / "images",
        folder / "masks",
        classes=classes,
        ignore_index=11,
        name=f"round-speed-{uuid.uuid4().hex[:6]}",
        follow_links=True,
    )
    try:
        alc.corrupt_labels(ds, "ground_truth", "noisy", rate=0.3, seed=0)
        meter = Meter()
        s = meter.stage()
        kw = {"levels": args.levels} if args.levels else {}
        summary = alc.compute_superpixels(ds, label_field="noisy", **kw)
        out["stages"]["regions"] = meter.done(s)
        out["regions_per_image"] = summary.get("mean_superpixels")
        for name in ("rank 1", "rank 2")[: args.rankings]:
            s = meter.stage()
            r = alc.rank_superpixels(ds, "noisy")
            out["stages"][name] = meter.done(s)
            out[f"{name} queries"] = r["num_queries"]
        if args.simulate and args.rounds > 0:
            s = meter.stage()
            res = alc.simulate(
                ds, "noisy", "ground_truth", rounds=args.rounds, budget_per_round=SIM_CLICKS
            )
            out["stages"]["simulate"] = meter.done(s)
            out["miou"] = res.mious
        out["images"] = len(ds)
    finally:
        ds.delete()
    print("ROUND_SPEED " + json.dumps(out))
    return 0


# --------------------------------------------------------------------------------------------
# the parent: data, children, table
# --------------------------------------------------------------------------------------------


def run_child(
    code: Path, data: Path, simulate: bool, rounds: int, rankings: int = 2, levels: int = 0
) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--data", str(data)]
    cmd += ["--rounds", str(rounds), "--rankings", str(rankings), "--levels", str(levels)]
    cmd += ["--simulate"] if simulate else []
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    for line in res.stdout.splitlines():
        if line.startswith("ROUND_SPEED "):
            return json.loads(line[len("ROUND_SPEED ") :])
    raise RuntimeError(f"the run with {code} failed:\n{res.stderr[-3000:]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="camvid,pascal")
    ap.add_argument("--camvid", type=int, default=100)
    ap.add_argument("--pascal", type=int, default=1464)
    ap.add_argument("--vs", default=None, help="a checkout of the old code to compare with")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the simulation (0: none)")
    ap.add_argument(
        "--levels",
        default="",
        help="levels of the regions, e.g. 2,1: the new code once per value (default: its own)",
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--simulate", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rankings", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help="also write the raw results here")
    args = ap.parse_args(argv)
    if not DATA.is_dir() and not args.child:
        print(f"no data folder at {DATA}", file=sys.stderr)
        return 1
    if args.child:
        args.levels = int(args.levels or 0)
        return child(args)
    levels = [int(x) for x in args.levels.split(",") if x] or [0]
    codes = [
        ("new" if len(levels) == 1 else f"new ({n} level{'s' if n > 1 else ''})", REPO, n)
        for n in levels
    ] + ([("old", Path(args.vs).resolve(), 0)] if args.vs else [])
    tmp = Path(tempfile.mkdtemp(prefix="round-speed-"))
    # the masks, sidecars and generated images of the run live (and go) with it
    os.environ.setdefault("ALC_FIFTYONE_DIR", str(tmp / "alc"))
    try:
        return _run(args, ap, codes, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args, ap, codes, tmp: Path) -> int:
    warm = camvid_set(tmp / "warm", 4)
    for _, code, _ in codes:  # numba's cache of each checkout, and the imports, warmed
        run_child(code, warm, False, 1)
    results = []
    for name in args.sets.split(","):
        if name == "camvid":
            data = camvid_set(tmp / "camvid", args.camvid)
        elif name == "pascal":
            data = pascal_set(tmp / "pascal", args.pascal)
        else:
            ap.error(f"unknown set {name!r}")
        for label, code, n in codes[::-1] if len(results) % 2 else codes:  # in turn
            # PASCAL: a round is regions once, then one ranking
            rankings = 2 if name == "camvid" else 1
            r = run_child(code, data, name == "camvid", args.rounds, rankings, n)
            r.update(set=name, version=label)
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


def table(results: list[dict]) -> str:
    lines = [
        "| set | code | stage | wall s | CPU s | peak MiB | load before/after | note |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in results:
        n = r.get("images", 0)
        for stage, m in r["stages"].items():
            note = ""
            if stage == "regions":
                note = f"{r.get('regions_per_image', 0):.0f} regions/image, "
                note += f"{m['cpu'] / max(n, 1):.3f} CPU s/image"
            elif stage == "simulate" and r.get("miou"):
                mious = " / ".join(f"{100 * x:.2f}" for x in r["miou"])
                note = f"data mIoU by round: {mious}"
            lines.append(
                f"| {r['set']} ({n}) | {r['version']} | {stage} | {m['wall']:.1f} | "
                f"{m['cpu']:.1f} | {m['peak_mib']:.0f} | {m['load'][0]:.1f} / "
                f"{m['load'][1]:.1f} | {note} |"
            )
        rounds = [s for s in ("regions", "rank 1", "rank 2") if s in r["stages"]]
        total = sum(r["stages"][s]["wall"] for s in rounds)
        cpu = sum(r["stages"][s]["cpu"] for s in rounds)
        lines.append(
            f"| {r['set']} ({n}) | {r['version']} | **regions + {len(rounds) - 1} ranking(s)** | "
            f"**{total:.1f}** | **{cpu:.1f}** | | | |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
