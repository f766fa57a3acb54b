"""merge_ranking: merge the per-shard queries of a sharded ranking into one global top-B."""

from __future__ import annotations

from ._common import ALCOperator, alc, jsonable


class MergeRanking(ALCOperator):
    NAME = "merge_ranking"
    # named so that searching "rank" lists "Rank superpixels" first
    LABEL = "Shards: merge a sharded ranking"
    DESCRIPTION = (
        "Keep the global top-B of the queries written by the shards of a sharded ranking "
        "(automatic when the last shard finishes; run it when that merge was interrupted)"
    )
    ICON = "merge"
    SDK = "merge_ranking"

    def form(self, ctx, inputs):
        inputs.str(
            "run_id",
            required=True,
            label="Run id",
            description="The run id of the ranking shards (alc.queue_shards returned it)",
        )

    def run(self, ctx):
        record = alc().merge_ranking(self.target(ctx, sharded=False), ctx.params["run_id"])
        text = f"Merged round {record.get('round')}: {record.get('num_queries')} queries"
        return {"text": text, "summary": jsonable(record)}
