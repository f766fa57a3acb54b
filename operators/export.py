"""export_masks and save_revised_version: get the corrected labels out."""

from __future__ import annotations

from fiftyone.operators import types

from ._common import (
    EXPORT_FORMATS,
    ALCOperator,
    ContextProgress,
    alc,
    field_choice,
    jsonable,
    sdk_defaults,
    segmentation_fields,
    skip_failures_input,
)


class ExportMasks(ALCOperator):
    NAME = "export_masks"
    LABEL = "Export masks"
    DESCRIPTION = (
        "Write a segmentation field of the target view as PNG masks (VOC palette or class index)"
    )
    ICON = "download"
    SDK = "export_masks"
    RELOADS = False

    def defaults(self, ctx=None) -> dict:
        # the SDK takes no default field; the form offers the corrected labels
        return {
            **super().defaults(ctx),
            "field": sdk_defaults("save_revised_version")["revised_field"],
        }

    def form(self, ctx, inputs):
        d = self.defaults(ctx)
        self.notice(ctx, inputs, "Export the masks of")
        field_choice(
            inputs,
            "field",
            segmentation_fields(ctx),
            "Field",
            "The masks to write (samples without them get the ranked labels)",
            default=d["field"],
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
        inputs.enum("format", formats.values(), default=d["format"], label="Format", view=formats)
        field_choice(
            inputs,
            "label_field",
            segmentation_fields(ctx),
            "Labels where a sample has no answer",
            "Written for samples without the field above (blank: the field that was ranked)",
            optional=True,
        )
        inputs.bool(
            "overwrite",
            default=d["overwrite"],
            label="Overwrite",
            description="Replace files already in the folder",
        )
        skip_failures_input(inputs, d)

    def run(self, ctx):
        summary = alc().export_masks(
            self.target(ctx),
            self.param(ctx, "field"),
            ctx.params["out_dir"],
            format=self.param(ctx, "format"),
            label_field=ctx.params.get("label_field") or None,
            overwrite=bool(self.param(ctx, "overwrite")),
            skip_failures=bool(self.param(ctx, "skip_failures")),
            progress=ContextProgress(ctx),
        )
        text = f"Wrote {summary['written']} mask(s) to `{summary['out_dir']}`"
        if summary.get("label_field"):
            text += f" ({summary['label_field']!r} where a sample has no answer)"
        if summary["failed"]:
            text += f"; {len(summary['failed'])} sample(s) could not be read (see details)"
        return {"text": text, "summary": jsonable(summary)}


class SaveRevisedVersion(ALCOperator):
    NAME = "save_revised_version"
    LABEL = "Save revised version"
    DESCRIPTION = (
        "Save the corrected labels as a new dataset (a clone with new mask files and provenance)"
    )
    ICON = "save"
    SDK = "save_revised_version"
    RELOADS = False

    def target(self, ctx, sharded: bool = True):
        return ctx.dataset

    def form(self, ctx, inputs):
        d = self.defaults(ctx)
        fields = segmentation_fields(ctx)
        inputs.str("name", required=True, label="New dataset name")
        field_choice(
            inputs,
            "revised_field",
            fields,
            "Revised field",
            "The corrected labels",
            default=d["revised_field"],
        )
        field_choice(
            inputs,
            "label_field",
            fields,
            "Label field",
            "The label field the revised labels belong to (blank: the one recorded when ranking)",
            optional=True,
        )
        inputs.bool(
            "overwrite",
            default=d["overwrite"],
            label="Overwrite",
            description="Replace a dataset of that name (only once the new one is complete)",
        )
        skip_failures_input(inputs, d)

    def run(self, ctx):
        version = alc().save_revised_version(
            ctx.dataset,
            ctx.params["name"],
            revised_field=self.param(ctx, "revised_field"),
            label_field=ctx.params.get("label_field") or None,
            overwrite=bool(self.param(ctx, "overwrite")),
            skip_failures=bool(self.param(ctx, "skip_failures")),
        )
        prov = version.info["alc"]["provenance"]
        failed = prov.get("failed", [])
        answers = sum((prov.get("answers") or {}).values())
        text = (
            f"Saved the revised version as dataset `{version.name}` ({len(version)} samples; "
            f"{answers} answer(s), {prov.get('pixels_changed', 0):,} pixels corrected in "
            f"{prov['label_field']!r})"
        )
        if failed:
            text += f"; {len(failed)} sample(s) kept their old labels (see details)"
        summary = {"dataset": version.name, "samples": len(version), "failed": failed}
        return {"text": text, "summary": summary}
