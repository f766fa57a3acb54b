"""audit_report: the auditor's HTML report (error rate with its interval, errata, hit rate)."""

from __future__ import annotations

from ._common import ALCOperator, alc, jsonable


class AuditReport(ALCOperator):
    NAME = "audit_report"
    LABEL = "Audit report"
    DESCRIPTION = (
        "Write an HTML report of the review: the share of labels still wrong (with a 95% "
        "interval, from the random queries), the corrections, the hit rate by rank"
    )
    ICON = "summarize"
    SDK = "audit"
    RELOADS = False

    def target(self, ctx, sharded: bool = True):
        return ctx.dataset

    def form(self, ctx, inputs):
        inputs.str(
            "out",
            required=True,
            label="Report file",
            description="Path on the server of the HTML report (e.g. /tmp/report.html)",
        )
        inputs.str(
            "json",
            label="JSON file",
            description="Also write the numbers and the corrections as JSON (optional)",
        )
        inputs.str(
            "queries_field",
            label="Queries field",
            description="Blank: the latest ranking's (alc_sim_queries for a simulation)",
        )

    def run(self, ctx):
        report = alc().audit(
            ctx.dataset,
            queries_field=ctx.params.get("queries_field") or None,
        )
        path = report.to_html(ctx.params["out"])
        text = f"{report.standing()}. Report written to `{path}`"
        if ctx.params.get("json"):
            text += f" and `{report.to_json(ctx.params['json'])}`"
        return {"text": text, "summary": jsonable(report.summary())}
