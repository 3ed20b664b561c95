"""All ORM classes, importable from one place (migrations and relationships need that)."""

from experiments_service.models.approvals import ActivityLog, Approval, ApprovalPolicy, ChangeRequest
from experiments_service.models.base import Base, utcnow
from experiments_service.models.cohorts import Cohort, CohortStaticMember
from experiments_service.models.core import PersonalAPIKey, Project, ProjectMember, RateLimitCounter, User
from experiments_service.models.events import Event, EventDefinition, Person, PersonDistinctId
from experiments_service.models.experiments import (
    Experiment,
    ExperimentHoldout,
    ExperimentMetricResult,
    ExperimentSavedMetric,
    ExperimentStatus,
    ExperimentTimeseriesRecalculation,
    ExperimentToSavedMetric,
    ResultsEntityValue,
    ResultsMaterialization,
)
from experiments_service.models.flags import FeatureFlag, FlagDefinitionsVersion, GroupTypeMapping, HashKeyOverride
from experiments_service.models.tags import ExperimentTag, Tag

__all__ = [
    "ActivityLog",
    "Approval",
    "ApprovalPolicy",
    "Base",
    "ChangeRequest",
    "Cohort",
    "CohortStaticMember",
    "Event",
    "EventDefinition",
    "Experiment",
    "ExperimentHoldout",
    "ExperimentMetricResult",
    "ExperimentSavedMetric",
    "ExperimentStatus",
    "ExperimentTag",
    "ExperimentTimeseriesRecalculation",
    "ExperimentToSavedMetric",
    "FeatureFlag",
    "FlagDefinitionsVersion",
    "GroupTypeMapping",
    "HashKeyOverride",
    "Person",
    "PersonDistinctId",
    "PersonalAPIKey",
    "Project",
    "ProjectMember",
    "RateLimitCounter",
    "ResultsEntityValue",
    "ResultsMaterialization",
    "Tag",
    "User",
    "utcnow",
]
