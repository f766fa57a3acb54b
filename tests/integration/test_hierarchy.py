"""Regions at several sizes on real FiftyOne datasets (issue 22): the levels
compute_superpixels stores, one ranking over every level and its three rules, Mixed into the
next level, the ceiling over the levels, and a model that sees inside a region."""

from __future__ import annotations

import numpy as np
import pytest

import alc_fiftyone as alc
from alc_fiftyone.core.hierarchy import check_nested, parents_of
from alc_fiftyone.review.queries import query_region
from alc_fiftyone.store.files import read_segmentation

LEVEL = "alc_superpixels_level1"


@pytest.fixture
def demo(unique_name, tmp_alc_dir):
    ds = alc.make_demo_dataset(name=unique_name, num_samples=6, size=(128, 96), seed=5)
    alc.compute_superpixels(ds, label_field="pseudo")
    yield ds
    if not ds.deleted:
        ds.delete()


def _queries(ds, field="alc_queries"):
    return [(s, d) for s in ds.iter_samples() for d in (s[field].detections if s[field] else [])]


def _region(sample, det):
    labels = read_segmentation(sample, "pseudo")
    slc, mask = query_region(det, labels.shape)
    full = np.zeros(labels.shape, bool)
    full[slc] = mask
    return full


def test_levels_are_stored_as_fields_that_nest(demo):
    demo.reload()
    rec = demo.info["alc"]["superpixels"]
    assert rec["alc_superpixels"]["levels"] == [LEVEL]
    assert rec[LEVEL]["method"] == "nested" and rec[LEVEL]["parent"] == "alc_superpixels"
    assert demo.get_field(LEVEL).document_type.__name__ == "Segmentation"  # shown in the App
    finer = 0
    for s in demo.iter_samples():
        top = read_segmentation(s, "alc_superpixels")
        fine = read_segmentation(s, LEVEL)
        assert check_nested(fine, top) == 0
        assert s[LEVEL].parent_path == s.alc_superpixels.mask_path
        assert s[LEVEL].num_superpixels == int(fine.max()) >= int(top.max())
        finer += int(fine.max()) > int(top.max())
    assert finer == len(demo)


def test_a_recomputed_top_level_recomputes_the_level_below(demo):
    before = {s.id: s[LEVEL].mask_path for s in demo.iter_samples()}
    alc.compute_superpixels(demo, label_field="pseudo", overwrite=True, scale=50)
    for s in demo.iter_samples():
        assert s[LEVEL].parent_path == s.alc_superpixels.mask_path
        assert s[LEVEL].mask_path != before[s.id]
        fine = read_segmentation(s, LEVEL)
        assert check_nested(fine, read_segmentation(s, "alc_superpixels")) == 0
    # levels=1: the record no longer lists a finer level, so rankings use the top only
    alc.compute_superpixels(demo, label_field="pseudo", overwrite=True, levels=1)
    demo.reload()
    assert demo.info["alc"]["superpixels"]["alc_superpixels"].get("levels") == []
    alc.rank_superpixels(demo, "pseudo", budget=30)
    assert {d.level for _, d in _queries(demo)} == {0}


def test_one_ranking_over_all_levels_never_overlaps_within_a_round(demo):
    alc.rank_superpixels(demo, "pseudo", budget=60)
    qs = _queries(demo)
    assert len(qs) == 60
    for s, d in qs:
        field = "alc_superpixels" if d.level == 0 else LEVEL
        assert d.superpixel_field == field and d.superpixel_path == s[field].mask_path
        # the query's region is the region of its level
        region = _region(s, d)
        assert np.array_equal(region, read_segmentation(s, field) == d.superpixel_id)
    by_sample = {}
    for s, d in qs:
        by_sample.setdefault(s.id, []).append(_region(s, d))
    for regions in by_sample.values():
        total = np.sum(regions, axis=0)
        assert total.max() <= 1  # no pixel in two queries of the round


def test_after_answers_the_rules_of_the_levels_hold(demo, monkeypatch):
    # the finer level's scores undiscounted, so that pieces of top regions that were never
    # answered win over their parents often enough to be answered below (at the default
    # weight most such pieces are the only piece of their parent); the rules hold at any
    # weight
    from alc_fiftyone.steps import ranking

    monkeypatch.setattr(ranking, "FINER_LEVEL_WEIGHT", 1.0)
    # rank the top level only, answer every query: the pieces inside stay candidates
    alc.rank_superpixels(demo, "pseudo", budget=20, levels=1)
    first = _queries(demo)
    for s, d in first:
        alc.answer(demo, d.id, "background", user="ana")
    alc.rank_superpixels(demo, "pseudo", budget=10_000)
    answered_top = {(s.id, d.superpixel_id) for s, d in first}
    new = [(s, d) for s, d in _queries(demo) if d.status == "pending"]
    assert not any(d.level == 0 and (s.id, d.superpixel_id) in answered_top for s, d in new)
    inside = 0
    for s, d in new:
        if d.level == 1:
            par = parents_of(read_segmentation(s, LEVEL), read_segmentation(s, "alc_superpixels"))
            inside += (s.id, int(par[d.superpixel_id])) in answered_top
    assert inside > 0  # pieces of answered regions are asked
    # answer pieces of level 1 in top regions never answered: those top regions are then
    # asked on their other pixels only
    pieces = []
    for s, d in new:
        if d.level == 1:
            par = parents_of(read_segmentation(s, LEVEL), read_segmentation(s, "alc_superpixels"))
            if (s.id, int(par[d.superpixel_id])) not in answered_top:
                pieces.append((s, d))
    pieces = pieces[:6]
    assert pieces
    done = {}
    for s, d in pieces:
        alc.answer(demo, d.id, "background", user="ana")
        done.setdefault(s.id, np.zeros(_region(s, d).shape, bool))
        done[s.id] |= _region(s, d)
    alc.rank_superpixels(demo, "pseudo", budget=10_000)
    for s, d in _queries(demo):
        if d.status == "pending" and s.id in done:
            assert not (_region(s, d) & done[s.id]).any()
    # the top level alone: its regions holding the answered pieces are asked without them
    alc.rank_superpixels(demo, "pseudo", budget=10_000, levels=1)
    shrunk = 0
    for s, d in _queries(demo):
        if d.status == "pending" and s.id in done:
            region = _region(s, d)
            assert not (region & done[s.id]).any()  # never over an answered piece
            if d.level == 0:
                full = read_segmentation(s, "alc_superpixels") == d.superpixel_id
                shrunk += int(full.sum() > region.sum())
    assert shrunk > 0  # a top region holding answered pieces is asked on its other pixels


def test_a_claimed_region_blocks_the_regions_inside_and_around_it(demo):
    alc.rank_superpixels(demo, "pseudo", budget=40)
    held_any = {}
    for level in (0, 1):
        s, d = next((s, d) for s, d in _queries(demo) if d.level == level)
        assert alc.claim(demo, d.id, "bo")
        held_any[d.id] = (s.id, _region(s, d))
    alc.rank_superpixels(demo, "pseudo", budget=10_000)
    kept = {d.id for _, d in _queries(demo)}
    assert set(held_any) <= kept
    for s2, d2 in _queries(demo):
        for qid, (sid, held) in held_any.items():
            if s2.id == sid and d2.id != qid and d2.status == "pending":
                assert not (_region(s2, d2) & held).any()


def test_mixed_splits_into_the_next_level(demo):
    alc.rank_superpixels(demo, "pseudo", budget=60, levels=1)
    for s, d in _queries(demo):
        region = _region(s, d)
        fine = read_segmentation(s, LEVEL)
        if 2 <= len(np.unique(fine[region])) <= 12:
            break
    else:
        pytest.skip("no top region with 2-12 pieces in this demo")
    ids = alc.split_query(demo, d.id, user="ana")
    s.reload()
    pieces = [p for p in s.alc_queries.detections if p.id in ids]
    assert sorted(p.superpixel_id for p in pieces) == sorted(
        int(v) for v in np.unique(fine[region])
    )
    for p in pieces:
        assert p.level == 1 and p.superpixel_field == LEVEL
        assert p.superpixel_path == s[LEVEL].mask_path and p.status == "claimed"
        assert np.array_equal(_region(s, p), fine == p.superpixel_id)
    # answering a piece writes it (its superpixels did not change)
    assert alc.answer(demo, pieces[0].id, "background", user="ana", claimed_by="ana") >= 0


def test_the_ceiling_and_the_ranking_pick_from_every_level(demo):
    res = alc.simulate(
        demo, "pseudo", "ground_truth", rounds=4, budget_per_round=25, method="oracle"
    )
    assert all(b >= a - 1e-9 for a, b in zip(res.mious, res.mious[1:]))
    levels = {d.level for _, d in _queries(demo, "alc_sim_queries")}
    assert levels == {0, 1}
    top_only = alc.simulate(
        demo, "pseudo", "ground_truth", rounds=4, budget_per_round=25, method="oracle", levels=1
    )
    assert {d.level for _, d in _queries(demo, "alc_sim_queries")} == {0}
    assert res.mious[-1] >= top_only.mious[-1] - 1e-9


def test_each_level_is_scored_by_a_model_of_its_own_regions(demo):
    from alc_fiftyone.models.base import FitContext
    from alc_fiftyone.models.levels import LevelModels
    from alc_fiftyone.store.fields import read_current_labels

    base = alc.FeatureModel(n_folds=2)
    model = LevelModels(base, ["alc_superpixels", LEVEL])
    model.fit(
        FitContext(
            demo, lambda s: read_current_labels(s, "pseudo", None), "alc_superpixels", 5, 255
        )
    )
    desc = model.describe()
    assert desc["estimator"] == "lgbm" and desc["levels"][LEVEL]["estimator"] == "lgbm"
    assert base.for_level(LEVEL) is model.subs[0]  # kept across rounds (features cached)
    varied = 0
    for s in demo.iter_samples():
        top = read_segmentation(s, "alc_superpixels")
        fine = read_segmentation(s, LEVEL)
        p_top, p_fine = model.predict_levels(s, [top, fine])
        for rid in np.unique(top):
            # one vector per coarse region at the top; inside it the finer level's vary
            assert np.unique(np.round(p_top[:, top == rid], 5), axis=1).shape[1] == 1
            varied += np.unique(np.round(p_fine[:, top == rid], 5), axis=1).shape[1] > 1
    assert varied > 0
    # a ranking over the hierarchy records both models
    summary = alc.rank_superpixels(demo, "pseudo", budget=10)
    assert LEVEL in summary["model"]["levels"]


def test_three_levels_with_their_own_parameters_nest_in_a_chain(demo):
    summary = alc.compute_superpixels(
        demo,
        label_field="pseudo",
        field="sp3",
        levels=3,
        level_params=[{"base": "slic", "area": 300}, {"scale": 20, "min_area": 8}],
    )
    assert [s["field"] for s in summary["levels"]] == ["sp3_level1", "sp3_level2"]
    demo.reload()
    rec = demo.info["alc"]["superpixels"]
    assert rec["sp3"]["levels"] == ["sp3_level1", "sp3_level2"]
    assert (
        rec["sp3_level1"]["params"]["base"] == "slic"
        and rec["sp3_level2"]["parent"] == "sp3_level1"
    )
    for s in demo.iter_samples():
        maps = [read_segmentation(s, f) for f in ("sp3", "sp3_level1", "sp3_level2")]
        assert check_nested(maps[1], maps[0]) == 0 and check_nested(maps[2], maps[1]) == 0
        assert int(maps[0].max()) <= int(maps[1].max()) <= int(maps[2].max())
    alc.rank_superpixels(demo, "pseudo", superpixel_field="sp3", budget=80)
    assert {d.level for _, d in _queries(demo)} <= {0, 1, 2}
    assert len({d.level for _, d in _queries(demo)}) >= 2
    # bad level parameters are refused before anything is computed
    for bad, match in (
        ({"level_params": [{"base": "sam"}]}, "base must be"),
        ({"level_params": [{"bogus": 1}]}, "unknown parameter"),
        ({"levels": 0}, "positive number"),
        ({"levels": 2, "level_params": [{}, {}]}, "entries"),
    ):
        with pytest.raises(ValueError, match=match):
            alc.compute_superpixels(demo, label_field="pseudo", field="sp4", **bad)
        assert not demo.has_field("sp4")
