"""compute_superpixels: a superpixel id map per sample of the target view."""

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
    superpixel_methods,
    target_notice,
)

DEFAULTS = {
    "method": "slic",
    "field": "alc_superpixels",
    "overwrite": False,
    "skip_failures": False,
}

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
    @property
    def config(self):
        return operator_config(
            "compute_superpixels",
            "Compute superpixels",
            "Split every image into superpixels (SLIC or Felzenszwalb), the regions that "
            "correction queries ask about",
            icon="grain",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        target_notice(inputs, len(ctx.target_view()), "Compute superpixels for")
        methods = types.RadioGroup()
        for m in superpixel_methods():
            methods.add_choice(m, label=m)
        inputs.enum(
            "method", methods.values(), default=DEFAULTS["method"], label="Method", view=methods
        )
        inputs.str(
            "field",
            default=DEFAULTS["field"],
            label="Output field",
            description="Segmentation field that receives the superpixel id maps",
        )
        method = param(ctx, "method", DEFAULTS)
        for name in SUPERPIXEL_PARAMS.get(method, ()):
            kind, label, description = _METHOD_PARAMS[name]
            getattr(inputs, kind)(
                name, min=0, label=label, description=f"{description} (blank: library default)"
            )
        rerun_inputs(inputs, DEFAULTS)
        shard_inputs(inputs)
        return types.Property(inputs, view=types.View(label=self.config.label))

    def execute(self, ctx):
        import alc_fiftyone as alc

        queued = self.queue_shards(ctx)
        if queued is not None:
            return queued
        method = param(ctx, "method", DEFAULTS)
        method_params = {
            name: ctx.params[name]
            for name in SUPERPIXEL_PARAMS.get(method, ())
            if ctx.params.get(name) is not None
        }
        summary = alc.compute_superpixels(
            self.target(ctx),
            method=method,
            field=param(ctx, "field", DEFAULTS),
            overwrite=param(ctx, "overwrite", DEFAULTS),
            skip_failures=param(ctx, "skip_failures", DEFAULTS),
            progress=ContextProgress(ctx),
            **method_params,
        )
        reload_app(ctx)
        return {"summary": jsonable(summary)}
