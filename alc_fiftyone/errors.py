"""Errors raised by alc-fiftyone. Every problem tied to a sample names the sample."""

from __future__ import annotations


class ALCError(Exception):
    """Base class of the errors alc-fiftyone raises on purpose."""


class SampleError(ALCError):
    """A problem with one sample's files or labels.

    The message names the sample id, its file and the problem, so a user can find it in the App.
    """

    def __init__(self, sample_id: str | None, problem: str, filepath: str | None = None):
        self.sample_id = sample_id
        self.filepath = filepath
        self.problem = problem
        where = f"sample {sample_id}" if sample_id else "sample"
        if filepath:
            where += f" ({filepath})"
        super().__init__(f"{where}: {problem}")


class QueryError(ALCError):
    """An answer or undo that cannot be applied to a query (unknown, stale, already answered)."""
