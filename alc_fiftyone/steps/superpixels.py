"""compute_superpixels: a superpixel id map per sample, stored as a uint16 mask file."""

from __future__ import annotations

import inspect
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
    level_field,
    read_current_labels,
    require_segmentation_field,
)
from ..store.files import check_same_size, read_image, read_segmentation
from ..store.info import alc_info, update_alc_info
from ..store.masks import MaskJob, compute_mask_field
from ..store.roles import LABELS, SUPERPIXELS, require_readable, require_writable
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
    levels: int | None = None,
    level_params: list[dict] | None = None,
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

    ``levels`` (default: 2 for ``"label_aware"``, 1 for the others) makes a hierarchy of
    regions that nest: ``field`` holds the top level, and each finer level ``k`` is stored in
    its own field ``f"{field}_level{k}"`` (an ``fo.Segmentation`` id map like the top, so each
    level can be looked at in the App), every region of it inside exactly one region of the
    level above (:func:`alc_fiftyone.core.regions.nested_regions`: the regions above cut by a
    finer image segmentation, pieces under ``min_area`` merged into a sibling). A ranking of
    ``field`` then takes candidates from every level (:func:`alc_fiftyone.rank_superpixels`),
    so the clicks after the first few per image still fix labels. ``level_params`` (one dict
    per finer level) overrides :data:`LEVEL_DEFAULTS` (``base``: ``"felzenszwalb"`` or
    ``"slic"``; ``scale_per_pixel`` (Felzenszwalb scale = that x height x width) or
    ``area`` (SLIC pixels per segment); ``min_area``). A finer level is recomputed whenever
    the level above it changed.

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
    levels
        Levels of the region hierarchy (see above; None: 2 for label-aware regions, else 1).
    level_params
        Parameters of each finer level (see above; None: :data:`LEVEL_DEFAULTS`).
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
    if label_field is not None and not str(label_field).strip():
        raise ValueError(
            "label_field is empty: name the labels under review the regions follow, or leave "
            "it out (None) for regions of the image alone"
        )
    if method is None:
        method = "label_aware" if label_field else IMAGE_ONLY_DEFAULT
    if method not in METHODS:
        raise ValueError(f"unknown superpixel method {method!r}; choose one of {METHODS}")
    if method == "label_aware" and not label_field:
        raise ValueError(
            "method 'label_aware' follows the labels under review: pass label_field= (the "
            "field being corrected, never the ground truth of a simulation)"
        )
    _check_params(method, params)
    level_settings(
        (2 if method == "label_aware" else 1) if levels is None else levels, level_params
    )
    # before any work (a SAM model is loaded first): never over labels or another output
    require_writable(samples, field, SUPERPIXELS, "compute_superpixels")
    if method == "label_aware":
        require_readable(samples, label_field, LABELS, "label_field")
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
            kind=SUPERPIXELS,
            step="compute_superpixels",
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
    n_levels = (2 if method == "label_aware" else 1) if levels is None else levels
    if n_levels > 1 or (before or {}).get("levels"):
        summary["levels"] = finer_levels(
            samples, field, n_levels, level_params, overwrite, skip_failures, progress, workers
        )
    return summary


#: the finer levels of a hierarchy, by measurement (docs/method.md, "Regions at several
#: sizes"): level 1 cuts the label-aware regions with Felzenszwalb at scale 200 (the scale
#: measured on CamVid's 480x360 frames and on the ~260x195 horse images: about 380 and 130
#: regions per image), pieces under 32 pixels merged into a sibling
LEVEL_DEFAULTS = ({"base": "felzenszwalb", "scale": 200, "min_area": 32},)


def level_settings(levels, level_params: list[dict] | None = None) -> list[tuple]:
    """``(base, min_area, base parameters, sizing)`` of each finer level, checked before any
    work (ValueError naming the level and the problem)."""
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ValueError(f"levels must be a positive number of levels, got {levels!r}")
    params_list = list(level_params or [])
    if len(params_list) > levels - 1:
        raise ValueError(
            f"level_params has {len(params_list)} entries for {levels - 1} finer level(s)"
        )
    out = []
    for k in range(1, levels):
        p = dict(LEVEL_DEFAULTS[min(k - 1, len(LEVEL_DEFAULTS) - 1)])
        if k - 1 < len(params_list):
            given = dict(params_list[k - 1])
            if "scale_per_pixel" in given and "scale" not in given:
                p.pop("scale", None)  # the scale then grows with the image
            if given.get("base", p["base"]) != p["base"]:
                p = {"base": given["base"], "min_area": p["min_area"]}  # no Felzenszwalb scale
            p.update(given)
        base = str(p.pop("base", "felzenszwalb"))
        min_area = int(p.pop("min_area", 32))
        if base not in ("felzenszwalb", "slic"):
            raise ValueError(f"level {k}: base must be 'felzenszwalb' or 'slic', got {base!r}")
        sized = {key: p.pop(key) for key in ("scale_per_pixel", "area") if key in p}
        try:
            csp.superpixels(np.zeros((4, 4, 3), np.uint8), method=base, **p)
        except TypeError as e:
            raise ValueError(f"level {k}: unknown parameter for {base!r}: {e}") from None
        out.append((base, min_area, p, sized))
    return out


def finer_levels(
    samples,
    field: str,
    levels: int,
    level_params: list[dict] | None = None,
    overwrite: bool = False,
    skip_failures: bool = False,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> list[dict]:
    """Compute levels 1..``levels - 1`` of the hierarchy whose top level is ``field`` (see
    :func:`compute_superpixels`) and record them; ``levels=1`` drops the record of finer
    levels (their fields stay, no ranking reads them). Returns one summary per level."""
    settings = level_settings(levels, level_params)
    dataset = dataset_of(samples)
    names = [level_field(field, k) for k in range(1, levels)]
    summaries = []
    parent = field
    for k, name in enumerate(names, start=1):
        base, min_area, p, sized = settings[k - 1]

        def prepare(sample, parent=parent, k=k, base=base, p=p, min_area=min_area, sized=sized):
            attrs = {
                "method": "nested",
                "level": k,
                "parent_field": parent,
                "parent_path": sample[parent].mask_path,
            }
            source = jobs.mask_source(sample, parent)
            return (sample.id, sample.filepath, source, base, {**p, **sized}, min_area, attrs)

        todo = _stale_level(samples, name, parent, overwrite)
        if len(todo):
            summary = compute_mask_field(
                todo,
                name,
                MaskJob(prepare, jobs.nested_level),
                overwrite=True,
                skip_failures=skip_failures,
                progress=progress,
                desc=f"superpixels (level {k})",
                select_fields=(parent,),
                kind=SUPERPIXELS,
                step="compute_superpixels",
                workers=workers,
            )
        else:
            summary = {"field": name, "processed": 0, "skipped_existing": len(samples)}
            summary["failed"] = []
        summaries.append(summary)
        if dataset.default_mask_targets:
            dataset.mask_targets = {**(dataset.mask_targets or {}), name: {}}
        record = {
            "method": "nested",
            "level": k,
            "parent": parent,
            "top": field,
            "params": {"base": base, "min_area": min_area, **_plain_params(p)},
        }
        record["params"].update(sized)
        update_alc_info(dataset, **{f"superpixels.{name}": record})
        parent = name
    update_alc_info(dataset, **{f"superpixels.{field}.levels": names})
    return summaries


def _stale_level(samples, name: str, parent: str, overwrite: bool):
    """The samples whose level ``name`` is missing or was made on another map of ``parent``."""
    if overwrite or not samples.has_field(name):
        return samples.exists(parent)
    ids = samples.values("id")
    above = samples.values(f"{parent}.mask_path")
    made_on = samples.values(f"{name}.parent_path")
    stale = [i for i, a, m in zip(ids, above, made_on) if a is not None and a != m]
    return samples.select(stale)


def _plain_params(params: dict) -> dict:
    return {k: v for k, v in params.items() if _plain(v)}


def _method_params(method: str, base: str | None = None) -> set[str]:
    """The parameter names ``method`` takes (label-aware: its own and its base's)."""
    from ..core.sam_masks import _FILL_PARAMS, _SAM_MASK_PARAMS

    def names(fn, skip=()):
        return {n for n in inspect.signature(fn).parameters if n not in skip}

    if method == "slic":
        return names(csp.slic, ("image", "mask", "start_label"))
    if method == "felzenszwalb":
        return names(csp.felzenszwalb, ("image",))
    if method == "sam":
        own = names(sam_superpixels_field, ("samples", "field", "finish", "params"))
        own -= {"overwrite", "skip_failures", "progress"}
        return own | set(_SAM_MASK_PARAMS) | set(_FILL_PARAMS)
    if method == "pseudo_instances":
        return {"instances_field", "fill", "min_area", "fill_segment_area", "compactness"}
    base = base or "felzenszwalb"
    own = {"base", "min_area", "ignore"}
    return own if base.startswith("field:") else own | _method_params(base)


def _check_params(method: str, params: dict) -> None:
    """ValueError naming the parameters ``method`` does not take (before any work)."""
    base = str(params.get("base", "felzenszwalb")) if method == "label_aware" else None
    if base is not None and base not in LABEL_AWARE_BASES and not base.startswith("field:"):
        return  # the label-aware step names the unknown base itself
    allowed = _method_params(method, base)
    unknown = sorted(set(params) - allowed)
    if unknown:
        on = f" on base {base!r}" if base else ""
        raise ValueError(
            f"compute_superpixels: unknown parameter(s) {unknown} for method {method!r}{on}; "
            f"it takes {', '.join(sorted(allowed))}"
        )


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
            kind=SUPERPIXELS,
            step="compute_superpixels",
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
