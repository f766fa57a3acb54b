"""alc-fiftyone: active label correction for semantic segmentation in FiftyOne.

``import alc_fiftyone as alc`` gives the SDK; names are loaded on first use so that importing
the package (or its array-level ``alc_fiftyone.core``) does not import FiftyOne.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # datasets
    "load_voc": "datasets",
    "load_image_masks": "datasets",
    "make_demo_dataset": "datasets",
    # steps of the loop
    "compute_superpixels": "superpixels",
    "corrupt_labels": "noise",
    "generate_pseudo_labels": "sam",
    "load_sam": "sam",
    "cache_embeddings": "sam",
    "get_embedding": "sam",
    "rank_superpixels": "ranking",
    "review_queue": "ranking",
    "answer": "answers",
    "undo": "answers",
    "skip": "answers",
    "apply_answers": "answers",
    "claim": "answers",
    "release": "answers",
    "next_query": "review",
    "query_info": "review",
    "review_progress": "review",
    "render_query": "render",
    "simulate": "simulation",
    "propagate_answers": "propagation",
    "undo_propagation": "propagation",
    "SimulationResult": "simulation",
    "evaluate": "evaluation",
    "export_masks": "versions",
    "save_revised_version": "versions",
    "clean_files": "cleanup",
    # shards and delegated workers
    "shard_view": "sharding",
    "make_shards": "sharding",
    "queue_shards": "sharding",
    "find_shard_run": "sharding",
    "merge_ranking": "sharding",
    "ShardRun": "sharding",
    # probability models
    "ProbabilityModel": "probabilities",
    "FeatureModel": "probabilities",
    "FieldModel": "probabilities",
    "CallableModel": "probabilities",
    "get_model": "probabilities",
    # errors
    "ALCError": "errors",
    "SampleError": "errors",
    "QueryError": "errors",
    "OutputError": "errors",
    "DatabaseError": "errors",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 (names resolved lazily below)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'alc_fiftyone' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
