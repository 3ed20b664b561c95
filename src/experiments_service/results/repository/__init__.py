"""All SQL of the results domain, by concern: dialect constructs, query specs, the results
repository and the recalculation job queue."""

from experiments_service.results.repository.jobs import ACTIVE_RECALCULATION_STATUSES, JobQueue
from experiments_service.results.repository.results import MAX_ENTITIES_REFRESHED, ResultsRepository
from experiments_service.results.repository.specs import (
    FLAG_CALLED_EVENT,
    MULTIPLE_VARIANTS,
    NUMERIC_OPERATORS,
    SUPPORTED_OPERATORS,
    EventSource,
    ExposureRules,
    MetricQuery,
    definition_key,
    relevant_event_names,
)

__all__ = [
    "ACTIVE_RECALCULATION_STATUSES",
    "FLAG_CALLED_EVENT",
    "MAX_ENTITIES_REFRESHED",
    "MULTIPLE_VARIANTS",
    "NUMERIC_OPERATORS",
    "SUPPORTED_OPERATORS",
    "EventSource",
    "ExposureRules",
    "JobQueue",
    "MetricQuery",
    "ResultsRepository",
    "definition_key",
    "relevant_event_names",
]
