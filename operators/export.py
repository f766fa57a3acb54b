"""export_masks and save_revised_version: get the corrected labels out."""

from __future__ import annotations

from fiftyone.operators import types

from ._common import (
    EXPORT_FORMATS,
    ALCOperator,
    ContextProgress,
    field_choice,
    jsonable,
    operator_config,
    param,
    segmentation_fields,
    target_notice,
)

EXPORT_DEFAULTS = {"field": "alc_revised", "format": "voc"}
SAVE_DEFAULTS = {"revised_field": "alc_revised"}


class ExportMasks(ALCOperator):
    @property
    def config(self):
        return operator_config(
            "export_masks",
            "Export masks",
            "Write a segmentation field of the target view as PNG masks (VOC palette or "
            "class index)",
            icon="download",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        target_notice(inputs, len(ctx.target_view()), "Export the masks of")
        field_choice(
            inputs,
            "field",
            segmentation_fields(ctx),
            "Field",
            "The masks to write",
            default=EXPORT_DEFAULTS["field"],
        )
        inputs.str(
            "out_dir",
            required=True,
            label="Output folder",
            description="Folder on the server that receives one PNG per sample",
        )
        formats = types.RadioGroup()
        for name, description in EXPORT_FORMATS.items():
            formats.add_choice(name, label=name, description=description)
        inputs.enum(
            "format",
            formats.values(),
            default=EXPORT_DEFAULTS["format"],
            label="Format",
            view=formats,
        )
        _skip_failures_input(inputs)
        return types.Property(inputs, view=types.View(label=self.config.label))

    def execute(self, ctx):
        import alc_fiftyone as alc

        summary = alc.export_masks(
            self.target(ctx),
            param(ctx, "field", EXPORT_DEFAULTS),
            ctx.params["out_dir"],
            format=param(ctx, "format", EXPORT_DEFAULTS),
            skip_failures=bool(ctx.params.get("skip_failures", False)),
            progress=ContextProgress(ctx),
        )
        return {"summary": jsonable(summary)}


class SaveRevisedVersion(ALCOperator):
    @property
    def config(self):
        return operator_config(
            "save_revised_version",
            "Save revised version",
            "Save the corrected labels as a new dataset (a clone with new mask files and "
            "provenance)",
            icon="save",
        )

    def target(self, ctx):
        return ctx.dataset

    def resolve_input(self, ctx):
        inputs = types.Object()
        fields = segmentation_fields(ctx)
        inputs.str("name", required=True, label="New dataset name")
        field_choice(
            inputs,
            "revised_field",
            fields,
            "Revised field",
            "The corrected labels",
            default=SAVE_DEFAULTS["revised_field"],
        )
        field_choice(
            inputs,
            "label_field",
            fields,
            "Label field",
            "The label field the revised labels belong to (blank: the one recorded when ranking)",
            optional=True,
        )
        _skip_failures_input(inputs)
        return types.Property(inputs, view=types.View(label=self.config.label))

    def execute(self, ctx):
        import alc_fiftyone as alc

        version = alc.save_revised_version(
            ctx.dataset,
            ctx.params["name"],
            revised_field=param(ctx, "revised_field", SAVE_DEFAULTS),
            label_field=ctx.params.get("label_field"),
            skip_failures=bool(ctx.params.get("skip_failures", False)),
        )
        failed = version.info["alc"]["provenance"].get("failed", [])
        return {"summary": {"dataset": version.name, "samples": len(version), "failed": failed}}


def _skip_failures_input(inputs: types.Object) -> None:
    inputs.bool(
        "skip_failures",
        default=False,
        label="Skip failures",
        description="Skip (and list) samples whose masks cannot be read instead of stopping",
    )
