"""Building a dataset under a temporary name and swapping it in only when it is complete.

Every step that makes a whole dataset (the importers, the demo, a revised version) builds it
under a temporary, non-persistent name first; the dataset is given its real name (and the old
dataset of that name, with ``overwrite=True``, is deleted) only when everything is written.
So a failure or a ``kill -9`` at any moment leaves the old dataset as it was and never a
finished-looking new one: at worst an incomplete dataset under the temporary name, which
FiftyOne drops with the other non-persistent datasets, and which the next run of the same
step removes and reports (:func:`remove_leftovers`).
"""

from __future__ import annotations

import shutil
import uuid

#: marks the temporary name of a dataset being built: ``<name>.alc-incomplete-<hex>``
TMP_MARK = ".alc-incomplete-"


def temporary_name(name: str) -> str:
    return f"{name}{TMP_MARK}{uuid.uuid4().hex[:8]}"


def new_dataset(name: str, persistent: bool, overwrite: bool):
    """An empty dataset to build ``name`` in, under a temporary name: an existing dataset
    ``name`` is replaced only by :func:`publish`, once the new one is complete. Leftovers of
    interrupted builds of ``name`` are removed first."""
    import fiftyone as fo

    from .files import make_dataset_dir

    check_name(name, overwrite)
    remove_leftovers(name)
    dataset = fo.Dataset(temporary_name(name))
    dataset.persistent = False
    try:
        make_dataset_dir(dataset, name)
    except BaseException:
        dataset.delete()
        raise
    dataset.info["alc_target"] = {"name": name, "persistent": bool(persistent)}
    return dataset


def clone_for(dataset, name: str, overwrite: bool):
    """A non-persistent clone of ``dataset`` under a temporary name, to become ``name`` with
    :func:`publish`; returns ``(clone, leftovers removed)``."""
    from .files import make_dataset_dir

    check_name(name, overwrite)
    removed = remove_leftovers(name)
    clone = dataset.clone(temporary_name(name), persistent=False)
    try:
        make_dataset_dir(clone, name)
    except BaseException:
        clone.delete()
        raise
    return clone, removed


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
    ``name`` left behind; returns their names."""
    import fiftyone as fo

    from .files import dataset_dir

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
    return removed


def publish(dataset, name: str, persistent: bool) -> None:
    """Give the complete ``dataset`` (built under a temporary name) the name ``name``,
    deleting the dataset that had it only now. The order makes every crash safe: the new
    dataset is made persistent first (so it cannot be dropped), then the old one is deleted,
    then the new one is renamed."""
    import fiftyone as fo

    dataset.persistent = True
    if fo.dataset_exists(name):
        fo.delete_dataset(name)  # its files stay: clones and versions may point at them
    dataset.name = name
    dataset.persistent = bool(persistent)


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
