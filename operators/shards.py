"""merge_ranking: merge the per-shard queries of a sharded ranking into one global top-B."""

from __future__ import annotations

from ._common import ALCOperator, alc, jsonable


class MergeRanking(ALCOperator):
    NAME = "merge_ranking"
    # found by its name ("merge ranking"); the App's operator browser orders what matches by
    # the first letter of the description, so one that starts after "Score" (Rank
    # superpixels) keeps that first when "rank" is typed
    LABEL = "Merge ranking (shards)"
    DESCRIPTION = (
        "When the automatic merge of a sharded ranking was interrupted: keep the global top-B "
        "of the queries its shards wrote (the last shard to finish merges by itself)"
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
