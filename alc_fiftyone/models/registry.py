"""``model=`` as rank_superpixels, simulate and propagate_answers take it, resolved to a
:class:`~alc_fiftyone.models.base.ProbabilityModel`."""

from __future__ import annotations

from typing import Any

from .base import ProbabilityModel

MODELS = ("features", "sam_head", "backbone:<resnet>", "field:<name>", "<callable>")


def get_model(model: Any, **kwargs) -> ProbabilityModel:
    """Resolve ``model=`` as given to rank_superpixels / simulate.

    Parameters
    ----------
    model
        P(class | pixel): ``"features"``, ``"sam_head"``, ``"backbone:<resnet>"``,
        ``"field:<name>"``, a callable ``fn(sample, image) -> (C, H, W)`` or a
        :class:`~alc_fiftyone.models.base.ProbabilityModel`.
    **kwargs
        Keyword arguments of the model.

    Returns
    -------
    ProbabilityModel
        The model, not fitted yet.
    """
    if isinstance(model, ProbabilityModel):
        return model
    if callable(model):
        from .external import CallableModel

        return CallableModel(model, **kwargs)
    if model == "features":
        from .features import FeatureModel

        return FeatureModel(**kwargs)
    if isinstance(model, str) and model.startswith("field:"):
        from .external import FieldModel

        return FieldModel(model.split(":", 1)[1], **kwargs)
    if model == "sam_head":
        from .heads import SamHeadModel

        return SamHeadModel(**kwargs)
    if isinstance(model, str) and model.startswith("backbone:"):
        from .heads import BackboneHeadModel

        return BackboneHeadModel(model.split(":", 1)[1], **kwargs)
    raise ValueError(
        f"unknown probability model {model!r}: use 'features', 'sam_head', "
        "'backbone:<resnet18|34|50|101>', 'field:<field name>', a "
        "callable(sample, image) -> (C, H, W), or a ProbabilityModel instance"
    )
