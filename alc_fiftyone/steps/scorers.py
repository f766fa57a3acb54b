"""Scorers: an acquisition of one's own, or the oracle ceiling, for a ranking
(:func:`alc_fiftyone.steps.ranking.rank_with`, :func:`alc_fiftyone.simulate`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..models.base import ProbabilityModel
from ..store.files import check_same_size, read_image, read_segmentation


class Scorer:
    """An acquisition of one's own, or a ceiling that knows the truth, for :func:`rank_with`
    (and :func:`alc_fiftyone.simulate`): it replaces the scores of ``base_method``.

    ``fields`` are the sample fields it reads; ``__call__(sample, probs, superpixels, labels,
    res)`` returns one score per superpixel of ``res`` (a
    :class:`~alc_fiftyone.core.acquisition.SuperpixelScores` of ``base_method``, whose
    representatives and sizes the queries keep).
    """

    name = "scorer"
    base_method = "sim"
    fields: tuple[str, ...] = ()

    def start(self, context: ScoreContext) -> None:
        """Called once per ranking, after the model's fit and before the samples are scored
        (a scorer that needs the whole collection at once reads it here)."""

    def __call__(self, sample, probs, superpixels, labels, res) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - interface


@dataclass
class ScoreContext:
    """What a :class:`Scorer` may read in :meth:`Scorer.start`: the samples being ranked,
    their superpixel field, the fitted model, the current labels, the classes."""

    samples: object
    superpixel_field: str
    model: ProbabilityModel
    read_labels: Callable
    num_classes: int
    ignore_index: int | None

    def probabilities(self, sample) -> np.ndarray:
        """(C, H, W) probabilities of the fitted model for ``sample``."""
        sp = read_segmentation(sample, self.superpixel_field)
        image = read_image(sample) if self.model.needs_image else None
        return self.model.predict(sample, sp, image)


class OracleScorer(Scorer):
    """The ceiling of a benchmark: each region scored by the pixels one answer of the
    simulated annotator would fix (:func:`alc_fiftyone.core.correction.oracle_gains`). It
    reads the ground truth, so it is a bound, never a method for reviewers."""

    name = "oracle"
    exact = True  # the pixels an answer fixes, counted: no level is discounted

    def __init__(self, gt_field: str, rule: str = "majority", ignore_index: int | None = 255):
        self.gt_field, self.rule, self.ignore_index = gt_field, rule, ignore_index
        self.fields = (gt_field,)

    def __call__(self, sample, probs, superpixels, labels, res) -> np.ndarray:
        from ..core.correction import oracle_gains

        gt = read_segmentation(sample, self.gt_field)
        check_same_size(sample, repr(self.gt_field), gt.shape, "the labels", labels.shape)
        return oracle_gains(
            gt, labels, superpixels, res.ids, self.rule, res.rep_yx, self.ignore_index
        )
