"""Shards: deterministic slices of a collection, queued as FiftyOne delegated operations.

A long step (superpixels, SAM pseudo labels or superpixels, embeddings, ranking) can run on
one *shard* of its target: ``"i/n"`` is the i-th (1-based) of ``n`` contiguous slices of the
samples in the order of their ids (MongoDB ObjectIds, which grow with insertion), so every
process that slices the same collection gets the same shards, each sample in exactly one.

:func:`queue_shards` queues one delegated operation per shard through FiftyOne's own
delegated-operation engine: ``fiftyone.operators.execute_operator(...,
request_delegation=True)``, the ``DelegatedOperationService`` and the ``fiftyone delegated``
CLI (https://docs.voxel51.com/plugins/using_plugins.html#delegated-operations,
https://docs.voxel51.com/api/fiftyone.operators.delegated.html). Any number of
``fiftyone delegated launch`` workers sharing the database run them, each operation claimed
by one worker only (FiftyOne moves it from QUEUED to RUNNING atomically).
The queued shards are fixed id ranges (resolved when queued), so samples added later do not
move samples between shards. :class:`ShardRun` reports their states, waits for them and
re-queues the failed ones, or the ones of a worker that died (a killed worker leaves its
operation RUNNING for ever: :meth:`ShardRun.rerun` marks it failed first, by itself for
workers started with ``fiftyone delegated launch --monitor``, which ping their operation, and
with ``stale_after`` for the others).

Ranking shards are merged into one global top-B (:func:`merge_ranking`, automatic when the
last shard of a run finishes; see :func:`alc_fiftyone.steps.ranking.rank_superpixels`).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..errors import ALCError
from ..store import changes, db
from ..store.info import alc_info, append_alc_info, update_alc_info

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


#: the plugin's name in ``fiftyone.yml``: its operators are ``<PLUGIN_NAME>/<operator>``
PLUGIN_NAME = "@alc/active-label-correction"
MISSED_PINGS = 5  # monitor intervals without a ping after which a monitored worker is dead
RUNS_KEY = "shard_runs"  # dataset.info["alc"][RUNS_KEY][run_id][str(index)] = shard record

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """One slice of a collection: ``index`` of ``count`` (1-based) and/or an inclusive range
    of sample ids. Without ids, the range is computed from the collection when it is used."""

    index: int | None = None
    count: int | None = None
    first_id: str | None = None
    last_id: str | None = None

    @property
    def label(self) -> str:
        if self.index is not None:
            return f"{self.index}/{self.count}"
        return f"ids {self.first_id}..{self.last_id}"

    def to_param(self) -> dict:
        """The shard as a JSON operator parameter (``shard``)."""
        return {
            "index": self.index,
            "count": self.count,
            "first_id": self.first_id,
            "last_id": self.last_id,
        }


def parse_shard(spec) -> Shard | None:
    """A :class:`Shard` from ``"i/n"`` (1 <= i <= n), an id range ``(first_id, last_id)``,
    a dict as written by :meth:`Shard.to_param`, or a Shard; None or ``""`` means no shard."""
    if spec is None or spec == "" or isinstance(spec, Shard):
        return spec or None
    if isinstance(spec, str):
        m = _SPEC.match(spec)
        if not m:
            raise ALCError(f"shard {spec!r}: expected 'i/n', e.g. '1/4' (the first of four)")
        shard = Shard(index=int(m.group(1)), count=int(m.group(2)))
    elif isinstance(spec, dict):
        unknown = set(spec) - {"index", "count", "first_id", "last_id"}
        if unknown:
            raise ALCError(f"shard {spec!r}: unknown keys {sorted(unknown)}")
        shard = Shard(**spec)
    elif isinstance(spec, (list, tuple)) and len(spec) == 2:
        shard = Shard(first_id=str(spec[0]), last_id=str(spec[1]))
    else:
        raise ALCError(f"shard {spec!r}: expected 'i/n', (first_id, last_id) or a dict")
    if (shard.index is None) != (shard.count is None):
        raise ALCError(f"shard {spec!r}: 'index' and 'count' go together")
    if shard.index is not None and not 1 <= shard.index <= shard.count:
        raise ALCError(
            f"shard {spec!r}: the index must lie in 1..{shard.count} (shards count from 1)"
        )
    if (shard.first_id is None) != (shard.last_id is None):
        raise ALCError(f"shard {spec!r}: 'first_id' and 'last_id' go together")
    if shard.index is None and shard.first_id is None:
        raise ALCError(f"shard {spec!r}: neither 'i/n' nor an id range")
    for sid in (shard.first_id, shard.last_id):
        if sid is not None and not re.fullmatch(r"[0-9a-f]{24}", sid):
            raise ALCError(f"shard {spec!r}: {sid!r} is not a sample id")
    return shard


def sorted_ids(samples) -> list[str]:
    """The sample ids of ``samples`` in shard order (ObjectId order)."""
    return sorted(samples.values("id"))


def split_ids(ids: list[str], count: int) -> list[list[str]]:
    """``ids`` cut into ``count`` contiguous slices whose sizes differ by at most one."""
    if count < 1:
        raise ALCError(f"the number of shards must be at least 1, got {count}")
    q, r = divmod(len(ids), count)
    out, start = [], 0
    for i in range(count):
        stop = start + q + (1 if i < r else 0)
        out.append(ids[start:stop])
        start = stop
    return out


def make_shards(samples: SampleCollection, count: int) -> list[Shard]:
    """The ``count`` shards of ``samples`` as fixed id ranges (fewer when there are fewer
    samples than shards).

    Parameters
    ----------
    samples
        The dataset or view to work on.
    count
        Number of shards.

    Returns
    -------
    list of Shard
        The shards, each a fixed id range.
    """
    ids = sorted_ids(samples)
    if not ids:
        raise ALCError("the view is empty: there are no samples to shard")
    count = min(count, len(ids))
    return [
        Shard(index=i + 1, count=count, first_id=part[0], last_id=part[-1])
        for i, part in enumerate(split_ids(ids, count))
    ]


def shard_view(samples: SampleCollection, shard: str | dict | None):
    """The samples of ``samples`` in ``shard`` (see :func:`parse_shard`), in id order.

    ``None`` returns ``samples`` unchanged. An ``"i/n"`` shard without ids is cut from the
    current ids of ``samples``; an empty shard is an error naming it.

    Parameters
    ----------
    samples
        The dataset or view to work on.
    shard
        ``"i/n"`` or a shard's parameter (its id range); None: all of ``samples``.

    Returns
    -------
    fiftyone.core.view.DatasetView
        The samples of the shard, in id order.
    """
    from bson import ObjectId
    from fiftyone import ViewField as F

    shard = parse_shard(shard)
    if shard is None:
        return samples
    first, last = shard.first_id, shard.last_id
    if first is None:
        part = split_ids(sorted_ids(samples), shard.count)[shard.index - 1]
        if not part:
            raise ALCError(
                f"shard {shard.label} is empty: the view has only {len(samples)} sample(s)"
            )
        first, last = part[0], part[-1]
    view = samples.match((F("_id") >= ObjectId(first)) & (F("_id") <= ObjectId(last)))
    view = view.sort_by(F("_id"))
    if len(view) == 0:
        raise ALCError(f"shard {shard.label} holds no sample of the view")
    return view


def operator_uri(operator: str) -> str:
    """``"compute_superpixels"`` -> the plugin's full operator URI (full URIs unchanged)."""
    return operator if operator.startswith("@") else f"{PLUGIN_NAME}/{operator}"


@dataclass
class ShardRun:
    """The delegated operations of one sharded step, by shard (``op_ids[i]`` runs shard i+1)."""

    run_id: str
    operator: str
    dataset_name: str
    op_ids: list[str] = field(default_factory=list)

    @property
    def num_shards(self) -> int:
        return len(self.op_ids)

    def states(self) -> list[dict]:
        """Per shard: ``shard`` ("i/n"), ``id`` (the operation), ``state`` (queued, running,
        completed, failed), ``progress`` (0..1 or None), ``label``, ``updated_at``, ``error``."""
        from fiftyone.operators.delegated import DelegatedOperationService

        svc = DelegatedOperationService()
        out = []
        for i, op_id in enumerate(self.op_ids, start=1):
            op = svc.get(_oid(op_id))
            if op is None:
                out.append({"shard": f"{i}/{self.num_shards}", "id": op_id, "state": "missing"})
                continue
            status = op.status
            result = op.result
            out.append(
                {
                    "shard": f"{i}/{self.num_shards}",
                    "id": op_id,
                    "state": str(op.run_state),
                    "progress": getattr(status, "progress", None),
                    "label": getattr(status, "label", None),
                    "updated_at": op.updated_at,
                    "error": getattr(result, "error", None) if result is not None else None,
                }
            )
        return out

    def wait(self, timeout: float | None = None, poll: float = 1.0, progress=None) -> list:
        """Wait until every shard has completed; return :meth:`states`.

        Raises ALCError naming the shard(s) that failed, or TimeoutError after ``timeout``
        seconds naming the shards not done. ``progress(done, total, "shards")`` is called on
        each poll.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            states = self.states()
            done = sum(s["state"] == "completed" for s in states)
            if progress is not None:
                progress(done, len(states), "shards")
            failed = [s for s in states if s["state"] in ("failed", "missing")]
            if failed:
                raise ALCError(
                    f"{self.operator} run {self.run_id}: "
                    + "; ".join(
                        f"shard {s['shard']} (operation {s['id']}) {s['state']}: "
                        f"{_last_line(s.get('error'))}"
                        for s in failed
                    )
                    + " -- rerun them with ShardRun.rerun()"
                )
            if done == len(states):
                return states
            if deadline is not None and time.monotonic() > deadline:
                pending = [
                    f"{s['shard']} ({s['state']})" for s in states if s["state"] != "completed"
                ]
                raise TimeoutError(
                    f"{self.operator} run {self.run_id}: shards not done after {timeout} s: "
                    + ", ".join(pending)
                )
            time.sleep(poll)

    def rerun(self, stale_after: float | None = None) -> list[str]:
        """Queue again the shards that failed, and those whose worker died: still RUNNING
        without progress for ``stale_after`` seconds, or, when ``stale_after`` is None and
        the worker runs with ``--monitor`` (``fiftyone delegated launch --monitor``: it pings
        its operation every ``fo.config.delegated_operation_monitor_interval`` seconds), for
        :data:`MISSED_PINGS` of those intervals. FiftyOne never marks such an operation
        itself; they are marked failed first, as ``fiftyone delegated fail <id>`` does.
        Returns the shards ("i/n") re-queued; ``op_ids`` then holds the new operations.

        Safe because every step is copy-on-write and idempotent per sample: a shard cut short
        left each sample on its old result or on a complete new one, and the rerun redoes the
        samples without a result (and, for ranking, the whole shard).
        """
        from fiftyone.operators.delegated import DelegatedOperationService
        from fiftyone.operators.executor import ExecutionResult, ExecutionRunState

        svc = DelegatedOperationService()
        now = datetime.now(timezone.utc).replace(tzinfo=None)  # FiftyOne stores naive UTC
        rerun = []
        for i, op_id in enumerate(list(self.op_ids)):
            op = svc.get(_oid(op_id))
            if op is None:
                raise ALCError(f"shard {i + 1}/{self.num_shards}: operation {op_id} is gone")
            state = str(op.run_state)
            limit = stale_after
            if limit is None and getattr(op, "monitored", False):
                import fiftyone as fo

                limit = MISSED_PINGS * fo.config.delegated_operation_monitor_interval
            if state == ExecutionRunState.RUNNING and limit is not None:
                updated = op.updated_at or op.started_at or now
                if (now - updated).total_seconds() >= limit:
                    marked = svc.set_failed(
                        op.id,
                        result=ExecutionResult(
                            error=f"marked failed by alc-fiftyone: no progress for "
                            f"{limit:g} s (worker gone)"
                        ),
                        required_state=ExecutionRunState.RUNNING,
                    )
                    state = ExecutionRunState.FAILED if marked is not None else state
            if state == ExecutionRunState.FAILED:
                new = svc.rerun_operation(op.id)
                self.op_ids[i] = str(new.id)
                rerun.append(f"{i + 1}/{self.num_shards}")
        return rerun

    def results(self) -> list:
        """The operators' results (their ``summary`` dicts) by shard, None where not done."""
        from fiftyone.operators.delegated import DelegatedOperationService

        svc = DelegatedOperationService()
        out = []
        for op_id in self.op_ids:
            op = svc.get(_oid(op_id))
            result = getattr(op, "result", None)
            out.append(getattr(result, "result", None) if result is not None else None)
        return out


def queue_shards(
    samples: SampleCollection,
    operator: str,
    params: dict | None = None,
    num_shards: int = 2,
    run_id: str | None = None,
) -> ShardRun:
    """Queue ``operator`` once per shard of ``samples`` as FiftyOne delegated operations.

    ``operator`` is one of the plugin's operators (``"compute_superpixels"``,
    ``"rank_superpixels"``, ``"generate_pseudo_labels"``, ``"compute_sam_superpixels"``) or a
    full URI; ``params`` are its parameters (as in the App form). Each operation gets the
    parameter ``shard`` (its fixed id range and "i/n") and ``run_id``, and the label
    ``"<operator> <run_id> shard i/n"``. Workers started with ``fiftyone delegated launch``
    (on any machine sharing the database, the media and ``ALC_FIFTYONE_DIR``) run them.

    A sharded ranking merges itself when its last shard finishes (see
    :func:`merge_ranking`). Returns a :class:`ShardRun` to watch, wait for and rerun.

    Parameters
    ----------
    samples
        The dataset or view to work on.
    operator
        The plugin operator (``"rank_superpixels"``, ...) or its full URI.
    params
        The operator's parameters, as in its form.
    num_shards
        Number of shards.
    run_id
        The run's id (default: a new one).

    Returns
    -------
    ShardRun
        The queued run, to watch, wait for and rerun.
    """
    import fiftyone.operators as foo
    from fiftyone.operators.delegated import DelegatedOperationService

    params = dict(params or {})
    params.pop("delegate", None)
    run_id = run_id or uuid.uuid4().hex[:12]
    uri = operator_uri(operator)
    name = uri.rsplit("/", 1)[-1]
    shards = make_shards(samples, num_shards)
    svc = DelegatedOperationService()
    run = ShardRun(run_id=run_id, operator=name, dataset_name=db.dataset_of(samples).name)
    for shard in shards:
        shard_params = {**params, "shard": shard.to_param(), "run_id": run_id}
        queued = foo.execute_operator(
            uri,
            ctx={"view": samples.view(), "params": shard_params},
            request_delegation=True,
        )
        if not queued.delegated:
            raise ALCError(f"{uri} did not accept delegated execution")
        op_id = str(queued.result["id"])
        svc.set_label(_oid(op_id), f"{name} {run_id} shard {shard.label}")
        run.op_ids.append(op_id)
    return run


def find_shard_run(dataset: SampleCollection, run_id: str) -> ShardRun:
    """The :class:`ShardRun` ``run_id`` of ``dataset``, rebuilt from FiftyOne's delegated
    operations (e.g. in another process than the one that queued it). The latest operation
    of each shard wins (a rerun replaces its failed one).

    Parameters
    ----------
    dataset
        The dataset (or a view of it) holding the queries.
    run_id
        The run id ``queue_shards`` returned.

    Returns
    -------
    ShardRun
        The run, rebuilt from FiftyOne's delegated operations.
    """
    from fiftyone.operators.delegated import DelegatedOperationService

    svc = DelegatedOperationService()
    by_index: dict[int, tuple] = {}
    count = None
    operator = None
    for op in svc.list_operations(dataset_name=dataset.name):
        params = (getattr(op.context, "request_params", None) or {}).get("params") or {}
        if params.get("run_id") != run_id:
            continue
        shard = parse_shard(params.get("shard"))
        if shard is None or shard.index is None:
            continue
        count = shard.count
        operator = op.operator.rsplit("/", 1)[-1]
        key = op.queued_at or datetime.min
        if shard.index not in by_index or key >= by_index[shard.index][0]:
            by_index[shard.index] = (key, str(op.id))
    if not by_index:
        raise ALCError(f"no delegated operation of run {run_id!r} on dataset {dataset.name!r}")
    missing = [i for i in range(1, count + 1) if i not in by_index]
    if missing:
        raise ALCError(f"run {run_id!r}: no operation for shard(s) {missing} of {count}")
    return ShardRun(
        run_id=run_id,
        operator=operator,
        dataset_name=dataset.name,
        op_ids=[by_index[i][1] for i in range(1, count + 1)],
    )


def _oid(op_id):
    from bson import ObjectId

    return ObjectId(op_id) if isinstance(op_id, str) else op_id


def _last_line(text) -> str:
    if not text:
        return "no error recorded"
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else str(text)


# -- ranking shards ------------------------------------------------------------------------------


def record_ranking_shard(samples, record: dict, run_id: str, shard: Shard) -> dict:
    """Store a ranking shard's record (atomically, under its own key) and merge the run when
    this was its last shard. Returns the shard record, with ``merged`` (the round record) when
    this call merged."""
    dataset = db.dataset_of(samples)
    record = {**record, "shard": shard.label, "finished_at": _now()}
    update_alc_info(dataset, **{f"{RUNS_KEY}.{run_id}.shards.{shard.index}": record})
    if _claim_merge(dataset, run_id, shard.count):
        record["merged"] = merge_ranking(samples, run_id)
    return record


def _claim_merge(dataset, run_id: str, count: int) -> bool:
    """True for exactly one caller once all ``count`` shards of ``run_id`` are recorded."""
    base = f"info.alc.{RUNS_KEY}.{run_id}"
    condition = {f"{base}.merge_claimed": {"$exists": False}}
    for i in range(1, count + 1):
        condition[f"{base}.shards.{i}"] = {"$exists": True}
    return db.update_dataset_document(
        dataset, {"$set": {f"{base}.merge_claimed": _now()}}, condition
    )


def merge_ranking(
    samples: SampleCollection, run_id: str, queries_field: str | None = None
) -> dict:
    """Merge the queries of the ranking shards of ``run_id`` into one global top-B.

    ``samples`` is the whole ranked collection (every shard). Each shard wrote the top-B
    queries of its own samples, tagged ``shard_run=run_id``; the B best of all of them (by
    score, ties broken by the sample's place in ``samples`` and then the smaller superpixel
    id, as a single-process ranking does) are kept and numbered 1..B, the others are deleted,
    and one round is appended to ``dataset.info["alc"]["rounds"]``. Only the merge writes the
    round history. Merging again after a merge returns the recorded round (idempotent).

    Parameters
    ----------
    samples
        The dataset or view to work on.
    run_id
        The run id of the ranking shards.
    queries_field
        The queries field (default: the one the shards recorded).

    Returns
    -------
    dict
        The round's record.
    """
    from fiftyone import ViewField as F

    dataset = db.dataset_of(samples)
    dataset.reload()
    info = alc_info(dataset)
    rounds = list(info.get("rounds") or [])
    for r in rounds:
        if r.get("run_id") == run_id:
            return r
    run = (info.get(RUNS_KEY) or {}).get(run_id) or {}
    records = run.get("shards") or {}
    if not records:
        raise ALCError(f"ranking run {run_id!r}: no shard has finished")
    first = next(iter(records.values()))
    count = int(first["num_shards"])
    missing = [i for i in range(1, count + 1) if str(i) not in records]
    if missing:
        raise ALCError(
            f"ranking run {run_id!r}: shard(s) "
            + ", ".join(f"{i}/{count}" for i in missing)
            + " have not finished; run them (ShardRun.rerun) before merging"
        )
    queries_field = queries_field or first["queries_field"]
    budget = int(first["budget"])
    order = {sid: i for i, sid in enumerate(samples.values("id"))}
    tagged = samples.filter_labels(queries_field, F("shard_run") == run_id)
    ids = tagged.values(f"{queries_field}.detections.id")
    sids = tagged.values("id")
    scores = tagged.values(f"{queries_field}.detections.score")
    sp_ids = tagged.values(f"{queries_field}.detections.superpixel_id")
    statuses = tagged.values(f"{queries_field}.detections.status")
    cands = []
    for sid, lids, scs, sps, sts in zip(sids, ids, scores, sp_ids, statuses):
        for lid, sc, sp, st in zip(lids or [], scs or [], sps or [], sts or []):
            if sid not in order:
                raise ALCError(f"sample {sid} holds a query of run {run_id} but is not ranked")
            cands.append(((float(sc), -order[sid], -int(sp)), lid, st))
    cands.sort(key=lambda c: c[0], reverse=True)
    keep, drop = cands[:budget], cands[budget:]
    answered = [c for c in drop if c[2] != "pending"]
    if answered:
        # a reviewer answered a query before the merge: keep it (it is the user's work)
        keep += answered
        drop = [c for c in drop if c[2] == "pending"]
    round_no = 1 + sum(1 for r in rounds if r.get("queries_field") == queries_field)
    try:
        if drop:
            dataset.delete_labels(ids=[c[1] for c in drop], fields=queries_field)
        if keep:
            ranks = {c[1]: rank for rank, c in enumerate(keep, start=1)}
            dataset.set_label_values(f"{queries_field}.detections.rank", ranks)
            dataset.set_label_values(
                f"{queries_field}.detections.round", {lid: round_no for lid in ranks}
            )
    finally:
        changes.reset(dataset)  # the review caches of this process re-read the queries
    shard_records = [records[str(i)] for i in range(1, count + 1)]
    record = {
        k: first[k]
        for k in (
            "queries_field",
            "label_field",
            "superpixel_field",
            "revised_field",
            "method",
            "model",
            "tau",
            "budget",
        )
        if k in first
    }
    record.update(
        round=round_no,
        run_id=run_id,
        num_shards=count,
        num_queries=len(keep),
        num_samples=sum(int(r["num_samples"]) for r in shard_records),
        num_superpixels=int(first["num_superpixels_total"]),
        excluded_answered=sum(int(r["excluded_answered"]) for r in shard_records),
        ranked_at=max(r["ranked_at"] for r in shard_records),
        merged_at=_now(),
        seconds_fit=[r["seconds_fit"] for r in shard_records],
        seconds_score=[r["seconds_score"] for r in shard_records],
        model_fit="per shard",
    )
    append_alc_info(dataset, "rounds", record)
    update_alc_info(
        dataset,
        label_field=info.get("label_field", record.get("label_field")),
        ignore_index=first.get("ignore_index"),
        **{f"{RUNS_KEY}.{run_id}.merged": record["merged_at"]},
    )
    return record


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
