"""``alc-fiftyone``: the command line of alc-fiftyone.

Every subcommand is a thin wrapper over a function of the package; errors the package raises
on purpose (:class:`alc_fiftyone.errors.ALCError`) print ``error: ...`` and exit with code 2.
FiftyOne and the package are imported only when a command runs, so ``--help`` is fast.
"""

from __future__ import annotations

import os

# Before FiftyOne is imported: no telemetry, and no refusal of the bundled MongoDB version.
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")

import argparse
import sys
from pathlib import Path

from .errors import ALCError


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
    alc.compute_superpixels(ds, method="felzenszwalb", progress=bar)
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


def cmd_simulate(args, bar) -> None:
    import alc_fiftyone as alc

    from .datasets import _discard

    ds = alc.load_image_masks(
        args.images,
        args.masks,
        _classes(args),
        ignore_index=args.ignore_index,
        threshold=args.threshold,
        name=args.name,
        persistent=args.keep,
        progress=bar,
    )
    try:
        alc.corrupt_labels(
            ds,
            "ground_truth",
            "noisy",
            progress=bar,
            **_given(rate=args.noise, seed=args.noise_seed),
        )
        alc.compute_superpixels(ds, method=args.superpixels, progress=bar)
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
            ),
        )
        bar.close()
        print(res.table())
        if args.plot:
            res.plot(args.plot)
            print(f"plot: {args.plot}")
        if args.keep:
            print(f"dataset: {ds.name} ({len(ds)} samples)")
    finally:
        if not args.keep:
            _discard(ds)  # the dataset and the mask files written for it


def cmd_import_voc(args, bar) -> None:
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
    print(f"dataset: {ds.name} ({len(ds)} samples)")


def cmd_rank(args, bar) -> None:
    import alc_fiftyone as alc

    summary = alc.rank_superpixels(
        _load(args.dataset),
        args.label_field,
        progress=bar,
        skip_failures=args.skip_failures,
        **_given(method=args.method, budget=args.budget, model=args.model),
    )
    bar.close()
    _print_summary(summary)


def cmd_evaluate(args, bar) -> None:
    import alc_fiftyone as alc
    from alc_fiftyone.evaluation import format_per_class

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
        skip_failures=args.skip_failures,
        progress=bar,
    )
    bar.close()
    _print_summary(summary)


def cmd_save_version(args, bar) -> None:
    import alc_fiftyone as alc

    version = alc.save_revised_version(
        _load(args.dataset), args.name, skip_failures=args.skip_failures
    )
    print(f"dataset: {version.name} ({len(version)} samples)")


SKIP_HELP = "leave out (and list) samples whose files cannot be read instead of stopping"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alc-fiftyone",
        description="Active label correction for semantic segmentation, on FiftyOne datasets.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="generated dataset, superpixels, ranking, simulation, App")
    p.add_argument("--name", default="alc-demo", help="dataset name (replaced if it exists)")
    p.add_argument("--samples", type=int, default=24, metavar="N", help="number of images")
    p.add_argument("--rounds", type=int, default=3, metavar="R", help="simulated rounds")
    p.add_argument("--seed", type=int, default=0, metavar="S")
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
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--classes", metavar="A,B,C", help="class names, mask value = position")
    group.add_argument("--classes-file", metavar="F", help="class names, one per line")
    p.add_argument("--ignore-index", type=int, metavar="V", help="mask value meaning ignore")
    p.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="binarize masks at T (binary masks saved with compression noise)",
    )
    p.add_argument(
        "--noise",
        type=float,
        metavar="RATE",
        help="share of pixels the simulated label noise makes wrong",
    )
    p.add_argument("--noise-seed", type=int, metavar="S")
    p.add_argument("--rounds", type=int, metavar="R")
    p.add_argument(
        "--budget",
        type=_budget,
        metavar="FRACTION_OR_COUNT",
        help="queries per round: a fraction of the superpixels or a count",
    )
    p.add_argument("--method", metavar="M", help="acquisition method (default: sim)")
    p.add_argument("--model", metavar="MODEL", help="probability model (default: features)")
    p.add_argument("--seed", type=int, metavar="S")
    p.add_argument("--superpixels", choices=("slic", "felzenszwalb"), default="slic")
    p.add_argument("--plot", metavar="OUT.png", help="plot data mIoU per round to this file")
    p.add_argument("--name", help="dataset name")
    p.add_argument("--keep", action="store_true", help="keep the dataset (persistent)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("import-voc", help="import a PASCAL VOC-style folder as a dataset")
    p.add_argument("root", help="folder holding JPEGImages/ and SegmentationClass/")
    p.add_argument("--split", metavar="S", help="ImageSets/Segmentation/<S>.txt (default: all)")
    p.add_argument("--name", metavar="N", help="dataset name")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset of that name")
    p.add_argument(
        "--follow-links", action="store_true", help="read files linked from outside the root"
    )
    p.set_defaults(func=cmd_import_voc)

    p = sub.add_parser("rank", help="rank superpixels and write correction queries")
    p.add_argument("dataset")
    p.add_argument("--label-field", required=True, metavar="F")
    p.add_argument("--method", metavar="M", help="acquisition method (default: sim)")
    p.add_argument("--budget", type=_budget, metavar="FRACTION_OR_COUNT")
    p.add_argument("--model", metavar="MODEL", help="probability model (default: features)")
    p.add_argument("--skip-failures", action="store_true", help=SKIP_HELP)
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("evaluate", help="per-class IoU of a label field against ground truth")
    p.add_argument("dataset")
    p.add_argument("--label-field", required=True, metavar="F")
    p.add_argument("--gt-field", required=True, metavar="G")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="write a segmentation field as PNG masks")
    p.add_argument("dataset")
    p.add_argument("--field", required=True, metavar="F")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument(
        "--format",
        choices=("voc", "index"),
        default="voc",
        help="voc: palette PNG; index: grayscale class ids",
    )
    p.add_argument("--skip-failures", action="store_true", help=SKIP_HELP)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("save-version", help="save the revised labels as a new dataset")
    p.add_argument("dataset")
    p.add_argument("name", help="name of the new dataset")
    p.add_argument("--skip-failures", action="store_true", help=SKIP_HELP)
    p.set_defaults(func=cmd_save_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .progress import TqdmProgress

    bar = TqdmProgress()
    try:
        args.func(args, bar)
    except (ALCError, ValueError) as e:
        # ALCError: a problem with the data; ValueError: a bad option value (method, budget,
        # an existing dataset name). Both are the user's to fix, so no traceback.
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
