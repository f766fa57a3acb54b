"""In-process notices of changed queries, so the review caches (:mod:`alc_fiftyone.review.queue`)
re-read only what changed.

Every write of a query made through this package in this process is noted here: claims,
releases, answers, skips and undos as ``touched(dataset, sample_id)``, a new ranking (or a
merged sharded one) as ``reset(dataset)``. Writes made by other processes are not seen; the
caches bound how long they can miss them by their ``max_age``.
"""

from __future__ import annotations

import threading

from .db import collection_key

MAX_LOG = 50_000  # sample ids kept per dataset; a reader further behind re-reads everything

_lock = threading.Lock()
_log: dict[str, list[str]] = {}  # sample collection -> ids of changed samples, oldest first
_first: dict[str, int] = {}  # sample collection -> sequence number of _log[...][0]
_epoch: dict[str, int] = {}  # sample collection -> number of resets


def _key(dataset) -> str:
    return collection_key(dataset)


def touched(dataset, sample_id: str) -> None:
    """Note that the queries of sample ``sample_id`` of ``dataset`` changed."""
    key = _key(dataset)
    with _lock:
        log = _log.setdefault(key, [])
        log.append(str(sample_id))
        if len(log) > MAX_LOG:
            drop = len(log) - MAX_LOG // 2
            del log[:drop]
            _first[key] = _first.get(key, 0) + drop


def reset(dataset) -> None:
    """Note that the queries of ``dataset`` were replaced (a new ranking)."""
    key = _key(dataset)
    with _lock:
        _epoch[key] = _epoch.get(key, 0) + 1


def position(dataset) -> tuple[int, int]:
    """(epoch, sequence number) now: what a cache filled now has seen."""
    key = _key(dataset)
    with _lock:
        return _epoch.get(key, 0), _first.get(key, 0) + len(_log.get(key, ()))


def since(dataset, seen: tuple[int, int]) -> tuple[set[str] | None, tuple[int, int]]:
    """(ids of the samples changed after position ``seen``, the position now); None instead
    of the ids when the queries were reset or the log no longer reaches back to ``seen``."""
    key = _key(dataset)
    epoch, seq = seen
    with _lock:
        now_epoch = _epoch.get(key, 0)
        first = _first.get(key, 0)
        log = _log.get(key, [])
        now = (now_epoch, first + len(log))
        if now_epoch != epoch or seq < first:
            return None, now
        return set(log[seq - first :]), now
