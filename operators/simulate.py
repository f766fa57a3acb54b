"""simulate: correction rounds answered by an oracle from a ground-truth field."""

from __future__ import annotations

from fiftyone.operators import types

from ._common import (
    ALCOperator,
    ContextProgress,
    budget_value,
    field_choice,
    jsonable,
    operator_config,
    param,
    reload_app,
    segmentation_fields,
    target_notice,
)
from .rank import acquisition_inputs

DEFAULTS = {
    "superpixel_field": "alc_superpixels",
    "rounds": 5,
    "budget_per_round": 0.02,
    "method": "sim",
    "oracle": "majority",
    "seed": 0,
    "model": "features",
}
# "majority": the region's majority ground-truth class (A2LC); "rep": the ground truth at the
# representative pixel (the reference ALC code)
ORACLES = ("majority", "rep")


class Simulate(ALCOperator):
    @property
    def config(self):
        return operator_config(
            "simulate",
            "Simulate correction rounds",
            "Run ranking and correction rounds with an oracle answering from a ground-truth "
            "field, and report data mIoU after each round",
            icon="science",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        target_notice(inputs, len(ctx.target_view()), "Simulate on")
        fields = segmentation_fields(ctx)
        superpixel_field = param(ctx, "superpixel_field", DEFAULTS)
        labels = [f for f in fields if f != superpixel_field]
        field_choice(inputs, "label_field", labels, "Label field", "The labels to correct")
        field_choice(
            inputs, "gt_field", labels, "Ground-truth field", "The oracle answers from this field"
        )
        field_choice(
            inputs,
            "superpixel_field",
            fields,
            "Superpixel field",
            "Superpixel id maps (see 'Compute superpixels')",
            default=DEFAULTS["superpixel_field"],
        )
        inputs.int("rounds", default=DEFAULTS["rounds"], min=1, label="Rounds")
        inputs.float(
            "budget_per_round",
            default=DEFAULTS["budget_per_round"],
            min=0,
            label="Budget per round",
            description="Queries per round: a fraction of the superpixels (< 1) or a count",
        )
        acquisition_inputs(inputs, DEFAULTS, ctx)
        oracles = types.RadioGroup()
        for o in ORACLES:
            oracles.add_choice(o, label=o)
        inputs.enum(
            "oracle", oracles.values(), default=DEFAULTS["oracle"], label="Oracle", view=oracles
        )
        return types.Property(inputs, view=types.View(label=self.config.label))

    def execute(self, ctx):
        import alc_fiftyone as alc

        result = alc.simulate(
            self.target(ctx),
            ctx.params["label_field"],
            ctx.params["gt_field"],
            rounds=param(ctx, "rounds", DEFAULTS),
            budget_per_round=budget_value(param(ctx, "budget_per_round", DEFAULTS)),
            method=param(ctx, "method", DEFAULTS),
            oracle=param(ctx, "oracle", DEFAULTS),
            superpixel_field=param(ctx, "superpixel_field", DEFAULTS),
            seed=param(ctx, "seed", DEFAULTS),
            model=param(ctx, "model", DEFAULTS),
            progress=ContextProgress(ctx),
        )
        reload_app(ctx)
        return {"table": result.table(), "rows": jsonable(result.rows)}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("table", label="Data mIoU per round", view=types.MarkdownView())
        outputs.list("rows", types.Object(), label="Rows", view=types.JSONView())
        return types.Property(outputs, view=types.View(label=self.config.label))
