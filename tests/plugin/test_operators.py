"""The plugin's operators, run through FiftyOne's own executor on tiny generated datasets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "@alc/active-label-correction"


def uri(name: str) -> str:
    return f"{PLUGIN}/{name}"


@pytest.fixture
def demo(unique_name, tmp_alc_dir):
    """Four small generated images with ``ground_truth`` and noisy ``pseudo`` labels."""
    import alc_fiftyone as alc

    ds = alc.make_demo_dataset(name=unique_name, num_samples=4, size=(48, 40), seed=1)
    yield ds
    if not ds.deleted:
        ds.delete()


def execute(operator_name: str, ds, /, **params):
    import fiftyone.operators as foo

    return foo.execute_operator(uri(operator_name), ctx={"view": ds.view(), "params": params})


def requests(result) -> list[dict]:
    return result.to_json()["executor"]["requests"]


def progress_labels(result) -> list[str]:
    return [
        r["params"]["message"]
        for r in requests(result)
        if r["operator_uri"] == "console_log" and r["params"]["message"].startswith("Progress")
    ]


def resolve_input(name: str, ds, params=None):
    from fiftyone.operators.executor import resolve_type
    from fiftyone.operators.registry import OperatorRegistry

    request = {"dataset_name": ds.name, "view": ds.view()._serialize(), "params": params or {}}
    prop = asyncio.run(resolve_type(OperatorRegistry(), uri(name), request))
    assert prop is not None and not hasattr(prop, "error"), getattr(prop, "error", None)
    json.dumps(prop.to_json())  # what the App receives
    return prop.type.properties


def choices(prop) -> list:
    return [c.value for c in prop.view.choices]


def execution_options(name: str, ds, params=None):
    from fiftyone.operators.executor import resolve_execution_options
    from fiftyone.operators.registry import OperatorRegistry

    request = {"dataset_name": ds.name, "view": ds.view()._serialize(), "params": params or {}}
    return asyncio.run(resolve_execution_options(OperatorRegistry(), uri(name), request))


# -- forms and execution options: no library function needed ---------------------------------


def test_forms_offer_the_segmentation_fields(plugin, demo):
    import fiftyone as fo

    demo.add_sample_field("alc_superpixels", fo.EmbeddedDocumentField, fo.Segmentation)
    props = resolve_input("rank_superpixels", demo)
    assert choices(props["label_field"]) == ["ground_truth", "pseudo"]
    # the demo records 'pseudo' as the labels under review: prefilled, so not left empty
    assert props["label_field"].default == "pseudo" and not props["label_field"].required
    assert choices(props["superpixel_field"]) == ["alc_superpixels", "ground_truth", "pseudo"]
    assert props["superpixel_field"].default == "alc_superpixels"
    assert "sim" in choices(props["method"])

    props = resolve_input("simulate", demo)
    assert choices(props["gt_field"]) == ["ground_truth", "pseudo"]

    props = resolve_input("export_masks", demo)
    assert choices(props["format"]) == ["voc", "index"]
    assert props["out_dir"].required


def test_superpixel_form_offers_label_aware_regions_first(plugin, demo):
    """Label-aware regions are the form's default (the measured best); the label field is
    prefilled with the labels under review the dataset records, and the run follows it."""
    props = resolve_input("compute_superpixels", demo)
    assert props["method"].default == "label_aware"
    assert choices(props["method"])[0] == "label_aware"
    assert props["label_field"].default == "pseudo"  # the demo's labels under review
    assert "min_area" in props and "n_segments" not in props
    result = execute("compute_superpixels", demo, method="label_aware", label_field="pseudo")
    assert result.result["summary"]["method"] == "label_aware"
    for seg in demo.values("alc_superpixels"):
        assert seg.method == "label_aware" and seg.label_field == "pseudo"


def test_superpixel_form_follows_the_method(plugin, demo):
    slic = resolve_input("compute_superpixels", demo, {"method": "slic"})
    assert "n_segments" in slic and "scale" not in slic
    fz = resolve_input("compute_superpixels", demo, {"method": "felzenszwalb"})
    assert "scale" in fz and "min_size" in fz and "n_segments" not in fz


def test_form_without_segmentation_fields_is_invalid(plugin, make_dataset):
    import fiftyone as fo

    ds = make_dataset()
    ds.add_sample(fo.Sample(filepath="/nonexistent/a.png"))
    props = resolve_input("rank_superpixels", ds)
    assert props["label_field"].invalid
    assert "no Segmentation field" in props["label_field"].error_message


def test_delegation_is_suggested_above_50_samples(plugin, make_dataset):
    import fiftyone as fo

    ds = make_dataset()
    ds.add_samples([fo.Sample(filepath=f"/nonexistent/{i}.png") for i in range(51)])
    options = execution_options("compute_superpixels", ds)
    assert options.allow_immediate_execution and options.allow_delegated_execution
    assert options.default_choice_to_delegated

    small = execution_options("compute_superpixels", ds.limit(50))
    assert not small.default_choice_to_delegated

    forced = execution_options("compute_superpixels", ds.limit(3), {"delegate": True})
    assert forced.allow_delegated_execution and not forced.allow_immediate_execution
    immediate = execution_options("compute_superpixels", ds, {"delegate": False})
    assert immediate.allow_immediate_execution and not immediate.allow_delegated_execution


def test_missing_required_param_is_a_validation_error(plugin, demo):
    import fiftyone.operators as foo

    with pytest.raises(foo.executor.ExecutionError, match="label_field"):
        execute("rank_superpixels", demo)


# -- execution: each needs its library function ------------------------------------------------


def test_compute_superpixels(plugin, demo):
    result = execute("compute_superpixels", demo, method="felzenszwalb", min_size=20)
    summary = result.result["summary"]
    assert isinstance(summary, dict) and summary
    assert demo.count("alc_superpixels") == len(demo)
    assert progress_labels(result), "no progress was reported"
    assert any(r["operator_uri"] == "reload_dataset" for r in requests(result))


def test_compute_superpixels_on_a_view_only_touches_the_view(plugin, demo):
    import fiftyone.operators as foo

    view = demo.limit(2)
    foo.execute_operator(
        uri("compute_superpixels"),
        ctx={
            "view": view,
            "params": {"view_target": "CURRENT_VIEW", "method": "slic", "n_segments": 20},
        },
    )
    assert demo.count("alc_superpixels") == 2


def test_compute_superpixels_delegated(plugin, demo):
    from fiftyone.operators.delegated import DelegatedOperationService

    queued = execute("compute_superpixels", demo, delegate=True, method="slic", n_segments=20)
    assert queued.delegated
    svc = DelegatedOperationService()
    op_id = queued.result["id"]
    try:
        assert not demo.has_field("alc_superpixels")  # only queued so far
        done = svc.execute_operation(svc.get(op_id))
        assert not done.error, done.error
        demo.reload()
        assert demo.count("alc_superpixels") == len(demo)
        op = svc.get(op_id)
        assert op.run_state == "completed"
        assert op.status.progress == 1.0 and op.status.label.startswith("superpixels")
    finally:
        svc.delete_operation(op_id)


def test_rank_superpixels(plugin, demo):
    import alc_fiftyone as alc

    alc.compute_superpixels(demo, method="slic", n_segments=30)
    result = execute("rank_superpixels", demo, label_field="pseudo", budget=5)
    assert result.result["summary"]
    assert demo.count("alc_queries.detections") == 5
    assert progress_labels(result)


def test_simulate(plugin, demo):
    import alc_fiftyone as alc

    alc.compute_superpixels(demo, method="slic", n_segments=30)
    result = execute(
        "simulate",
        demo,
        label_field="pseudo",
        gt_field="ground_truth",
        rounds=1,
        budget_per_round=0.1,
    )
    out = result.result
    assert out["table"].lstrip().startswith("|")
    assert len(out["rows"]) == 2  # round 0 (the labels as given) and round 1


def test_export_masks(plugin, demo, tmp_path):
    out = tmp_path / "export"
    result = execute("export_masks", demo, field="ground_truth", out_dir=str(out), format="index")
    assert result.result["summary"]
    assert len(list(out.rglob("*.png"))) == len(demo)


def test_save_revised_version(plugin, demo, unique_name):
    import fiftyone as fo

    demo.clone_sample_field("pseudo", "alc_revised")
    demo.mask_targets = {**demo.mask_targets, "alc_revised": demo.mask_targets["pseudo"]}
    name = f"{unique_name}-v2"
    try:
        result = execute("save_revised_version", demo, name=name)
        assert result.result["summary"] == {"dataset": name, "samples": len(demo), "failed": []}
        assert fo.dataset_exists(name)
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_audit_report_writes_the_html(plugin, demo, tmp_path):
    import alc_fiftyone as alc

    alc.compute_superpixels(demo, method="slic", n_segments=20)
    alc.simulate(demo, "pseudo", "ground_truth", rounds=1, budget_per_round=8, estimate_share=0.5)
    out = tmp_path / "report.html"
    result = execute("audit_report", demo, out=str(out), queries_field="alc_sim_queries")
    assert "Report written to" in result.result["text"]
    assert "<h1>Label audit" in out.read_text()
    assert result.result["summary"]["error_rate"]["pixels"]
    props = resolve_input("audit_report", demo)
    assert {"out", "json", "queries_field"} <= set(props)
    result = execute(
        "audit_report", demo, out=str(tmp_path / "none.html"), queries_field="alc_queries"
    )
    assert "nothing to audit" in result.result["error"]  # no reviewer's queries: one line
    assert not (tmp_path / "none.html").exists()


def test_rank_operator_draws_the_random_share(plugin, demo):
    import alc_fiftyone as alc

    alc.compute_superpixels(demo, method="slic", n_segments=20)
    assert resolve_input("rank_superpixels", demo)["estimate_share"].default == 0.0
    result = execute("rank_superpixels", demo, label_field="pseudo", budget=8, estimate_share=0.5)
    assert "error" not in result.result, result.result
    purposes = demo.values("alc_queries.detections.purpose", unwind=True)
    assert sorted(purposes) == ["estimate"] * 4 + ["ranked"] * 4


def test_rank_form_prefills_the_fields_of_the_last_round(plugin, demo):
    """Ranking again needs no typing: the label, superpixel and queries fields of the latest
    round are the form's defaults; a dataset never ranked gets its recorded label field."""
    import alc_fiftyone as alc

    assert resolve_input("rank_superpixels", demo)["label_field"].default == "pseudo"
    alc.compute_superpixels(demo, method="slic", field="sp", n_segments=20)
    alc.rank_superpixels(demo, "ground_truth", superpixel_field="sp", budget=3, queries_field="q")
    props = resolve_input("rank_superpixels", demo)
    assert props["label_field"].default == "ground_truth"
    assert props["superpixel_field"].default == "sp"
    assert props["queries_field"].default == "q"


def browser_choices(query: str) -> list[str]:
    """The labels the App's operator browser lists for ``query``, in its order (FiftyOne App
    1.x: an operator matches when its label, URI or description holds the text, any case;
    matches are ordered by the first letter of the description, stably)."""
    import fiftyone.operators as foo

    ops = [op for op in foo.list_operators() if not op.config.unlisted]
    found = [
        op
        for op in ops
        if any(
            query.lower() in (t or "").lower()
            for t in (op.config.label, op.uri, op.config.description)
        )
    ]
    found.sort(key=lambda op: ord((op.config.description or op.config.label)[0]))
    return [op.config.label for op in found]


def test_operator_browser_finds_them_by_name(plugin):
    """Typing "rank" lists "Rank superpixels" first; "merge ranking" finds the merge (the
    browser test types them in the App)."""
    assert browser_choices("rank")[0] == "ALC: Rank superpixels"
    assert "ALC: Merge ranking (shards)" in browser_choices("Merge ranking")


def test_a_user_error_in_the_app_is_one_line(plugin, demo, tmp_path):
    """No traceback in the App: a problem with the data or an option comes back as the
    operator's one-line ``error`` output; nothing is written."""
    result = execute("rank_superpixels", demo, label_field="pseudo", budget=5)
    assert "run alc.compute_superpixels first" in result.result["error"]
    assert "Traceback" not in result.result["error"] and not demo.has_field("alc_queries")
    result = execute("save_revised_version", demo, name=demo.name)
    # its own name: never replaced, and the error does not invite overwrite (issue 18)
    assert "never replaces the dataset it is made from" in result.result["error"]
    assert "overwrite" not in result.result["error"].lower()


def test_save_and_export_report_in_words(plugin, demo, tmp_path, unique_name):
    import fiftyone as fo

    import alc_fiftyone as alc

    alc.compute_superpixels(demo, method="slic", n_segments=20)
    alc.rank_superpixels(demo, "pseudo", budget=3)
    q = alc.next_query(demo, "ana")
    alc.answer(demo, q["id"], 1, user="ana")
    name = f"{unique_name}-v"
    try:
        out = execute("save_revised_version", demo, name=name).result
        assert out["text"].startswith(f"Saved the revised version as dataset `{name}`")
        assert "'pseudo'" in out["text"]
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
    out = execute("export_masks", demo, out_dir=str(tmp_path / "m"), format="index").result
    assert out["text"].startswith(f"Wrote {len(demo)} mask(s)") and "'pseudo'" in out["text"]


# -- issue 20: patches views, results in words, Simulate's recorded fields --------------------


def resolve(name: str, view, target: str, params=None, results=None):
    from fiftyone.operators.executor import resolve_type
    from fiftyone.operators.registry import OperatorRegistry

    request = {
        "dataset_name": view.dataset_name,
        "view": view._serialize(),
        "params": params or {},
        "target": target,
        "results": results,
    }
    prop = asyncio.run(resolve_type(OperatorRegistry(), uri(name), request))
    assert prop is not None and not hasattr(prop, "error"), getattr(prop, "error", None)
    return prop.type.properties


def test_operators_act_on_the_images_behind_a_patches_view(plugin, demo, tmp_path):
    import fiftyone.operators as foo

    import alc_fiftyone as alc

    alc.compute_superpixels(demo, method="slic", n_segments=20)
    alc.rank_superpixels(demo, "pseudo", budget=8)
    q = alc.next_query(demo, "ann")
    alc.answer(demo, q["id"], None, user="ann")
    queue = alc.review_queue(demo)
    n, images = len(queue), len(set(queue.values("sample_id")))
    assert n > images > 1
    for name in ("export_masks", "compute_superpixels", "simulate", "rank_superpixels"):
        label = resolve(name, queue, "inputs")["target_notice"].view.label
        assert f" {images} image(s), behind the {n} patches in the grid" in label, (name, label)
    out = tmp_path / "out"
    result = foo.execute_operator(
        uri("export_masks"),
        ctx={"view": queue, "params": {"field": "alc_revised", "out_dir": str(out)}},
    )
    assert result.error is None and not (result.result or {}).get("error"), result.result
    assert len(list(out.glob("*.png"))) == images


def test_a_result_says_done_or_why_not_never_both(plugin, demo):
    done = resolve("export_masks", demo.view(), "outputs", results={"text": "Wrote 4 mask(s)"})
    assert list(done) == ["text"]  # no "Not done" banner over a success
    refused = resolve("export_masks", demo.view(), "outputs", results={"error": "no such folder"})
    assert list(refused) == ["not_done"]
    assert refused["not_done"].view.label == "Not done: no such folder"


def test_simulate_prefills_the_fields_the_dataset_records(plugin, demo):
    import alc_fiftyone as alc

    props = resolve_input("simulate", demo)  # the demo records pseudo and its ground truth
    assert props["label_field"].default == "pseudo"
    assert props["gt_field"].default == "ground_truth"
    alc.corrupt_labels(demo, "ground_truth", "noisy", rate=0.3, seed=0)
    alc.compute_superpixels(demo, label_field="noisy", field="sp_noisy")
    props = resolve_input("simulate", demo)  # the noisy copy, and regions that follow it
    assert props["label_field"].default == "noisy"
    assert props["gt_field"].default == "ground_truth"
    assert props["superpixel_field"].default == "sp_noisy"
