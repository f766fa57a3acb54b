"""The plugin's panels (``foo.Panel`` classes), registered by the root ``__init__.py``."""

PANELS = []
