"""merge_ranking: merge the per-shard queries of a sharded ranking into one global top-B."""

from __future__ import annotations

from fiftyone.operators import types

from ._common import ALCOperator, jsonable, operator_config, reload_app


class MergeRanking(ALCOperator):
    @property
    def config(self):
        return operator_config(
            "merge_ranking",
            "Merge ranking shards",
            "Keep the global top-B of the queries written by the shards of a sharded ranking "
            "(automatic when the last shard finishes; run it when that merge was interrupted)",
            icon="merge",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str(
            "run_id",
            required=True,
            label="Run id",
            description="The run id of the ranking shards (alc.queue_shards returned it)",
        )
        return types.Property(inputs, view=types.View(label=self.config.label))

    def execute(self, ctx):
        import alc_fiftyone as alc

        record = alc.merge_ranking(self.target(ctx, sharded=False), ctx.params["run_id"])
        reload_app(ctx)
        return {"summary": jsonable(record)}
