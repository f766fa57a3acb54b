"""compute_superpixels: a superpixel id map per sample, stored as a uint16 mask file."""

from __future__ import annotations

from .core import superpixels as csp
from .labels import update_alc_info
from .maps import compute_mask_field
from .progress import ProgressCallback
from .storage import read_image

METHODS = ("slic", "felzenszwalb")


def compute_superpixels(
    samples,
    method: str = "slic",
    field: str = "alc_superpixels",
    overwrite: bool = False,
    skip_failures: bool = False,
    progress: ProgressCallback | None = None,
    **params,
) -> dict:
    """Compute superpixels for every sample of ``samples`` into ``field``.

    ``method`` is ``"slic"`` (params ``n_segments``, ``compactness``, ``sigma``) or
    ``"felzenszwalb"`` (``scale``, ``sigma``, ``min_size``), from scikit-image. Ids are 1..N
    (uint16), 0 is unused; the count is stored as the ``num_superpixels`` attribute of each
    mask. Samples that already have superpixels are skipped unless ``overwrite``.
    Returns a summary dict (processed, skipped_existing, failed, mean_superpixels).
    """
    if method not in METHODS:
        raise ValueError(f"unknown superpixel method {method!r}; choose one of {METHODS}")
    counts = []

    def one(sample):
        ids = csp.superpixels(read_image(sample), method=method, **params)
        n = int(ids.max())
        counts.append(n)
        return ids, {"num_superpixels": n, "method": method}

    summary = compute_mask_field(
        samples,
        field,
        one,
        overwrite=overwrite,
        skip_failures=skip_failures,
        progress=progress,
        desc=f"superpixels ({method})",
    )
    dataset = samples._dataset
    if dataset.default_mask_targets:
        # default_mask_targets would label superpixel ids as classes in the App
        dataset.mask_targets = {**(dataset.mask_targets or {}), field: {}}
    sp = dict(dataset.info.get("alc", {}).get("superpixels") or {})
    sp[field] = {"method": method, "params": {k: v for k, v in params.items()}}
    update_alc_info(dataset, superpixels=sp)
    summary.update(
        method=method, mean_superpixels=float(sum(counts) / len(counts)) if counts else 0.0
    )
    return summary
