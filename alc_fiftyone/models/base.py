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

from ..errors import ALCError
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


class LabelCensus:
    """A label reader for :class:`FitContext` that also notes which classes the labels a
    model fits on hold, so that a ranking can refuse a model with nothing to learn from (no
    labelled pixel, or one class only) before it writes a query. Once two classes are seen,
    it only passes the labels through."""

    def __init__(self, read_labels: LabelReader, names: dict, num_classes: int, ignore):
        self.read_labels, self.names = read_labels, names
        self.num_classes, self.ignore = num_classes, ignore
        self.reads = 0
        self.seen: set[int] = set()

    def __call__(self, sample) -> np.ndarray:
        labels = self.read_labels(sample)
        self.reads += 1
        if len(self.seen) < 2:
            counts = np.bincount(labels.ravel().astype(np.int64), minlength=self.num_classes)
            present = np.flatnonzero(counts[: self.num_classes])
            self.seen.update(int(v) for v in present if v != self.ignore)
        return labels

    def require_learnable(self, label_field: str, revised_field: str | None = None) -> None:
        """ALCError when the model read labels to fit on and they held fewer than two
        classes (a fixed model, which reads none, is not concerned)."""
        if self.reads == 0 or len(self.seen) >= 2:
            return
        where = repr(label_field) + (f" (and {revised_field!r})" if revised_field else "")
        if not self.seen:
            ignore = self.names.get(self.ignore, self.ignore)
            what = f"no labelled pixel: every pixel of {where} is the ignore value ({ignore})"
        else:
            only = self.names.get(next(iter(self.seen)), next(iter(self.seen)))
            what = f"one class only: every labelled pixel of {where} is {only!r}"
        raise ALCError(
            f"the probability model has nothing to learn from: the {self.reads} sample(s) it "
            f"fits on hold {what}; its suggestions would be guesses, so no query was written. "
            "Label some pixels of at least two classes, or pass a fixed model "
            "(model='field:<name>' or a callable)"
        )


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

    def predict_levels(self, sample, maps: list[np.ndarray], image=None) -> list[np.ndarray]:
        """Probabilities for each level map of a region hierarchy (top first); a model of one
        granularity serves every level with the same map."""
        probs = self.predict(sample, maps[0], image)
        return [probs] * len(maps)

    def describe(self) -> dict:
        return {"name": self.name}
