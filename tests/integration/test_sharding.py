"""Shards in one process: slicing, sharded superpixels and ranking equal to a single run,
the merge, and atomic updates of dataset.info. Real workers: test_workers.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def add_probability_maps(ds, field: str = "probs", gt: str = "ground_truth") -> None:
    """A fixed probability model: smoothed one-hot ground truth, one .npy file per sample."""
    from alc_fiftyone.store.files import dataset_dir, read_segmentation

    targets = {int(k) for k in (ds.mask_targets.get(gt) or {}) if int(k) != 255}
    num_classes = max(targets) + 1
    out = dataset_dir(ds) / "probs"
    out.mkdir(parents=True, exist_ok=True)
    values = {}
    for sample in ds.iter_samples():
        labels = read_segmentation(sample, gt).astype(np.int64)
        labels[labels >= num_classes] = 0
        rng = np.random.default_rng(int(sample.id[-6:], 16))
        probs = rng.random((num_classes, *labels.shape)) * 0.3
        np.put_along_axis(probs, labels[None], 1.0, axis=0)
        probs /= probs.sum(axis=0, keepdims=True)
        path = out / f"{sample.id}.npy"
        np.save(path, probs.astype(np.float32))
        values[sample.id] = str(path)
    ds.set_values(field, values, key_field="id")


@pytest.fixture
def demo(unique_name, tmp_alc_dir):
    import alc_fiftyone as alc

    ds = alc.make_demo_dataset(name=unique_name, num_samples=10, size=(48, 40), seed=3)
    yield ds
    if not ds.deleted:
        ds.delete()


def test_parse_shard_errors_name_the_shard():
    from alc_fiftyone.errors import ALCError
    from alc_fiftyone.steps.sharding import parse_shard

    assert parse_shard("2/4").label == "2/4"
    assert parse_shard(None) is None
    for bad, msg in [("0/4", "1..4"), ("5/4", "1..4"), ("a/b", "expected 'i/n'")]:
        with pytest.raises(ALCError, match=msg):
            parse_shard(bad)
    with pytest.raises(ALCError, match="not a sample id"):
        parse_shard(("x", "y"))


def test_shards_partition_the_view(demo):
    import alc_fiftyone as alc

    for n in (1, 3, 4, 10):
        seen = []
        for i in range(1, n + 1):
            seen += alc.shard_view(demo, f"{i}/{n}").values("id")
        assert sorted(seen) == sorted(demo.values("id"))
        assert len(seen) == len(set(seen))
        fixed = [alc.shard_view(demo, s.to_param()).values("id") for s in alc.make_shards(demo, n)]
        assert [i for part in fixed for i in part] == sorted(demo.values("id"))
    view = demo.skip(2)
    assert set(alc.shard_view(view, "1/2").values("id")) <= set(view.values("id"))
    from alc_fiftyone.errors import ALCError

    with pytest.raises(ALCError, match="shard 11/11 is empty"):
        alc.shard_view(demo, "11/11")


def test_sharded_superpixels_equal_a_single_run(demo):
    import alc_fiftyone as alc
    from alc_fiftyone.store.files import read_segmentation

    for i in (1, 2, 3):
        alc.compute_superpixels(alc.shard_view(demo, f"{i}/3"), field="sp_sharded", n_segments=20)
    alc.compute_superpixels(demo, field="sp_single", n_segments=20)
    for sample in demo.iter_samples():
        assert np.array_equal(
            read_segmentation(sample, "sp_sharded"), read_segmentation(sample, "sp_single")
        )


def ranked(ds, field: str = "alc_queries") -> list[tuple]:
    out = []
    for sid, dets in zip(ds.values("id"), ds.values(f"{field}.detections")):
        for d in dets or []:
            out.append((d.rank, sid, d.superpixel_id, round(d.score, 9), d.label, d.round))
    return sorted(out)


@pytest.mark.parametrize("method", ["sim", "margin"])
def test_sharded_ranking_merges_to_the_single_run(demo, method):
    import alc_fiftyone as alc

    alc.compute_superpixels(demo, n_segments=20)
    add_probability_maps(demo)
    kwargs = {"method": method, "budget": 7, "model": "field:probs"}
    single = alc.rank_superpixels(demo, "pseudo", queries_field="q_single", **kwargs)
    records = [
        alc.rank_superpixels(
            demo, "pseudo", queries_field="q", shard=f"{i}/3", run_id="r1", **kwargs
        )
        for i in (2, 3, 1)
    ]
    assert "merged" not in records[0] and "merged" not in records[1]
    merged = records[2]["merged"]
    assert merged["num_queries"] == single["num_queries"] == 7
    assert merged["num_samples"] == len(demo) and merged["num_shards"] == 3
    assert merged["num_superpixels"] == single["num_superpixels"]
    want = [(r, s, sp, sc, lab) for r, s, sp, sc, lab, _ in ranked(demo, "q_single")]
    got = [(r, s, sp, sc, lab) for r, s, sp, sc, lab, _ in ranked(demo, "q")]
    assert got == want
    demo.reload()
    rounds = demo.info["alc"]["rounds"]
    assert [r["queries_field"] for r in rounds] == ["q_single", "q"]
    assert rounds[1]["run_id"] == "r1"
    # merging again changes nothing
    assert alc.merge_ranking(demo, "r1")["merged_at"] == merged["merged_at"]
    assert ranked(demo, "q")[-1][0] == 7 and len(demo.info["alc"]["rounds"]) == 2


def test_merge_before_all_shards_names_the_missing_ones(demo):
    import alc_fiftyone as alc
    from alc_fiftyone.errors import ALCError

    alc.compute_superpixels(demo, n_segments=20)
    add_probability_maps(demo)
    alc.rank_superpixels(demo, "pseudo", model="field:probs", budget=5, shard="1/3", run_id="r2")
    with pytest.raises(ALCError, match="2/3, 3/3 have not finished"):
        alc.merge_ranking(demo, "r2")
    with pytest.raises(ALCError, match="needs statistics of the whole"):
        alc.rank_superpixels(demo, "pseudo", method="abc", shard="1/3", run_id="r2")
    with pytest.raises(ALCError, match="run_id"):
        alc.rank_superpixels(demo, "pseudo", shard="1/3")


def test_info_updates_of_two_processes_do_not_overwrite_each_other(demo):
    """Another process sets one key while this one holds a stale dataset.info: this
    process's update of another key keeps it (a save of the whole dict would drop it)."""
    import fiftyone.core.odm as foo

    from alc_fiftyone.store.info import update_alc_info

    update_alc_info(demo, a=1)
    foo.get_db_conn().datasets.update_one({"_id": demo._doc.id}, {"$set": {"info.alc.b": 2}})
    assert "b" not in demo.info["alc"]  # stale here
    info = update_alc_info(demo, c=3)
    assert (info["a"], info["b"], info["c"]) == (1, 2, 3)
    demo.reload()
    assert demo.info["alc"]["b"] == 2


def run_queued_here():
    """Run the queued delegated operations in this process (what a worker does)."""
    from fiftyone.operators.delegated import DelegatedOperationService

    return DelegatedOperationService().execute_queued_operations()


def test_queued_shards_run_through_the_operators(plugin, demo):
    import alc_fiftyone as alc

    run = alc.queue_shards(
        demo, "compute_superpixels", {"method": "slic", "n_segments": 20}, num_shards=3
    )
    try:
        states = run.states()
        assert [s["shard"] for s in states] == ["1/3", "2/3", "3/3"]
        assert {s["state"] for s in states} == {"queued"}
        assert not demo.has_field("alc_superpixels")
        run_queued_here()
        assert [s["state"] for s in run.wait(timeout=5)] == ["completed"] * 3
        assert [r["summary"]["processed"] for r in run.results()] == [4, 3, 3]
        demo.reload()
        assert demo.count("alc_superpixels") == len(demo)

        add_probability_maps(demo)
        params = {"label_field": "pseudo", "budget": 6, "model": "field:probs"}
        rank = alc.queue_shards(demo, "rank_superpixels", params, num_shards=2)
        run_queued_here()
        rank.wait(timeout=5)
        demo.reload()
        assert demo.count("alc_queries.detections") == 6
        assert demo.info["alc"]["rounds"][-1]["run_id"] == rank.run_id
        found = alc.find_shard_run(demo, rank.run_id)
        assert found.op_ids == rank.op_ids
    finally:
        from fiftyone.operators.delegated import DelegatedOperationService

        svc = DelegatedOperationService()
        for op in svc.list_operations(dataset_name=demo.name):
            svc.delete_operation(op.id)


def test_failed_shards_are_named_and_rerun(plugin, demo):
    import alc_fiftyone as alc
    from alc_fiftyone.errors import ALCError

    first = demo.select(min(demo.values("id"))).first()
    Path(first.filepath).unlink()  # shard 1/2 fails on this sample, 2/2 completes
    run = alc.queue_shards(
        demo, "compute_superpixels", {"method": "slic", "n_segments": 20}, num_shards=2
    )
    try:
        run_queued_here()
        with pytest.raises(ALCError, match=rf"shard 1/2 \(operation \w+\) failed: .*{first.id}"):
            run.wait(timeout=5)
        assert [s["state"] for s in run.states()] == ["failed", "completed"]
        old = list(run.op_ids)
        assert run.rerun() == ["1/2"]
        assert run.op_ids[0] != old[0] and run.op_ids[1] == old[1]
        assert [s["state"] for s in run.states()] == ["queued", "completed"]
    finally:
        from fiftyone.operators.delegated import DelegatedOperationService

        svc = DelegatedOperationService()
        for op in svc.list_operations(dataset_name=demo.name):
            svc.delete_operation(op.id)


def test_operator_with_num_shards_queues_one_operation_per_shard(plugin, demo):
    """The App path: a form with Shards = 3 queues three delegated operations."""
    import asyncio

    import fiftyone.operators as foo
    from fiftyone.operators.executor import resolve_execution_options
    from fiftyone.operators.registry import OperatorRegistry

    import alc_fiftyone as alc

    uri = "@alc/active-label-correction/compute_superpixels"
    request = {
        "dataset_name": demo.name,
        "view": demo.view()._serialize(),
        "params": {"num_shards": 3},
    }
    options = asyncio.run(resolve_execution_options(OperatorRegistry(), uri, request))
    assert options.allow_immediate_execution and not options.allow_delegated_execution

    result = foo.execute_operator(
        uri,
        ctx={"view": demo.view(), "params": {"num_shards": 3, "method": "slic", "n_segments": 20}},
    )
    summary = result.result["summary"]
    try:
        assert summary["shards"] == 3 and len(summary["operations"]) == 3
        assert not demo.has_field("alc_superpixels")  # only queued
        run = alc.find_shard_run(demo, summary["run_id"])
        assert run.op_ids == summary["operations"]
        run_queued_here()
        run.wait(timeout=5)
        demo.reload()
        assert demo.count("alc_superpixels") == len(demo)
    finally:
        from fiftyone.operators.delegated import DelegatedOperationService

        svc = DelegatedOperationService()
        for op in svc.list_operations(dataset_name=demo.name):
            svc.delete_operation(op.id)


def test_superpixel_runs_keep_each_others_info(demo):
    """A superpixel run records its field's entry only: another process's entry written
    meanwhile (a shard of another field) is kept."""
    import fiftyone.core.odm as foo

    import alc_fiftyone as alc

    alc.compute_superpixels(demo.limit(2), field="sp_a", n_segments=20)
    foo.get_db_conn().datasets.update_one(
        {"_id": demo._doc.id}, {"$set": {"info.alc.superpixels.sp_other": {"method": "x"}}}
    )
    alc.compute_superpixels(demo.limit(2), field="sp_b", n_segments=20)
    demo.reload()
    assert set(demo.info["alc"]["superpixels"]) == {"sp_a", "sp_b", "sp_other"}
