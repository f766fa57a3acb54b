"""alc-fiftyone: active label correction for semantic segmentation in FiftyOne.

``import alc_fiftyone as alc`` gives the SDK below. Names are loaded on first use, so that
importing the package (or its array-level ``alc_fiftyone.core``) does not import FiftyOne;
type checkers and IDEs see them through the imports under ``TYPE_CHECKING``.

The library's rooms (docs/design.md): ``core`` (arrays only), ``store`` (database and files),
``data`` (importers, demo, noise, versions, export), ``models`` (probability models),
``review`` (queries, claims, answers, queue, render) and ``steps`` (superpixels, pseudo labels,
ranking, propagation, evaluation, simulation, sharding).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    # datasets in and out
    "load_voc": "data.importers",
    "load_image_masks": "data.importers",
    "make_demo_dataset": "data.demo",
    "corrupt_labels": "data.noise",
    "export_masks": "data.export",
    "save_revised_version": "data.versions",
    "clean_files": "store.cleanup",
    "ranked_label_field": "store.info",
    # steps of the loop
    "compute_superpixels": "steps.superpixels",
    "generate_pseudo_labels": "steps.pseudo_labels",
    "rank_superpixels": "steps.ranking",
    "samples_to_rank": "steps.ranking",
    "propagate_answers": "steps.propagation",
    "undo_propagation": "steps.propagation",
    "evaluate": "steps.evaluation",
    "simulate": "steps.simulation",
    "SimulationResult": "steps.simulation",
    # a person's review
    "review_queue": "review.queries",
    "get_query": "review.queries",
    "query_info": "review.queue",
    "next_query": "review.queue",
    "next_skipped": "review.queue",
    "skipped_queries": "review.queue",
    "unskip": "review.queue",
    "review_progress": "review.queue",
    "claim": "review.claims",
    "release": "review.claims",
    "answer": "review.answers",
    "apply_answers": "review.answers",
    "skip": "review.answers",
    "split_query": "review.answers",
    "undo": "review.answers",
    "render_query": "review.render",
    "audit": "review.audit",
    "AuditReport": "review.audit",
    # SAM
    "load_sam": "models.embeddings",
    "cache_embeddings": "models.embeddings",
    "get_embedding": "models.embeddings",
    # shards and delegated workers
    "shard_view": "steps.sharding",
    "make_shards": "steps.sharding",
    "queue_shards": "steps.sharding",
    "find_shard_run": "steps.sharding",
    "merge_ranking": "steps.sharding",
    "ShardRun": "steps.sharding",
    "PLUGIN_NAME": "steps.sharding",
    # probability models
    "ProbabilityModel": "models.base",
    "FitContext": "models.base",
    "FeatureModel": "models.features",
    "FieldModel": "models.external",
    "CallableModel": "models.external",
    "get_model": "models.registry",
    # what the steps accept (for forms and argument checks)
    "ACQUISITION_METHODS": "core.acquisition:METHODS",
    "SUPERPIXEL_METHODS": "steps.superpixels:METHODS",
    "ORACLE_RULES": "core.correction:ORACLE_RULES",
    # errors
    "ALCError": "errors",
    "NotClaimedError": "errors",
    "SampleError": "errors",
    "QueryError": "errors",
    "OutputError": "errors",
    "DatabaseError": "errors",
}

__all__ = [
    "ACQUISITION_METHODS",
    "ORACLE_RULES",
    "PLUGIN_NAME",
    "SUPERPIXEL_METHODS",
    "ALCError",
    "AuditReport",
    "CallableModel",
    "DatabaseError",
    "FeatureModel",
    "FieldModel",
    "FitContext",
    "NotClaimedError",
    "OutputError",
    "ProbabilityModel",
    "QueryError",
    "SampleError",
    "ShardRun",
    "SimulationResult",
    "answer",
    "apply_answers",
    "audit",
    "cache_embeddings",
    "claim",
    "clean_files",
    "compute_superpixels",
    "corrupt_labels",
    "evaluate",
    "export_masks",
    "find_shard_run",
    "generate_pseudo_labels",
    "get_embedding",
    "get_model",
    "get_query",
    "load_image_masks",
    "load_sam",
    "load_voc",
    "make_demo_dataset",
    "make_shards",
    "merge_ranking",
    "next_query",
    "next_skipped",
    "propagate_answers",
    "query_info",
    "queue_shards",
    "rank_superpixels",
    "ranked_label_field",
    "release",
    "render_query",
    "review_progress",
    "review_queue",
    "samples_to_rank",
    "save_revised_version",
    "shard_view",
    "simulate",
    "skip",
    "skipped_queries",
    "split_query",
    "undo",
    "undo_propagation",
    "unskip",
]

if TYPE_CHECKING:  # what the lazy loading below gives, for type checkers and IDEs
    from .core.acquisition import METHODS as ACQUISITION_METHODS
    from .core.correction import ORACLE_RULES
    from .data.demo import make_demo_dataset
    from .data.export import export_masks
    from .data.importers import load_image_masks, load_voc
    from .data.noise import corrupt_labels
    from .data.versions import save_revised_version
    from .errors import (
        ALCError,
        DatabaseError,
        NotClaimedError,
        OutputError,
        QueryError,
        SampleError,
    )
    from .models.base import FitContext, ProbabilityModel
    from .models.embeddings import cache_embeddings, get_embedding, load_sam
    from .models.external import CallableModel, FieldModel
    from .models.features import FeatureModel
    from .models.registry import get_model
    from .review.answers import answer, apply_answers, skip, split_query, undo
    from .review.audit import AuditReport, audit
    from .review.claims import claim, release
    from .review.queries import get_query, review_queue
    from .review.queue import (
        next_query,
        next_skipped,
        query_info,
        review_progress,
        skipped_queries,
        unskip,
    )
    from .review.render import render_query
    from .steps.evaluation import evaluate
    from .steps.propagation import propagate_answers, undo_propagation
    from .steps.pseudo_labels import generate_pseudo_labels
    from .steps.ranking import rank_superpixels, samples_to_rank
    from .steps.sharding import (
        PLUGIN_NAME,
        ShardRun,
        find_shard_run,
        make_shards,
        merge_ranking,
        queue_shards,
        shard_view,
    )
    from .steps.simulation import SimulationResult, simulate
    from .steps.superpixels import METHODS as SUPERPIXEL_METHODS
    from .steps.superpixels import compute_superpixels
    from .store.cleanup import clean_files
    from .store.info import ranked_label_field


def __getattr__(name: str):
    where = _EXPORTS.get(name)
    if where is None:
        raise AttributeError(f"module 'alc_fiftyone' has no attribute {name!r}")
    module, _, attr = where.partition(":")
    value = getattr(importlib.import_module(f".{module}", __name__), attr or name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
