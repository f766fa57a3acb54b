"""One probability model per level of a region hierarchy.

A ranking over a hierarchy (``compute_superpixels(..., levels=...)``) scores the regions of
every level. Each level is scored with the probabilities of a model fitted on that level's
own regions: a coarse region by a model that judges it as a whole, a finer region by one that
judges that piece. One model on the finest level alone, its probabilities summed over a
coarse region, counted the small doubts of every piece of a big, right region as pixels to
fix and asked about such regions too often; on horses it lost up to 25 points against the
per-level models (docs/method.md, "Regions at several sizes").
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .base import FitContext, ProbabilityModel


class LevelModels(ProbabilityModel):
    """The model of the top level (``base``, fitted as for a ranking of one map) and, for each
    finer level, ``base.for_level(field)`` fitted on that level's regions."""

    name = "levels"

    def __init__(self, base: ProbabilityModel, level_fields: list[str]):
        self.base = base
        self.level_fields = list(level_fields)
        self.subs = [base.for_level(f) for f in self.level_fields[1:]]
        self.needs_image = base.needs_image or any(m.needs_image for m in self.subs)
        self.thread_safe = base.thread_safe and all(m.thread_safe for m in self.subs)
        fields = [base.fields, *[m.fields for m in self.subs]]
        self.fields = (
            None
            if any(f is None for f in fields)
            else tuple(dict.fromkeys(x for f in fields for x in f))
        )

    def fit(self, ctx: FitContext) -> None:
        self.base.fit(ctx)
        for name, model in zip(self.level_fields[1:], self.subs):
            model.fit(dataclasses.replace(ctx, superpixel_field=name))

    def predict(self, sample, superpixels, image=None) -> np.ndarray:
        return self.base.predict(sample, superpixels, image)

    def predict_levels(self, sample, maps: list[np.ndarray], image=None) -> list[np.ndarray]:
        """(C, H, W) probabilities for each level map of ``maps`` (top first; a sample may
        have fewer levels than the hierarchy)."""
        out = [self.base.predict(sample, maps[0], image)]
        for model, level in zip(self.subs, maps[1:]):
            out.append(model.predict(sample, level, image))
        return out

    def describe(self) -> dict:
        return {
            **self.base.describe(),
            "levels": {f: m.describe() for f, m in zip(self.level_fields[1:], self.subs)},
        }


def level_model(model: ProbabilityModel, level_fields: list[str]) -> ProbabilityModel:
    """``model`` for a ranking over ``level_fields``: per-level models when there are finer
    levels and the model can make them (``for_level``), else ``model`` itself (its
    probabilities then serve every level)."""
    if len(level_fields) > 1 and hasattr(model, "for_level"):
        return LevelModels(model, level_fields)
    return model
