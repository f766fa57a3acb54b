"""generate_pseudo_labels: SAM prompted with the boxes of a Detections field (Grounded-SAM,
the method's step 1), painted largest first, into a Segmentation field; optionally the painted
instances, the paper's superpixels."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import sam as csam
from ..errors import ALCError, SampleError
from ..models.embeddings import BatchedEncoder, get_sam, planned_order
from ..progress import ProgressCallback
from ..store.db import dataset_of
from ..store.fields import PSEUDO_FIELD, PSEUDO_INSTANCES_FIELD, check_class_names
from ..store.files import write_mask
from ..store.info import update_alc_info
from ..store.masks import compute_mask_field
from ..store.roles import INSTANCES, PSEUDO, record_output, require_writable

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


UNCOVERED = ("background", "ignore")


def _class_table(dataset, prompt_field: str, classes) -> list[str]:
    if classes is not None:
        classes = list(classes)
    else:
        labels = dataset.distinct(f"{prompt_field}.detections.label")
        classes = ["background"] + sorted(str(c) for c in labels if c and c != "background")
    if not classes:
        raise ALCError("no classes: pass classes=[...] (index 0 is usually 'background')")
    try:
        return check_class_names(classes, "void", "generate_pseudo_labels")
    except ValueError as e:
        raise ALCError(str(e)) from e


def generate_pseudo_labels(
    samples: SampleCollection,
    prompt_field: str,
    field: str = PSEUDO_FIELD,
    classes: list[str] | None = None,
    uncovered: str = "background",
    ignore_index: int = 255,
    instances_field: str | None = PSEUDO_INSTANCES_FIELD,
    unknown_labels: str = "skip",
    box_margin: float | None = 0.05,
    sam: Any = None,
    model_type: str = "vit_h",
    checkpoint: str | os.PathLike | None = None,
    device: Any = "auto",
    batch_size: int = 8,
    cache: bool = False,
    overwrite: bool = False,
    skip_failures: bool = False,
    progress: ProgressCallback | None = None,
) -> dict:
    """Pseudo labels from SAM prompted with the boxes of the Detections field ``prompt_field``
    (Grounded-SAM, docs/method.md step 1): one mask per box, painted largest first so smaller masks
    win, class from the box label.

    ``classes`` lists the class names by index (default: "background" then the sorted box
    labels); ``uncovered`` says what pixels no mask covers become: ``"background"`` (class 0,
    PASCAL) or ``"ignore"`` (``ignore_index``, Cityscapes). Boxes whose label is not a class
    are skipped (``unknown_labels="skip"``) or make the sample fail (``"error"``).
    ``dataset.mask_targets[field]`` is set. With ``instances_field``, the painted instance ids
    (1 + box index, 0 uncovered, uint16) are written there too: the paper's superpixels, see
    ``compute_superpixels(method="pseudo_instances")``.

    Parameters
    ----------
    samples
        The dataset or view to work on.
    prompt_field
        The ``fo.Detections`` field whose boxes prompt SAM.
    field
        The field that receives the pseudo labels.
    classes
        Class names by index (default: ``"background"`` and the sorted box labels).
    uncovered
        What pixels no mask covers become: ``"background"`` or ``"ignore"``.
    ignore_index
        The ignore value (with ``uncovered="ignore"``).
    instances_field
        Also write the painted instance ids there (None: not written).
    unknown_labels
        ``"skip"`` boxes whose label is no class, or ``"error"``.
    box_margin
        Boxes are enlarged by this share of their size before prompting.
    sam
        A loaded SAM model (see :func:`load_sam`); else ``model_type`` / ``checkpoint`` are loaded.
    model_type
        SAM variant: ``"vit_h"``, ``"vit_l"`` or ``"vit_b"``.
    checkpoint
        SAM checkpoint file; default ``$ALC_SAM_CHECKPOINT`` or FiftyOne's model zoo folder
        (nothing is downloaded).
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
    batch_size
        Images per SAM encoder call.
    cache
        Reuse and store the image embeddings on disk.
    overwrite
        Redo samples that already have a result (else they are skipped).
    skip_failures
        Leave out (and list in the summary's ``failed``) samples whose files cannot be read,
        instead of stopping.
    progress
        ``progress(done, total, description)``, e.g. the CLI's tqdm bars.

    Returns
    -------
    dict
        The summary of the per-sample step (processed, skipped, failed, boxes).
    """
    import fiftyone as fo

    if uncovered not in UNCOVERED:
        raise ValueError(f"uncovered must be one of {UNCOVERED}, got {uncovered!r}")
    if unknown_labels not in ("skip", "error"):
        raise ValueError("unknown_labels must be 'skip' or 'error'")
    dataset = dataset_of(samples)
    if not samples.has_field(prompt_field) or not issubclass(
        getattr(dataset.get_field(prompt_field), "document_type", object), fo.Detections
    ):
        raise ALCError(f"{prompt_field!r} is not a Detections field of the dataset")
    # before SAM is loaded: never over the labels, a ground truth or another step's output
    require_writable(samples, field, PSEUDO, "generate_pseudo_labels")
    if instances_field:
        if instances_field == field:
            raise ValueError("instances_field and field must be different fields")
        require_writable(samples, instances_field, INSTANCES, "generate_pseudo_labels")
        record_output(samples, instances_field, INSTANCES, "generate_pseudo_labels")
    classes = _class_table(dataset, prompt_field, classes)
    index = {c: i for i, c in enumerate(classes)}
    if uncovered == "ignore" and ignore_index < len(classes):
        raise ALCError(f"ignore_index {ignore_index} collides with a class index")
    fill_value = 0 if uncovered == "background" else int(ignore_index)
    sam = get_sam(sam, model_type, checkpoint, device)
    encoder = BatchedEncoder(
        sam, dataset, planned_order(samples, field, overwrite), batch_size, cache
    )
    from ..core.sam_masks import paint_classes

    instance_paths: dict[str, fo.Segmentation] = {}
    boxes_seen = []

    def one(sample):
        image, emb = encoder.get(sample)
        H, W = image.shape[:2]
        dets = sample[prompt_field].detections if sample[prompt_field] is not None else []
        boxes, labels = [], []
        for d in dets:
            if d.label not in index:
                if unknown_labels == "error":
                    raise SampleError(
                        sample.id,
                        f"box label {d.label!r} of {prompt_field!r} is not one of the classes "
                        f"{classes}",
                        sample.filepath,
                    )
                continue
            x, y, w, h = d.bounding_box
            boxes.append([x * W, y * H, (x + w) * W, (y + h) * H])
            labels.append(index[d.label])
        if boxes:
            masks, _ = csam.box_masks(sam, emb, boxes, box_margin=box_margin)
        else:
            masks = np.zeros((0, H, W), dtype=bool)
        label_map, instances = paint_classes(masks, labels, fill_value)
        boxes_seen.append(len(boxes))
        if instances_field:
            path = write_mask(instances, dataset, instances_field, sample.id)
            instance_paths[sample.id] = fo.Segmentation(mask_path=path, num_instances=len(boxes))
        return label_map, {"num_boxes": len(boxes), "prompt_field": prompt_field}

    try:
        summary = compute_mask_field(
            samples,
            field,
            one,
            kind=PSEUDO,
            step="generate_pseudo_labels",
            overwrite=overwrite,
            skip_failures=skip_failures,
            progress=progress,
            desc="pseudo labels (SAM)",
        )
    finally:  # the instances of the samples saved before a failure are kept too
        if instances_field and instance_paths:
            dataset.set_values(instances_field, instance_paths, key_field="id")
    targets = {i: c for i, c in enumerate(classes)}
    if uncovered == "ignore":
        targets[int(ignore_index)] = "void"
    dataset.mask_targets = {**(dataset.mask_targets or {}), field: targets}
    if instances_field:
        dataset.mask_targets = {**dataset.mask_targets, instances_field: {}}
    info_updates = {  # this field's entry only: other fields' pseudo labels keep theirs
        f"pseudo_labels.{field}": {
            "prompt_field": prompt_field,
            "classes": classes,
            "uncovered": uncovered,
            "instances_field": instances_field,
            "model": csam.model_key(sam),
        }
    }
    if uncovered == "ignore":
        info_updates["ignore_index"] = int(ignore_index)
    update_alc_info(dataset, **info_updates)
    summary.update(
        classes=classes,
        instances_field=instances_field,
        encoded=encoder.encoded,
        embeddings_from_cache=encoder.from_cache,
        mean_boxes=float(np.mean(boxes_seen)) if boxes_seen else 0.0,
    )
    return summary
