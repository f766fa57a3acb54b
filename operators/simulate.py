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
)
from .rank import acquisition_inputs, estimate_share_input, latest_round_fields


def recorded_fields(dataset, fields: list[str]) -> dict:
    """The labels to correct, the ground truth and the superpixels a simulation of
    ``dataset`` would use, as far as the dataset records them (only those in ``fields``):
    the ground truth of its noise (``alc.corrupt_labels``) or of the demo, the noisy copy (else
    the field ranked last, else the recorded label field) as the labels, and superpixels
    computed on those labels; {} for what it does not record."""
    if dataset is None:
        return {}
    info = (dataset.info or {}).get("alc") or {}
    noise = info.get("noise") or {}
    out = {}
    gt = [f for f in (noise.get("gt_field"), info.get("gt_field")) if f in fields]
    if gt:
        out["gt_field"] = gt[0]
    candidates = (
        noise.get("out_field"),
        latest_round_fields(dataset).get("label_field"),
        info.get("label_field"),
    )
    labels = [f for f in candidates if f in fields and f != out.get("gt_field")]
    if labels:
        out["label_field"] = labels[0]
        regions = info.get("superpixels") or {}
        follows = [
            f for f, r in regions.items() if f in fields and r.get("label_field") == labels[0]
        ]
        if follows:
            out["superpixel_field"] = follows[0]
    return out


class Simulate(ALCOperator):
    NAME = "simulate"
    LABEL = "Simulate correction rounds"
    # (a description that starts after "Score": when "rank" is typed in the App's operator
    # browser, which orders what matches by that letter, Rank superpixels comes first)
    DESCRIPTION = (
        "Test ranking and correction rounds with an oracle answering from a ground-truth "
        "field, and report data mIoU after each round"
    )
    ICON = "science"
    SDK = "simulate"

    def form(self, ctx, inputs):
        d = self.defaults(ctx)
        self.notice(ctx, inputs, "Simulate on")
        fields = segmentation_fields(ctx)
        recorded = recorded_fields(ctx.dataset, fields)
        superpixel_field = ctx.params.get("superpixel_field") or recorded.get(
            "superpixel_field", d["superpixel_field"]
        )
        labels = [f for f in fields if f != superpixel_field]
        field_choice(
            inputs,
            "label_field",
            labels,
            "Label field",
            "The labels to correct (default: the noisy copy or the field ranked last)",
            default=recorded.get("label_field"),
        )
        field_choice(
            inputs,
            "gt_field",
            labels,
            "Ground-truth field",
            "The oracle answers from this field (default: the one the dataset records)",
            default=recorded.get("gt_field"),
        )
        field_choice(
            inputs,
            "superpixel_field",
            fields,
            "Superpixel field",
            "Superpixel id maps (see 'Compute superpixels'; default: those computed on the "
            "labels to correct)",
            default=superpixel_field,
        )
        inputs.int("rounds", default=d["rounds"], min=1, label="Rounds")
        inputs.float(
            "budget_per_round",
            default=d["budget_per_round"],
            min=0,
            label="Budget per round",
            description="Queries per round: a fraction of the superpixels (< 1) or a count",
        )
        estimate_share_input(inputs, d)
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
            estimate_share=float(self.param(ctx, "estimate_share") or 0),
        )
        return {"table": result.table(), "rows": jsonable(result.rows)}

    def resolve_output(self, ctx):
        outputs = types.Object()
        # a user error comes back as one line (ALCOperator.execute), shown like the others'
        outputs.str("error", label="Not done", view=types.Error(label="Not done"))
        outputs.str("table", label="Data mIoU per round", view=types.MarkdownView())
        outputs.list("rows", types.Object(), label="Rows", view=types.JSONView())
        return types.Property(outputs, view=types.View(label=self.config.label))
