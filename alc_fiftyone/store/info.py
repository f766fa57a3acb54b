"""``dataset.info["alc"]``: what alc-fiftyone records on a dataset (classes, ignore value,
label field, superpixel and pseudo-label parameters, ranking rounds, propagations, shard runs),
read as a copy and updated atomically, key by key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .db import update_dataset_document

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


def alc_info(dataset) -> dict:
    """``dataset.info["alc"]`` (a copy; write back with :func:`update_alc_info`)."""
    return dict((dataset.info or {}).get("alc") or {})


def update_alc_info(dataset, **changes) -> dict:
    """Set the keys ``changes`` of ``dataset.info["alc"]`` in the database, atomically.

    One MongoDB ``$set`` of ``info.alc.<key>`` per key (a key may be a dotted path, e.g.
    ``"shard_runs.<run>.<shard>"``), not a save of the whole dict: processes that update
    different keys at the same time (delegated workers on shards, a merge) never lose each
    other's update. The dataset is then reloaded and the new ``info["alc"]`` returned.
    """
    if not changes:
        return alc_info(dataset)
    sets = {f"info.alc.{key}": value for key, value in changes.items()}
    return _update_dataset_doc(dataset, {"$set": sets})


def append_alc_info(dataset, key: str, item) -> dict:
    """Append ``item`` to the list ``dataset.info["alc"][key]`` with one atomic ``$push``
    (rounds of two processes are both kept); reloads the dataset, returns ``info["alc"]``."""
    return _update_dataset_doc(dataset, {"$push": {f"info.alc.{key}": item}})


def _update_dataset_doc(dataset, update: dict) -> dict:
    """Apply one MongoDB ``update`` to the dataset's document, reload, return ``info["alc"]``."""
    update_dataset_document(dataset, update)
    return alc_info(dataset)


def ranked_label_field(
    dataset: SampleCollection, queries_field: str | None = None, revised_field: str | None = None
) -> str | None:
    """The label field of the latest ranking round whose queries field is ``queries_field``
    or whose revised field is ``revised_field`` (the field the corrections belong to), else
    the label field the dataset records (``info["alc"]["label_field"]``), else None.

    Parameters
    ----------
    dataset
        The dataset (or a view of it).
    queries_field
        Look for the rounds written to this queries field (None: any).
    revised_field
        Or for the rounds whose answers go to this revised field (None: any).

    Returns
    -------
    str or None
        The label field the corrections belong to.
    """
    info = alc_info(dataset)
    for record in reversed(info.get("rounds") or []):
        same = (
            (queries_field is None and revised_field is None)
            or (queries_field and record.get("queries_field") == queries_field)
            or (revised_field and record.get("revised_field") == revised_field)
        )
        if same and record.get("label_field"):
            return record["label_field"]
    return info.get("label_field")
