"""compute_superpixels: a superpixel id map per sample, stored as a uint16 mask file."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from ..core import superpixels as csp
from ..errors import ALCError, SampleError
from ..progress import ProgressCallback
from ..store.db import dataset_of
from ..store.fields import (
    PSEUDO_INSTANCES_FIELD,
    REVISED_FIELD,
    SUPERPIXELS_FIELD,
    class_table,
    read_current_labels,
    require_segmentation_field,
)
from ..store.files import check_same_size, read_image, read_segmentation
from ..store.info import alc_info, update_alc_info
from ..store.masks import MaskJob, compute_mask_field
from . import region_jobs as jobs

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


METHODS = ("label_aware", "felzenszwalb", "slic", "sam", "pseudo_instances")
#: the base regions label-aware superpixels cut the label components with (or "field:<name>")
LABEL_AWARE_BASES = ("felzenszwalb", "slic", "sam")
#: the method when no label field is given: SLIC, as before label-aware regions existed (its
#: parameters, e.g. ``n_segments``, are what such calls pass); at equal clicks Felzenszwalb
#: does better (BENCHMARKS.md), and label-aware regions much better
IMAGE_ONLY_DEFAULT = "slic"


def compute_superpixels(
    samples: SampleCollection,
    method: str | None = None,
    field: str = SUPERPIXELS_FIELD,
    overwrite: bool = False,
    skip_failures: bool = False,
    progress: ProgressCallback | None = None,
    label_field: str | None = None,
    revised_field: str = REVISED_FIELD,
    workers: int | None = None,
    **params,
) -> dict:
    """Compute superpixels for every sample of ``samples`` into ``field``.

    ``method="label_aware"`` (the default when ``label_field`` is given): regions that follow
    the labels under review, so that one answer can fix a whole wrong region
    (:func:`alc_fiftyone.core.regions.label_aware_regions`): every region lies inside one
    4-connected component of one class of the current labels (``revised_field`` where a
    sample has it, else ``label_field``) and inside one *base* region; every pixel belongs to
    one region (ignore pixels form regions of their own); fragments under ``min_area`` pixels
    merge into an adjacent region of the same label component when there is one, else into
    the most similar adjacent region. Params: ``base`` (``"felzenszwalb"`` (default),
    ``"slic"``, ``"sam"`` or ``"field:<name>"``, an existing superpixel field), ``min_area``,
    ``ignore`` (``"own"`` or ``"merge"``) and the base method's own parameters (e.g.
    ``scale``, ``min_size``; for ``"sam"`` those of ``method="sam"`` below). Defaults, chosen
    at equal clicks on CamVid and horses (docs/method.md): ``min_area=256`` and, on
    Felzenszwalb, ``scale = 0.008 * height * width`` (so regions cover a similar share of
    any image size), ``min_size=100``, computed on the image shrunk to about 50,000 pixels
    (by a whole factor: CamVid frames and PASCAL images by 2; ``work_pixels=0`` keeps the
    full resolution) and grown back, so that the base costs a fifth; the regions follow the
    labels at full resolution either way. Each mask
    records the ``label_field`` and the label mask it followed. Never give it the ground
    truth of a simulation: regions cut along the truth measure nothing
    (:func:`alc_fiftyone.simulate` refuses them).

    Without ``label_field`` the default is ``"slic"``.

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
        ``"label_aware"``, ``"felzenszwalb"``, ``"slic"``, ``"sam"`` or
        ``"pseudo_instances"`` (see above); None: ``"label_aware"`` when ``label_field`` is
        given, else ``"slic"``.
    field
        The field that receives the result.
    overwrite
        Redo samples that already have a result (else they are skipped).
    skip_failures
        Leave out (and list in the summary's ``failed``) samples whose files cannot be read,
        instead of stopping.
    progress
        ``progress(done, total, description)``, e.g. the CLI's tqdm bars.
    label_field
        The labels under review that ``"label_aware"`` regions follow.
    revised_field
        The corrected labels, followed instead where a sample has them.
    workers
        Processes computing the regions of different images at once (None: one per CPU;
        1: in this process); the database is read and written here only. The regions are
        the same for any number. With ``method="sam"``: the CPU threads of gap filling.
    **params
        The method's parameters (see above).

    Returns
    -------
    dict
        ``processed``, ``skipped_existing``, ``failed``, ``method``, ``mean_superpixels`` and, when
        nothing was computed, ``note``.
    """
    if method is None:
        method = "label_aware" if label_field else IMAGE_ONLY_DEFAULT
    if method not in METHODS:
        raise ValueError(f"unknown superpixel method {method!r}; choose one of {METHODS}")
    if method == "label_aware" and not label_field:
        raise ValueError(
            "method 'label_aware' follows the labels under review: pass label_field= (the "
            "field being corrected, never the ground truth of a simulation)"
        )
    counts = []

    if method == "label_aware" and str(params.get("base", "felzenszwalb")) == "sam":
        finish = _label_aware_fn(samples, params, counts, label_field, revised_field, None)
        sam_params = {k: v for k, v in params.items() if k not in ("base", "ignore", "min_area")}
        summary = sam_superpixels_field(
            samples,
            field,
            overwrite=overwrite,
            skip_failures=skip_failures,
            progress=progress,
            finish=finish,
            workers=workers,
            **sam_params,
        )
    elif method == "sam":
        summary = sam_superpixels_field(
            samples,
            field,
            overwrite=overwrite,
            skip_failures=skip_failures,
            progress=progress,
            workers=workers,
            **params,
        )
        counts = None
    else:
        if method == "pseudo_instances":
            one = _pseudo_instances_fn(params, counts)
            source = params.get("instances_field", PSEUDO_INSTANCES_FIELD)
            read = (source,) if samples.has_field(source) else ()  # () : no selection
        elif method == "label_aware":
            base = str(params.get("base", "felzenszwalb"))
            one = _label_aware_fn(samples, params, counts, label_field, revised_field, base)
            read = tuple(
                f
                for f in (label_field, revised_field, base.partition("field:")[2])
                if f and samples.has_field(f)
            )
        else:
            read = ("filepath",)  # only the image: other fields are not loaded
            csp.superpixels(np.zeros((4, 4, 3), np.uint8), method=method, **params)  # bad params
            one = MaskJob(
                lambda sample: (sample.id, sample.filepath, method, params),
                jobs.image_superpixels,
                lambda attrs: counts.append(attrs["num_superpixels"]),
            )

        summary = compute_mask_field(
            samples,
            field,
            one,
            overwrite=overwrite,
            skip_failures=skip_failures,
            progress=progress,
            desc=f"superpixels ({method})",
            select_fields=read,
            workers=workers,
        )
    dataset = dataset_of(samples)
    if dataset.default_mask_targets:
        # default_mask_targets would label superpixel ids as classes in the App
        dataset.mask_targets = {**(dataset.mask_targets or {}), field: {}}
    record = {"method": method, "params": {k: v for k, v in params.items() if _plain(v)}}
    if label_field and method == "label_aware":
        record["label_field"] = label_field
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


def _label_aware_fn(samples, params: dict, counts: list, label_field, revised_field, base):
    """The per-sample function of ``method="label_aware"``: ``one(sample) -> (ids, attrs)``
    with ``base`` regions computed from the image (or read from a field), or, with ``base``
    None, ``finish(sample, base_ids)`` for base regions made elsewhere (SAM)."""
    from ..core.regions import (
        DEFAULT_MIN_AREA,
        IGNORE_MODES,
        label_aware_regions,
    )

    params = dict(params)
    params.pop("base", None)
    min_area = int(params.pop("min_area", DEFAULT_MIN_AREA))
    mode = str(params.pop("ignore", "own"))
    if mode not in IGNORE_MODES:
        raise ValueError(f"ignore must be one of {IGNORE_MODES}, got {mode!r}")
    if base is not None and base not in LABEL_AWARE_BASES and not base.startswith("field:"):
        raise ValueError(
            f"unknown base {base!r} for label-aware superpixels; choose one of "
            f"{LABEL_AWARE_BASES} or 'field:<superpixel field>'"
        )
    source = base.partition("field:")[2] if base else ""
    if source and not samples.has_field(source):
        raise ALCError(f"base {base!r}: the dataset has no superpixel field {source!r}")
    if base in ("felzenszwalb", "slic"):
        check = {
            k: v for k, v in params.items() if not (base == "felzenszwalb" and k == "work_pixels")
        }
        csp.superpixels(np.zeros((4, 4, 3), np.uint8), method=base, **check)  # bad params now
    elif params and base is not None:
        raise ValueError(f"unknown parameters for label_aware on {base!r}: {sorted(params)}")
    require_segmentation_field(samples, label_field, "label")
    _, ignore, _ = class_table(dataset_of(samples), label_field)

    def regions(sample, image, base_ids):
        labels = read_current_labels(sample, label_field, revised_field)
        check_same_size(sample, "the labels", labels.shape, "the image", image.shape)
        check_same_size(sample, "the base regions", base_ids.shape, "the labels", labels.shape)
        ids = label_aware_regions(
            labels, base_ids, image=image, min_area=min_area, ignore_index=ignore, ignore=mode
        )
        revised = sample.has_field(revised_field) and sample[revised_field] is not None
        followed = revised_field if revised else label_field
        n = int(ids.max())
        counts.append(n)
        return ids, {
            "num_superpixels": n,
            "method": "label_aware",
            "base": base or "sam",
            "label_field": label_field,
            "labels_path": sample[followed].mask_path,
        }

    if base is None:
        return lambda sample, image, base_ids: regions(sample, image, base_ids)

    options = {"min_area": min_area, "ignore_index": ignore, "ignore": mode}

    def prepare(sample):
        revised = sample.has_field(revised_field) and sample[revised_field] is not None
        followed = revised_field if revised else label_field
        attrs = {
            "method": "label_aware",
            "base": base,
            "label_field": label_field,
            "labels_path": sample[followed].mask_path,
        }
        labels = jobs.mask_source(sample, followed)
        base_source = jobs.mask_source(sample, source) if source else None
        return (sample.id, sample.filepath, labels, base, base_source, params, options, attrs)

    return MaskJob(
        prepare, jobs.label_aware, lambda attrs: counts.append(attrs["num_superpixels"])
    )


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
    finish=None,
    **params,
) -> dict:
    """SAM superpixels (:func:`alc_fiftyone.core.sam_masks.sam_superpixels`) of every sample
    into ``field``, images batched through the encoder and the CPU part (SLIC gap filling,
    merging) run in ``workers`` threads (default: up to 4) while the device goes on. Use
    ``alc.compute_superpixels(samples, method="sam", ...)``, which calls this.
    ``finish(sample, image, ids) -> (ids, attributes)`` post-processes each sample's SAM
    superpixels (label-aware regions on the SAM base)."""
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
            if finish is not None:
                return finish(sample, read_image(sample), ids)
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
