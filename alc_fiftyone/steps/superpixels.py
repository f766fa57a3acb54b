"""compute_superpixels: a superpixel id map per sample, stored as a uint16 mask file."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from ..core import superpixels as csp
from ..errors import SampleError
from ..progress import ProgressCallback
from ..store.db import dataset_of
from ..store.fields import PSEUDO_INSTANCES_FIELD, SUPERPIXELS_FIELD
from ..store.files import check_same_size, read_image, read_segmentation
from ..store.info import alc_info, update_alc_info
from ..store.masks import compute_mask_field

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


METHODS = ("slic", "felzenszwalb", "sam", "pseudo_instances")


def compute_superpixels(
    samples: SampleCollection,
    method: str = "slic",
    field: str = SUPERPIXELS_FIELD,
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

    ``method="sam"``: full-coverage superpixels from SAM automatic masks
    (:func:`alc_fiftyone.core.sam_masks.sam_superpixels`; params ``sam`` (a loaded model) or
    ``model_type``/``checkpoint``/``device``, ``batch_size`` images per encoder call,
    ``workers`` CPU threads for gap filling,
    ``cache`` (reuse/store float16 embeddings), ``points_per_side``, ``pred_iou_thresh``,
    ``stability_score_thresh``, ``box_nms_thresh``, ``max_masks``, ``min_area``,
    ``fill_segment_area``). ``method="pseudo_instances"``: the instance masks of the pseudo
    labels, read from ``instances_field`` (default ``PSEUDO_INSTANCES_FIELD``, written by
    ``generate_pseudo_labels``); ``fill=False`` leaves uncovered pixels at 0 (the paper),
    ``fill=True`` splits them with SLIC; ``min_area`` merges small pieces.
    Returns a summary dict (processed, skipped_existing, failed, mean_superpixels).

    Parameters
    ----------
    samples
        The dataset or view to work on.
    method
        ``"slic"``, ``"felzenszwalb"``, ``"sam"`` or ``"pseudo_instances"`` (see above).
    field
        The field that receives the result.
    overwrite
        Redo samples that already have a result (else they are skipped).
    skip_failures
        Leave out (and list in the summary's ``failed``) samples whose files cannot be read,
        instead of stopping.
    progress
        ``progress(done, total, description)``, e.g. the CLI's tqdm bars.
    **params
        The method's parameters (see above).

    Returns
    -------
    dict
        ``processed``, ``skipped_existing``, ``failed``, ``method``, ``mean_superpixels`` and, when
        nothing was computed, ``note``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown superpixel method {method!r}; choose one of {METHODS}")
    counts = []

    if method == "sam":
        summary = sam_superpixels_field(
            samples,
            field,
            overwrite=overwrite,
            skip_failures=skip_failures,
            progress=progress,
            **params,
        )
        counts = None
    else:
        if method == "pseudo_instances":
            one = _pseudo_instances_fn(params, counts)
            source = params.get("instances_field", PSEUDO_INSTANCES_FIELD)
            read = (source,) if samples.has_field(source) else ()  # () : no selection
        else:
            read = ("filepath",)  # only the image: other fields are not loaded

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
            select_fields=read,
        )
    dataset = dataset_of(samples)
    if dataset.default_mask_targets:
        # default_mask_targets would label superpixel ids as classes in the App
        dataset.mask_targets = {**(dataset.mask_targets or {}), field: {}}
    record = {"method": method, "params": {k: v for k, v in params.items() if _plain(v)}}
    before = (alc_info(dataset).get("superpixels") or {}).get(field)
    if summary["processed"] == 0 and summary["skipped_existing"] and not summary["failed"]:
        # nothing computed: the record keeps saying what the samples hold
        had = (before or {}).get("method", "an unrecorded method")
        summary["note"] = (
            f"all {summary['skipped_existing']} sample(s) already have superpixels in "
            f"{field!r} ({had}); nothing was computed: pass overwrite=True to recompute them "
            f"with {method}"
        )
    elif summary["processed"]:
        if summary["skipped_existing"] and before and before != record:
            record["mixed_with"] = before  # the samples skipped keep the earlier method's
            summary["note"] = (
                f"{summary['skipped_existing']} sample(s) kept their earlier superpixels "
                f"({before.get('method')}); pass overwrite=True to recompute all with {method}"
            )
        # this field's entry only (an atomic $set): concurrent runs (shards, other fields)
        # keep theirs
        update_alc_info(dataset, **{f"superpixels.{field}": record})
    summary["method"] = method
    if counts is not None:
        summary["mean_superpixels"] = float(sum(counts) / len(counts)) if counts else 0.0
    return summary


def _plain(value) -> bool:
    """Whether a parameter can be recorded in ``dataset.info`` (not a model object)."""
    return value is None or isinstance(value, (bool, int, float, str, list, tuple))


def _pseudo_instances_fn(params: dict, counts: list):
    """The per-sample function of ``method="pseudo_instances"``."""
    params = dict(params)
    source = params.pop("instances_field", PSEUDO_INSTANCES_FIELD)
    fill = bool(params.pop("fill", False))
    min_area = int(params.pop("min_area", 0))
    unknown = set(params) - {"fill_segment_area", "compactness"}
    if unknown:
        raise ValueError(f"unknown parameters for pseudo_instances: {sorted(unknown)}")

    def one(sample):
        if not sample.has_field(source) or sample[source] is None:
            raise SampleError(
                sample.id,
                f"no pseudo-label instances in {source!r}: run generate_pseudo_labels first",
                sample.filepath,
            )
        instances = read_segmentation(sample, source)
        image = read_image(sample) if fill else None
        if image is not None:
            check_same_size(sample, "the image", image.shape, source, instances.shape)
        ids = csp.instance_superpixels(
            instances, image=image, fill=fill, min_area=min_area, **params
        )
        n = int(ids.max())
        counts.append(n)
        return ids, {"num_superpixels": n, "method": "pseudo_instances", "filled": fill}

    return one


# --- SAM superpixels ------------------------------------------------------------------------


def sam_superpixels_field(
    samples,
    field: str = SUPERPIXELS_FIELD,
    sam=None,
    model_type: str = "vit_h",
    checkpoint=None,
    device="auto",
    batch_size: int = 8,
    workers: int | None = None,
    cache: bool = False,
    overwrite: bool = False,
    skip_failures: bool = False,
    progress: ProgressCallback | None = None,
    **params,
) -> dict:
    """SAM superpixels (:func:`alc_fiftyone.core.sam_masks.sam_superpixels`) of every sample
    into ``field``, images batched through the encoder and the CPU part (SLIC gap filling,
    merging) run in ``workers`` threads (default: up to 4) while the device goes on. Use
    ``alc.compute_superpixels(samples, method="sam", ...)``, which calls this."""
    from concurrent.futures import ThreadPoolExecutor

    from ..core.sam_masks import sam_regions, split_sam_params
    from ..core.superpixels import superpixels_from_regions
    from ..models.embeddings import BatchedEncoder, get_sam, planned_order

    mask_params, fill_params = split_sam_params(params)
    sam = get_sam(sam, model_type, checkpoint, device)
    workers = workers or min(4, os.cpu_count() or 1)
    counts = []
    with ThreadPoolExecutor(max(1, int(workers))) as pool:
        stages = (
            lambda image, emb: sam_regions(image, sam, embedding=emb, **mask_params),
            lambda image, regions: superpixels_from_regions(regions, image, True, **fill_params),
            pool,
        )
        encoder = BatchedEncoder(
            sam,
            dataset_of(samples),
            planned_order(samples, field, overwrite),
            batch_size,
            cache,
            stages=stages,
        )

        def one(sample):
            ids = encoder.get(sample)
            n = int(ids.max())
            counts.append(n)
            return ids, {"num_superpixels": n, "method": "sam"}

        summary = compute_mask_field(
            samples,
            field,
            one,
            overwrite=overwrite,
            skip_failures=skip_failures,
            progress=progress,
            desc="superpixels (sam)",
        )
    summary.update(
        encoded=encoder.encoded,
        embeddings_from_cache=encoder.from_cache,
        mean_superpixels=float(np.mean(counts)) if counts else 0.0,
    )
    return summary
