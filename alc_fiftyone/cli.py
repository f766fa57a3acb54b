"""``alc-fiftyone``: the command line of alc-fiftyone.

Every subcommand is a thin wrapper over a function of the package. A user error (a missing
folder, an unknown dataset or option value, a problem with the data:
:class:`alc_fiftyone.errors.ALCError`, ``ValueError``, a missing file) prints one line
``error: ...`` and exits with code 2; arguments are checked before FiftyOne is imported, so
a typo is reported at once and ``--help`` is fast.
"""

from __future__ import annotations

import os

# Before FiftyOne is imported: no telemetry, and no refusal of the bundled MongoDB version.
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")

import argparse
import sys
from pathlib import Path

from .core.acquisition import METHODS as ACQUISITION_METHODS  # arrays only: no FiftyOne
from .errors import ALCError

# those that need no model (SAM: the SDK); label_aware follows the labels under review
SUPERPIXEL_METHODS = ("label_aware", "felzenszwalb", "slic")
MODEL_HELP = (
    "probability model: auto (default: sam_head on a CUDA machine with a SAM checkpoint, "
    "else features), features, sam_head, backbone:<resnet18|34|50|101> or field:<name> "
    "(your (C, H, W) maps)"
)
SKIP_HELP = "leave out (and list) samples whose files cannot be read instead of stopping"


def _budget(text: str) -> int | float:
    """A query budget: ``0.05`` is a fraction of the superpixels, ``100`` a count."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count or a fraction: {text!r}") from None


def _rounds(text: str) -> int:
    """A number of rounds: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of at least 1: {text!r}")
    return value


def _share(text: str) -> float:
    """A share of the budget: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"not a share in [0, 1): {text!r}")
    return value


def _model(text: str) -> str:
    if text in ("auto", "features", "sam_head") or text.startswith(("field:", "backbone:")):
        return text
    raise argparse.ArgumentTypeError(f"unknown model {text!r}; {MODEL_HELP}")


def _folder(path: str, what: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ALCError(f"{what} folder {path} does not exist (or is not a folder)")
    return folder


def _classes(args) -> list[str]:
    if args.classes_file:
        path = Path(args.classes_file)
        if not path.is_file():
            raise ALCError(f"classes file {path} does not exist")
        names = [line.strip() for line in path.read_text().splitlines()]
    else:
        names = [name.strip() for name in args.classes.split(",")]
    names = [name for name in names if name]
    if not names:
        raise ALCError("no class names given")
    return names


def _load(name: str):
    import fiftyone as fo

    if not fo.dataset_exists(name):
        raise ALCError(f"no dataset named {name!r} (see `fiftyone datasets list`)")
    return fo.load_dataset(name)


def _given(**kwargs) -> dict:
    """The options the user gave (the library's defaults apply to the others)."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _print_removed(dataset) -> None:
    """Say which leftovers of interrupted earlier runs the import removed first."""
    for name in ((dataset.info or {}).get("alc") or {}).get("removed_incomplete") or []:
        print(f"removed {name}: an incomplete dataset left by an interrupted earlier run")


def _print_summary(summary) -> None:
    for key, value in (summary or {}).items():
        print(f"{key}: {value}")


def cmd_demo(args, bar) -> None:
    import fiftyone as fo

    import alc_fiftyone as alc

    ds = alc.make_demo_dataset(
        name=args.name,
        num_samples=args.samples,
        seed=args.seed,
        persistent=True,
        overwrite=True,
        progress=bar,
    )
    alc.compute_superpixels(ds, label_field="pseudo", progress=bar)  # label-aware regions
    alc.rank_superpixels(ds, "pseudo", budget=0.05, seed=args.seed, progress=bar)
    res = alc.simulate(
        ds,
        "pseudo",
        "ground_truth",
        rounds=args.rounds,
        budget_per_round=0.05,
        seed=args.seed,
        progress=bar,
    )
    bar.close()
    print(res.table())
    print(f"dataset: {ds.name} ({len(ds)} samples)")
    if args.no_app:
        return
    session = fo.launch_app(ds, port=args.port, address="127.0.0.1")
    print(f"App: {session.url}  (Ctrl-C to stop)", flush=True)
    try:
        session.wait(-1)  # until Ctrl-C, whether or not a browser is connected
    except KeyboardInterrupt:
        print("stopped")


def _load_folder(alc, args, bar, persistent: bool, overwrite: bool, limit=None):
    return alc.load_image_masks(
        _folder(args.images, "images"),
        _folder(args.masks, "masks"),
        _classes(args),
        ignore_index=args.ignore_index,
        threshold=args.threshold,
        name=args.name,
        persistent=persistent,
        overwrite=overwrite,
        progress=bar,
        **_given(limit=limit),
    )


def cmd_simulate(args, bar) -> None:
    _folder(args.images, "images")
    _folder(args.masks, "masks")
    import alc_fiftyone as alc

    from .store.datasets import discard

    ds = _load_folder(alc, args, bar, persistent=args.keep, overwrite=False, limit=args.limit)
    try:
        alc.corrupt_labels(
            ds,
            "ground_truth",
            "noisy",
            progress=bar,
            **_given(rate=args.noise, seed=args.noise_seed),
        )
        follow = {"label_field": "noisy"} if args.superpixels == "label_aware" else {}
        alc.compute_superpixels(ds, method=args.superpixels, progress=bar, **follow)
        res = alc.simulate(
            ds,
            "noisy",
            "ground_truth",
            progress=bar,
            **_given(
                rounds=args.rounds,
                budget_per_round=args.budget,
                method=args.method,
                model=args.model,
                seed=args.seed,
                estimate_share=args.estimate_share,
            ),
        )
        bar.close()
        print(
            f"simulated correction of {len(ds)} images ({res.config['method']}, "
            f"{args.superpixels} superpixels):"
        )
        print(res.table())
        if args.plot:
            res.plot(args.plot)
            print(f"plot: {args.plot}")
        if args.keep:
            print(f"dataset: {ds.name} ({len(ds)} samples)")
    finally:
        if not args.keep:
            discard(ds)  # the dataset and the mask files written for it


def cmd_import_voc(args, bar) -> None:
    _folder(args.root, "VOC")
    import alc_fiftyone as alc

    ds = alc.load_voc(
        args.root,
        split=args.split,
        name=args.name,
        persistent=True,
        overwrite=args.overwrite,
        progress=bar,
        follow_links=args.follow_links,
    )
    bar.close()
    _print_removed(ds)
    print(f"dataset: {ds.name} ({len(ds)} samples)")


def cmd_import_folder(args, bar) -> None:
    _folder(args.images, "images")
    _folder(args.masks, "masks")
    import alc_fiftyone as alc

    ds = alc.load_image_masks(
        args.images,
        args.masks,
        _classes(args),
        ignore_index=args.ignore_index,
        threshold=args.threshold,
        name=args.name,
        label_field=args.label_field,
        mask_suffix=args.mask_suffix,
        persistent=True,
        overwrite=args.overwrite,
        progress=bar,
        follow_links=args.follow_links,
        **_given(limit=args.limit),
    )
    bar.close()
    _print_removed(ds)
    print(f"dataset: {ds.name} ({len(ds)} samples)")


def cmd_rank(args, bar) -> None:
    import alc_fiftyone as alc

    summary = alc.rank_superpixels(
        _load(args.dataset),
        args.label_field,
        progress=bar,
        skip_failures=args.skip_failures,
        **_given(
            method=args.method,
            budget=args.budget,
            model=args.model,
            seed=args.seed,
            estimate_share=args.estimate_share,
        ),
    )
    bar.close()
    _print_summary(summary)


def cmd_audit(args, bar) -> None:
    import alc_fiftyone as alc

    report = alc.audit(
        _load(args.dataset),
        **_given(
            label_field=args.label_field,
            queries_field=args.queries_field,
            revised_field=args.revised_field,
            auxiliary=args.auxiliary,
        ),
    )
    bar.close()
    print(f"audit of {report.dataset} ({report.queries_field}): {report.standing()}")
    if report.error_rate is not None:
        for when, rates in (("now", report.error_rate), ("before", report.error_rate_before)):
            for key in ("pixels", "regions"):
                e, lo, hi = rates[key]
                print(
                    f"  {key} still wrong {when}: {100 * e:.2f}% ({100 * lo:.2f}-{100 * hi:.2f}%)"
                )
    for note in report.notes:
        print(f"note: {note}")
    print(f"report: {report.to_html(args.out)}")
    if args.json:
        print(f"json: {report.to_json(args.json)}")


def cmd_evaluate(args, bar) -> None:
    import alc_fiftyone as alc
    from alc_fiftyone.steps.evaluation import format_per_class

    result = alc.evaluate(_load(args.dataset), args.label_field, args.gt_field, progress=bar)
    bar.close()
    print(format_per_class(result))


def cmd_export(args, bar) -> None:
    import alc_fiftyone as alc

    summary = alc.export_masks(
        _load(args.dataset),
        args.field,
        args.out,
        format=args.format,
        label_field=args.label_field,
        overwrite=args.overwrite,
        skip_failures=args.skip_failures,
        progress=bar,
    )
    bar.close()
    _print_summary(summary)


def cmd_save_version(args, bar) -> None:
    import alc_fiftyone as alc

    version = alc.save_revised_version(
        _load(args.dataset),
        args.name,
        label_field=args.label_field,
        overwrite=args.overwrite,
        skip_failures=args.skip_failures,
        progress=bar,
    )
    bar.close()
    prov = version.info["alc"]["provenance"]
    print(f"dataset: {version.name} ({len(version)} samples)")
    print(
        f"label field {prov['label_field']!r}: {sum(prov['answers'].values())} answers, "
        f"{prov['pixels_changed']} pixels changed"
    )
    for name in prov.get("removed_incomplete") or []:
        print(f"removed {name}: an incomplete version left by an interrupted earlier run")
    for f in prov.get("failed") or []:
        print(f"not revised: sample {f['id']} ({f['filepath']}): {f['error']}")


def cmd_clean(args, bar) -> None:
    import alc_fiftyone as alc

    summary = alc.clean_files(
        _load(args.dataset), dry_run=args.dry_run, min_age=args.min_age, progress=bar
    )
    bar.close()
    verb = "would remove" if args.dry_run else "removed"
    mb = summary["bytes"] / 1e6
    print(
        f"{verb} {summary['removed']} file(s) ({mb:.1f} MB) in {summary['folder']}; kept "
        f"{summary['kept']} referenced and {summary['recent']} younger than {args.min_age:g} s"
    )


def _folder_options(p, with_name_help: str) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--classes", metavar="A,B,C", help="class names, mask value = position")
    group.add_argument("--classes-file", metavar="F", help="class names, one per line")
    p.add_argument(
        "--ignore-index",
        type=int,
        metavar="V",
        help="mask value meaning 'ignore' (CamVid: 11); stored as 255",
    )
    p.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="binarize masks at T: values >= T become 1 (binary masks saved with "
        "compression noise, e.g. gray JPEG)",
    )
    p.add_argument("--name", metavar="N", help=with_name_help)
    p.add_argument(
        "--limit", type=int, metavar="N", help="only the first N images (natural file order)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alc-fiftyone",
        description="Active label correction for semantic segmentation, on FiftyOne datasets.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="generated dataset, superpixels, ranking, simulation, App")
    p.add_argument("--name", default="alc-demo", help="dataset name (replaced if it exists)")
    p.add_argument("--samples", type=int, default=24, metavar="N", help="number of images")
    p.add_argument("--rounds", type=_rounds, default=3, metavar="R", help="simulated rounds")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of data and ranking")
    p.add_argument("--port", type=int, default=5151, metavar="P", help="App port")
    p.add_argument("--no-app", action="store_true", help="do not launch the App")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "simulate", help="simulate correction of noisy labels on an images + masks folder"
    )
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images")
    p.add_argument(
        "--masks",
        required=True,
        metavar="DIR",
        help="folder of masks, paired with the images by file stem",
    )
    _folder_options(p, "dataset name (default: the folder's name)")
    p.add_argument(
        "--noise",
        type=float,
        metavar="RATE",
        help="share of pixels the simulated label noise makes wrong (default 0.2)",
    )
    p.add_argument("--noise-seed", type=int, metavar="S", help="seed of the label noise")
    p.add_argument("--rounds", type=_rounds, metavar="R", help="correction rounds (default 5)")
    p.add_argument(
        "--budget",
        type=_budget,
        metavar="FRACTION_OR_COUNT",
        help="queries per round: a fraction of the superpixels or a count (default 0.02)",
    )
    p.add_argument(
        "--method",
        choices=ACQUISITION_METHODS,
        metavar="M",
        help=f"acquisition method: {', '.join(ACQUISITION_METHODS)} (default: sim)",
    )
    p.add_argument("--model", type=_model, metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--seed", type=int, metavar="S", help="seed of the ranking and the model")
    p.add_argument(
        "--superpixels",
        choices=SUPERPIXEL_METHODS,
        default="label_aware",
        help="regions: label_aware (follow the noisy labels, cut by Felzenszwalb; default), "
        "felzenszwalb or slic",
    )
    p.add_argument(
        "--estimate-share",
        type=_share,
        metavar="S",
        help="share of the budget drawn at random for `audit` (default 0; 0.1-0.2 for an audit)",
    )
    p.add_argument("--plot", metavar="OUT.png", help="plot data mIoU per round to this file")
    p.add_argument("--keep", action="store_true", help="keep the dataset (persistent)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("import-voc", help="import a PASCAL VOC-style folder as a dataset")
    p.add_argument("root", help="folder holding JPEGImages/ and SegmentationClass/")
    p.add_argument("--split", metavar="S", help="ImageSets/Segmentation/<S>.txt (default: all)")
    p.add_argument("--name", metavar="N", help="dataset name (default: voc-<split>)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset of that name")
    p.add_argument(
        "--follow-links", action="store_true", help="read files linked from outside the root"
    )
    p.set_defaults(func=cmd_import_voc)

    p = sub.add_parser(
        "import-folder", help="import a folder of images and a folder of masks as a dataset"
    )
    p.add_argument("images", help="folder of images")
    p.add_argument("masks", help="folder of masks, paired with the images by file stem")
    _folder_options(p, "dataset name (default: the folder's name)")
    p.add_argument("--label-field", default="ground_truth", metavar="F", help="field of the masks")
    p.add_argument(
        "--mask-suffix", default="", metavar="S", help="mask file = <image stem><S>.<ext>"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a dataset of that name")
    p.add_argument(
        "--follow-links", action="store_true", help="read files linked from outside the folders"
    )
    p.set_defaults(func=cmd_import_folder)

    p = sub.add_parser("rank", help="rank superpixels and write correction queries")
    p.add_argument("dataset", help="dataset name")
    p.add_argument("--label-field", required=True, metavar="F", help="the labels under review")
    p.add_argument(
        "--method",
        choices=ACQUISITION_METHODS,
        metavar="M",
        help=f"acquisition method: {', '.join(ACQUISITION_METHODS)} (default: sim)",
    )
    p.add_argument(
        "--budget",
        type=_budget,
        metavar="FRACTION_OR_COUNT",
        help="queries to write: a fraction of the superpixels or a count (default 0.02)",
    )
    p.add_argument("--model", type=_model, metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--seed", type=int, metavar="S", help="seed of the ranking and the model")
    p.add_argument("--skip-failures", action="store_true", help=SKIP_HELP)
    p.add_argument(
        "--estimate-share",
        type=_share,
        metavar="S",
        help="share of the budget drawn at random for `audit` (default 0; 0.1-0.2 for an audit)",
    )
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser(
        "audit", help="error rate still in the labels (with an interval), errata, HTML report"
    )
    p.add_argument("dataset", help="dataset name")
    p.add_argument("--out", required=True, metavar="REPORT.html", help="the HTML report")
    p.add_argument("--json", metavar="REPORT.json", help="also write the numbers as JSON")
    p.add_argument(
        "--queries-field",
        metavar="F",
        help="the queries (default: the latest ranking's; alc_sim_queries for a simulation)",
    )
    p.add_argument("--label-field", metavar="F", help="the labels under review (default: ranked)")
    p.add_argument("--revised-field", metavar="F", help="the corrected labels (default: ranked)")
    p.add_argument(
        "--auxiliary",
        choices=("score", "pixels"),
        help="what the pixels still wrong are a ratio to: the ranking's score (default) or "
        "each stratum's region pixels",
    )
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("evaluate", help="per-class IoU of a label field against ground truth")
    p.add_argument("dataset", help="dataset name")
    p.add_argument("--label-field", required=True, metavar="F", help="the labels to evaluate")
    p.add_argument("--gt-field", required=True, metavar="G", help="the ground truth")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="write a segmentation field as PNG masks")
    p.add_argument("dataset", help="dataset name")
    p.add_argument(
        "--field", required=True, metavar="F", help="the masks to write, e.g. alc_revised"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--label-field",
        metavar="F",
        help="labels written where a sample has no --field (default: the ranked field "
        "when --field is a revised field)",
    )
    p.add_argument(
        "--format",
        choices=("voc", "index"),
        default="voc",
        help="voc: palette PNG; index: grayscale class ids",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--skip-failures", action="store_true", help=SKIP_HELP)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("save-version", help="save the revised labels as a new dataset")
    p.add_argument("dataset", help="dataset name")
    p.add_argument("name", help="name of the new dataset")
    p.add_argument(
        "--label-field",
        metavar="F",
        help="field that receives the corrections (default: the ranked field)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a dataset of that name")
    p.add_argument("--skip-failures", action="store_true", help=SKIP_HELP)
    p.set_defaults(func=cmd_save_version)

    p = sub.add_parser("clean", help="delete a dataset's mask files that nothing refers to")
    p.add_argument("dataset", help="dataset name")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument(
        "--min-age",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="keep files younger than this (another process may be writing; default 600)",
    )
    p.set_defaults(func=cmd_clean)
    return parser


# the errors that are the user's to fix: one line, exit 2, no traceback
USER_ERRORS = (ALCError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .progress import TqdmProgress

    bar = TqdmProgress()
    try:
        args.func(args, bar)
    except USER_ERRORS as e:
        bar.close()
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
