"""Computing one mask per sample into a Segmentation field, safely and in bulk.

Used by compute_superpixels, corrupt_labels and the pseudo-label step: each mask is written
to a new file (copy-on-write, see files.py) and the samples are pointed at their new files in
bulk batches, so a failure leaves every sample either on its old mask or on a complete new one.

The work of one sample is either a function of the sample, run here, or a :class:`MaskJob`:
its ``prepare`` takes what the work needs from the sample here (paths, small arrays), its
``compute`` is a pure function of those that runs in worker processes on all cores
(:mod:`alc_fiftyone.core.pool`), and only the database writes stay in this process. A later
pass over the samples (e.g. finer regions from the image and a coarser map) is one more job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import fiftyone as fo
import numpy as np

from ..core.pool import TaskFailed, run_tasks
from ..errors import OutputError, SampleError
from ..progress import ProgressCallback
from .db import dataset_of
from .fields import batched, require_nonempty, set_values_by_id
from .files import compute_mask_file, new_mask_path, ready_mask_dir, write_mask
from .roles import record_output, require_writable

BATCH = 200


@dataclass(frozen=True)
class MaskJob:
    """One sample's work in two parts, so that the heavy one runs in worker processes.

    ``prepare(sample) -> args`` runs in this process and reads from the sample what the work
    needs (its image path, a field's mask file or inline mask: nothing that needs the
    database later); ``compute(*args) -> (mask, attributes)`` is a module-level function of
    those alone (importable without FiftyOne, it runs in a worker). ``done(attributes)`` is
    called here for each finished sample (e.g. to count its regions).
    """

    prepare: Callable[[object], tuple]
    compute: Callable[..., tuple[np.ndarray, dict]]
    done: Callable[[dict], None] | None = None


def compute_mask_field(
    samples,
    field: str,
    fn: Callable[[object], tuple[np.ndarray, dict]],
    *,
    kind: str,
    step: str,
    overwrite: bool = False,
    skip_failures: bool = False,
    progress: ProgressCallback | None = None,
    desc: str = "",
    select_fields: tuple[str, ...] = (),
    workers: int | None = None,
) -> dict:
    """Run ``fn(sample) -> (mask, attributes)`` on every sample and store the result in
    ``field`` as ``fo.Segmentation(mask_path=..., **attributes)``.

    ``fn`` may be a :class:`MaskJob`: its ``compute`` then runs in ``workers`` processes (None:
    one per CPU; 1: here), a batch of samples at a time, and ``progress`` counts the samples
    finished. The masks are the same as in one process.

    Samples that already have ``field`` are skipped unless ``overwrite``. A SampleError on one
    sample is raised after the samples done before it are saved (``skip_failures=False``), or
    recorded in the returned summary and skipped (``skip_failures=True``). An OutputError
    (disk full, read-only folder) is always raised, after the samples done before it are saved.
    With a job the same holds, in the samples' order: those before the first failing sample
    are saved, those after it are not (their new files are removed).

    ``kind`` is what the masks are, ``step`` the public function writing them (:data:`~alc_fiftyone.store.roles.SUPERPIXELS`,
    :data:`~alc_fiftyone.store.roles.NOISY`, ...): before anything is computed, the field must
    be writable as such (:func:`~alc_fiftyone.store.roles.require_writable`), so no step
    writes over the labels under review, a ground truth or another step's output; the kind is
    recorded (:func:`~alc_fiftyone.store.roles.record_output`) before the first mask.
    """
    require_writable(samples, field, kind, step)
    require_nonempty(samples)
    record_output(samples, field, kind, step)  # before the first mask: a rerun knows it
    dataset = dataset_of(samples)
    if overwrite or not samples.has_field(field):
        todo = samples
    else:
        todo = samples.exists(field, False)
    todo = todo.select_fields(list(select_fields)) if select_fields else todo
    total = len(todo)
    done = processed = 0
    failed: list[dict] = []
    if progress:
        progress(0, total, desc)
    ids = todo.values("id")
    if isinstance(fn, MaskJob):
        processed, done = _run_job(
            samples, todo, ids, field, fn, skip_failures, failed, progress, desc, workers
        )
        ids = []
    for batch_ids in batched(ids, BATCH):
        values = {}
        error = None
        for sample in todo.select(batch_ids, ordered=True).iter_samples():
            try:
                mask, attrs = fn(sample)
                path = write_mask(mask, dataset, field, sample.id)
                values[sample.id] = fo.Segmentation(mask_path=path, **attrs)
                processed += 1
            except SampleError as e:
                if not skip_failures:
                    error = e
                    break
                failed.append({"id": e.sample_id, "filepath": e.filepath, "error": e.problem})
            except OutputError as e:  # the output folder, not the sample: fatal for all
                error = e
                break
            done += 1
            if progress:
                progress(done, total, desc)
        set_values_by_id(samples, field, values)
        if error is not None:
            raise error
    return {
        "field": field,
        "processed": processed,
        "skipped_existing": len(samples) - total,
        "failed": failed,
    }


def _run_job(samples, todo, ids, field, job: MaskJob, skip, failed, progress, desc, workers):
    """compute_mask_field's loop for a :class:`MaskJob`; returns (processed, done)."""
    dataset = dataset_of(samples)
    total = len(ids)
    done = processed = 0
    for batch_ids in batched(ids, BATCH):
        values: dict = {}
        errors: list[tuple[int, Exception]] = []
        tasks, owners = [], []
        for sample in todo.select(batch_ids, ordered=True).iter_samples():
            try:
                args = tuple(job.prepare(sample))
            except SampleError as e:
                if not skip:
                    errors.append((len(owners), e))
                    break
                failed.append({"id": e.sample_id, "filepath": e.filepath, "error": e.problem})
                done += 1
                if progress:
                    progress(done, total, desc)
                continue
            if not tasks:
                ready_mask_dir(dataset, field)
            path = str(new_mask_path(dataset, field, sample.id))
            tasks.append((job.compute, args, path, sample.id, field))
            owners.append((sample.id, sample.filepath))
        results = {}
        first_bad = len(owners) if not errors else errors[0][0]  # a prepare that failed
        for i, ok, value in run_tasks(compute_mask_file, tasks, workers):
            sid, filepath = owners[i]
            if not ok and isinstance(value, TaskFailed):
                value = SampleError(sid, f"computing its {field!r} mask failed: {value}", filepath)
            results[i] = (ok, value)
            if not ok and not (skip and isinstance(value, SampleError)):
                first_bad = min(first_bad, i)
            else:
                done += 1  # counted as it finishes
                if progress:
                    progress(done, total, desc)
            if first_bad < len(owners) and all(j in results for j in range(first_bad)):
                break  # as in one process: the samples before the failing one are kept
        for i in sorted(results):
            ok, value = results[i]
            sid, filepath = owners[i]
            if i > first_bad:
                if ok:  # finished after the failing one: not kept (and not left behind)
                    Path(value[0]).unlink(missing_ok=True)
                continue
            if ok:
                path, attrs = value
                values[sid] = fo.Segmentation(mask_path=path, **attrs)
                processed += 1
                if job.done is not None:
                    job.done(attrs)
            elif i < first_bad:  # a failure skipped
                failed.append(
                    {"id": value.sample_id, "filepath": value.filepath, "error": value.problem}
                )
            else:
                errors.append((i, value))
        set_values_by_id(samples, field, values)
        if errors:
            raise min(errors, key=lambda e: e[0])[1]
    return processed, done
