"""Copies of an experiment: a draft duplicate in the same project, or a copy into another project.

A copy goes through the regular create path (validation, flag link or creation, activity), so it
behaves exactly like an experiment created by hand from the source's settings. Metric uuids are
regenerated so the copy has its own results; dates, archive state and conclusion start afresh.
"""

import copy
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.auth.repository import AuthRepository
from experiments_service.errors import CustomBodyError, ValidationError, validation_error_from_pydantic
from experiments_service.experiments import metrics as metric_rules
from experiments_service.experiments.auxiliary_repository import AuxiliaryRepository
from experiments_service.experiments.schemas import ExperimentCreate
from experiments_service.experiments.service import ExperimentService
from experiments_service.flags.service import FlagService
from experiments_service.flags.validation import variants_of
from experiments_service.models import Experiment, FeatureFlag, PersonalAPIKey, User

MAX_NAME_LENGTH = 400
LEGACY_REFUSAL = {"detail": "Duplication is not supported for experiments using legacy metrics."}
TARGET_NOT_FOUND = {"detail": "Target team not found."}
TARGET_NOT_WRITABLE = {"detail": "You do not have write access to the target project."}


class DuplicateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    feature_flag_key: str | None = None
    name: str | None = None


class CopyToProjectRequest(DuplicateRequest):
    target_team_id: int


class ExperimentCopier:
    """Builds a copy of one experiment of `project_id` into that project or another one."""

    def __init__(self, session: AsyncSession, project_id: int, actor: User):
        self.session = session
        self.project_id = project_id
        self.actor = actor
        self.source_service = ExperimentService(session, project_id, actor)

    async def duplicate(self, experiment_id: int, body: DuplicateRequest) -> tuple[ExperimentService, Experiment]:
        """A draft copy in the same project, sharing the source's flag unless another key is given."""
        source, flag, links = await self._source(experiment_id)
        experiment = await self._copy(source, flag, links, self.project_id, body, same_project=True)
        return self.source_service, experiment

    async def copy_to_project(
        self, experiment_id: int, body: CopyToProjectRequest, key: PersonalAPIKey
    ) -> tuple[ExperimentService, Experiment]:
        """A draft copy in another project the key may write; saved metrics and holdout stay behind."""
        source, flag, links = await self._source(experiment_id)
        await self._check_target(body.target_team_id, key)
        experiment = await self._copy(source, flag, links, body.target_team_id, body, same_project=False)
        return ExperimentService(self.session, body.target_team_id, self.actor), experiment

    async def _source(self, experiment_id: int) -> tuple[Experiment, FeatureFlag, list[tuple[Any, Any]]]:
        source = await self.source_service.get(experiment_id)
        flag = (await self.source_service.flags.by_ids([source.feature_flag_id]))[source.feature_flag_id]
        links = (await self.source_service.repo.saved_metric_links([source.id]))[source.id]
        inline = list(source.metrics or []) + list(source.metrics_secondary or [])
        if any(metric_rules.is_legacy_metric(m) for m in inline) or any(
            metric_rules.is_legacy_metric(saved.query) for _, saved in links
        ):
            raise CustomBodyError(400, LEGACY_REFUSAL)
        return source, flag, links

    async def _check_target(self, target_id: int, key: PersonalAPIKey) -> None:
        """The target must exist (404) and the key's user must be a member the key is scoped to (403)."""
        found = await AuthRepository(self.session).resolve_access(key.secure_value, target_id)
        if found is None or found[2] is None:
            raise CustomBodyError(404, TARGET_NOT_FOUND)
        scoped_teams = getattr(key, "scoped_teams", None)
        if not found[3] or (scoped_teams and target_id not in scoped_teams):
            raise CustomBodyError(403, TARGET_NOT_WRITABLE)

    async def _copy(
        self,
        source: Experiment,
        source_flag: FeatureFlag,
        links: list[tuple[Any, Any]],
        target_id: int,
        body: DuplicateRequest,
        *,
        same_project: bool,
    ) -> Experiment:
        if body.feature_flag_key is not None and not body.feature_flag_key.strip():
            raise ValidationError("This field may not be blank.", code="blank", attr="feature_flag_key")
        flag_key = body.feature_flag_key or source_flag.key
        name = body.name or await self._free_copy_name(source.name, target_id)
        target_flags = FlagService(self.session, target_id, self.actor)
        flag = await target_flags.live_by_key(flag_key)
        if flag is None:
            filters = copy.deepcopy(source_flag.filters or {})
            if not same_project:
                filters["holdout"] = None
            flag = await target_flags.create_flag(
                key=flag_key,
                name=f"Feature Flag for Experiment {name}",
                filters=filters,
                active=False,
                ensure_experience_continuity=bool(source_flag.ensure_experience_continuity),
                creation_context="experiments",
            )
        payload = self._payload(source, flag, name, links if same_project else [], same_project=same_project)
        try:
            data = ExperimentCreate.model_validate(payload)
        except PydanticValidationError as error:
            raise validation_error_from_pydantic(list(error.errors())) from None
        return await ExperimentService(self.session, target_id, self.actor).create(data)

    async def _free_copy_name(self, source_name: str, project_id: int) -> str:
        """`X (Copy)`, else the first free `X (Copy) 1`, `X (Copy) 2`, … (X shortened to fit 400 characters)."""
        base = f"{source_name[:MAX_NAME_LENGTH - len(' (Copy) 99999')]} (Copy)"
        taken = await AuxiliaryRepository(self.session, project_id).experiment_names_like(base)
        if base not in taken:
            return base
        number = 1
        while f"{base} {number}" in taken:
            number += 1
        return f"{base} {number}"

    @staticmethod
    def _payload(
        source: Experiment, flag: FeatureFlag, name: str, links: list[tuple[Any, Any]], *, same_project: bool
    ) -> dict[str, Any]:
        renamed: dict[str, str] = {}

        def fresh(metrics: list[Any] | None) -> list[Any]:
            copies = []
            for metric in metrics or []:
                metric = {k: v for k, v in copy.deepcopy(metric).items() if k != "fingerprint"}
                new_uuid = str(uuid.uuid4())
                if metric.get("uuid"):
                    renamed[metric["uuid"]] = new_uuid
                copies.append({**metric, "uuid": new_uuid})
            return copies

        def reordered(ordering: list[Any] | None) -> list[Any] | None:
            return None if ordering is None else [renamed.get(item, item) for item in ordering]

        parameters = copy.deepcopy(source.parameters)
        if isinstance(parameters, dict) or flag.id != source.feature_flag_id:
            # The copy's variants are its flag's (the source's flag, or the one named by key).
            parameters = {**(parameters or {}), "feature_flag_variants": copy.deepcopy(variants_of(flag.filters or {}))}
        payload: dict[str, Any] = {
            "name": name,
            "description": source.description,
            "type": source.type,
            "feature_flag_key": flag.key,
            "parameters": parameters,
            "filters": copy.deepcopy(source.filters),
            "secondary_metrics": copy.deepcopy(source.secondary_metrics),
            "metrics": fresh(source.metrics),
            "metrics_secondary": fresh(source.metrics_secondary),
            "stats_config": copy.deepcopy(source.stats_config),
            "exposure_criteria": copy.deepcopy(source.exposure_criteria),
            "scheduling_config": copy.deepcopy(source.scheduling_config),
            "only_count_matured_users": source.only_count_matured_users,
            # The source's metrics were checked when it was saved; a copy need not see the events again.
            "allow_unknown_events": True,
        }
        payload["primary_metrics_ordered_uuids"] = reordered(source.primary_metrics_ordered_uuids)
        payload["secondary_metrics_ordered_uuids"] = reordered(source.secondary_metrics_ordered_uuids)
        if same_project:
            payload["holdout_id"] = source.holdout_id
            if links:
                payload["saved_metrics_ids"] = [
                    {"id": link.saved_metric_id, "metadata": copy.deepcopy(link.metadata_)} for link, _ in links
                ]
        return payload

