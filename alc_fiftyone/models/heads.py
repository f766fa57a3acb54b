"""Learned probability models: a small per-pixel head on frozen image features.

``model="sam_head"`` (:class:`SamHeadModel`) puts a linear head (or a 2-layer MLP: two 1x1
convolutions) on the frozen image embeddings of Segment Anything (Kirillov et al., ICCV 2023),
(256, 64, 64) for SAM's 1024-px padded input, read from (and written to) the per-sample
embeddings cache of :mod:`alc_fiftyone.sam`. ``model="backbone:resnet50"``
(:class:`BackboneHeadModel`) puts the same head on a torchvision ImageNet ResNet's stride-16
features (``layer3``), for users without SAM weights.

Out of fold (docs/method.md, trap 8): the images are split into ``n_folds`` contiguous blocks in
iteration order (as the ``features`` model does) and head ``f`` is trained on the labels of
every image outside block ``f`` and is the only one that predicts the images of block ``f``.
All heads are trained together, in one pass over the data per epoch.

Training is on labels pooled to the feature grid, not at pixel level: each grid cell's
target is the class histogram of the original pixels whose centres fall in it (ignored pixels
excluded), and the loss is the cross-entropy of the cell's prediction against that histogram,
weighted by its pixel count. For a prediction constant inside a cell this *is* the pixel-level
cross-entropy; the head only sees one feature vector per cell anyway, so pixel-level training
would only add the bilinear upsampling of its logits into the loss, at 256x the memory and time
(a (C, 1024, 1024) map per image and step). Cells are the rows of an ordinary classification
problem: 4k per image, a few MB, so a round trains in seconds on a CPU.

Probabilities are the softmax of the head's cell logits upsampled back exactly as SAM's
``postprocess_masks`` does: grid -> padded square frame -> crop of the resized image -> the
original (H, W) (:func:`alc_fiftyone.core.head.grid_to_image`). Nothing per image is held
between ``fit`` and ``predict`` but the fold index: features are streamed from the cache, and
kept in memory during training only up to ``max_memory_mb``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ALCError, SampleError
from ..progress import ProgressCallback, track
from ..store.db import dataset_of
from ..store.files import check_same_size, dataset_dir, read_image
from . import embeddings as fsam
from .base import FitContext, ProbabilityModel

ENV_BACKBONE_WEIGHTS = "ALC_BACKBONE_WEIGHTS"
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")


# --- feature sources ----------------------------------------------------------------------


class GridEmbedder:
    """Frozen features of one image on a square frame (see :mod:`alc_fiftyone.core.head`).

    ``get`` returns a :class:`~alc_fiftyone.core.sam.ImageEmbedding` whose ``embedding`` is a
    (D, g, g) float32 CPU tensor covering the ``frame`` x ``frame`` padded input.
    """

    key = "base"
    frame = 1024

    def prepare(self, samples, progress: ProgressCallback | None = None) -> None:
        """Compute and cache what is missing, in batches (before the per-sample passes)."""

    def get(self, sample):  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> dict:
        return {"features": self.key}


class SamEmbedder(GridEmbedder):
    """SAM image embeddings through the cache of :mod:`alc_fiftyone.sam`.

    ``sam``: a loaded model; else ``model_type`` / ``checkpoint`` are looked up as
    :func:`alc_fiftyone.sam.load_sam` does (nothing downloaded; a missing checkpoint raises
    :class:`~alc_fiftyone.core.sam.SamCheckpointError`), or with ``random_weights`` a
    randomly initialised SAM (seeded with ``sam_seed``; for tests and timings only).
    ``batch_size`` images per encoder call; None: 8 on CUDA, 1 on a CPU (a batch of 8 ViT-B
    inputs took 19 GB of memory on a CPU, for no gain in speed there).
    """

    def __init__(
        self,
        sam=None,
        model_type: str = "vit_h",
        checkpoint=None,
        random_weights: bool = False,
        sam_seed: int = 0,
        device="auto",
        batch_size: int | None = None,
    ):
        self._sam = sam
        self.model_type = model_type
        self.checkpoint = checkpoint
        self.random_weights = bool(random_weights)
        self.sam_seed = sam_seed
        self.device = device
        self.batch_size = batch_size

    @property
    def sam(self):
        if self._sam is None:
            from ..core import sam as csam

            if self.random_weights:
                self._sam = csam.random_sam(self.model_type, self.sam_seed, self.device)
            else:
                self._sam = fsam.load_sam(self.model_type, self.checkpoint, self.device)
        return self._sam

    @property
    def key(self) -> str:
        from ..core import sam as csam

        if self._sam is None and self.random_weights:
            return f"random-{self.model_type}-seed{self.sam_seed}"
        return csam.model_key(self.sam)

    @property
    def frame(self) -> int:
        return int(self.sam.image_encoder.img_size)

    def prepare(self, samples, progress=None):
        batch = self.batch_size
        if batch is None:
            batch = 8 if self.sam.device.type == "cuda" else 1
        res = fsam.cache_embeddings(samples, sam=self.sam, batch_size=batch, progress=progress)
        if res["failed"]:
            f = res["failed"][0]
            raise SampleError(f["id"], f"cannot compute its SAM embedding: {f['error']}")

    def get(self, sample):
        from ..core import sam as csam

        sam = self.sam
        path = fsam.embedding_path(dataset_of(sample), sample.id, sam)
        emb = fsam.load_embedding(path, sample.filepath, "cpu")
        if emb is None:
            image = read_image(sample)
            try:
                emb = csam.encode_images(sam, [image])[0]
            except ValueError as e:
                raise SampleError(sample.id, f"SAM failed: {e}", sample.filepath) from e
            try:
                fsam.save_embedding(path, emb, sample.filepath)
            except OSError:
                pass  # a cache that cannot be written is only slower next time
            emb = emb.to("cpu")
        return emb

    def describe(self):
        return {
            "features": f"sam:{self.key}",
            **({"random_weights": True} if self.random_weights else {}),
        }


def _imagenet_weights_path(name: str, weights) -> Path:
    """The state-dict file to load for ``weights="imagenet"`` or a path; never downloads."""
    from torchvision.models import get_model_weights

    if weights == "imagenet":
        env = os.environ.get(ENV_BACKBONE_WEIGHTS)
        if env:
            path = Path(env).expanduser()
            where = f"${ENV_BACKBONE_WEIGHTS} points to {path}"
        else:
            import torch

            url = get_model_weights(name).DEFAULT.url
            path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
            where = f"torchvision's cache has no {path}"
    else:
        path = Path(weights).expanduser()
        where = f"weights file {path} does not exist"
    if not path.is_file():
        raise ALCError(
            f"{where}: no ImageNet weights for backbone {name}. Pass weights='<path to the "
            f"torchvision state dict>', or set ${ENV_BACKBONE_WEIGHTS} to it, or fill "
            f"torchvision's cache on a connected machine once (python -c \"import "
            f"torchvision; torchvision.models.{name}(weights='DEFAULT')\"); nothing is "
            "downloaded automatically"
        )
    return path


class BackboneEmbedder(GridEmbedder):
    """Stride-16 features (``layer3``) of a torchvision ImageNet ResNet, on the same padded
    square frame as SAM (resize the longest side to ``frame``, normalise with ImageNet's mean
    and std, pad bottom/right with zeros).

    ``weights``: ``"imagenet"`` (from ``$ALC_BACKBONE_WEIGHTS`` or torchvision's cache, never
    downloaded), a path to a state dict, or None for random weights (tests only). Features are
    cached per sample as SAM embeddings are (same file format, folder
    ``_backbone_embeddings``).
    """

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(
        self,
        name: str = "resnet50",
        weights="imagenet",
        frame: int = 512,
        device="auto",
        batch_size: int = 8,
        seed: int = 0,
    ):
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
        if frame % 16 or frame < 16:
            raise ValueError(f"frame must be a positive multiple of 16, got {frame}")
        self.name = name
        self.weights = weights
        self.frame = int(frame)
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.seed = seed
        self._net = None
        self._weights_name = (
            f"random-seed{seed}"
            if weights is None
            else "imagenet"
            if weights == "imagenet"
            else Path(weights).stem
        )

    @property
    def key(self) -> str:
        return f"{self.name}-layer3-{self.frame}-{self._weights_name}"

    @property
    def net(self):
        if self._net is None:
            import torch
            from torchvision.models import get_model

            from ..core.sam import resolve_device

            if self.weights is None:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(self.seed)
                    net = get_model(self.name, weights=None)
            else:
                path = _imagenet_weights_path(self.name, self.weights)
                net = get_model(self.name, weights=None)
                try:
                    state = torch.load(path, map_location="cpu", weights_only=True)
                    net.load_state_dict(state)
                except (RuntimeError, OSError, KeyError) as e:
                    raise ALCError(f"cannot load {self.name} weights from {path}: {e}") from e
            self._net = net.to(resolve_device(self.device)).eval()
        return self._net

    def encode(self, images: list[np.ndarray]) -> list:
        """(D, g, g) features of (H, W, 3) uint8 images, as ImageEmbeddings on the CPU."""
        import torch
        import torch.nn.functional as F

        from ..core.head import preprocess_shape
        from ..core.sam import ImageEmbedding, _check_rgb

        net = self.net
        dev = next(net.parameters()).device
        mean = torch.tensor(self.MEAN, device=dev)[:, None, None]
        std = torch.tensor(self.STD, device=dev)[:, None, None]
        xs, sizes = [], []
        for im in images:
            im = _check_rgb(im)
            h, w = preprocess_shape(im.shape[0], im.shape[1], self.frame)
            x = torch.as_tensor(im, device=dev).permute(2, 0, 1)[None].float() / 255.0
            x = F.interpolate(x, (h, w), mode="bilinear", align_corners=False, antialias=True)
            x = (x[0] - mean) / std
            xs.append(F.pad(x, (0, self.frame - w, 0, self.frame - h)))
            sizes.append((h, w))
        with torch.inference_mode():
            x = torch.stack(xs)
            x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
            feats = net.layer3(net.layer2(net.layer1(x))).float().cpu()
        return [
            ImageEmbedding(f.clone(), s, tuple(im.shape[:2]))
            for f, s, im in zip(feats, sizes, images)
        ]

    def prepare(self, samples, progress=None):
        rows = list(zip(*samples.values(["id", "filepath"]))) if len(samples) else []
        dataset = dataset_of(samples)
        todo = [r for r in rows if not self._path_of(dataset, r[0]).is_file()]
        if progress:
            progress(0, len(todo), f"{self.name} features")
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            images = [read_image(fp, sid) for sid, fp in chunk]
            try:
                embs = self.encode(images)
            except ValueError as e:
                raise SampleError(chunk[0][0], f"cannot encode the image: {e}", chunk[0][1])
            for (sid, fp), emb in zip(chunk, embs):
                fsam.save_embedding(self._path_of(dataset, sid), emb, fp)
            if progress:
                progress(
                    min(start + self.batch_size, len(todo)), len(todo), f"{self.name} features"
                )

    def _path_of(self, dataset, sample_id: str) -> Path:
        return dataset_dir(dataset) / "_backbone_embeddings" / self.key / f"{sample_id}.npz"

    def get(self, sample):
        path = self._path_of(dataset_of(sample), sample.id)
        emb = fsam.load_embedding(path, sample.filepath, "cpu")
        if emb is None:
            try:
                emb = self.encode([read_image(sample)])[0]
            except ValueError as e:
                raise SampleError(sample.id, f"cannot encode the image: {e}", sample.filepath)
            try:
                fsam.save_embedding(path, emb, sample.filepath)
            except OSError:
                pass
        return emb

    def describe(self):
        return {"features": self.key}


# --- the model ----------------------------------------------------------------------------


class HeadModel(ProbabilityModel):
    """A per-pixel head on frozen grid features, k-fold by image (see the module docstring).

    ``hidden``: 0 for a linear head, else the width of a 2-layer MLP. ``epochs`` passes over
    the labelled cells with AdamW (``lr``, ``weight_decay``), ``batch_images`` images per
    step, images shuffled with ``seed``: the same seed, data and device give the same
    probabilities. ``device``: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
    ``max_memory_mb`` caps the features kept in memory during training (beyond it they are
    re-read from the cache every epoch).
    """

    name = "head"
    fields: tuple[str, ...] = ()

    def __init__(
        self,
        embedder: GridEmbedder,
        n_folds: int = 5,
        hidden: int = 0,
        epochs: int = 10,
        lr: float = 5e-3,
        weight_decay: float = 1e-4,
        batch_images: int = 8,
        seed: int = 0,
        device="auto",
        max_memory_mb: float = 1024,
    ):
        if n_folds < 1:
            raise ValueError(f"n_folds must be >= 1, got {n_folds}")
        if hidden < 0 or epochs < 0 or lr <= 0:
            raise ValueError("hidden and epochs must be >= 0 and lr > 0")
        self.embedder = embedder
        self.n_folds = int(n_folds)
        self.hidden = int(hidden)
        self.epochs = int(epochs)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.batch_images = max(1, int(batch_images))
        self.seed = int(seed)
        self.device = device
        self.max_memory_mb = float(max_memory_mb)
        self._heads = None
        self._fold_of: dict[str, int] = {}
        self._num_classes = 0
        self._in_sample = False
        self._last_loss: float | None = None

    def _torch_device(self):
        from ..core.sam import resolve_device

        return resolve_device(self.device)

    def fit(self, ctx: FitContext) -> None:
        import torch

        from ..core import head as ch

        C = self._num_classes = ctx.num_classes
        samples = ctx.samples
        self.embedder.prepare(samples, ctx.progress)
        frame = self.embedder.frame
        # pass 1: targets pooled to the grid, feature statistics, features kept up to a budget
        ids: list[str] = []
        cells: list[np.ndarray] = []  # flat indices of the labelled cells of each image
        counts: list[np.ndarray] = []  # (n, C) class pixel counts of those cells
        kept: list[object] = []  # (n, D) float32 features, or None: re-read when needed
        budget = self.max_memory_mb * 2**20
        s1 = s2 = None
        n_stat = 0
        dim = grid = None
        for sample in track(samples.iter_samples(), len(samples), ctx.progress, self.name):
            emb = self.embedder.get(sample)
            labels = ctx.read_labels(sample)
            check_same_size(sample, "the labels", labels.shape, "the image", emb.original_size)
            D, g, _ = emb.embedding.shape
            if dim is None:
                dim, grid = D, g
            elif (D, g) != (dim, grid):
                raise SampleError(
                    sample.id,
                    f"features of shape {tuple(emb.embedding.shape)}, expected "
                    f"({dim}, {grid}, {grid})",
                    sample.filepath,
                )
            flat = emb.embedding.reshape(D, g * g).T  # (g*g, D)
            valid = torch.from_numpy(ch.valid_cells(emb.input_size, frame, g))
            v = flat[valid].double()
            s1 = v.sum(0) if s1 is None else s1 + v.sum(0)
            s2 = (v * v).sum(0) if s2 is None else s2 + (v * v).sum(0)
            n_stat += len(v)
            pooled = ch.pool_labels(labels, emb.input_size, frame, g, C, ctx.ignore_index)
            rows = np.flatnonzero(pooled.sum(1) > 0)
            ids.append(sample.id)
            cells.append(rows)
            counts.append(pooled[rows])
            feats = flat[torch.from_numpy(rows)].contiguous()
            if budget >= feats.numel() * 4:
                budget -= feats.numel() * 4
                kept.append(feats)
            else:
                kept.append(None)
        n = len(ids)
        k = max(1, min(self.n_folds, n))
        folds = (np.arange(n) * k) // max(n, 1)  # contiguous blocks in iteration order
        self._fold_of = dict(zip(ids, folds.tolist()))
        self._in_sample = k == 1
        if dim is None:
            self._heads = None
            return
        dev = self._torch_device()
        gen = torch.Generator().manual_seed(self.seed)
        heads = ch.FoldHeads(k, dim, C, self.hidden, generator=gen)
        mean = s1 / max(n_stat, 1)
        std = (s2 / max(n_stat, 1) - mean * mean).clamp(min=0).sqrt().clamp(min=1e-6)
        heads.mean.copy_(mean.float())
        heads.std.copy_(std.float())
        heads = heads.to(dev)
        opt = torch.optim.AdamW(heads.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        head_ids = torch.arange(k, device=dev)[:, None]
        loss_value = None
        for _ in track(range(self.epochs), self.epochs, ctx.progress, f"{self.name} training"):
            order = torch.randperm(n, generator=gen).tolist()
            for start in range(0, n, self.batch_images):
                batch = [i for i in order[start : start + self.batch_images] if len(cells[i])]
                if not batch:
                    continue
                xs = []
                for i in batch:
                    f = kept[i]
                    xs.append(f if f is not None else self._reread(samples, ids[i], cells[i]))
                x = torch.cat(xs).to(dev)
                y = torch.from_numpy(np.concatenate([counts[i] for i in batch])).to(dev)
                row_fold = torch.from_numpy(
                    np.concatenate([np.full(len(cells[i]), folds[i]) for i in batch])
                ).to(dev)
                mask = (
                    torch.ones(k, len(x), device=dev)
                    if k == 1
                    else (row_fold[None] != head_ids).float()
                )
                loss = ch.soft_cross_entropy(heads(x), y, mask)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_value = float(loss.detach()) / k
        heads.eval()
        self._heads = heads
        self._last_loss = loss_value

    def _reread(self, samples, sample_id: str, rows: np.ndarray):
        import torch

        emb = self.embedder.get(samples[sample_id])
        D = emb.embedding.shape[0]
        flat = emb.embedding.reshape(D, -1).T
        return flat[torch.from_numpy(rows)].contiguous()

    def predict(self, sample, superpixels, image=None):
        import torch

        from ..core import head as ch

        if self._num_classes == 0:
            raise ALCError(f"{type(self).__name__}.predict called before fit")
        C = self._num_classes
        emb = self.embedder.get(sample)
        check_same_size(
            sample, "the image", emb.original_size, "the superpixel map", superpixels.shape
        )
        if self._heads is None:  # nothing to train on
            return np.full((C, *superpixels.shape), 1.0 / C, dtype=np.float32)
        dev = self.mean_device
        with torch.inference_mode():
            logits = self._heads.predict_grid(emb.embedding.to(dev), self._fold_of.get(sample.id))
            full = ch.grid_to_image(logits, emb.input_size, emb.original_size, self.embedder.frame)
            probs = torch.softmax(full, dim=0)
        return probs.cpu().numpy().astype(np.float32, copy=False)

    @property
    def mean_device(self):
        return self._heads.mean.device

    def describe(self) -> dict:
        return {
            "name": self.name,
            **self.embedder.describe(),
            "head": f"mlp{self.hidden}" if self.hidden else "linear",
            "n_folds": self.n_folds,
            "epochs": self.epochs,
            "lr": self.lr,
            "seed": self.seed,
            **({"in_sample": True} if self._in_sample else {}),
            **({"train_loss": round(self._last_loss, 4)} if self._last_loss is not None else {}),
        }


class SamHeadModel(HeadModel):
    """``model="sam_head"``: the head on frozen SAM image embeddings (see the module
    docstring). SAM arguments: ``sam``, ``model_type`` (default ``"vit_h"``), ``checkpoint``,
    ``random_weights``, ``sam_seed``, ``encode_batch_size``; the others are
    :class:`HeadModel`'s."""

    name = "sam_head"

    def __init__(
        self,
        sam=None,
        model_type: str = "vit_h",
        checkpoint=None,
        random_weights: bool = False,
        sam_seed: int = 0,
        encode_batch_size: int | None = None,
        device="auto",
        **head_kwargs,
    ):
        embedder = SamEmbedder(
            sam, model_type, checkpoint, random_weights, sam_seed, device, encode_batch_size
        )
        super().__init__(embedder, device=device, **head_kwargs)


class BackboneHeadModel(HeadModel):
    """``model="backbone:<name>"``: the head on a frozen torchvision ResNet's ``layer3``
    features. Backbone arguments: ``weights`` (``"imagenet"``, a path, or None for random),
    ``frame`` (default 512), ``encode_batch_size``; the others are :class:`HeadModel`'s."""

    def __init__(
        self,
        backbone: str = "resnet50",
        weights="imagenet",
        frame: int = 512,
        encode_batch_size: int = 8,
        device="auto",
        **head_kwargs,
    ):
        embedder = BackboneEmbedder(
            backbone, weights, frame, device, encode_batch_size, head_kwargs.get("seed", 0)
        )
        super().__init__(embedder, device=device, **head_kwargs)
        self.name = f"backbone:{backbone}"


__all__ = [
    "BACKBONES",
    "ENV_BACKBONE_WEIGHTS",
    "BackboneEmbedder",
    "BackboneHeadModel",
    "GridEmbedder",
    "HeadModel",
    "SamEmbedder",
    "SamHeadModel",
]
