"""The probability-model interface: a model is fitted once per ranking round on the *current*
labels of a collection (the revised labels where answers exist) and then asked, sample by
sample, for a (C, H, W) map of P(class | pixel). Out-of-sample predictions matter (the method,
trap 8): a model that memorised the noisy labels agrees with them everywhere and ranks nothing.

The implementations live beside this module (:mod:`.features`, :mod:`.external`,
:mod:`.heads`); :func:`alc_fiftyone.models.registry.get_model` resolves ``model=`` by name.
Further models plug in by subclassing :class:`ProbabilityModel`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..progress import ProgressCallback

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
    #: whether ``predict`` may be called from several threads at once after ``fit`` (a
    #: ranking then reads and scores a few samples ahead on all cores)
    thread_safe = False

    def fit(self, ctx: FitContext) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, sample, superpixels: np.ndarray, image: np.ndarray | None) -> np.ndarray:
        """(C, H, W) float32 probabilities for ``sample``."""
        raise NotImplementedError  # pragma: no cover - interface

    def describe(self) -> dict:
        return {"name": self.name}
