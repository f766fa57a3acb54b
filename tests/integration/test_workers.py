"""Real delegated workers: ``fiftyone delegated launch`` processes on the test database share
shards of superpixels and ranking; one is killed in the middle of a shard.

The workers are separate processes with the test's database, plugins folder and
``ALC_FIFTYONE_DIR``; they are stopped by PID at the end, whatever happens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import python_subprocess_env
from test_sharding import add_probability_maps

pytestmark = pytest.mark.slow


def _fiftyone_cli() -> str:
    import sys

    cand = Path(sys.executable).parent / "fiftyone"
    return str(cand) if cand.exists() else "fiftyone"


class Workers:
    """``fiftyone delegated launch`` subprocesses, each logging to its own file."""

    def __init__(self, plugins_dir: Path, log_dir: Path):
        self.env = python_subprocess_env()
        self.env.update(
            FIFTYONE_PLUGINS_DIR=str(plugins_dir),
            FIFTYONE_DO_NOT_TRACK="true",
            FIFTYONE_DATABASE_VALIDATION="false",
            ALC_FIFTYONE_DIR=os.environ["ALC_FIFTYONE_DIR"],
        )
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self, monitor: bool = False) -> subprocess.Popen:
        """A worker; ``monitor``: ``--monitor`` (it pings its operation every
        ``FIFTYONE_DELEGATED_OPERATION_MONITOR_INTERVAL`` seconds)."""
        log = open(self.log_dir / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [_fiftyone_cli(), "delegated", "launch", *(["--monitor"] if monitor else [])],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.log_dir.glob("worker-*.log"))
        )

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # the launch loop exits on KeyboardInterrupt
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (a monitored worker runs its operation in a
    child process of its own process group)."""
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    for action in ("suspend", "kill"):  # suspended first: none finishes or forks meanwhile
        for proc in procs:
            try:
                getattr(proc, action)()
            except psutil.NoSuchProcess:
                pass


@pytest.fixture
def workers(plugin, tmp_path, tmp_alc_dir):
    import fiftyone as fo

    w = Workers(Path(fo.config.plugins_dir), tmp_path)
    try:
        yield w
    finally:
        w.stop_all()
        from fiftyone.operators.delegated import DelegatedOperationService

        svc = DelegatedOperationService()
        for op in svc.list_operations():
            svc.delete_operation(op.id)


def mask_files(ds, field: str) -> dict[str, list[Path]]:
    """Complete mask files of ``field`` on disk, by sample id (temporary files excluded)."""
    from alc_fiftyone.store.files import field_dir

    out: dict[str, list[Path]] = {}
    folder = field_dir(ds, field)
    for path in folder.glob("*.png") if folder.exists() else []:
        out.setdefault(path.name.split("-")[0], []).append(path)
    return out


def maps(ds, field: str) -> dict[str, np.ndarray]:
    from alc_fiftyone.store.files import read_segmentation

    return {s.id: read_segmentation(s, field) for s in ds.select_fields(field)}


def queries(ds, field: str) -> list[tuple]:
    out = []
    for sid, dets in zip(ds.values("id"), ds.values(f"{field}.detections")):
        for d in dets or []:
            out.append((d.rank, sid, d.superpixel_id, round(d.score, 9), d.label))
    return sorted(out)


def test_two_workers_share_the_shards_like_one_process(workers, unique_name):
    import alc_fiftyone as alc

    ds = alc.make_demo_dataset(name=unique_name, num_samples=20, size=(48, 40), seed=5)
    try:
        workers.start()
        workers.start()
        run = alc.queue_shards(
            ds, "compute_superpixels", {"method": "slic", "n_segments": 20}, num_shards=4
        )
        assert run.num_shards == 4
        try:
            run.wait(timeout=120, poll=0.2)
        except Exception:
            print(workers.logs())
            raise
        ds.reload()
        processed = [r["summary"]["processed"] for r in run.results()]
        assert processed == [5, 5, 5, 5]
        files = mask_files(ds, "alc_superpixels")
        assert sorted(files) == sorted(ds.values("id"))
        assert all(len(f) == 1 for f in files.values()), "a sample was processed twice"
        sharded = maps(ds, "alc_superpixels")
        alc.compute_superpixels(ds, field="sp_single", n_segments=20)
        single = maps(ds, "sp_single")
        assert all(np.array_equal(sharded[k], single[k]) for k in single)

        # ranking in 3 shards with a fixed model, merged by the last shard to finish
        add_probability_maps(ds)
        params = {"label_field": "pseudo", "budget": 9, "model": "field:probs"}
        run = alc.queue_shards(ds, "rank_superpixels", params, num_shards=3)
        try:
            run.wait(timeout=120, poll=0.2)
        except Exception:
            print(workers.logs())
            raise
        merged = [r["summary"].get("merged") for r in run.results()]
        assert sum(m is not None for m in merged) == 1, "exactly one shard merges"
        alc.rank_superpixels(ds, "pseudo", queries_field="q_single", budget=9, model="field:probs")
        ds.reload()
        assert queries(ds, "alc_queries") == queries(ds, "q_single")
        assert len(queries(ds, "alc_queries")) == 9
        rounds = ds.info["alc"]["rounds"]
        assert [r.get("run_id") for r in rounds] == [run.run_id, None]
        # the run can be found again from another process's point of view
        again = alc.find_shard_run(ds, run.run_id)
        assert again.op_ids == run.op_ids and again.operator == "rank_superpixels"
    finally:
        ds.delete()


def test_killed_worker_leaves_no_half_mask_and_the_rerun_completes(
    workers, unique_name, monkeypatch
):
    import fiftyone as fo

    import alc_fiftyone as alc
    from alc_fiftyone.steps.sharding import MISSED_PINGS
    from alc_fiftyone.store.files import read_png_array, read_segmentation

    ds = alc.make_demo_dataset(name=unique_name, num_samples=12, size=(320, 240), seed=6)
    params = {"method": "slic", "n_segments": 300, "field": "sp"}
    # a monitored worker pings its operation every second (FiftyOne's default: 60 s)
    workers.env["FIFTYONE_DELEGATED_OPERATION_MONITOR_INTERVAL"] = "1"
    monkeypatch.setattr(fo.config, "delegated_operation_monitor_interval", 1)
    try:
        worker = workers.start(monitor=True)
        run = alc.queue_shards(ds, "compute_superpixels", params, num_shards=2)
        deadline = time.monotonic() + 90
        killed = None
        while killed is None:  # wait until a shard is part-way through (either may go first)
            for state in run.states():
                if state["state"] == "running" and 0 < (state["progress"] or 0) < 0.8:
                    killed = state["shard"]
            assert time.monotonic() < deadline, workers.logs()
            time.sleep(0.02)
        kill_tree(worker.pid)  # the machine is gone: the worker and its operation's process
        worker.wait(10)

        states = {s["shard"]: s["state"] for s in run.states()}
        other = "2/2" if killed == "1/2" else "1/2"
        assert states[killed] == "running"  # nobody marks a dead worker's operation
        assert states[other] in ("queued", "completed")
        ds.reload()
        written = ds.select_fields("sp") if ds.has_field("sp") else []  # none: all unset
        for sample in written:
            seg = sample["sp"] if sample.has_field("sp") else None
            if seg is not None:  # either unset, or a complete, readable map
                assert read_segmentation(sample, "sp").shape == (240, 320)
        for files in mask_files(ds, "sp").values():
            for path in files:  # no file under its final name is half written
                assert read_png_array(path).shape == (240, 320)

        assert run.rerun(stale_after=3600) == []  # running and not stale: left alone
        # no ping for MISSED_PINGS intervals: rerun() finds the dead worker by itself
        time.sleep(MISSED_PINGS * 1 + 0.5)
        workers.start()
        assert run.rerun() == [killed], workers.logs()
        run.wait(timeout=120, poll=0.2)
        ds.reload()
        assert ds.count("sp") == len(ds)
        got = maps(ds, "sp")
        alc.compute_superpixels(ds, field="sp_single", n_segments=300)
        want = maps(ds, "sp_single")
        assert all(np.array_equal(got[k], want[k]) for k in want)
    finally:
        ds.delete()
