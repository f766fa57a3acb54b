"""corrupt_labels: seeded label noise from a ground-truth field, for measuring correction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..core import noise as cn
from ..core.noise import sample_seed
from ..progress import ProgressCallback
from ..store.db import dataset_of
from ..store.fields import class_table, mask_targets
from ..store.files import read_segmentation
from ..store.info import update_alc_info
from ..store.masks import compute_mask_field
from ..store.roles import NOISY

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


def corrupt_labels(
    samples: SampleCollection,
    gt_field: str,
    out_field: str,
    rate: float = 0.2,
    seed: int = 0,
    kinds: Sequence[str] = cn.KINDS,
    overwrite: bool = True,
    skip_failures: bool = False,
    progress: ProgressCallback | None = None,
    **kwargs,
) -> dict:
    """Write a corrupted copy of ``gt_field`` into ``out_field`` (see ``core.noise``).

    About ``rate`` of each image's non-ignore pixels get a wrong class through object-level
    class swaps, missed objects, boundary shifts and spurious blobs (``kinds``). Each sample's
    noise depends only on ``seed`` and its file name, so a subset gets the same noise.
    A sample whose mask cannot be read stops the run with a SampleError naming it, or with
    ``skip_failures=True`` is left out and listed in the summary's ``failed``.

    Parameters
    ----------
    samples
        The dataset or view to work on.
    gt_field
        The ground truth (an ``fo.Segmentation`` field).
    out_field
        The field that receives the noisy labels.
    rate
        About this share of each image's non-ignore pixels gets a wrong class.
    seed
        Seed of everything random in the step.
    kinds
        The kinds of noise: ``"swap"``, ``"miss"``, ``"boundary"``, ``"blob"``.
    overwrite
        Redo samples that already have a result (else they are skipped).
    skip_failures
        Leave out (and list in the summary's ``failed``) samples whose files cannot be read,
        instead of stopping.
    progress
        ``progress(done, total, description)``, e.g. the CLI's tqdm bars.
    **kwargs
        Further parameters of :func:`alc_fiftyone.core.noise.corrupt`.

    Returns
    -------
    dict
        The summary of the per-sample step, with the achieved ``error_rate``.
    """
    if out_field == gt_field:
        raise ValueError(
            f"corrupt_labels: out_field is gt_field {gt_field!r}: the noise would replace the "
            "ground truth it is made from; choose another out_field"
        )
    dataset = dataset_of(samples)
    names, ignore, num_classes = class_table(dataset, gt_field)
    achieved = []

    def one(sample):
        gt = read_segmentation(sample, gt_field)
        noisy = cn.corrupt(
            gt,
            num_classes,
            rate=rate,
            seed=sample_seed(seed, sample.filepath),
            kinds=kinds,
            ignore_index=ignore if ignore is not None else 255,
            **kwargs,
        )
        achieved.append(
            cn.error_rate(noisy, gt, ignore_index=ignore if ignore is not None else 255)
        )
        return noisy, {}

    summary = compute_mask_field(
        samples,
        out_field,
        one,
        kind=NOISY,
        step="corrupt_labels",
        overwrite=overwrite,
        skip_failures=skip_failures,
        progress=progress,
        desc="corrupt labels",
        select_fields=(gt_field,),
    )
    dataset.mask_targets = {
        **(dataset.mask_targets or {}),
        out_field: mask_targets(dataset, gt_field) or names,
    }
    record = {
        "gt_field": gt_field,
        "out_field": out_field,
        "rate": rate,
        "seed": seed,
        "kinds": list(kinds),
    }
    # what each field holds (store.roles): the latest noise, and one entry per field written
    update_alc_info(
        dataset,
        noise=record,
        **{
            f"noisy_labels.{out_field}": record,
            f"ground_truth.{gt_field}": {"by": "corrupt_labels", "noisy_field": out_field},
        },
    )
    summary["error_rate"] = float(sum(achieved) / len(achieved)) if achieved else 0.0
    return summary
