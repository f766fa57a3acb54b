"""Probabilities the user gives: ``model="field:<name>"`` (:class:`FieldModel`, maps stored
on the samples as (C, H, W) arrays or ``.npy`` paths, probabilities or logits) and
``model=<callable>`` (:class:`CallableModel`, ``fn(sample, image) -> (C, H, W)``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import ALCError, SampleError
from ..store.files import read_image
from .base import FitContext, ProbabilityModel


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
