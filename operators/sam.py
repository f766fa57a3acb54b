"""SAM operators: pseudo labels from boxes, and SAM / pseudo-instance superpixels.

Both run delegated by default above a few dozen samples (see ``ALCOperator``), report
progress, skip samples already done unless ``overwrite``, and by default skip a failing sample
(its id and problem are listed in the summary) instead of stopping. Nothing is downloaded: the
SAM checkpoint comes from the form, ``$ALC_SAM_CHECKPOINT`` or FiftyOne's model zoo folder.
"""

from __future__ import annotations

from fiftyone.operators import types

from ._common import (
    ALCOperator,
    ContextProgress,
    jsonable,
    operator_config,
    param,
    reload_app,
    rerun_inputs,
    shard_inputs,
    target_notice,
)

MODEL_TYPES = ("vit_h", "vit_l", "vit_b")

PSEUDO_DEFAULTS = {
    "field": "alc_pseudo",
    "instances_field": "alc_pseudo_instances",
    "uncovered": "background",
    "model_type": "vit_h",
    "batch_size": 8,
    "cache": True,
    "overwrite": False,
    "skip_failures": True,
}

SP_DEFAULTS = {
    "method": "sam",
    "field": "alc_superpixels",
    "instances_field": "alc_pseudo_instances",
    "fill": False,
    "model_type": "vit_h",
    "points_per_side": 32,
    "min_area": 100,
    "batch_size": 8,
    "cache": True,
    "overwrite": False,
    "skip_failures": True,
}


def detections_fields(ctx) -> list[str]:
    import fiftyone as fo

    if ctx.dataset is None:
        return []
    return sorted(ctx.dataset.get_field_schema(embedded_doc_type=fo.Detections))


def _model_inputs(inputs: types.Object, defaults: dict) -> None:
    models = types.Dropdown(label="SAM model")
    for m in MODEL_TYPES:
        models.add_choice(m, label=m)
    inputs.enum(
        "model_type",
        models.values(),
        default=defaults["model_type"],
        label="SAM model",
        view=models,
    )
    inputs.str(
        "checkpoint",
        label="Checkpoint",
        description="Path of the SAM checkpoint (blank: $ALC_SAM_CHECKPOINT or the FiftyOne "
        "model zoo folder; nothing is downloaded)",
    )
    inputs.int(
        "batch_size", default=defaults["batch_size"], min=1, label="Images per encoder batch"
    )
    inputs.bool(
        "cache",
        default=defaults["cache"],
        label="Cache embeddings",
        description="Keep float16 SAM image embeddings on disk for later steps",
    )


def _model_kwargs(ctx, defaults: dict) -> dict:
    return {
        "model_type": param(ctx, "model_type", defaults),
        "checkpoint": ctx.params.get("checkpoint") or None,
        "batch_size": int(param(ctx, "batch_size", defaults)),
        "cache": bool(param(ctx, "cache", defaults)),
    }


class GeneratePseudoLabels(ALCOperator):
    @property
    def config(self):
        return operator_config(
            "generate_pseudo_labels",
            "Generate pseudo labels with SAM",
            "Turn the boxes of a Detections field into segmentation pseudo labels with SAM "
            "(one mask per box, smaller masks on top)",
            icon="auto_fix_high",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        target_notice(inputs, len(ctx.target_view()), "Generate pseudo labels for")
        fields = detections_fields(ctx)
        dropdown = types.Dropdown(label="Boxes")
        for f in fields:
            dropdown.add_choice(f, label=f)
        inputs.enum(
            "prompt_field",
            dropdown.values(),
            label="Boxes",
            description="Detections field whose boxes prompt SAM (ground truth or a detector)",
            required=True,
            view=dropdown,
            invalid=not fields,
            error_message="this dataset has no Detections field" if not fields else "",
        )
        inputs.str("field", default=PSEUDO_DEFAULTS["field"], label="Output field")
        inputs.str(
            "instances_field",
            default=PSEUDO_DEFAULTS["instances_field"],
            label="Instances field",
            description="Also write the painted instance ids here (the paper's superpixels)",
        )
        uncovered = types.RadioGroup()
        uncovered.add_choice("background", label="background (PASCAL)")
        uncovered.add_choice("ignore", label="ignore, 255 (Cityscapes)")
        inputs.enum(
            "uncovered",
            uncovered.values(),
            default=PSEUDO_DEFAULTS["uncovered"],
            label="Pixels no mask covers",
            view=uncovered,
        )
        _model_inputs(inputs, PSEUDO_DEFAULTS)
        rerun_inputs(inputs, PSEUDO_DEFAULTS)
        shard_inputs(inputs)
        return types.Property(inputs, view=types.View(label=self.config.label))

    def execute(self, ctx):
        import alc_fiftyone as alc

        queued = self.queue_shards(ctx)
        if queued is not None:
            return queued
        summary = alc.generate_pseudo_labels(
            self.target(ctx),
            ctx.params["prompt_field"],
            field=param(ctx, "field", PSEUDO_DEFAULTS),
            instances_field=param(ctx, "instances_field", PSEUDO_DEFAULTS) or None,
            uncovered=param(ctx, "uncovered", PSEUDO_DEFAULTS),
            overwrite=bool(param(ctx, "overwrite", PSEUDO_DEFAULTS)),
            skip_failures=bool(param(ctx, "skip_failures", PSEUDO_DEFAULTS)),
            progress=ContextProgress(ctx),
            **_model_kwargs(ctx, PSEUDO_DEFAULTS),
        )
        reload_app(ctx)
        return {"summary": jsonable(summary)}


class ComputeSamSuperpixels(ALCOperator):
    @property
    def config(self):
        return operator_config(
            "compute_sam_superpixels",
            "Compute SAM superpixels",
            "Superpixels from SAM automatic masks with the gaps filled by SLIC, or from the "
            "pseudo-label instance masks",
            icon="auto_awesome_mosaic",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        target_notice(inputs, len(ctx.target_view()), "Compute SAM superpixels for")
        methods = types.RadioGroup()
        methods.add_choice("sam", label="SAM automatic masks + SLIC (full coverage)")
        methods.add_choice("pseudo_instances", label="pseudo-label instances (the paper)")
        inputs.enum(
            "method",
            methods.values(),
            default=SP_DEFAULTS["method"],
            label="Method",
            view=methods,
        )
        inputs.str("field", default=SP_DEFAULTS["field"], label="Output field")
        method = param(ctx, "method", SP_DEFAULTS)
        if method == "sam":
            inputs.int(
                "points_per_side",
                default=SP_DEFAULTS["points_per_side"],
                min=1,
                label="Points per side",
                description="Grid of point prompts per image",
            )
            _model_inputs(inputs, SP_DEFAULTS)
        else:
            inputs.str(
                "instances_field",
                default=SP_DEFAULTS["instances_field"],
                label="Instances field",
                description="Written by 'Generate pseudo labels with SAM'",
            )
            inputs.bool(
                "fill",
                default=SP_DEFAULTS["fill"],
                label="Fill uncovered pixels",
                description="Split pixels no mask covers with SLIC (off: never queried)",
            )
        inputs.int(
            "min_area",
            default=SP_DEFAULTS["min_area"] if method == "sam" else 0,
            min=0,
            label="Minimum area",
            description="Merge pieces smaller than this (pixels) into their neighbour",
        )
        rerun_inputs(inputs, SP_DEFAULTS)
        shard_inputs(inputs)
        return types.Property(inputs, view=types.View(label=self.config.label))

    def execute(self, ctx):
        import alc_fiftyone as alc

        queued = self.queue_shards(ctx)
        if queued is not None:
            return queued
        method = param(ctx, "method", SP_DEFAULTS)
        if method == "sam":
            extra = {
                "points_per_side": int(param(ctx, "points_per_side", SP_DEFAULTS)),
                "min_area": int(param(ctx, "min_area", SP_DEFAULTS)),
                **_model_kwargs(ctx, SP_DEFAULTS),
            }
        else:
            extra = {
                "instances_field": param(ctx, "instances_field", SP_DEFAULTS),
                "fill": bool(param(ctx, "fill", SP_DEFAULTS)),
                "min_area": int(ctx.params.get("min_area") or 0),
            }
        summary = alc.compute_superpixels(
            self.target(ctx),
            method=method,
            field=param(ctx, "field", SP_DEFAULTS),
            overwrite=bool(param(ctx, "overwrite", SP_DEFAULTS)),
            skip_failures=bool(param(ctx, "skip_failures", SP_DEFAULTS)),
            progress=ContextProgress(ctx),
            **extra,
        )
        reload_app(ctx)
        return {"summary": jsonable(summary)}
