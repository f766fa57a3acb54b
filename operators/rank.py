"""rank_superpixels: score every superpixel and write the top ones as correction queries."""

from __future__ import annotations

from fiftyone.operators import types

from ._common import (
    ALCOperator,
    ContextProgress,
    acquisition_methods,
    budget_value,
    field_choice,
    jsonable,
    operator_config,
    param,
    reload_app,
    segmentation_fields,
    shard_inputs,
    target_notice,
)

DEFAULTS = {
    "superpixel_field": "alc_superpixels",
    "method": "sim",
    "budget": None,
    "queries_field": "alc_queries",
    "exclude_answered": True,
    "model": "features",
    "tau": 0.0,
    "seed": 0,
}


#: learned probability models offered by name (any other value can still be typed)
MODEL_CHOICES = {
    "features": "features: superpixel colour/texture features + a classifier (CPU)",
    "sam_head": "sam_head: a small head on SAM image embeddings (needs a SAM checkpoint)",
    "backbone:resnet50": "backbone:resnet50: a small head on ImageNet ResNet-50 features",
}


def probability_fields(ctx) -> list[str]:
    """Sample fields that can hold per-sample probability maps: arrays, or ``.npy`` paths."""
    import fiftyone as fo

    if ctx is None or ctx.dataset is None:
        return []
    schema = ctx.dataset.get_field_schema(ftype=(fo.ArrayField, fo.StringField))
    return sorted(f for f in schema if f not in ("filepath", "id") and not f.startswith("_"))


def acquisition_inputs(inputs, defaults: dict, ctx=None) -> None:
    """The method and model inputs shared by ranking and simulation."""
    methods = types.Dropdown()
    for m in acquisition_methods():
        methods.add_choice(m, label=m)
    inputs.enum(
        "method",
        methods.values(),
        default=defaults["method"],
        label="Method",
        description="Acquisition function (sim: look-ahead, pixels one answer fixes)",
        view=methods,
    )
    models = types.AutocompleteView(allow_user_input=True)
    for value, label in MODEL_CHOICES.items():
        models.add_choice(value, label=label)
    for field in probability_fields(ctx):
        models.add_choice(f"field:{field}", label=f"field:{field}: your maps in '{field}'")
    inputs.str(
        "model",
        default=defaults["model"],
        label="Probability model",
        description="P(class | pixel), trained out of fold on the current labels: features, "
        "sam_head, backbone:<resnet18|34|50|101>, or field:<name> (your (C, H, W) maps, "
        "arrays or .npy paths); other values can be typed",
        view=models,
    )
    inputs.int("seed", default=defaults["seed"], label="Seed")


class RankSuperpixels(ALCOperator):
    @property
    def config(self):
        return operator_config(
            "rank_superpixels",
            "Rank superpixels",
            "Score the superpixels by how likely their label is wrong and write the top "
            "ones as correction queries",
            icon="format_list_numbered",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        target_notice(inputs, len(ctx.target_view()), "Rank the superpixels of")
        fields = segmentation_fields(ctx)
        superpixel_field = param(ctx, "superpixel_field", DEFAULTS)
        field_choice(
            inputs,
            "label_field",
            [f for f in fields if f != superpixel_field],
            "Label field",
            "The labels under review",
        )
        field_choice(
            inputs,
            "superpixel_field",
            fields,
            "Superpixel field",
            "Superpixel id maps (see 'Compute superpixels')",
            default=DEFAULTS["superpixel_field"],
        )
        acquisition_inputs(inputs, DEFAULTS, ctx)
        inputs.float(
            "budget",
            min=0,
            label="Budget",
            description="Queries to write: a count (>= 1) or a fraction of the "
            "superpixels (< 1); blank: library default",
        )
        inputs.str(
            "queries_field",
            default=DEFAULTS["queries_field"],
            label="Queries field",
            description="Detections field receiving the queries",
        )
        inputs.bool(
            "exclude_answered",
            default=DEFAULTS["exclude_answered"],
            label="Exclude answered",
            description="Do not ask again about superpixels that already have an answer",
        )
        inputs.float(
            "tau",
            default=DEFAULTS["tau"],
            label="Expansion threshold (tau)",
            description="An answer relabels the superpixel pixels whose class probabilities "
            "have cosine similarity >= tau with the representative pixel's (0: all of them)",
        )
        inputs.bool(
            "skip_failures",
            default=False,
            label="Skip failures",
            description="Leave out (and list) samples whose files cannot be read instead of "
            "stopping",
        )
        shard_inputs(inputs)
        return types.Property(inputs, view=types.View(label=self.config.label))

    def execute(self, ctx):
        import alc_fiftyone as alc

        queued = self.queue_shards(ctx)
        if queued is not None:
            return queued
        summary = alc.rank_superpixels(
            self.target(ctx, sharded=False),
            ctx.params["label_field"],
            superpixel_field=param(ctx, "superpixel_field", DEFAULTS),
            method=param(ctx, "method", DEFAULTS),
            budget=budget_value(ctx.params.get("budget")),
            queries_field=param(ctx, "queries_field", DEFAULTS),
            exclude_answered=param(ctx, "exclude_answered", DEFAULTS),
            model=param(ctx, "model", DEFAULTS),
            tau=param(ctx, "tau", DEFAULTS),
            seed=param(ctx, "seed", DEFAULTS),
            skip_failures=bool(ctx.params.get("skip_failures", False)),
            progress=ContextProgress(ctx),
            shard=ctx.params.get("shard") or None,
            run_id=ctx.params.get("run_id"),
        )
        reload_app(ctx)
        return {"summary": jsonable(summary)}
