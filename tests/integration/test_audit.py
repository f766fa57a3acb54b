"""What an auditor takes away (issue 21): the random queries beside the ranking, the error
estimate with its interval, the errata table and the report, on real FiftyOne datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import alc_fiftyone as alc
from alc_fiftyone.core.hierarchy import parents_of
from alc_fiftyone.steps.simulation import remaining_errors
from alc_fiftyone.store.files import read_segmentation

SIM_Q = "alc_sim_queries"


@pytest.fixture
def demo(unique_name, tmp_alc_dir):
    ds = alc.make_demo_dataset(name=unique_name, num_samples=8, size=(128, 96), seed=5)
    alc.compute_superpixels(ds, label_field="pseudo")
    yield ds
    if not ds.deleted:
        ds.delete()


def _queries(ds, field=SIM_Q):
    return [(s, d) for s in ds.iter_samples() for d in (s[field].detections if s[field] else [])]


def test_random_queries_are_marked_and_never_overlap_the_ranked_ones(demo):
    alc.simulate(
        demo,
        "pseudo",
        "ground_truth",
        rounds=2,
        budget_per_round=20,
        estimate_share=0.3,
        model="features",
    )
    qs = _queries(demo)
    purposes = [d.purpose for _, d in qs]
    assert set(purposes) == {"ranked", "estimate"}
    for rnd in (1, 2):
        mine = [(s, d) for s, d in qs if d["round"] == rnd]
        est = [(s, d) for s, d in mine if d.purpose == "estimate"]
        assert len(mine) == 20 and len(est) == 6
        for _, d in est:
            assert 0 < d.inclusion_prob <= 1 and d.stratum >= 0
            assert d.level == 1  # the finest level asked
        for s, d in mine:
            if d.purpose == "ranked":
                assert not d.has_field("inclusion_prob") or d.inclusion_prob is None
        # no random region is a ranked one of its round nor inside one
        for s, d in est:
            top = read_segmentation(s, "alc_superpixels")
            fine = read_segmentation(s, "alc_superpixels_level1")
            parent = int(parents_of(fine, top)[d.superpixel_id])
            for s2, r in mine:
                if s2.id != s.id or r.purpose != "ranked":
                    continue
                assert (r.level, r.superpixel_id) not in ((1, d.superpixel_id), (0, parent))
    rec = [r for r in demo.info["alc"]["rounds"] if r["queries_field"] == SIM_Q][-1]
    est = rec["estimate"]
    assert est["num_queries"] == 6 and est["frame_level"] == 1
    assert sum(s["drawn"] for s in est["strata"]) == 6
    assert est["frame_regions"] == sum(s["regions"] for s in est["strata"])


def test_audit_on_a_simulation_lists_every_correction_and_writes_reports(demo, tmp_path):
    alc.simulate(
        demo,
        "pseudo",
        "ground_truth",
        rounds=2,
        budget_per_round=20,
        estimate_share=0.3,
        model="features",
    )
    report = alc.audit(demo, "pseudo", queries_field=SIM_Q)
    assert report.revised_field == "alc_sim_revised" and report.round == 2
    corrected = [(s, d) for s, d in _queries(demo) if d.status == "corrected"]
    table = report.corrections
    assert len(table) == len(corrected) > 0
    assert set(table["query_id"]) == {d.id for _, d in corrected}
    by_id = {d.id: (s, d) for s, d in corrected}
    for row in table.itertuples():
        s, d = by_id[row.query_id]
        assert row.sample_id == s.id and row.filepath == s.filepath
        assert row.pixels == d.pixels_changed and row.class_before == d.label
        assert row.class_after == d.answer and row.reviewer == "oracle"
        assert [row.x, row.y, row.width, row.height] == d.bbox_px
    for key in ("pixels", "regions"):
        e, lo, hi = report.error_rate[key]
        assert 0 <= lo <= e <= hi <= 1
    # the same denominator (the labelled pixels): before = now + what the answers changed
    eb, lob, hib = report.error_rate_before["pixels"]
    e, lo, hi = report.error_rate["pixels"]
    assert eb >= e and lob >= lo and hib >= hi
    assert report.by_class and all(
        0 <= lo <= e <= hi <= 1 for e, lo, hi in report.by_class.values()
    )
    html_path = report.to_html(tmp_path / "r.html")
    text = Path(html_path).read_text()
    for part in (
        "<h1>Label audit",
        "Error rate",
        "id='error-rate'",
        'id="confusion"',
        "data:image/png;base64,",
        "class='before-after'",
        'id="corrections"',
    ):
        assert part in text
    data = json.loads(Path(report.to_json(tmp_path / "r.json")).read_text())
    assert len(data["corrections"]) == len(corrected)
    assert data["error_rate"]["pixels"][0] == pytest.approx(report.error_rate["pixels"][0])
    truth = remaining_errors(demo, "ground_truth", SIM_Q)
    assert truth["round"] == 2 and truth["frame_regions"] > 0
    # the default: the combined ratio to the ranking's score (each stratum records its
    # score total); the other auxiliary, each stratum's ratio to the pixels, from the same
    # answers: another estimate of the pixels, the same of the regions
    rec = [r for r in demo.info["alc"]["rounds"] if r["queries_field"] == SIM_Q][-1]
    assert all(st["score_total"] >= 0 for st in rec["estimate"]["strata"])
    assert report.auxiliary == "score" and "combined ratio to the ranking's score" in text
    by_pixels = alc.audit(demo, "pseudo", queries_field=SIM_Q, auxiliary="pixels")
    e2, lo2, hi2 = by_pixels.error_rate["pixels"]
    assert 0 <= lo2 <= e2 <= hi2 <= 1 and by_pixels.auxiliary == "pixels"
    assert (e2, lo2, hi2) != pytest.approx(report.error_rate["pixels"])
    assert by_pixels.error_rate["regions"] == pytest.approx(report.error_rate["regions"])
    html = Path(by_pixels.to_html(tmp_path / "s.html")).read_text()
    assert "ratio to the regions' pixels" in html
    with pytest.raises(ValueError, match="auxiliary must be one of pixels, score"):
        alc.audit(demo, "pseudo", queries_field=SIM_Q, auxiliary="size")


def test_a_revised_version_records_the_errata_and_the_estimates(demo, unique_name):
    import fiftyone as fo

    alc.simulate(
        demo,
        "pseudo",
        "ground_truth",
        rounds=1,
        budget_per_round=20,
        estimate_share=0.5,
        model="features",
    )
    report = alc.audit(demo, queries_field=SIM_Q)
    name = f"{unique_name}-v2"
    try:
        version = alc.save_revised_version(
            demo, name, revised_field="alc_sim_revised", queries_field=SIM_Q
        )
        prov = version.info["alc"]["provenance"]
        assert prov["errata"] == len(report.corrections) > 0
        got = prov["audit"]["error_rate"]["pixels"]
        assert got == pytest.approx(list(report.error_rate["pixels"]))
        assert prov["audit"]["round"] == 1 and prov["audit"]["counts"]["corrected"] > 0
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_audit_without_random_queries_lists_corrections_and_says_why(demo):
    alc.simulate(demo, "pseudo", "ground_truth", rounds=1, budget_per_round=10, model="features")
    report = alc.audit(demo, queries_field=SIM_Q)
    assert report.error_rate is None and "estimate_share" in report.notes[0]
    assert len(report.corrections) == sum(d.status == "corrected" for _, d in _queries(demo))


def test_audit_without_queries_is_a_clear_error(demo):
    with pytest.raises(alc.ALCError, match="nothing to audit"):
        alc.audit(demo, "pseudo")


def test_estimate_share_is_checked_before_any_work(demo):
    for bad in (-0.1, 1.0, "0.2", True):
        with pytest.raises(ValueError, match="estimate_share"):
            alc.rank_superpixels(demo, "pseudo", estimate_share=bad)
    assert not demo.has_field("alc_queries")


def test_standing_counts_the_latest_answers_and_gives_the_audits_estimate(demo):
    """The panel's line (issue 21, point 4): how many of the latest answers (by time)
    corrected a label, and once the random queries are answered the audit's estimate."""
    from alc_fiftyone.review import standing

    alc.rank_superpixels(demo, "pseudo", budget=12, estimate_share=0.5)
    before = standing(demo)
    assert before["answered"] == 0 and before["error_rate"] is None
    assert before["line"] == "The error left is estimated once its random queries are answered"
    order = []
    for i in range(12):
        q = alc.next_query(demo, "ann")
        if q is None:
            break
        # every third answer confirms, the others correct to another class
        other = next(c for c in q["suggestions"] if c != q["label"]) if i % 3 else None
        alc.answer(demo, q["id"], other, user="ann")
        order.append(q["id"])
        if i == 4:  # five answers: fewer than ``last``, counted as they are
            mid = standing(demo, last=50)
            assert mid["last"] == 5 and mid["line"].startswith("5 answers corrected ")
    assert len(order) == 12
    status = {d.id: d.status for _, d in _queries(demo, "alc_queries")}
    st = standing(demo, last=4)
    want = sum(status[i] == "corrected" for i in order[-4:])
    assert (st["last"], st["corrected"], st["answered"]) == (4, want, 12)
    assert st["line"].startswith(f"The last 4 answers corrected {want}; about ")
    report = alc.audit(demo)
    assert st["error_rate"] == pytest.approx(report.error_rate["pixels"])
    e, lo, hi = st["error_rate"]
    assert f"{100 * e:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}%)" in st["line"]
    # a view counts its own samples' answers; the estimate stays the ranked collection's
    one = demo.select(demo.first().id)
    mine = sum(
        status[d.id] in ("confirmed", "corrected") for d in one.first().alc_queries.detections
    )
    assert standing(one)["answered"] == mine


# -- real images: the estimate's interval holds the truth ---------------------------------


def _horses(shared_data, tmp_path, name, n=8):
    src = shared_data / "weizmann-horse"
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for image in sorted((src / "images").iterdir())[:n]:
        mask = next((src / "masks").glob(f"{image.stem}.*"))
        (tmp_path / "images" / image.name).symlink_to(image)
        (tmp_path / "masks" / mask.name).symlink_to(mask)
    return alc.load_image_masks(
        tmp_path / "images",
        tmp_path / "masks",
        ["background", "horse"],
        threshold=128,
        name=name,
        follow_links=True,
    )


def test_the_interval_holds_the_true_remaining_share_on_real_horses(
    shared_data, tmp_path, tmp_alc_dir, unique_name
):
    """8 Weizmann horses, labels corrupted at rate 0.3, 2 simulated rounds with half of each
    round's 60 queries drawn at random: the 95% interval of the pixels still wrong holds what
    the majority oracle would change on every region left (a fixed seed: not flaky)."""
    ds = _horses(shared_data, tmp_path, unique_name)
    try:
        alc.corrupt_labels(ds, "ground_truth", "noisy", rate=0.3, seed=0)
        alc.compute_superpixels(ds, label_field="noisy")
        alc.simulate(
            ds,
            "noisy",
            "ground_truth",
            rounds=2,
            budget_per_round=60,
            estimate_share=0.5,
            model="features",
            seed=0,
        )
        report = alc.audit(ds, "noisy", queries_field=SIM_Q)
        truth = remaining_errors(ds, "ground_truth", SIM_Q)
        labelled = report.sample["labelled_pixels"]
        share = truth["pixels"] / labelled
        assert truth["pixels"] > 0  # errors remain
        e, lo, hi = report.error_rate["pixels"]
        assert e > 0 and lo <= share <= hi, (share, report.error_rate)
        _, rlo, rhi = report.error_rate["regions"]
        rshare = truth["regions"] / report.sample["frame_regions"]
        assert rlo <= rshare <= rhi, (rshare, report.error_rate)
        # the frame the truth measures is the one sampled, less the answered draws
        assert truth["frame_regions"] == report.sample["frame_regions"] - 30
        # the labels before any answer were worse than now, by at least what was changed
        assert report.error_rate_before["pixels"][0] >= e + report.counts["pixels_changed"] / (
            labelled + 1
        )
        # one row per correcting answer, as in the database
        corrected = [d for _, d in _queries(ds) if d.status == "corrected"]
        assert len(report.corrections) == len(corrected) > 0
        assert sorted(report.corrections["pixels"]) == sorted(d.pixels_changed for d in corrected)
    finally:
        ds.delete()
