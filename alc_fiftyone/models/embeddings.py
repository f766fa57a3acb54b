"""SAM on a FiftyOne dataset: loading the model, and the image embeddings, computed in
batches and cached.

Images are read and encoded ``batch_size`` at a time (one ``Sam.image_encoder`` call per
batch, :class:`BatchedEncoder`), for the steps that decode SAM masks (pseudo labels, SAM
superpixels: :mod:`alc_fiftyone.steps`) and the ``sam_head`` model. The embeddings can be
cached in float16 under ``ALC_FIFTYONE_DIR`` / dataset / ``_sam_embeddings`` / <weights> /
<sample id>.npz, so a later step does not re-encode the image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import sam as csam
from ..errors import SampleError
from ..progress import ProgressCallback
from ..store.db import dataset_of
from ..store.files import dataset_dir, read_image

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection
    from fiftyone.core.sample import Sample


def load_sam(
    model_type: str = "vit_h", checkpoint: str | os.PathLike | None = None, device: Any = "auto"
):
    """SAM from an explicit checkpoint, ``$ALC_SAM_CHECKPOINT`` or FiftyOne's model zoo folder
    (``fo.config.model_zoo_dir``). Nothing is downloaded; see
    :func:`alc_fiftyone.core.sam.find_checkpoint` for the error when it is missing.

    Parameters
    ----------
    model_type
        SAM variant: ``"vit_h"``, ``"vit_l"`` or ``"vit_b"``.
    checkpoint
        SAM checkpoint file; default ``$ALC_SAM_CHECKPOINT`` or FiftyOne's model zoo folder
        (nothing is downloaded).
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...

    Returns
    -------
    segment_anything.modeling.Sam
        The model, in eval mode on ``device``.
    """
    import fiftyone as fo

    return csam.load_sam(model_type, checkpoint, device, zoo_dir=fo.config.model_zoo_dir)


def get_sam(sam, model_type, checkpoint, device):
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


def get_embedding(sample: Sample, sam: Any, dataset: SampleCollection = None):
    """The cached embedding of ``sample`` for ``sam``'s weights, or None.

    Parameters
    ----------
    sample
        The sample (``fo.Sample``).
    sam
        The SAM model whose weights the embedding must come from.
    dataset
        The sample's dataset (default: the sample's own).

    Returns
    -------
    ImageEmbedding or None
        The cached embedding, or None when there is none.
    """
    dataset = dataset or dataset_of(sample)
    return load_embedding(embedding_path(dataset, sample.id, sam), sample.filepath, sam.device)


class BatchedEncoder:
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


def planned_order(samples, field: str, overwrite: bool):
    """(id, filepath) of the samples compute_mask_field will process, in its order."""
    if overwrite or not samples.has_field(field):
        todo = samples
    else:
        todo = samples.exists(field, False)
    return list(zip(*todo.values(["id", "filepath"]))) if len(todo) else []


def cache_embeddings(
    samples: SampleCollection,
    sam: Any = None,
    model_type: str = "vit_h",
    checkpoint: str | os.PathLike | None = None,
    device: Any = "auto",
    batch_size: int = 8,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> dict:
    """Encode every sample's image with SAM and cache the float16 embedding on disk.

    Samples whose embedding is already cached (for the same weights and image file) are
    skipped unless ``overwrite``. Returns counts (encoded, skipped_existing, failed).

    Parameters
    ----------
    samples
        The dataset or view to work on.
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
    overwrite
        Redo samples that already have a result (else they are skipped).
    progress
        ``progress(done, total, description)``, e.g. the CLI's tqdm bars.

    Returns
    -------
    dict
        ``encoded``, ``skipped_existing`` and ``failed`` counts.
    """
    sam = get_sam(sam, model_type, checkpoint, device)
    dataset = dataset_of(samples)
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
