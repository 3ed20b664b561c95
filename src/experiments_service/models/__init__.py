"""All ORM classes, importable from one place (migrations and relationships need that)."""

from experiments_service.models.approvals import ActivityLog, Approval, ApprovalPolicy, ChangeRequest
from experiments_service.models.base import Base, utcnow
from experiments_service.models.core import PersonalAPIKey, Project, ProjectMember, User
from experiments_service.models.events import Event, EventDefinition, Person
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

__all__ = [
    "ActivityLog",
    "Approval",
    "ApprovalPolicy",
    "Base",
    "ChangeRequest",
    "Event",
    "EventDefinition",
    "Experiment",
    "ExperimentHoldout",
    "ExperimentMetricResult",
    "ExperimentSavedMetric",
    "ExperimentStatus",
    "ExperimentTimeseriesRecalculation",
    "ExperimentToSavedMetric",
    "FeatureFlag",
    "FlagDefinitionsVersion",
    "GroupTypeMapping",
    "HashKeyOverride",
    "Person",
    "PersonalAPIKey",
    "Project",
    "ProjectMember",
    "ResultsEntityValue",
    "ResultsMaterialization",
    "User",
    "utcnow",
]
