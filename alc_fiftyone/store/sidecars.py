"""Files kept beside a mask: what was computed from it once (the features of its regions),
so that a later round, another process or a worker reads it instead of computing it again.

A sidecar of the mask ``<name>.png`` is ``<name>.png.alc-<kind>.npz`` in the same folder: it
belongs to that mask file alone. Masks written by alc-fiftyone are never rewritten in place
(:mod:`alc_fiftyone.store.files`), so new regions are a new file and find no sidecar; a
sidecar also records the size and modification time of its mask and of the image it was
computed from, and is ignored when either changed (a mask a user rewrote in place, an image
replaced). Sidecars are written atomically (a temporary file, then a rename) and only beside
masks under ``ALC_FIFTYONE_DIR`` (alc-fiftyone's own files, never a user's folder); a sidecar
that cannot be written or read is simply computed again. :func:`alc_fiftyone.clean_files`
keeps a sidecar as long as its mask is kept and removes it with it.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np

from .files import alc_dir, write_bytes_atomic

_MARK = ".alc-"
_KIND = re.compile(r"^[A-Za-z0-9_-]+$")


def sidecar_path(mask_path: str | os.PathLike, kind: str) -> Path:
    """The sidecar of ``kind`` (letters, digits, ``-`` and ``_``) beside ``mask_path``."""
    if not _KIND.match(kind):
        raise ValueError(f"a sidecar kind is letters, digits, '-' and '_', got {kind!r}")
    mask = Path(mask_path)
    return mask.with_name(f"{mask.name}{_MARK}{kind}.npz")


def sidecar_owner(path: str | os.PathLike) -> Path | None:
    """The mask a sidecar file belongs to, or None when ``path`` is not a sidecar."""
    path = Path(path)
    if path.suffix != ".npz" or _MARK not in path.name:
        return None
    return path.with_name(path.name.rsplit(_MARK, 1)[0])


def _stamp(path) -> list[int]:
    st = os.stat(path)
    return [int(st.st_size), int(st.st_mtime_ns)]


def _stamps(mask_path, sources) -> np.ndarray:
    out = _stamp(mask_path)
    for src in sources:
        out += _stamp(src)
    return np.asarray(out, dtype=np.int64)


def writable(mask_path) -> bool:
    """Whether sidecars are kept for this mask: a file under ``ALC_FIFTYONE_DIR``."""
    try:
        return Path(os.path.realpath(mask_path)).is_relative_to(alc_dir().resolve())
    except (OSError, ValueError):
        return False


def read_sidecar(mask_path, kind: str, sources=()) -> dict[str, np.ndarray] | None:
    """The arrays of the sidecar of ``kind`` beside ``mask_path``, or None when there is none
    or it no longer matches the mask or the ``sources`` (e.g. the image) it was made from."""
    path = sidecar_path(mask_path, kind)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        stamp = arrays.pop("__stamp__", None)
        if stamp is None or not np.array_equal(stamp, _stamps(mask_path, sources)):
            return None
        return arrays
    except (OSError, ValueError, KeyError, EOFError):
        return None


def write_sidecar(mask_path, kind: str, arrays: dict[str, np.ndarray], sources=()) -> bool:
    """Write the sidecar of ``kind`` beside ``mask_path`` (atomically), recording the mask's
    and the ``sources``' size and modification time. Returns whether it was written (masks
    outside ``ALC_FIFTYONE_DIR`` get none; a failed write is not an error)."""
    if not writable(mask_path):
        return False
    try:
        buf = io.BytesIO()
        np.savez(buf, __stamp__=_stamps(mask_path, sources), **arrays)
        write_bytes_atomic(buf.getvalue(), sidecar_path(mask_path, kind))
        return True
    except OSError:
        return False
