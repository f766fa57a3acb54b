"""simulate: correction rounds answered by an oracle from a ground-truth field."""

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
    target_notice,
)
from .rank import acquisition_inputs


class Simulate(ALCOperator):
    NAME = "simulate"
    LABEL = "Simulate correction rounds"
    DESCRIPTION = (
        "Run ranking and correction rounds with an oracle answering from a ground-truth "
        "field, and report data mIoU after each round"
    )
    ICON = "science"
    SDK = "simulate"

    def form(self, ctx, inputs):
        d = self.defaults(ctx)
        target_notice(inputs, len(ctx.target_view()), "Simulate on")
        fields = segmentation_fields(ctx)
        superpixel_field = self.param(ctx, "superpixel_field")
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
            default=d["superpixel_field"],
        )
        inputs.int("rounds", default=d["rounds"], min=1, label="Rounds")
        inputs.float(
            "budget_per_round",
            default=d["budget_per_round"],
            min=0,
            label="Budget per round",
            description="Queries per round: a fraction of the superpixels (< 1) or a count",
        )
        acquisition_inputs(inputs, d, ctx)
        oracles = types.RadioGroup()
        for o in alc().ORACLE_RULES:
            oracles.add_choice(o, label=o)
        inputs.enum("oracle", oracles.values(), default=d["oracle"], label="Oracle", view=oracles)

    def run(self, ctx):
        result = alc().simulate(
            self.target(ctx),
            ctx.params["label_field"],
            ctx.params["gt_field"],
            rounds=self.param(ctx, "rounds"),
            budget_per_round=budget_value(self.param(ctx, "budget_per_round")),
            method=self.param(ctx, "method"),
            oracle=self.param(ctx, "oracle"),
            superpixel_field=self.param(ctx, "superpixel_field"),
            seed=self.param(ctx, "seed"),
            model=self.param(ctx, "model"),
            progress=ContextProgress(ctx),
        )
        return {"table": result.table(), "rows": jsonable(result.rows)}

    def resolve_output(self, ctx):
        outputs = types.Object()
        # a user error comes back as one line (ALCOperator.execute), shown like the others'
        outputs.str("error", label="Not done", view=types.Error(label="Not done"))
        outputs.str("table", label="Data mIoU per round", view=types.MarkdownView())
        outputs.list("rows", types.Object(), label="Rows", view=types.JSONView())
        return types.Property(outputs, view=types.View(label=self.config.label))
