"""compute_superpixels: a superpixel id map per sample of the target view."""

from __future__ import annotations

from typing import ClassVar

from fiftyone.operators import types

from ._common import (
    ALCOperator,
    ContextProgress,
    alc,
    field_choice,
    jsonable,
    rerun_inputs,
    segmentation_fields,
    superpixels_text,
)

#: the methods this form offers (SAM ones have their own operator)
FORM_METHODS = {
    "label_aware": "label-aware: follow the labels under review, cut by image regions (best)",
    "felzenszwalb": "felzenszwalb: image regions only",
    "slic": "slic: image regions only, near-uniform sizes",
}
# The library parameters of each method, and their (form type, label, description); a blank
# one gets the library's default.
SUPERPIXEL_PARAMS = {
    "slic": ("n_segments", "compactness", "sigma"),
    "felzenszwalb": ("scale", "sigma", "min_size"),
    "label_aware": ("min_area", "scale", "min_size"),
}
_METHOD_PARAMS = {
    "n_segments": ("int", "Number of segments", "SLIC: approximate number of superpixels"),
    "compactness": ("float", "Compactness", "SLIC: higher values give squarer superpixels"),
    "sigma": ("float", "Sigma", "Gaussian smoothing before segmentation"),
    "scale": ("float", "Scale", "Felzenszwalb: higher values give larger superpixels"),
    "min_size": ("int", "Minimum size", "Felzenszwalb: smallest superpixel in pixels"),
    "min_area": ("int", "Minimum area", "Label-aware: fragments smaller than this merge"),
}


class ComputeSuperpixels(ALCOperator):
    NAME = "compute_superpixels"
    LABEL = "Compute superpixels"
    DESCRIPTION = (
        "Split every image into the regions that correction queries ask about: label-aware "
        "(they follow the labels under review), Felzenszwalb or SLIC"
    )
    ICON = "grain"
    SDK = "compute_superpixels"
    # the SDK picks label_aware when it is given a label field; the form asks for one
    FORM_DEFAULTS: ClassVar[dict] = {"method": "label_aware"}
    SHARDABLE = True

    def form(self, ctx, inputs):
        d = self.defaults(ctx)
        self.notice(ctx, inputs, "Compute superpixels for")
        methods = types.RadioGroup()
        for m, label in FORM_METHODS.items():
            methods.add_choice(m, label=label)
        inputs.enum("method", methods.values(), default=d["method"], label="Method", view=methods)
        if self.param(ctx, "method") == "label_aware":
            fields = [f for f in segmentation_fields(ctx) if f != self.param(ctx, "field")]
            recorded = alc().ranked_label_field(ctx.dataset) if ctx.dataset else None
            field_choice(
                inputs,
                "label_field",
                fields,
                "Label field",
                "The labels under review the regions follow (never a ground truth you "
                "measure against)",
                default=recorded if recorded in fields else None,
            )
        inputs.str(
            "field",
            default=d["field"],
            label="Output field",
            description="Segmentation field that receives the superpixel id maps",
        )
        for name in SUPERPIXEL_PARAMS.get(self.param(ctx, "method"), ()):
            kind, label, description = _METHOD_PARAMS[name]
            getattr(inputs, kind)(
                name, min=0, label=label, description=f"{description} (blank: library default)"
            )
        rerun_inputs(inputs, d)

    def run(self, ctx):
        method = self.param(ctx, "method")
        method_params = {
            name: ctx.params[name]
            for name in SUPERPIXEL_PARAMS.get(method, ())
            if ctx.params.get(name) is not None
        }
        if method == "label_aware":
            label_field = ctx.params.get("label_field") or alc().ranked_label_field(ctx.dataset)
            if not label_field:
                raise ValueError("choose the label field the regions follow")
            method_params["label_field"] = label_field
        summary = alc().compute_superpixels(
            self.target(ctx),
            method=method,
            field=self.param(ctx, "field"),
            overwrite=self.param(ctx, "overwrite"),
            skip_failures=self.param(ctx, "skip_failures"),
            progress=ContextProgress(ctx),
            **method_params,
        )
        return {"text": superpixels_text(summary), "summary": jsonable(summary)}
