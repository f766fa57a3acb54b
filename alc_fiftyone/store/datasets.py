"""Building a dataset under a temporary name and swapping it in only when it is complete.

Every step that makes a whole dataset (the importers, the demo, a revised version) builds it
under a temporary, non-persistent name first; the dataset is given its real name (and the old
dataset of that name, with ``overwrite=True``, is deleted) only when everything is written.
So a failure or a ``kill -9`` at any moment leaves the old dataset as it was and never a
finished-looking new one: at worst an incomplete dataset under the temporary name, which
FiftyOne drops with the other non-persistent datasets, and which the next run of the same
step removes and reports (:func:`remove_leftovers`). The folder of its files holds a marker
file (:data:`MARKER`) until it is published, so that a leftover is found by what is on disk
too, even after FiftyOne has dropped the non-persistent dataset itself.

A save never replaces the dataset it reads from (:func:`clone_for`).
"""

from __future__ import annotations

import json
import shutil
import uuid

#: marks the temporary name of a dataset being built: ``<name>.alc-incomplete-<hex>``
TMP_MARK = ".alc-incomplete-"
#: a file in the folder of a dataset being built, removed when it is published
MARKER = ".alc-incomplete"


def temporary_name(name: str) -> str:
    return f"{name}{TMP_MARK}{uuid.uuid4().hex[:8]}"


def new_dataset(name: str, persistent: bool, overwrite: bool):
    """An empty dataset to build ``name`` in, under a temporary name: an existing dataset
    ``name`` is replaced only by :func:`publish`, once the new one is complete. Leftovers of
    interrupted builds of ``name`` are removed first."""
    import fiftyone as fo

    from .files import make_dataset_dir

    check_name(name, overwrite)
    removed = remove_leftovers(name)
    dataset = fo.Dataset(temporary_name(name))
    dataset.persistent = False
    try:
        _mark_incomplete(make_dataset_dir(dataset, name), dataset, name)
    except BaseException:
        discard(dataset)
        raise
    dataset.info["alc_target"] = {
        "name": name,
        "persistent": bool(persistent),
        "removed_incomplete": removed,
    }
    return dataset


def clone_for(dataset, name: str, overwrite: bool):
    """A non-persistent clone of ``dataset`` under a temporary name, to become ``name`` with
    :func:`publish`; returns ``(clone, leftovers removed)``."""
    from .db import dataset_of
    from .files import make_dataset_dir

    if name == dataset_of(dataset).name:
        raise ValueError(
            f"{name!r} is the dataset being saved: a version never replaces the dataset it is "
            "made from (its answers, revised labels and undo records would be lost); choose "
            "another name"
        )
    check_name(name, overwrite)
    removed = remove_leftovers(name)
    clone = dataset.clone(temporary_name(name), persistent=False)
    try:
        _mark_incomplete(make_dataset_dir(clone, name), clone, name)
    except BaseException:
        discard(clone)
        raise
    return clone, removed


def _mark_incomplete(folder, dataset, name: str) -> None:
    """Write the marker that says ``folder`` belongs to an unpublished build of ``name``."""
    from ..errors import OutputError
    from .db import dataset_id
    from .files import os_error_text

    marker = {"name": name, "dataset": dataset.name, "id": dataset_id(dataset)}
    try:
        (folder / MARKER).write_text(json.dumps(marker))
    except OSError as e:
        raise OutputError(f"cannot write in the folder {folder}: {os_error_text(e)}") from e


def check_name(name: str, overwrite: bool) -> None:
    """ValueError when a dataset ``name`` exists and may not be replaced."""
    import fiftyone as fo

    if not name or not str(name).strip():
        raise ValueError("a dataset needs a name")
    if TMP_MARK in name:
        raise ValueError(f"dataset names cannot contain {TMP_MARK!r}")
    if fo.dataset_exists(name) and not overwrite:
        raise ValueError(
            f"a dataset named {name!r} already exists; pass overwrite=True (CLI: --overwrite) "
            "to replace it, or choose another name"
        )


def remove_leftovers(name: str) -> list[str]:
    """Delete the incomplete datasets (and their files) that earlier, interrupted builds of
    ``name`` left behind; returns their names.

    Leftovers are found in the database (datasets named ``<name>.alc-incomplete-<hex>``) and
    on disk: a folder under ``ALC_FIFTYONE_DIR`` whose marker (:data:`MARKER`) names a build
    of ``name`` whose dataset no longer exists (FiftyOne drops non-persistent datasets by
    itself, e.g. when a new process connects after a ``kill -9``)."""
    import fiftyone as fo

    from .db import existing_dataset_ids
    from .files import alc_dir, dataset_dir

    removed = []
    for other in fo.list_datasets():
        if other.startswith(name + TMP_MARK):
            try:
                ds = fo.load_dataset(other)
                folder = dataset_dir(ds)
                ds.delete()
                shutil.rmtree(folder, ignore_errors=True)
            except ValueError:  # deleted meanwhile
                continue
            removed.append(other)
    root = alc_dir()
    markers = sorted(root.glob(f"*/{MARKER}")) if root.is_dir() else []
    if markers:
        alive = existing_dataset_ids()
        for path in markers:
            try:
                marker = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if marker.get("name") != name or marker.get("id") in alive:
                continue
            shutil.rmtree(path.parent, ignore_errors=True)
            if marker.get("dataset") not in removed:
                removed.append(marker.get("dataset") or path.parent.name)
    return removed


def publish(dataset, name: str, persistent: bool) -> None:
    """Give the complete ``dataset`` (built under a temporary name) the name ``name``,
    deleting the dataset that had it only now. The order makes every crash safe: the new
    dataset is made persistent first (so it cannot be dropped), then the old one is deleted,
    then the new one is renamed."""
    import fiftyone as fo

    from .files import dataset_dir

    dataset.persistent = True
    if fo.dataset_exists(name):
        fo.delete_dataset(name)  # its files stay: clones and versions may point at them
    dataset.name = name
    dataset.persistent = bool(persistent)
    (dataset_dir(dataset) / MARKER).unlink(missing_ok=True)  # complete: no leftover


def discard(dataset) -> None:
    """Delete a partly built dataset and every file written for it."""
    from .files import dataset_dir

    if dataset is None:
        return
    folder = None if dataset.deleted else dataset_dir(dataset)
    try:
        if not dataset.deleted:
            dataset.delete()
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
