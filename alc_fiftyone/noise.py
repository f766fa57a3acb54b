"""corrupt_labels: seeded label noise from a ground-truth field, for measuring correction."""

from __future__ import annotations

import zlib
from pathlib import Path

from .core import noise as cn
from .labels import class_table, mask_targets, update_alc_info
from .maps import compute_mask_field
from .progress import ProgressCallback
from .storage import read_segmentation


def sample_seed(seed: int, filepath: str) -> int:
    """Seed of one sample: the run's seed and the image's file name, independent of order."""
    return (int(seed) * 1_000_003 + zlib.crc32(Path(filepath).name.encode())) % (2**32)


def corrupt_labels(
    samples,
    gt_field: str,
    out_field: str,
    rate: float = 0.2,
    seed: int = 0,
    kinds=cn.KINDS,
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
    """
    dataset = samples._dataset
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
    update_alc_info(
        dataset,
        noise={
            "gt_field": gt_field,
            "out_field": out_field,
            "rate": rate,
            "seed": seed,
            "kinds": list(kinds),
        },
    )
    summary["error_rate"] = float(sum(achieved) / len(achieved)) if achieved else 0.0
    return summary
