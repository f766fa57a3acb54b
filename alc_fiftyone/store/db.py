"""The one module that touches FiftyOne's private APIs.

alc-fiftyone needs a few things FiftyOne's public API does not offer: atomic conditional
updates of one sample (claims, answers, the merge of a ranking's queries), atomic updates of
the dataset document (``info["alc"]`` keys of concurrent processes), aggregations on raw
documents, and the dataset behind a view. They all go through the functions here, so a
FiftyOne upgrade means auditing this file only. What they rely on (FiftyOne 1.x):

- ``SampleCollection._dataset``, ``._pipeline()``, ``._aggregate(pipeline=)``,
  ``._is_patches`` and ``._root_dataset``;
- ``Dataset._sample_collection`` (the pymongo collection of its samples),
  ``._sample_collection_name`` and ``._doc.id``;
- ``fiftyone.core.odm.get_db_conn()`` (the database: also the ids of all datasets),
  ``fo.Sample._instances`` (the in-memory samples of a collection),
  ``Dataset._sample_dict_to_doc`` and ``Dataset._reload(hard=True)`` (refresh in-memory
  samples after a direct write, in one query, and the dataset document without reloading
  every sample held in memory).
"""

from __future__ import annotations

from typing import Any


def dataset_of(samples):
    """The :class:`fiftyone.core.dataset.Dataset` behind a dataset or view."""
    return samples._dataset


def dataset_id(dataset) -> str:
    """The id of a dataset's document (stable across renames)."""
    return str(dataset_of(dataset)._doc.id)


def collection_key(samples) -> str:
    """The name of the MongoDB collection of the samples (a key per dataset, stable across
    renames)."""
    return dataset_of(samples)._sample_collection_name


def samples_collection(samples):
    """The pymongo collection holding the samples' documents."""
    return dataset_of(samples)._sample_collection


def reload_samples(samples, sample_ids, new_docs: bool = False) -> None:
    """Refresh the in-memory copies of these samples after a direct database update, so that
    a later ``sample.save()`` of one of them does not write back what it held before.

    Only samples held in memory are read, all in one query (``Sample.reload`` reads one
    document per call: a ranking's write refreshed every sample a caller held, one query
    each). ``new_docs``: build their documents anew (of the dataset's current schema).
    """
    import fiftyone as fo

    live = fo.Sample._instances.get(collection_key(samples))
    if not live:
        return
    held = [s for s in (live.get(str(i)) for i in sample_ids) if s is not None]
    ds = dataset_of(samples)
    if (len(held) <= 2 and not new_docs) or ds.media_type != "image":
        for sample in held:
            sample.reload(hard=False)
        return
    by_id = {sample._id: sample for sample in held}
    for doc in samples_collection(samples).find({"_id": {"$in": list(by_id)}}):
        sample = by_id.get(doc["_id"])
        if sample is not None:
            sample._doc = ds._sample_dict_to_doc(doc, _reload_backing_docs=False)


def reload_dataset(dataset) -> None:
    """Read the dataset's own document again (its ``info``, fields, mask targets written by
    another process), without reloading every sample held in memory as
    ``Dataset.reload()`` does. Samples held in memory whose documents are of a schema the
    reload replaced (a field was added meanwhile) are refreshed too, in one query: else they
    would not know the new field."""
    import fiftyone as fo

    ds = dataset_of(dataset)
    ds._reload(hard=True)
    live = _held_items(fo.Sample._instances.get(collection_key(ds)) or {})
    stale = [sid for sid, s in live if type(s._doc) is not ds._sample_doc_cls]
    if stale:
        reload_samples(ds, stale, new_docs=True)


def _held_items(live) -> list:
    """The (id, sample) pairs of FiftyOne's registry of in-memory samples (a weak dictionary
    it iterates without a lock: another thread, e.g. the App server running two tabs' events
    at once, that makes or frees a sample meanwhile stops the loop; it is simply redone)."""
    for attempt in range(8):
        try:
            return list(live.items())
        except RuntimeError:
            if attempt == 7:
                raise
    return []


def update_sample(
    samples, sample_id: str, condition: dict, update, array_filters: list | None = None
):
    """One atomic ``update_one`` on sample ``sample_id`` when ``condition`` holds; the
    in-memory copies are refreshed. Returns pymongo's result (``matched_count`` tells whether
    the condition held)."""
    from bson import ObjectId

    query = {"_id": ObjectId(str(sample_id)), **condition}
    kwargs = {"array_filters": array_filters} if array_filters else {}
    res = samples_collection(samples).update_one(query, update, **kwargs)
    reload_samples(samples, [sample_id])
    return res


def bulk_update_samples(samples, updates: dict[str, Any]) -> None:
    """One ``update_one`` per sample id -> update (a pipeline or an update document), sent in
    one unordered bulk write; the in-memory copies are refreshed."""
    from bson import ObjectId
    from pymongo import UpdateOne

    if not updates:
        return
    ops = [UpdateOne({"_id": ObjectId(sid)}, update) for sid, update in updates.items()]
    samples_collection(samples).bulk_write(ops, ordered=False)
    reload_samples(samples, list(updates))


def find_sample_id(samples, condition: dict) -> str | None:
    """The id of the first sample document matching the raw ``condition``, or None."""
    doc = samples_collection(samples).find_one(condition, {"_id": 1})
    return None if doc is None else str(doc["_id"])


def aggregate(samples, pipeline: list) -> list:
    """Run an aggregation ``pipeline`` after the view's own stages, on raw documents."""
    return list(samples._aggregate(pipeline=pipeline))


def aggregate_raw(samples, pipeline: list) -> list:
    """Run an aggregation on the dataset's whole sample collection (no view stages)."""
    return list(samples_collection(samples).aggregate(pipeline))


def create_index(samples, path: str) -> None:
    """An index on a raw document path (idempotent; safe from several threads)."""
    samples_collection(samples).create_index(path)


def view_identity(samples) -> str:
    """A string naming a collection and its view stages: equal for equal views."""
    import json

    pipeline = json.dumps(samples._pipeline(), sort_keys=True, default=str)
    return f"{collection_key(samples)}|{pipeline}"


def sample_level(samples):
    """A patches view (e.g. the review queue in the grid) as the samples behind it;
    other collections unchanged."""
    if getattr(samples, "_is_patches", False):
        return samples._root_dataset.select(samples.distinct("sample_id"))
    return samples


def patches_source(samples):
    """The collection a patches view was made from (e.g. the review queue: the dataset); other
    collections unchanged."""
    if getattr(samples, "_is_patches", False):
        return samples._source_collection
    return samples


def update_dataset_document(dataset, update: dict, condition: dict | None = None) -> bool:
    """One atomic update of the dataset's own document (``info`` keys of concurrent
    processes), only where ``condition`` holds; the dataset is reloaded. Returns whether the
    document was modified."""
    import fiftyone.core.odm as foo

    ds = dataset_of(dataset)
    query = {"_id": ds._doc.id, **(condition or {})}
    res = foo.get_db_conn().datasets.update_one(query, update)
    reload_dataset(ds)
    return res.modified_count == 1


def existing_dataset_ids() -> set[str]:
    """The ids of every dataset document in the database (persistent or not)."""
    import fiftyone.core.odm as foo

    return {str(doc["_id"]) for doc in foo.get_db_conn().datasets.find({}, {"_id": 1})}
