"""Pipelines: items through a chain of stages, each with its own pool.

``import antflow`` does not load this package; ``from antflow.pipeline
import Pipeline, Stage`` does.
"""

from ._journal import Journal, JournalError, JournalSummary, RecordedError
from ._pipeline import Pipeline
from ._results import Completed, Failed, StageEvent
from ._run import PipelineRun
from ._stage import Stage
from ._statistics import PipelineStatistics, StageStatistics
from ._task_events import StageTaskEvent

__all__ = [
    "Completed",
    "Failed",
    "Journal",
    "JournalError",
    "JournalSummary",
    "Pipeline",
    "PipelineRun",
    "PipelineStatistics",
    "RecordedError",
    "Stage",
    "StageEvent",
    "StageStatistics",
    "StageTaskEvent",
]

for _public in (
    Completed,
    Failed,
    Journal,
    JournalError,
    JournalSummary,
    Pipeline,
    PipelineRun,
    PipelineStatistics,
    RecordedError,
    Stage,
    StageEvent,
    StageStatistics,
    StageTaskEvent,
):
    _public.__module__ = __name__
del _public
