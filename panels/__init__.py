"""The plugin's panels (``foo.Panel`` classes), registered by the root ``__init__.py``.

Every name here must also be listed under ``panels:`` in ``fiftyone.yml``.
"""

from .review import ReviewPanel

PANELS = [ReviewPanel]
