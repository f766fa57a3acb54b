"""MongoDB killed or restarted in the middle of a ranking.

The test runs its own ``mongod`` (the bundled binary, a free loopback port, no unix socket, a
temporary data folder) and does everything FiftyOne-related in subprocesses pointed at it with
``FIFTYONE_DATABASE_URI`` (FiftyOne keeps one connection per process). The ranking subprocess
stops in its progress callback at a given sample until the test has killed (and possibly
restarted) the server, then carries on. Asserted: the ranking ends with our DatabaseError
(an ALCError naming the step, what was written, and that a rerun is safe), never a raw pymongo
traceback; the queries are those of the old round or complete, ``info["alc"]`` agrees with
them; after the restart a rerun works.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    import alc_fiftyone as alc
    import fiftyone as fo
    from alc_fiftyone.errors import ALCError, DatabaseError

    mode, name, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])

    def state(ds):
        ds.reload()
        info = ds.info.get("alc") or {}
        rounds = [r["round"] for r in info.get("rounds", [])]
        queries = []
        for dets in ds.values("alc_queries.detections"):
            for d in dets or []:
                queries.append({"id": d.id, "round": d["round"], "status": d["status"]})
        return {"rounds": rounds, "queries": queries,
                "budgets": [r["num_queries"] for r in info.get("rounds", [])]}

    if mode == "setup":
        ds = alc.make_demo_dataset(name=name, num_samples=8, size=(64, 48), seed=7,
                                   persistent=True)
        alc.compute_superpixels(ds, method="slic", n_segments=30)
        alc.rank_superpixels(ds, "pseudo", budget=6)
        first = alc.next_query(ds, "tester")
        alc.answer(ds, first["id"], first["label"], user="tester")
        print(json.dumps(state(ds)))
    elif mode == "rank":
        ds = fo.load_dataset(name)
        def progress(done, total, desc):
            if desc == "ranking" and done == 3:
                (work / "paused").write_text("1")
                deadline = time.time() + 120
                while not (work / "go").exists() and time.time() < deadline:
                    time.sleep(0.05)
        try:
            summary = alc.rank_superpixels(ds, "pseudo", budget=6, progress=progress)
            out = {"ok": True, "round": summary["round"]}
        except ALCError as e:
            out = {"ok": False, "type": type(e).__name__, "alc": True,
                   "db": isinstance(e, DatabaseError), "message": str(e)}
        except Exception as e:
            out = {"ok": False, "type": type(e).__name__, "alc": False, "db": False,
                   "message": str(e)}
        print(json.dumps(out))
        sys.stdout.flush()
        os._exit(0)  # no atexit clean-up against a database that may be down
    elif mode == "check":
        ds = fo.load_dataset(name)
        before = state(ds)
        summary = alc.rank_superpixels(ds, "pseudo", budget=6)
        print(json.dumps({"before": before, "after": state(ds), "round": summary["round"]}))
        ds.delete()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mongod:
    """A private mongod that can be killed and restarted on the same port and data."""

    def __init__(self, root: Path):
        spec_dir = Path(__import__("fiftyone").__file__).parent
        self.binary = str(spec_dir / "db" / "bin" / "mongod")
        self.dbpath = root / "db"
        self.dbpath.mkdir()
        self.log = root / "mongod.log"
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--dbpath",
                    str(self.dbpath),
                    "--port",
                    str(self.port),
                    "--bind_ip",
                    "127.0.0.1",
                    "--nounixsocket",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("mongod did not start")

    def fsync(self) -> None:
        import pymongo

        client = pymongo.MongoClient("127.0.0.1", self.port, serverSelectionTimeoutMS=5000)
        try:
            client.admin.command("fsync")
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # a crash, not a clean shutdown
            self.proc.wait(30)
        for lock in self.dbpath.glob("mongod.lock"):
            lock.unlink()  # a killed mongod leaves its lock file; it recovers from the journal

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def mongod(tmp_path):
    if not (Path(__import__("fiftyone").__file__).parent / "db" / "bin" / "mongod").exists():
        pytest.skip("the bundled mongod is not installed")
    server = Mongod(tmp_path)
    server.start()
    yield server
    server.stop()


def _env(mongod: Mongod, alc_dir: Path) -> dict:
    env = dict(os.environ)
    # a short server selection timeout: a dead server is reported in seconds, not 30 s
    env["FIFTYONE_DATABASE_URI"] = (
        f"mongodb://127.0.0.1:{mongod.port}/?serverSelectionTimeoutMS=3000"
        "&connectTimeoutMS=3000&socketTimeoutMS=10000"
    )
    env["ALC_FIFTYONE_DIR"] = str(alc_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["FIFTYONE_DO_NOT_TRACK"] = "true"
    env["FIFTYONE_DATABASE_VALIDATION"] = "false"
    return env


def _run(script: Path, mode: str, name: str, work: Path, env: dict, timeout=240) -> dict:
    res = subprocess.run(
        [sys.executable, str(script), mode, name, str(work)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _assert_consistent(state: dict) -> None:
    """Queries of the last recorded round, or of the one before it untouched: never a round
    that ``info["alc"]`` does not record, never pending queries of two rounds at once."""
    last = state["rounds"][-1]
    rounds = {q["round"] for q in state["queries"]}
    assert max(rounds) <= last, state
    pending = [q for q in state["queries"] if q["status"] == "pending"]
    assert {q["round"] for q in pending} <= {last}, state
    answered_now = [q for q in state["queries"] if q["round"] == last and q["status"] != "pending"]
    assert len(pending) + len(answered_now) == state["budgets"][-1], state


@pytest.mark.parametrize("restart_before_resume", [False, True])
def test_mongod_killed_during_ranking(mongod, tmp_path, restart_before_resume):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    work = tmp_path / "work"
    work.mkdir()
    env = _env(mongod, tmp_path / "alc")
    name = f"alc-restart-{uuid.uuid4().hex[:8]}"

    setup = _run(script, "setup", name, work, env)
    assert setup["rounds"] == [1]
    _assert_consistent(setup)

    rank = subprocess.Popen(
        [sys.executable, str(script), "rank", name, str(work)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 180
        while not (work / "paused").exists():
            assert rank.poll() is None, rank.communicate()[1][-4000:]
            assert time.time() < deadline, "the ranking never reached the third sample"
            time.sleep(0.05)
        # what setup wrote is checkpointed first, so that the crash tests our handling of
        # it, not MongoDB's journal (the ranking writes nothing before its scoring is done)
        mongod.fsync()
        mongod.kill()  # in the middle of the ranking: 3 samples of 8 scored
        if restart_before_resume:
            mongod.start()
        (work / "go").write_text("1")
        out, err = rank.communicate(timeout=180)
    finally:
        if rank.poll() is None:
            rank.kill()
    result = json.loads(out.strip().splitlines()[-1])
    if not restart_before_resume:
        # the server is gone: a clear error of ours, naming what failed and that a rerun is safe
        assert not result["ok"], result
        assert result["alc"] and result["db"], result
        msg = result["message"]
        assert "ranking superpixels" in msg and "rerun" in msg and "safe" in msg, msg
        assert "nothing was written" in msg, msg
        assert "Traceback" not in err
        mongod.start()
    else:
        # restarted before the ranking needed it again: it either completes (FiftyOne resumes
        # the lost cursor) or stops with the same clear error
        assert result["ok"] or (result["alc"] and result["db"]), result

    check = _run(script, "check", name, work, env)
    before, after = check["before"], check["after"]
    _assert_consistent(before)
    if result["ok"]:
        assert before["rounds"] == [1, 2]
    else:
        # nothing of the failed round: the old queries, the answer, the history as they were
        assert before == setup
    _assert_consistent(after)  # the rerun worked
    assert after["rounds"][-1] == check["round"] == before["rounds"][-1] + 1
    assert any(q["status"] == "confirmed" for q in after["queries"])  # the answer survived
    shutil.rmtree(tmp_path / "alc", ignore_errors=True)
