"""clean_files: remove the mask files of a dataset that nothing refers to any more.

Masks are never rewritten in place (:mod:`alc_fiftyone.store.files`): every answer, ranking round,
recomputed superpixel map or interrupted step leaves the previous file behind, so that undo and
crashes are safe. :func:`clean_files` deletes the files in the dataset's folder that no sample
of any dataset (the dataset, its clones and saved versions point into the same folder), no
answer's undo record and no propagation record refers to. A mask's sidecars (the features
computed from it, :mod:`alc_fiftyone.store.sidecars`) are kept while the mask is kept and
removed with it.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from ..progress import ProgressCallback, track
from .db import dataset_of
from .files import dataset_dir
from .sidecars import sidecar_owner

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


EMBEDDINGS = "_sam_embeddings"  # the SAM embeddings cache: kept (a cache, not a mask)


def referenced_files(datasets=None) -> set[str]:
    """Every file path the datasets (default: all of them) refer to: images, the masks of
    every Segmentation field, the masks an answer's undo restores (``revised_before`` of the
    queries of every Detections field) and the masks of propagation records."""
    import fiftyone as fo

    if datasets is None:
        datasets = [fo.load_dataset(name) for name in fo.list_datasets()]
    out: set[str] = set()
    for ds in datasets:
        out.update(p for p in ds.values("filepath") if p)
        for field in ds.get_field_schema(embedded_doc_type=fo.Segmentation):
            out.update(p for p in ds.values(f"{field}.mask_path") if p)
        for field in ds.get_field_schema(embedded_doc_type=fo.Detections):
            for key in ("revised_before", "mask_path"):
                values = ds.values(f"{field}.detections.{key}", unwind=True)
                out.update(p for p in values if isinstance(p, str) and p)
        info = (ds.info or {}).get("alc") or {}
        for prop in info.get("propagations") or []:
            for change in (prop.get("changes") or {}).values():
                out.update(p for p in (change.get("before"), change.get("after")) if p)
    return {os.path.realpath(p) for p in out}


def clean_files(
    dataset: SampleCollection,
    dry_run: bool = False,
    min_age: float = 600.0,
    progress: ProgressCallback | None = None,
) -> dict:
    """Delete the files in ``dataset``'s folder under ``ALC_FIFTYONE_DIR`` that no dataset
    refers to (see :func:`referenced_files`).

    Files younger than ``min_age`` seconds are kept: another process may have just written
    one and not yet pointed its sample at it. A mask's sidecars (its cached features) follow
    the mask: kept with it, removed with it. The SAM embeddings cache is kept. With
    ``dry_run`` nothing is deleted. Returns ``{"folder", "removed", "bytes", "kept",
    "recent", "dry_run", "examples"}`` (``examples``: up to 10 of the files removed).

    Parameters
    ----------
    dataset
        The dataset (or a view of it) holding the queries.
    dry_run
        Only count what would be removed.
    min_age
        Keep files younger than this, in seconds (another process may be writing them).
    progress
        ``progress(done, total, description)``, e.g. the CLI's tqdm bars.

    Returns
    -------
    dict
        ``folder``, ``removed``, ``bytes``, ``kept``, ``recent``, ``dry_run``, ``examples``.
    """
    dataset = dataset_of(dataset)
    folder = dataset_dir(dataset)
    summary = {
        "folder": str(folder),
        "removed": 0,
        "bytes": 0,
        "kept": 0,
        "recent": 0,
        "dry_run": bool(dry_run),
        "examples": [],
    }
    if not folder.is_dir():
        return summary
    keep = referenced_files()
    now = time.time()
    files = [
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink() and EMBEDDINGS not in p.relative_to(folder).parts
    ]
    for path in track(files, len(files), progress, "cleaning files"):
        owner = sidecar_owner(path)
        if os.path.realpath(owner if owner is not None else path) in keep:
            summary["kept"] += 1
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        try:
            # a sidecar lives as long as its mask: young while the mask is young
            born = stat.st_mtime if owner is None else owner.stat().st_mtime
        except FileNotFoundError:
            born = None  # its mask is gone: the sidecar goes too
        if born is not None and now - born < min_age:
            summary["recent"] += 1
            continue
        if not dry_run:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
        summary["removed"] += 1
        summary["bytes"] += int(stat.st_size)
        if len(summary["examples"]) < 10:
            summary["examples"].append(str(path))
    if not dry_run:
        for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
            try:
                sub.rmdir()  # only empty folders
            except OSError:
                pass
    return summary
