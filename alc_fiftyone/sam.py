"""SAM over a FiftyOne dataset: pseudo labels from boxes, SAM superpixels, embeddings cache.

Images are read and encoded ``batch_size`` at a time (one ``Sam.image_encoder`` call per
batch), then decoded one by one (for superpixels, the CPU part runs in worker threads while
the device goes on with the next batch); every result goes through :func:`compute_mask_field`,
so
samples already done are skipped unless ``overwrite``, a failure on one sample names it, and
each mask is a new file (nothing is half written).

Optionally the image embeddings are cached in float16 under ``ALC_FIFTYONE_DIR`` / dataset /
``_sam_embeddings`` / <weights> / <sample id>.npz, so a later step (another SAM pass, or a
probability model using SAM features) does not re-encode the image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .core import sam as csam
from .errors import ALCError, SampleError
from .labels import check_class_names, update_alc_info
from .maps import compute_mask_field
from .progress import ProgressCallback
from .storage import dataset_dir, read_image

UNCOVERED = ("background", "ignore")


def load_sam(model_type: str = "vit_h", checkpoint=None, device="auto"):
    """SAM from an explicit checkpoint, ``$ALC_SAM_CHECKPOINT`` or FiftyOne's model zoo folder
    (``fo.config.model_zoo_dir``). Nothing is downloaded; see
    :func:`alc_fiftyone.core.sam.find_checkpoint` for the error when it is missing."""
    import fiftyone as fo

    return csam.load_sam(model_type, checkpoint, device, zoo_dir=fo.config.model_zoo_dir)


def _get_sam(sam, model_type, checkpoint, device):
    return sam if sam is not None else load_sam(model_type, checkpoint, device)


# --- embeddings cache ---------------------------------------------------------------------


def embedding_path(dataset, sample_id: str, sam) -> Path:
    """Where the cached embedding of one sample for these SAM weights lives."""
    return dataset_dir(dataset) / "_sam_embeddings" / csam.model_key(sam) / f"{sample_id}.npz"


def save_embedding(path: Path, emb: csam.ImageEmbedding, filepath: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        embedding=emb.embedding.detach().cpu().numpy().astype(np.float16),
        input_size=np.array(emb.input_size),
        original_size=np.array(emb.original_size),
        filepath=np.array(str(filepath)),
    )
    os.replace(tmp, path)


def load_embedding(path: Path, filepath: str | None = None, device="cpu"):
    """The cached :class:`~alc_fiftyone.core.sam.ImageEmbedding` (float32 on ``device``), or
    None when absent, unreadable or made from another image file."""
    import torch

    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            if filepath is not None and str(z["filepath"]) != str(filepath):
                return None
            emb = torch.from_numpy(z["embedding"].astype(np.float32)).to(device)
            return csam.ImageEmbedding(
                emb,
                tuple(int(v) for v in z["input_size"]),
                tuple(int(v) for v in z["original_size"]),
            )
    except (OSError, ValueError, KeyError):
        return None


def get_embedding(sample, sam, dataset=None):
    """The cached embedding of ``sample`` for ``sam``'s weights, or None."""
    dataset = dataset or sample._dataset
    return load_embedding(embedding_path(dataset, sample.id, sam), sample.filepath, sam.device)


class _BatchedEncoder:
    """Images and embeddings of the samples to process, encoded ``batch_size`` at a time.

    ``order`` is the list of (id, filepath) in the order the samples will be asked for; when
    a sample is asked for and is not ready, it and the next ``batch_size - 1`` samples are
    read and encoded together (cached embeddings are loaded instead of encoded).

    With ``stages = (device_fn, cpu_fn, pool)``, each encoded image also goes through
    ``device_fn(image, emb)`` at once and ``cpu_fn(image, that)`` in the thread ``pool``, and
    the next batch is prepared as soon as one result is taken: the device encodes and decodes
    batch n+1 while the CPU threads finish batch n. ``get`` then returns ``cpu_fn``'s result.
    """

    def __init__(self, sam, dataset, order, batch_size: int, cache: bool, stages=None):
        self.sam, self.dataset, self.cache = sam, dataset, cache
        self.order = list(order)
        self.index = {sid: i for i, (sid, _) in enumerate(self.order)}
        self.batch_size = max(1, int(batch_size))
        self.stages = stages
        self.ready: dict[str, object] = {}
        self.next_load = 0
        self.encoded = 0
        self.from_cache = 0

    def get(self, sample):
        i = self.index.get(sample.id)
        if sample.id not in self.ready and i is not None and i >= self.next_load:
            self._load(i)
        item = self.ready.pop(sample.id, None)
        if item is None:  # not in the planned order (should not happen): do it alone
            item = self._finish(sample.id, sample.filepath, *self._one(sample.id, sample.filepath))
        if self.stages and self.next_load < len(self.order) and len(self.ready) < self.batch_size:
            self._load(self.next_load)  # keep the device busy while the CPU finishes
        if hasattr(item, "result"):  # a Future of the CPU stage
            item = item.result()
        if isinstance(item, Exception):
            raise item
        return item

    def _one(self, sid, filepath):
        image = read_image(filepath, sid)
        emb = self._cached(sid, filepath)
        if emb is None:
            emb = csam.encode_images(self.sam, [image])[0]
            self.encoded += 1
            self._save(sid, filepath, emb)
        return image, emb

    def _finish(self, sid, filepath, image, emb):
        if not self.stages:
            return image, emb
        device_fn, cpu_fn, pool = self.stages
        try:
            staged = device_fn(image, emb)
        except ValueError as e:
            return SampleError(sid, f"SAM failed: {e}", filepath)

        def cpu():
            try:
                return cpu_fn(image, staged)
            except ValueError as e:
                return SampleError(sid, f"SAM superpixels failed: {e}", filepath)

        return pool.submit(cpu)

    def _cached(self, sid, filepath):
        if not self.cache:
            return None
        emb = load_embedding(
            embedding_path(self.dataset, sid, self.sam), filepath, self.sam.device
        )
        if emb is not None:
            self.from_cache += 1
        return emb

    def _save(self, sid, filepath, emb):
        if self.cache:
            try:
                save_embedding(embedding_path(self.dataset, sid, self.sam), emb, filepath)
            except OSError:
                pass  # a cache that cannot be written is only slower next time

    def _load(self, start):
        rows = self.order[start : start + self.batch_size]
        self.next_load = max(self.next_load, start + len(rows))
        todo = []
        for sid, filepath in rows:
            if sid in self.ready:
                continue
            try:
                image = read_image(filepath, sid)
            except SampleError as e:
                self.ready[sid] = e
                continue
            emb = self._cached(sid, filepath)
            if emb is not None:
                self.ready[sid] = self._finish(sid, filepath, image, emb)
            else:
                todo.append((sid, filepath, image))
        if todo:
            try:
                embs = csam.encode_images(self.sam, [t[2] for t in todo], self.batch_size)
            except ValueError as e:
                for sid, filepath, _ in todo:
                    self.ready[sid] = SampleError(sid, f"cannot encode the image: {e}", filepath)
                return
            self.encoded += len(todo)
            for (sid, filepath, image), emb in zip(todo, embs):
                self._save(sid, filepath, emb)
                self.ready[sid] = self._finish(sid, filepath, image, emb)


def _planned_order(samples, field: str, overwrite: bool):
    """(id, filepath) of the samples compute_mask_field will process, in its order."""
    if overwrite or not samples.has_field(field):
        todo = samples
    else:
        todo = samples.exists(field, False)
    return list(zip(*todo.values(["id", "filepath"]))) if len(todo) else []


def cache_embeddings(
    samples,
    sam=None,
    model_type: str = "vit_h",
    checkpoint=None,
    device="auto",
    batch_size: int = 8,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> dict:
    """Encode every sample's image with SAM and cache the float16 embedding on disk.

    Samples whose embedding is already cached (for the same weights and image file) are
    skipped unless ``overwrite``. Returns counts (encoded, skipped_existing, failed).
    """
    sam = _get_sam(sam, model_type, checkpoint, device)
    dataset = samples._dataset
    rows = list(zip(*samples.values(["id", "filepath"]))) if len(samples) else []
    todo = [r for r in rows if overwrite or not embedding_path(dataset, r[0], sam).is_file()]
    failed = []
    if progress:
        progress(0, len(todo), "SAM embeddings")
    for start in range(0, len(todo), max(1, batch_size)):
        chunk, images = [], []
        for sid, filepath in todo[start : start + batch_size]:
            try:
                images.append(read_image(filepath, sid))
                chunk.append((sid, filepath))
            except SampleError as e:
                failed.append({"id": sid, "filepath": filepath, "error": e.problem})
        for (sid, filepath), emb in zip(chunk, csam.encode_images(sam, images, batch_size)):
            save_embedding(embedding_path(dataset, sid, sam), emb, filepath)
        if progress:
            progress(min(start + batch_size, len(todo)), len(todo), "SAM embeddings")
    return {
        "encoded": len(todo) - len(failed),
        "skipped_existing": len(rows) - len(todo),
        "failed": failed,
    }


# --- SAM superpixels ------------------------------------------------------------------------


def sam_superpixels_field(
    samples,
    field: str = "alc_superpixels",
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
    """SAM superpixels (:func:`alc_fiftyone.core.superpixels.sam_superpixels`) of every sample
    into ``field``, images batched through the encoder and the CPU part (SLIC gap filling,
    merging) run in ``workers`` threads (default: up to 4) while the device goes on. Use
    ``alc.compute_superpixels(samples, method="sam", ...)``, which calls this."""
    from concurrent.futures import ThreadPoolExecutor

    from .core.superpixels import _split_sam_params, sam_regions, superpixels_from_regions

    mask_params, fill_params = _split_sam_params(params)
    sam = _get_sam(sam, model_type, checkpoint, device)
    workers = workers or min(4, os.cpu_count() or 1)
    counts = []
    with ThreadPoolExecutor(max(1, int(workers))) as pool:
        stages = (
            lambda image, emb: sam_regions(image, sam, embedding=emb, **mask_params),
            lambda image, regions: superpixels_from_regions(regions, image, True, **fill_params),
            pool,
        )
        encoder = _BatchedEncoder(
            sam,
            samples._dataset,
            _planned_order(samples, field, overwrite),
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


# --- pseudo labels ---------------------------------------------------------------------------


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
    samples,
    prompt_field: str,
    field: str = "alc_pseudo",
    classes: list[str] | None = None,
    uncovered: str = "background",
    ignore_index: int = 255,
    instances_field: str | None = "alc_pseudo_instances",
    unknown_labels: str = "skip",
    box_margin: float | None = 0.05,
    sam=None,
    model_type: str = "vit_h",
    checkpoint=None,
    device="auto",
    batch_size: int = 8,
    cache: bool = False,
    overwrite: bool = False,
    skip_failures: bool = False,
    progress: ProgressCallback | None = None,
) -> dict:
    """Pseudo labels from SAM prompted with the boxes of the Detections field ``prompt_field``
    (Grounded-SAM, METHOD.md step 1): one mask per box, painted largest first so smaller masks
    win, class from the box label.

    ``classes`` lists the class names by index (default: "background" then the sorted box
    labels); ``uncovered`` says what pixels no mask covers become: ``"background"`` (class 0,
    PASCAL) or ``"ignore"`` (``ignore_index``, Cityscapes). Boxes whose label is not a class
    are skipped (``unknown_labels="skip"``) or make the sample fail (``"error"``).
    ``dataset.mask_targets[field]`` is set. With ``instances_field``, the painted instance ids
    (1 + box index, 0 uncovered, uint16) are written there too: the paper's superpixels, see
    ``compute_superpixels(method="pseudo_instances")``.
    """
    import fiftyone as fo

    if uncovered not in UNCOVERED:
        raise ValueError(f"uncovered must be one of {UNCOVERED}, got {uncovered!r}")
    if unknown_labels not in ("skip", "error"):
        raise ValueError("unknown_labels must be 'skip' or 'error'")
    dataset = samples._dataset
    if not samples.has_field(prompt_field) or not issubclass(
        getattr(dataset.get_field(prompt_field), "document_type", object), fo.Detections
    ):
        raise ALCError(f"{prompt_field!r} is not a Detections field of the dataset")
    classes = _class_table(dataset, prompt_field, classes)
    index = {c: i for i, c in enumerate(classes)}
    if uncovered == "ignore" and ignore_index < len(classes):
        raise ALCError(f"ignore_index {ignore_index} collides with a class index")
    fill_value = 0 if uncovered == "background" else int(ignore_index)
    sam = _get_sam(sam, model_type, checkpoint, device)
    encoder = _BatchedEncoder(
        sam, dataset, _planned_order(samples, field, overwrite), batch_size, cache
    )
    from .core.sam_masks import paint_classes
    from .storage import write_mask

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
