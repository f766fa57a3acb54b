"""The base error of alc-fiftyone, defined at the bottom so that the array layer (core) can
raise it without importing anything above it. :mod:`alc_fiftyone.errors` holds the others."""

from __future__ import annotations


class ALCError(Exception):
    """Base class of the errors alc-fiftyone raises on purpose."""
