"""rank_superpixels: score every superpixel and write the top ones as correction queries."""

from __future__ import annotations

from fiftyone.operators import types

from ._common import (
    ALCOperator,
    ContextProgress,
    alc,
    budget_value,
    field_choice,
    jsonable,
    segmentation_fields,
    skip_failures_input,
)

#: learned probability models offered by name (any other value can still be typed)
MODEL_CHOICES = {
    "auto": "auto: sam_head on a CUDA machine with a SAM checkpoint, else features",
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


def latest_round_fields(dataset) -> dict:
    """The label, superpixel and queries fields of the dataset's latest ranking round (the
    form's defaults, so that ranking again needs no typing); {} before any ranking."""
    rounds = ((dataset.info or {}).get("alc") or {}).get("rounds") or [] if dataset else []
    if not rounds:
        label_field = alc().ranked_label_field(dataset) if dataset is not None else None
        return {"label_field": label_field} if label_field else {}
    last = rounds[-1]
    return {
        k: last[k] for k in ("label_field", "superpixel_field", "queries_field") if last.get(k)
    }


def estimate_share_input(inputs, defaults: dict) -> None:
    """The random share of the budget (Rank and Simulate forms)."""
    inputs.float(
        "estimate_share",
        default=defaults["estimate_share"],
        min=0,
        max=0.99,
        label="Random share (for an audit)",
        description="Share of the budget drawn at random, stratified by score, so that "
        "'Audit report' can estimate what is still wrong (0: none; 0.1-0.2 for an audit)",
    )


def acquisition_inputs(inputs, defaults: dict, ctx=None) -> None:
    """The method and model inputs shared by ranking and simulation."""
    methods = types.Dropdown()
    for m in alc().ACQUISITION_METHODS:
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
        description="P(class | pixel), trained out of fold on the current labels: auto, "
        "features, sam_head, backbone:<resnet18|34|50|101>, or field:<name> (your (C, H, W) maps, "
        "arrays or .npy paths); other values can be typed",
        view=models,
    )
    inputs.int("seed", default=defaults["seed"], label="Seed")


class RankSuperpixels(ALCOperator):
    NAME = "rank_superpixels"
    LABEL = "Rank superpixels"
    DESCRIPTION = (
        "Score the superpixels by how likely their label is wrong and write the top ones as "
        "correction queries"
    )
    ICON = "format_list_numbered"
    SDK = "rank_superpixels"
    SHARDABLE = True

    def defaults(self, ctx=None) -> dict:
        dataset = ctx.dataset if ctx is not None else None
        return {**super().defaults(ctx), **latest_round_fields(dataset)}

    def form(self, ctx, inputs):
        d = self.defaults(ctx)
        self.notice(ctx, inputs, "Rank the superpixels of")
        fields = segmentation_fields(ctx)
        superpixel_field = self.param(ctx, "superpixel_field")
        choices = [f for f in fields if f != superpixel_field]
        field_choice(
            inputs,
            "label_field",
            choices,
            "Label field",
            "The labels under review (default: the field ranked last)",
            default=d.get("label_field") if d.get("label_field") in choices else None,
        )
        field_choice(
            inputs,
            "superpixel_field",
            fields,
            "Superpixel field",
            "Superpixel id maps (see 'Compute superpixels')",
            default=d["superpixel_field"],
        )
        acquisition_inputs(inputs, d, ctx)
        inputs.float(
            "budget",
            min=0,
            label="Budget",
            description="Queries to write: a count (>= 1) or a fraction of the "
            "superpixels (< 1); blank: library default",
        )
        estimate_share_input(inputs, d)
        inputs.str(
            "queries_field",
            default=d["queries_field"],
            label="Queries field",
            description="Detections field receiving the queries",
        )
        inputs.bool(
            "exclude_answered",
            default=d["exclude_answered"],
            label="Exclude answered",
            description="Do not ask again about superpixels that already have an answer",
        )
        inputs.float(
            "tau",
            default=d["tau"],
            label="Expansion threshold (tau)",
            description="An answer relabels the superpixel pixels whose class probabilities "
            "have cosine similarity >= tau with the representative pixel's (0: all of them)",
        )
        skip_failures_input(inputs, d)

    def run(self, ctx):
        summary = alc().rank_superpixels(
            self.target(ctx, sharded=False),
            ctx.params["label_field"],
            superpixel_field=self.param(ctx, "superpixel_field"),
            method=self.param(ctx, "method"),
            budget=budget_value(ctx.params.get("budget")),
            queries_field=self.param(ctx, "queries_field"),
            exclude_answered=self.param(ctx, "exclude_answered"),
            model=self.param(ctx, "model"),
            tau=self.param(ctx, "tau"),
            seed=self.param(ctx, "seed"),
            skip_failures=bool(self.param(ctx, "skip_failures")),
            progress=ContextProgress(ctx),
            shard=ctx.params.get("shard") or None,
            run_id=ctx.params.get("run_id"),
            estimate_share=float(self.param(ctx, "estimate_share") or 0),
        )
        text = (
            f"Round {summary.get('round')}: {summary.get('num_queries')} queries written to "
            f"`{summary.get('queries_field')}` from {summary.get('num_samples')} sample(s) "
            f"({summary.get('num_superpixels')} superpixels)"
        )
        if summary.get("note"):
            text += f"; {summary['note']}"
        if summary.get("failed"):
            text += f"; {len(summary['failed'])} sample(s) left out (unreadable)"
        return {"text": text, "summary": jsonable(summary)}
