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
    alc,
    jsonable,
    rerun_inputs,
    sdk_defaults,
    superpixels_text,
)

MODEL_TYPES = ("vit_h", "vit_l", "vit_b")

# What the SAM forms set differently from the SDK, on purpose: in the App a long SAM run
# should not stop at one bad image (skip and list it), and the embeddings are worth keeping
# for the sam_head model and later SAM passes.
SAM_FORM_DEFAULTS = {"cache": True, "skip_failures": True}


def detections_fields(ctx) -> list[str]:
    import fiftyone as fo

    if ctx.dataset is None:
        return []
    return sorted(ctx.dataset.get_field_schema(embedded_doc_type=fo.Detections))


def _model_inputs(inputs: types.Object, defaults: dict) -> None:
    """SAM model, checkpoint, batch size and cache inputs."""
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


def _model_kwargs(op: ALCOperator, ctx) -> dict:
    return {
        "model_type": op.param(ctx, "model_type"),
        "checkpoint": ctx.params.get("checkpoint") or None,
        "batch_size": int(op.param(ctx, "batch_size")),
        "cache": bool(op.param(ctx, "cache")),
    }


class GeneratePseudoLabels(ALCOperator):
    NAME = "generate_pseudo_labels"
    LABEL = "Generate pseudo labels with SAM"
    DESCRIPTION = (
        "Turn the boxes of a Detections field into segmentation pseudo labels with SAM (one "
        "mask per box, smaller masks on top)"
    )
    ICON = "auto_fix_high"
    SDK = "generate_pseudo_labels"
    FORM_DEFAULTS = SAM_FORM_DEFAULTS
    SHARDABLE = True

    def form(self, ctx, inputs):
        d = self.defaults(ctx)
        self.notice(ctx, inputs, "Generate pseudo labels for")
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
        inputs.str("field", default=d["field"], label="Output field")
        inputs.str(
            "instances_field",
            default=d["instances_field"],
            label="Instances field",
            description="Also write the painted instance ids here (the paper's superpixels)",
        )
        uncovered = types.RadioGroup()
        uncovered.add_choice("background", label="background (PASCAL)")
        uncovered.add_choice("ignore", label="ignore, 255 (Cityscapes)")
        inputs.enum(
            "uncovered",
            uncovered.values(),
            default=d["uncovered"],
            label="Pixels no mask covers",
            view=uncovered,
        )
        _model_inputs(inputs, d)
        rerun_inputs(inputs, d)

    def run(self, ctx):
        summary = alc().generate_pseudo_labels(
            self.target(ctx),
            ctx.params["prompt_field"],
            field=self.param(ctx, "field"),
            instances_field=self.param(ctx, "instances_field") or None,
            uncovered=self.param(ctx, "uncovered"),
            overwrite=bool(self.param(ctx, "overwrite")),
            skip_failures=bool(self.param(ctx, "skip_failures")),
            progress=ContextProgress(ctx),
            **_model_kwargs(self, ctx),
        )
        return {"text": superpixels_text(summary), "summary": jsonable(summary)}


class ComputeSamSuperpixels(ALCOperator):
    NAME = "compute_sam_superpixels"
    LABEL = "Compute SAM superpixels"
    DESCRIPTION = (
        "Superpixels from SAM automatic masks with the gaps filled by SLIC, or from the "
        "pseudo-label instance masks"
    )
    ICON = "auto_awesome_mosaic"
    SDK = "compute_superpixels"
    SHARDABLE = True

    def defaults(self, ctx=None) -> dict:
        # the SDK's compute_superpixels, with the SAM pipeline's own parameters (its
        # signature holds them) and the instances field of the pseudo labels
        sam = sdk_defaults("generate_pseudo_labels")
        return {
            **super().defaults(ctx),
            "method": "sam",  # this form is for the SAM methods (slic has its own operator)
            "instances_field": sam["instances_field"],
            "fill": False,
            "points_per_side": 32,
            "min_area": 100,
            "model_type": sam["model_type"],
            "batch_size": sam["batch_size"],
            **SAM_FORM_DEFAULTS,
        }

    def form(self, ctx, inputs):
        d = self.defaults(ctx)
        self.notice(ctx, inputs, "Compute SAM superpixels for")
        methods = types.RadioGroup()
        methods.add_choice("sam", label="SAM automatic masks + SLIC (full coverage)")
        methods.add_choice("pseudo_instances", label="pseudo-label instances (the paper)")
        inputs.enum(
            "method",
            methods.values(),
            default=d["method"],
            label="Method",
            view=methods,
        )
        inputs.str("field", default=d["field"], label="Output field")
        method = self.param(ctx, "method")
        if method == "sam":
            inputs.int(
                "points_per_side",
                default=d["points_per_side"],
                min=1,
                label="Points per side",
                description="Grid of point prompts per image",
            )
            _model_inputs(inputs, d)
        else:
            inputs.str(
                "instances_field",
                default=d["instances_field"],
                label="Instances field",
                description="Written by 'Generate pseudo labels with SAM'",
            )
            inputs.bool(
                "fill",
                default=d["fill"],
                label="Fill uncovered pixels",
                description="Split pixels no mask covers with SLIC (off: never queried)",
            )
        inputs.int(
            "min_area",
            default=d["min_area"] if method == "sam" else 0,
            min=0,
            label="Minimum area",
            description="Merge pieces smaller than this (pixels) into their neighbour",
        )
        rerun_inputs(inputs, d)

    def run(self, ctx):
        method = self.param(ctx, "method")
        if method == "sam":
            extra = {
                "points_per_side": int(self.param(ctx, "points_per_side")),
                "min_area": int(self.param(ctx, "min_area")),
                **_model_kwargs(self, ctx),
            }
        else:
            extra = {
                "instances_field": self.param(ctx, "instances_field"),
                "fill": bool(self.param(ctx, "fill")),
                "min_area": int(ctx.params.get("min_area") or 0),
            }
        summary = alc().compute_superpixels(
            self.target(ctx),
            method=method,
            field=self.param(ctx, "field"),
            overwrite=bool(self.param(ctx, "overwrite")),
            skip_failures=bool(self.param(ctx, "skip_failures")),
            progress=ContextProgress(ctx),
            **extra,
        )
        return {"text": superpixels_text(summary), "summary": jsonable(summary)}
