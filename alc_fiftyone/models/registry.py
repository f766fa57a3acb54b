"""``model=`` as rank_superpixels, simulate and propagate_answers take it, resolved to a
:class:`~alc_fiftyone.models.base.ProbabilityModel`."""

from __future__ import annotations

from typing import Any

from .base import ProbabilityModel

MODELS = ("auto", "features", "sam_head", "backbone:<resnet>", "field:<name>", "<callable>")


def default_model() -> str:
    """What ``model="auto"`` (the default of rank_superpixels and simulate) means here:
    ``"sam_head"`` (a head on SAM's image embeddings) where CUDA is available and a SAM
    checkpoint is found (``$ALC_SAM_CHECKPOINT`` or FiftyOne's model zoo folder; nothing is
    downloaded), else ``"features"`` (the CPU model).

    Returns
    -------
    str
        ``"sam_head"`` or ``"features"``.
    """
    from ..core.acquisition.common import _cuda_available

    if not _cuda_available():
        return "features"
    from ..core.sam import SamCheckpointError, find_checkpoint

    try:
        find_checkpoint("vit_h", None, _zoo_dir())
    except SamCheckpointError:
        return "features"
    return "sam_head"


def _zoo_dir():
    import fiftyone as fo

    return fo.config.model_zoo_dir


def get_model(model: Any, **kwargs) -> ProbabilityModel:
    """Resolve ``model=`` as given to rank_superpixels / simulate.

    Parameters
    ----------
    model
        P(class | pixel): ``"auto"`` (:func:`default_model`: ``"sam_head"`` on a CUDA machine
        with a SAM checkpoint, else ``"features"``), ``"features"``, ``"sam_head"``,
        ``"backbone:<resnet>"``,
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
    if model == "auto":
        model = default_model()
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
