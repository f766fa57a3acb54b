"""FiftyOne plugin entry point: ``register(p)`` registers the operators and panels.

FiftyOne executes this file as a package (``fiftyone.plugins.orgs.alc.active_label_correction``)
whose search path is this folder, and then calls ``register``, which imports ``operators/`` and
``panels/`` relatively. Nothing else happens at import: pytest also imports this file (the
repository root is a package to it), not necessarily as part of a package.

The library ``alc_fiftyone`` is imported only when an operator runs; when it is not installed
(the repository is only linked into the plugins folder), it is found beside this file.
"""

import importlib.util
import os
import sys

if importlib.util.find_spec("alc_fiftyone") is None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def register(p):
    from .operators import OPERATORS
    from .panels import PANELS

    for cls in OPERATORS + PANELS:
        p.register(cls)
