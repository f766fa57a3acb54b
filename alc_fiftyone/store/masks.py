"""Computing one mask per sample into a Segmentation field, safely and in bulk.

Used by compute_superpixels, corrupt_labels and the pseudo-label step: each mask is written
to a new file (copy-on-write, see files.py) and the samples are pointed at their new files in
bulk batches, so a failure leaves every sample either on its old mask or on a complete new one.
"""

from __future__ import annotations

from collections.abc import Callable

import fiftyone as fo
import numpy as np

from ..errors import OutputError, SampleError
from ..progress import ProgressCallback
from .db import dataset_of
from .fields import batched, require_nonempty, set_values_by_id
from .files import write_mask
from .roles import record_output, require_writable

BATCH = 200


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
) -> dict:
    """Run ``fn(sample) -> (mask, attributes)`` on every sample and store the result in
    ``field`` as ``fo.Segmentation(mask_path=..., **attributes)``.

    Samples that already have ``field`` are skipped unless ``overwrite``. A SampleError on one
    sample is raised after the samples done before it are saved (``skip_failures=False``), or
    recorded in the returned summary and skipped (``skip_failures=True``). An OutputError
    (disk full, read-only folder) is always raised, after the samples done before it are saved.

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
