"""The plugin's operators, registered by the root ``__init__.py``.

Every name here must also be listed under ``operators:`` in ``fiftyone.yml``.
"""

from .audit import AuditReport
from .export import ExportMasks, SaveRevisedVersion
from .rank import RankSuperpixels
from .sam import ComputeSamSuperpixels, GeneratePseudoLabels
from .shards import MergeRanking
from .simulate import Simulate
from .superpixels import ComputeSuperpixels

OPERATORS = [
    ComputeSuperpixels,
    RankSuperpixels,
    Simulate,
    ExportMasks,
    SaveRevisedVersion,
    GeneratePseudoLabels,
    ComputeSamSuperpixels,
    MergeRanking,
    AuditReport,
]
