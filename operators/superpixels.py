"""compute_superpixels: a superpixel id map per sample of the target view."""

from __future__ import annotations

from fiftyone.operators import types

from ._common import ALCOperator, ContextProgress, alc, jsonable, rerun_inputs, target_notice

#: the methods this form offers (SAM ones have their own operator)
FORM_METHODS = ("slic", "felzenszwalb")
# The library parameters of each method, and their (form type, label, description); a blank
# one gets the library's default.
SUPERPIXEL_PARAMS = {
    "slic": ("n_segments", "compactness", "sigma"),
    "felzenszwalb": ("scale", "sigma", "min_size"),
}
_METHOD_PARAMS = {
    "n_segments": ("int", "Number of segments", "SLIC: approximate number of superpixels"),
    "compactness": ("float", "Compactness", "SLIC: higher values give squarer superpixels"),
    "sigma": ("float", "Sigma", "Gaussian smoothing before segmentation"),
    "scale": ("float", "Scale", "Felzenszwalb: higher values give larger superpixels"),
    "min_size": ("int", "Minimum size", "Felzenszwalb: smallest superpixel in pixels"),
}


class ComputeSuperpixels(ALCOperator):
    NAME = "compute_superpixels"
    LABEL = "Compute superpixels"
    DESCRIPTION = (
        "Split every image into superpixels (SLIC or Felzenszwalb), the regions that "
        "correction queries ask about"
    )
    ICON = "grain"
    SDK = "compute_superpixels"
    SHARDABLE = True

    def form(self, ctx, inputs):
        d = self.defaults()
        target_notice(inputs, len(ctx.target_view()), "Compute superpixels for")
        methods = types.RadioGroup()
        for m in FORM_METHODS:
            methods.add_choice(m, label=m)
        inputs.enum("method", methods.values(), default=d["method"], label="Method", view=methods)
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
        summary = alc().compute_superpixels(
            self.target(ctx),
            method=method,
            field=self.param(ctx, "field"),
            overwrite=self.param(ctx, "overwrite"),
            skip_failures=self.param(ctx, "skip_failures"),
            progress=ContextProgress(ctx),
            **method_params,
        )
        return {"summary": jsonable(summary)}
