"""The probability-model input of the rank and simulate forms: a choice of the known models
and the dataset's map fields, still accepting a typed value."""

from __future__ import annotations

import asyncio

import pytest

PLUGIN = "@alc/active-label-correction"


@pytest.fixture
def demo(unique_name, tmp_alc_dir):
    import alc_fiftyone as alc

    ds = alc.make_demo_dataset(name=unique_name, num_samples=2, size=(48, 40), seed=1)
    yield ds
    if not ds.deleted:
        ds.delete()


def resolve_input(name: str, ds, params=None):
    from fiftyone.operators.executor import resolve_type
    from fiftyone.operators.registry import OperatorRegistry

    request = {"dataset_name": ds.name, "view": ds.view()._serialize(), "params": params or {}}
    prop = asyncio.run(resolve_type(OperatorRegistry(), f"{PLUGIN}/{name}", request))
    assert prop is not None and not hasattr(prop, "error"), getattr(prop, "error", None)
    return prop.type.properties


@pytest.mark.parametrize("operator", ["rank_superpixels", "simulate"])
def test_model_input_offers_models_and_map_fields(plugin, demo, operator):
    import fiftyone as fo

    demo.add_sample_field("my_probs", fo.ArrayField)
    demo.add_sample_field("my_probs_path", fo.StringField)
    prop = resolve_input(operator, demo)["model"]
    values = [c.value for c in prop.view.choices]
    assert values[:4] == ["auto", "features", "sam_head", "backbone:resnet50"]
    assert "field:my_probs" in values and "field:my_probs_path" in values
    assert "field:filepath" not in values
    assert prop.default == "auto"  # the SDK's default: sam_head on a GPU, else features
    assert prop.view.to_json()["allow_user_input"]  # a typed value is still accepted
    assert prop.type.__class__.__name__ == "String"
