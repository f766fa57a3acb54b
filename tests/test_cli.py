"""The ``alc-fiftyone`` command line: argument parsing, errors, and the commands end to end."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import python_subprocess_env
from PIL import Image

from alc_fiftyone.cli import _budget, build_parser, main

COMMANDS = (
    "demo",
    "simulate",
    "import-voc",
    "rank",
    "audit",
    "evaluate",
    "export",
    "save-version",
)


def write_folder(root: Path, n: int = 3) -> tuple[Path, Path]:
    """``n`` small images with two-class masks (0 background, 1 square, 2 bar)."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        mask = np.zeros((40, 48), np.uint8)
        mask[5 + i : 20 + i, 6:22] = 1
        mask[26:34, 10 + 2 * i : 44] = 2
        colors = np.array([[40, 90, 40], [200, 60, 50], [60, 70, 210]], np.float64)
        image = colors[mask] + rng.normal(0, 12, (40, 48, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(images / f"im{i}.png")
        Image.fromarray(mask).save(masks / f"im{i}.png")
    return images, masks


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"alc-fiftyone {command}" in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_simulate_needs_classes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--images", "a", "--masks", "b"])
    assert exc.value.code == 2
    assert "--classes" in capsys.readouterr().err


def test_arguments_reach_the_commands():
    args = build_parser().parse_args(
        [
            "simulate",
            "--images",
            "i",
            "--masks",
            "m",
            "--classes",
            "a,b",
            "--budget",
            "0.05",
            "--rounds",
            "2",
            "--noise",
            "0.3",
            "--superpixels",
            "felzenszwalb",
            "--keep",
        ]
    )
    assert (args.budget, args.rounds, args.noise, args.keep) == (0.05, 2, 0.3, True)
    assert args.superpixels == "felzenszwalb" and args.method is None
    args = build_parser().parse_args(["demo", "--no-app", "--samples", "6", "--rounds", "1"])
    assert (args.no_app, args.samples, args.rounds) == (True, 6, 1)
    args = build_parser().parse_args(["export", "ds", "--field", "f", "--out", "o"])
    assert args.format == "voc"


def test_budget_is_a_count_or_a_fraction():
    assert _budget("100") == 100 and isinstance(_budget("100"), int)
    assert _budget("0.05") == pytest.approx(0.05)
    with pytest.raises(argparse.ArgumentTypeError):
        _budget("lots")


def test_unknown_dataset_is_an_error(unique_name, capsys):
    assert main(["rank", unique_name, "--label-field", "labels"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and unique_name in err


def test_missing_classes_file_is_an_error(tmp_path, capsys):
    code = main(
        [
            "simulate",
            "--images",
            str(tmp_path),
            "--masks",
            str(tmp_path),
            "--classes-file",
            str(tmp_path / "nope.txt"),
        ]
    )
    assert code == 2
    assert "nope.txt" in capsys.readouterr().err


def test_evaluate_prints_per_class_iou(tmp_path, unique_name, tmp_alc_dir, capsys):
    import alc_fiftyone as alc

    images, masks = write_folder(tmp_path)
    ds = alc.load_image_masks(images, masks, ["background", "square", "bar"], name=unique_name)
    try:
        assert (
            main(
                [
                    "evaluate",
                    ds.name,
                    "--label-field",
                    "ground_truth",
                    "--gt-field",
                    "ground_truth",
                ]
            )
            == 0
        )
        out = capsys.readouterr().out
        assert "square" in out and "100.00" in out
    finally:
        ds.delete()


def test_simulate_command(tmp_path, unique_name, tmp_alc_dir, capsys):
    import fiftyone as fo

    images, masks = write_folder(tmp_path)
    plot = tmp_path / "miou.png"
    code = main(
        [
            "simulate",
            "--images",
            str(images),
            "--masks",
            str(masks),
            "--classes",
            "background,square,bar",
            "--noise",
            "0.3",
            "--rounds",
            "1",
            "--budget",
            "0.1",
            "--plot",
            str(plot),
            "--name",
            unique_name,
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "|" in out and plot.is_file()
    assert not fo.dataset_exists(unique_name)  # not kept without --keep


def test_demo_command_runs(unique_name, tmp_path):
    env = python_subprocess_env()
    script = Path(sys.executable).with_name("alc-fiftyone")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "alc_fiftyone.cli"]
    # checked and deleted in a process of its own, which sees the database the demo used
    delete = [sys.executable, "-c", DELETE_DATASET, unique_name]
    try:
        proc = subprocess.run(
            [*cmd, "demo", "--no-app", "--samples", "6", "--rounds", "1", "--name", unique_name],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "| 1 |" in proc.stdout and unique_name in proc.stdout
    finally:
        deleted = subprocess.run(
            delete, env=env, capture_output=True, text=True, timeout=120, check=False
        )
    assert deleted.stdout.strip() == "True", deleted.stderr[-3000:]


DELETE_DATASET = """
import sys
import fiftyone as fo
existed = fo.dataset_exists(sys.argv[1])
if existed:
    fo.delete_dataset(sys.argv[1])
print(existed)
"""


@pytest.fixture
def demo(unique_name, tmp_alc_dir):
    import alc_fiftyone as alc

    ds = alc.make_demo_dataset(name=unique_name, num_samples=3, size=(48, 40), seed=2)
    alc.compute_superpixels(ds, method="slic", n_segments=20)
    yield ds
    if not ds.deleted:
        ds.delete()


def test_rank_command(demo, capsys):
    assert main(["rank", demo.name, "--label-field", "pseudo", "--budget", "4"]) == 0
    assert capsys.readouterr().out.strip()
    assert demo.count("alc_queries.detections") == 4


def test_audit_command_writes_the_report(demo, tmp_path, capsys):
    import alc_fiftyone as alc

    alc.simulate(demo, "pseudo", "ground_truth", rounds=1, budget_per_round=10, estimate_share=0.4)
    out, js = tmp_path / "report.html", tmp_path / "report.json"
    argv = ["audit", demo.name, "--out", str(out), "--json", str(js)]
    assert main([*argv, "--queries-field", "alc_sim_queries"]) == 0
    text = capsys.readouterr().out
    assert "pixels still wrong now" in text and str(out) in text
    assert "<h1>Label audit" in out.read_text() and js.is_file()
    assert json.loads(js.read_text())["auxiliary"] == "score"
    argv += ["--queries-field", "alc_sim_queries", "--auxiliary", "pixels"]
    assert main(argv) == 0
    assert json.loads(js.read_text())["auxiliary"] == "pixels"
    with pytest.raises(SystemExit) as info:  # argparse's choices: exit 2, the choices named
        main([*argv[:-1], "size"])
    assert info.value.code == 2
    assert "invalid choice: 'size'" in capsys.readouterr().err


def test_audit_of_an_unknown_dataset_names_it(unique_name, tmp_path, capsys):
    assert main(["audit", unique_name, "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and unique_name in err
    assert not (tmp_path / "r.html").exists()


def test_audit_without_queries_is_one_line(demo, tmp_path, capsys):
    assert main(["audit", demo.name, "--out", str(tmp_path / "r.html")]) == 2
    assert "nothing to audit" in capsys.readouterr().err


def test_estimate_share_is_a_share():
    args = build_parser().parse_args(
        ["rank", "ds", "--label-field", "f", "--estimate-share", "0.1"]
    )
    assert args.estimate_share == pytest.approx(0.1)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["rank", "ds", "--label-field", "f", "--estimate-share", "1"])


def test_export_command(demo, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        ["export", demo.name, "--field", "ground_truth", "--out", str(out), "--format", "index"]
    )
    assert code == 0
    assert len(list(out.rglob("*.png"))) == len(demo)


def test_save_version_command(demo, unique_name, capsys):
    import fiftyone as fo

    demo.clone_sample_field("pseudo", "alc_revised")
    demo.mask_targets = {**demo.mask_targets, "alc_revised": demo.mask_targets["pseudo"]}
    name = f"{unique_name}-v2"
    try:
        assert main(["save-version", demo.name, name]) == 0
        assert name in capsys.readouterr().out
        assert fo.dataset_exists(name)
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_import_voc_command(tmp_path, unique_name, tmp_alc_dir, capsys):
    import fiftyone as fo

    images, masks = write_folder(tmp_path / "src", n=2)
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    for png in sorted(images.glob("*.png")):
        Image.open(png).save(root / "JPEGImages" / f"{png.stem}.jpg", quality=95)
        (root / "SegmentationClass" / png.name).write_bytes((masks / png.name).read_bytes())
    try:
        assert main(["import-voc", str(root), "--name", unique_name]) == 0
        assert f"{unique_name} (2 samples)" in capsys.readouterr().out
        assert fo.load_dataset(unique_name).persistent
    finally:
        if fo.dataset_exists(unique_name):
            fo.delete_dataset(unique_name)


# --- issue 11: user errors, missing options, new commands -------------------------------------


@pytest.mark.parametrize(
    "argv, match",
    [
        (["simulate", "--images", "/nope", "--masks", "/nope", "--classes", "a,b"], "/nope"),
        (["import-voc", "/nope"], "/nope"),
        (["import-folder", "/nope", "/nope2", "--classes", "a,b"], "/nope"),
        (["export", "no-such-dataset-x", "--field", "f", "--out", "/tmp/x"], "no-such-dataset"),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and match in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_wrong_split_names_the_splits(tmp_path, unique_name, capsys):
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    assert main(["import-voc", str(root), "--split", "trian", "--name", unique_name]) == 2
    err = capsys.readouterr().err
    assert "trian" in err and "train" in err and len(err.strip().splitlines()) == 1


def test_bad_method_is_refused_before_anything_loads(tmp_path):
    """An unknown --method is a usage error (exit 2) before FiftyOne is even imported."""
    code = (
        "import sys\n"
        "from alc_fiftyone.cli import main\n"
        "try:\n"
        "    main(['simulate', '--images', '.', '--masks', '.', '--classes', 'a,b',"
        " '--method', 'smi'])\n"
        "except SystemExit as e:\n"
        "    print(e.code, 'fiftyone' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=python_subprocess_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stdout.split() == ["2", "False"], proc.stderr
    assert "smi" in proc.stderr and "sim" in proc.stderr


def test_every_option_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, p in sub.choices.items():
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help: {missing}"


def test_export_and_save_version_take_label_field_and_overwrite(demo, tmp_path, capsys):
    import fiftyone as fo

    import alc_fiftyone as alc

    alc.rank_superpixels(demo, "pseudo", budget=4)
    q = alc.next_query(demo, "ana")
    alc.answer(demo, q["id"], 1, user="ana")
    out = tmp_path / "out"
    # no answer on most samples: the ranked labels are exported there
    assert main(["export", demo.name, "--field", "alc_revised", "--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == len(demo)
    assert main(["export", demo.name, "--field", "alc_revised", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    args = [
        "export",
        demo.name,
        "--field",
        "alc_revised",
        "--out",
        str(out),
        "--overwrite",
        "--label-field",
        "pseudo",
    ]
    assert main(args) == 0
    name = f"{demo.name}-v"
    try:
        assert main(["save-version", demo.name, name, "--label-field", "pseudo"]) == 0
        assert main(["save-version", demo.name, name]) == 2
        assert "--overwrite" in capsys.readouterr().err
        assert main(["save-version", demo.name, name, "--overwrite"]) == 0
        assert fo.load_dataset(name).info["alc"]["provenance"]["label_field"] == "pseudo"
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_import_folder_command(tmp_path, unique_name, tmp_alc_dir, capsys):
    import fiftyone as fo

    images, masks = write_folder(tmp_path, n=3)
    try:
        argv = [
            "import-folder",
            str(images),
            str(masks),
            "--classes",
            "bg,square,bar",
            "--name",
            unique_name,
        ]
        assert main(argv) == 0
        assert f"{unique_name} (3 samples)" in capsys.readouterr().out
        ds = fo.load_dataset(unique_name)
        assert ds.persistent and ds.mask_targets["ground_truth"][2] == "bar"
        assert main(argv) == 2  # exists: says how to replace it
        assert "--overwrite" in capsys.readouterr().err
        assert main([*argv, "--overwrite"]) == 0
    finally:
        if fo.dataset_exists(unique_name):
            fo.delete_dataset(unique_name)


def test_simulate_limit_and_round_progress(tmp_path, unique_name, tmp_alc_dir, capsys):
    images, masks = write_folder(tmp_path, n=4)
    argv = [
        "simulate",
        "--images",
        str(images),
        "--masks",
        str(masks),
        "--classes",
        "bg,square,bar",
        "--rounds",
        "2",
        "--budget",
        "3",
        "--limit",
        "2",
        "--name",
        unique_name,
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "2 images" in captured.out
    assert "round 1/2" in captured.err and "round 2/2" in captured.err
    assert "fit" in captured.err  # the model's fit has a bar of its own


def test_clean_command(demo, capsys):
    from alc_fiftyone.store.files import write_mask

    orphan = write_mask(np.zeros((40, 48), np.uint8), demo, "pseudo", "orphan")
    demo.persistent = True
    assert main(["clean", demo.name, "--dry-run", "--min-age", "0"]) == 0
    assert Path(orphan).exists() and "1 file" in capsys.readouterr().out
    assert main(["clean", demo.name, "--min-age", "0"]) == 0
    assert not Path(orphan).exists()


# --- issue 18: nothing a user asks for destroys their labels or their dataset --------------


@pytest.mark.parametrize("rounds", ["-1", "0", "1.5"])
def test_simulate_refuses_bad_rounds_before_loading(tmp_path, unique_name, capsys, rounds):
    import fiftyone as fo

    images, masks = write_folder(tmp_path)
    argv = ["simulate", "--images", str(images), "--masks", str(masks)]
    argv += ["--classes", "bg,square,bar", "--rounds", rounds, "--name", unique_name]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--rounds" in err and "at least 1" in err
    assert not fo.dataset_exists(unique_name)


def test_evaluate_names_a_missing_field(demo, capsys):
    demo.persistent = True
    argv = ["evaluate", demo.name, "--label-field", "pseudo", "--gt-field", "nope"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no ground-truth field 'nope'" in err


def test_save_version_never_replaces_its_source(demo, capsys):
    import fiftyone as fo

    import alc_fiftyone as alc

    alc.rank_superpixels(demo, "pseudo", budget=3)
    q = alc.next_query(demo, "ana")
    alc.answer(demo, q["id"], 1, user="ana")
    demo.persistent = True
    assert main(["save-version", demo.name, demo.name, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "never replaces the dataset it is made from" in err and "overwrite" not in err
    ds = fo.load_dataset(demo.name)
    assert ds.count("alc_revised") == 1 and "provenance" not in ds.info["alc"]
