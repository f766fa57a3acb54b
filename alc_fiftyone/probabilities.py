"""Class-probability models P(class | pixel) for the acquisition, behind one interface.

A model is fitted once per ranking round on the *current* labels of a collection (the revised
labels where answers exist) and then asked, sample by sample, for a (C, H, W) probability map.
Out-of-sample predictions matter (METHOD.md, trap 8): a model that memorised the noisy labels
agrees with them everywhere and ranks nothing.

Implementations:

- :class:`FeatureModel` (``model="features"``, CPU, no weights): per-superpixel colour,
  texture, position and context features, a scikit-learn classifier trained out of fold by
  image (k-fold), probabilities broadcast to the superpixel's pixels.
- :class:`FieldModel` (``model="field:<name>"``): the user's own maps stored on the samples,
  as a (C, H, W) array field or a path to a ``.npy`` file, probabilities or logits.
- :class:`CallableModel` (``model=<callable>``): ``fn(sample, image) -> (C, H, W)``.

Further models (SAM image embeddings + a small head) plug in by subclassing
:class:`ProbabilityModel` and returning it from :func:`get_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .core import probabilities as cp
from .errors import ALCError, SampleError
from .progress import ProgressCallback, track
from .storage import check_same_size, read_image, read_segmentation

LabelReader = Callable[[object], np.ndarray]


@dataclass
class FitContext:
    """What a model needs to fit on a collection."""

    samples: object  # fo.SampleCollection
    read_labels: LabelReader  # sample -> (H, W) current labels
    superpixel_field: str
    num_classes: int
    ignore_index: int | None
    progress: ProgressCallback | None = None


class ProbabilityModel:
    """Interface: ``fit`` on a collection, then ``predict`` one sample at a time."""

    name = "base"
    #: whether ``predict`` needs the decoded image (lets callers skip reading it)
    needs_image = False
    #: sample fields ``predict`` reads besides the superpixels (None: the whole sample)
    fields: tuple[str, ...] | None = ()

    def fit(self, ctx: FitContext) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, sample, superpixels: np.ndarray, image: np.ndarray | None) -> np.ndarray:
        """(C, H, W) float32 probabilities for ``sample``."""
        raise NotImplementedError  # pragma: no cover - interface

    def describe(self) -> dict:
        return {"name": self.name}


class FeatureModel(ProbabilityModel):
    """CPU baseline: superpixel features + a classifier, out of fold by image."""

    name = "features"

    def __init__(
        self, n_folds: int = 5, estimator: str = "hgb", seed: int = 0, fold_by: str = "blocks"
    ):
        self.fold_by = fold_by
        self.n_folds = n_folds
        self.estimator = estimator
        self.seed = seed
        self._index: dict[str, int] = {}
        self._ids: list[np.ndarray] = []
        self._features: list[np.ndarray] = []
        self._clf: cp.OutOfFoldClassifier | None = None
        self._num_classes = 0
        self._cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def fit(self, ctx: FitContext) -> None:
        self._num_classes = ctx.num_classes
        self._index, self._ids, self._features = {}, [], []
        groups = []
        samples = ctx.samples
        for sample in track(samples.iter_samples(), len(samples), ctx.progress, "features"):
            sp = read_segmentation(sample, ctx.superpixel_field)
            labels = ctx.read_labels(sample)
            check_same_size(sample, "the labels", labels.shape, "the superpixel map", sp.shape)
            key = (sample.id, sample[ctx.superpixel_field].mask_path)
            cached = self._cache.get(key)
            if cached is None:
                image = read_image(sample)
                check_same_size(sample, "the image", image.shape, "the superpixel map", sp.shape)
                # features depend on the image and superpixels only: kept across rounds
                cached = self._cache[key] = cp.superpixel_features(image, sp)
            ids, feats = cached
            targets, purity = cp.superpixel_targets(
                labels, sp, ids, ctx.num_classes, ignore_index=ctx.ignore_index
            )
            sizes = np.bincount(sp.ravel(), minlength=int(ids.max()) + 1 if len(ids) else 1)
            weight = np.sqrt(sizes[ids].astype(np.float64)) * purity if len(ids) else None
            self._index[sample.id] = len(self._ids)
            self._ids.append(ids)
            self._features.append(feats)
            groups.append((feats, targets, weight))
        self._clf = cp.OutOfFoldClassifier(
            ctx.num_classes,
            n_folds=self.n_folds,
            estimator=self.estimator,
            seed=self.seed,
            fold_by=self.fold_by,
        ).fit(groups)

    def predict(self, sample, superpixels, image=None):
        if self._clf is None:
            raise ALCError("FeatureModel.predict called before fit")
        i = self._index.get(sample.id)
        if i is None:
            if image is None:
                image = read_image(sample)
            ids, feats = cp.superpixel_features(image, superpixels)
            sp_probs = self._clf.predict_proba_new(feats)
        else:
            ids, sp_probs = self._ids[i], self._clf.predict_proba(i, self._features[i])
        return cp.broadcast(sp_probs, ids, superpixels, self._num_classes)

    def describe(self):
        return {
            "name": self.name,
            "estimator": self.estimator,
            "n_folds": self.n_folds,
            "fold_by": self.fold_by,
        }


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=0, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=0, keepdims=True)
    return x


def _check_probs(sample, probs, num_classes: int, shape) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3 or probs.shape[0] != num_classes or probs.shape[1:] != tuple(shape):
        raise SampleError(
            sample.id,
            f"probability map has shape {probs.shape}, expected ({num_classes}, "
            f"{shape[0]}, {shape[1]}) (classes, height, width)",
            sample.filepath,
        )
    if not np.isfinite(probs).all():
        raise SampleError(sample.id, "probability map holds NaN or infinite values")
    return probs


class FieldModel(ProbabilityModel):
    """The user's own per-sample maps: ``sample[field]`` is a (C, H, W) array or a path to a
    ``.npy`` file holding one. ``logits=True`` applies a softmax over classes."""

    def __init__(self, field: str, logits: bool = False):
        self.field = field
        self.logits = logits
        self.name = f"field:{field}"
        self.fields = (field,)
        self._num_classes = 0

    def fit(self, ctx: FitContext) -> None:
        self._num_classes = ctx.num_classes
        if not ctx.samples.has_field(self.field):
            raise ALCError(f"the collection has no field {self.field!r} with probability maps")

    def predict(self, sample, superpixels, image=None):
        value = sample[self.field] if sample.has_field(self.field) else None
        if value is None:
            raise SampleError(sample.id, f"field {self.field!r} is empty", sample.filepath)
        if isinstance(value, str):
            try:
                value = np.load(value)
            except (OSError, ValueError) as e:
                raise SampleError(sample.id, f"cannot load probability map: {e}", value) from e
        probs = _check_probs(sample, value, self._num_classes, superpixels.shape)
        return _softmax(probs.copy()) if self.logits else probs


class CallableModel(ProbabilityModel):
    """A Python callable ``fn(sample, image) -> (C, H, W)`` probabilities (or logits)."""

    needs_image = True
    fields = None  # the callable may read any field of the sample

    def __init__(self, fn: Callable, logits: bool = False):
        self.fn = fn
        self.logits = logits
        self.name = f"callable:{getattr(fn, '__name__', type(fn).__name__)}"
        self._num_classes = 0

    def fit(self, ctx: FitContext) -> None:
        self._num_classes = ctx.num_classes

    def predict(self, sample, superpixels, image=None):
        if image is None:
            image = read_image(sample)
        probs = _check_probs(sample, self.fn(sample, image), self._num_classes, superpixels.shape)
        return _softmax(probs.copy()) if self.logits else probs


MODELS = ("features", "field:<name>", "<callable>")


def get_model(model, **kwargs) -> ProbabilityModel:
    """Resolve ``model=`` as given to rank_superpixels / simulate."""
    if isinstance(model, ProbabilityModel):
        return model
    if callable(model):
        return CallableModel(model, **kwargs)
    if model == "features":
        return FeatureModel(**kwargs)
    if isinstance(model, str) and model.startswith("field:"):
        return FieldModel(model.split(":", 1)[1], **kwargs)
    raise ValueError(
        f"unknown probability model {model!r}: use 'features', 'field:<field name>', a "
        "callable(sample, image) -> (C, H, W), or a ProbabilityModel instance"
    )


__all__ = [
    "CallableModel",
    "FeatureModel",
    "FieldModel",
    "FitContext",
    "ProbabilityModel",
    "get_model",
]
