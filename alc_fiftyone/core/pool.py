"""Worker processes for per-sample work that is a pure function of arrays and paths.

Regions and features of one image take a tenth of a second or more and depend on nothing but
the image and a few files, so they run on all cores: :func:`run_tasks` sends each task (a
module-level function and its arguments, pickled) to an idle worker and yields the results as
they finish, so that a progress bar counts finished images. Whatever reads or writes the
database stays in the calling process; a task gets paths and small arrays and returns arrays.

The workers are plain ``python`` processes started with :mod:`subprocess` (not
:mod:`multiprocessing`), talking over two pipes: they never re-import the caller's script (an
unguarded script does not run again in every worker, as it would with ``spawn`` or
``forkserver``), and they are not forked from a process that holds database and OpenMP
threads. They import only what their tasks need, run one thread each (``OMP_NUM_THREADS=1``
and the like: the parallelism is across processes), live as long as the calling process (one
pool, started on first use and reused by later calls), and end when it ends or their pipe
closes. On platforms without ``select`` on pipes (Windows) the work runs in this process.
"""

from __future__ import annotations

import atexit
import os
import pickle
import selectors
import struct
import subprocess
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

__all__ = ["TaskFailed", "default_workers", "run_tasks", "shutdown", "thread_map"]

_HEADER = struct.Struct("<Q")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


class TaskFailed(RuntimeError):
    """A task raised an exception that could not be sent back as it was, or its worker
    died; ``index`` is the task's place in the list given to :func:`run_tasks`."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index


def default_workers() -> int:
    """The processes used when ``workers`` is None: one per CPU this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read_exact(stream, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _recv(stream):
    head = _read_exact(stream, _HEADER.size)
    if head is None:
        return None
    body = _read_exact(stream, _HEADER.unpack(head)[0])
    if body is None:
        return None
    return pickle.loads(body)


def _portable(error: BaseException) -> BaseException:
    """``error`` if it survives pickling (SampleError, OutputError, ValueError, ...), else a
    RuntimeError carrying its type and message."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 (any failure to pickle means: send the text)
        return RuntimeError(f"{type(error).__name__}: {error}")


def _setup(path: list, environ: dict) -> None:
    sys.path[:] = path  # the caller's import path: the same code, e.g. a checkout
    os.environ.clear()
    os.environ.update(environ)
    for var in _THREAD_VARS:
        os.environ[var] = "1"


def _worker_main(read_fd: int, write_fd: int) -> None:
    """The loop of one worker: ("setup", sys.path, environment) makes it see what the caller
    sees now (its import path, ``ALC_FIFTYONE_DIR``, ...); ("call", module, name, args) runs
    a function and sends back ("ok", result) or ("error", exception, traceback text). It
    stops at the end of its input."""
    import importlib

    inp = os.fdopen(read_fd, "rb")
    out = os.fdopen(write_fd, "wb")
    sys.stdout = sys.stderr  # a print in a task must not break the channel
    functions: dict[tuple[str, str], Callable] = {}
    while True:
        msg = _recv(inp)
        if msg is None:
            return
        if msg[0] == "setup":
            _setup(msg[1], msg[2])
            continue
        _, module, name, args = msg
        try:
            fn = functions.get((module, name))
            if fn is None:
                fn = importlib.import_module(module)
                for part in name.split("."):
                    fn = getattr(fn, part)
                functions[(module, name)] = fn
            reply = ("ok", fn(*args), None)
        except BaseException as e:  # noqa: BLE001 (every failure goes back to the caller)
            reply = ("error", _portable(e), traceback.format_exc())
        try:
            _send(out, reply)
        except Exception as e:  # noqa: BLE001 (a result that cannot be pickled)
            _send(out, ("error", RuntimeError(f"cannot send the result back: {e}"), ""))


class _Worker:
    def __init__(self) -> None:
        r_task, w_task = os.pipe()
        r_res, w_res = os.pipe()
        env = dict(os.environ)
        code = (
            "import sys; from alc_fiftyone.core.pool import _worker_main; "
            "_worker_main(int(sys.argv[1]), int(sys.argv[2]))"
        )
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join([here, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(r_task), str(w_res)],
            pass_fds=(r_task, w_res),
            env=env,
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
        os.close(r_task)
        os.close(w_res)
        self.tasks = os.fdopen(w_task, "wb")
        self.results = os.fdopen(r_res, "rb")
        self.seen: tuple | None = None  # the (sys.path, environment) last sent

    def setup(self) -> None:
        """Send this process's import path and environment when they changed since."""
        now = (tuple(sys.path), tuple(sorted(os.environ.items())))
        if now != self.seen:
            _send(self.tasks, ("setup", list(sys.path), dict(os.environ)))
            self.seen = now

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        for stream in (self.tasks, self.results):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Pool:
    def __init__(self) -> None:
        self.workers: list[_Worker] = []
        self.lock = threading.Lock()

    def ensure(self, n: int) -> list[_Worker]:
        self.workers = [w for w in self.workers if w.alive()]
        while len(self.workers) < n:
            self.workers.append(_Worker())
        return self.workers[:n]

    def close(self) -> None:
        for w in self.workers:
            w.close()
        self.workers = []


_POOL = _Pool()
atexit.register(_POOL.close)


def shutdown() -> None:
    """End the worker processes (the next :func:`run_tasks` starts new ones)."""
    with _POOL.lock:
        _POOL.close()


def _parallel_ok() -> bool:
    return os.name == "posix"


def run_tasks(
    fn: Callable,
    tasks: Sequence[tuple],
    workers: int | None = None,
) -> Iterator[tuple[int, bool, Any]]:
    """Run ``fn(*args)`` for every ``args`` of ``tasks`` and yield ``(index, ok, value)`` as
    each finishes: ``value`` is the result, or with ``ok`` False the exception it raised
    (the original one when it can be pickled, e.g. a SampleError naming its sample).

    ``fn`` must be a module-level function of a module the workers can import (they import
    it by name, with this process's ``sys.path``). ``workers``: the processes (None:
    :func:`default_workers`); with 1, or a single task, or where pipes cannot be polled, the
    tasks run here, one after the other, in order. Results come in the order they finish.
    Stopping early (``close()`` on the generator, or an exception in the loop that reads it)
    waits for the tasks already sent and drops their results; the workers stay for the next
    call. A worker that dies (killed, out of memory) yields a :class:`TaskFailed` for its
    task and is replaced next time.
    """
    tasks = list(tasks)
    n = default_workers() if workers is None else max(1, int(workers))
    n = min(n, len(tasks))
    if n <= 1 or not _parallel_ok() or not _POOL.lock.acquire(blocking=False):
        # one process (also when another thread of this process is using the pool)
        yield from _run_here(fn, tasks)
        return
    try:
        yield from _run_pool(fn, tasks, _POOL.ensure(n))
    finally:
        _POOL.lock.release()


def _run_here(fn, tasks) -> Iterator[tuple[int, bool, Any]]:
    for i, args in enumerate(tasks):
        try:
            value = fn(*args)
        except Exception as e:  # noqa: BLE001 (handed to the caller, as from a worker)
            yield i, False, e
            continue
        yield i, True, value


def _run_pool(fn, tasks, workers: list[_Worker]) -> Iterator[tuple[int, bool, Any]]:
    module, name = fn.__module__, fn.__qualname__
    if module == "__main__" or "<" in name:
        raise ValueError(f"{name} must be a module-level function of an importable module")
    sel = selectors.DefaultSelector()
    busy: dict[int, tuple[_Worker, int]] = {}  # fd -> (worker, task index)
    todo = iter(enumerate(tasks))
    dead: list[_Worker] = []

    def feed(worker: _Worker) -> bool:
        nxt = next(todo, None)
        if nxt is None:
            return False
        i, args = nxt
        worker.setup()
        _send(worker.tasks, ("call", module, name, tuple(args)))
        busy[worker.results.fileno()] = (worker, i)
        sel.register(worker.results, selectors.EVENT_READ)
        return True

    try:
        for w in workers:
            if not feed(w):
                break
        while busy:
            for key, _ in sel.select():
                worker, i = busy.pop(key.fd)
                sel.unregister(key.fileobj)
                reply = _recv(worker.results)
                if reply is None:
                    dead.append(worker)
                    code = worker.proc.wait()
                    spare = _Worker()  # the other tasks go on in a new worker
                    _POOL.workers.append(spare)
                    feed(spare)
                    yield i, False, TaskFailed(i, f"the worker process died (exit code {code})")
                    continue
                status, value, trace = reply
                feed(worker)
                if status == "ok":
                    yield i, True, value
                else:
                    if trace and isinstance(value, RuntimeError) and not value.args:
                        value = TaskFailed(i, trace)
                    yield i, False, value
    finally:
        # stopped early: let the tasks in flight finish, so the workers are idle again
        for worker, _ in list(busy.values()):
            if _recv(worker.results) is None:
                dead.append(worker)
        sel.close()
        for worker in dead:
            worker.close()
            if worker in _POOL.workers:
                _POOL.workers.remove(worker)


def thread_map(fn: Callable, items: Iterable, threads: int | None = None, ahead: int = 2):
    """``fn(item)`` for every item, yielded in order, computed in ``threads`` threads of this
    process (None: :func:`default_workers`; 1: no thread) up to ``threads * ahead`` items
    ahead: for per-sample work whose heavy parts release the GIL (image decoding, the numba
    acquisition kernels, numpy gathers) and that needs this process's objects (a fitted model).
    ``items`` is consumed in the calling thread (a database cursor stays there). An exception
    of ``fn`` is raised when its item's turn comes, as in a plain loop."""
    from concurrent.futures import ThreadPoolExecutor

    n = default_workers() if threads is None else max(1, int(threads))
    if n <= 1:
        for item in items:
            yield fn(item)
        return
    with ThreadPoolExecutor(n) as ex:
        window: deque = deque()
        for item in items:
            window.append(ex.submit(fn, item))
            if len(window) >= n * ahead:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
