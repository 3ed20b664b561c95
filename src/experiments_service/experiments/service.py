"""Business steps of the Experiments API: create, update, list and every lifecycle action.

Nothing here commits: the request's route commits once the handler returns, so an action and
its flag change are one transaction, and a late failure leaves neither flag nor experiment.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.errors import NotFound, ValidationError
from experiments_service.experiments import metrics as metric_rules
from experiments_service.experiments.lifecycle import fire, leaves_from, record_change, snapshot
from experiments_service.experiments.repository import ExperimentListQuery, ExperimentRepository
from experiments_service.experiments.schemas import (
    EndRequest,
    ExperimentCreate,
    ExperimentOut,
    ExperimentToSavedMetricOut,
    ExperimentUpdate,
    HoldoutOut,
    ShipVariantRequest,
)
from experiments_service.experiments.validation import (
    baseline_key,
    validate_baseline,
    validate_exposure_criteria,
    validate_parameters,
    validate_saved_metrics_payload,
    validate_stats_config,
)
from experiments_service.flags.rewrite import (
    experiment_flag_filters,
    holdout_flag_filter,
    new_experiment_flag_filters,
    with_holdout,
)
from experiments_service.flags.service import FlagService
from experiments_service.flags.validation import flag_variant_problem, variant_keys, variants_of
from experiments_service.models import (
    Experiment,
    ExperimentHoldout,
    ExperimentSavedMetric,
    ExperimentStatus,
    FeatureFlag,
    User,
    utcnow,
)

# Keys a PATCH may carry besides these is refused with "Can't update keys: ... on Experiment".
UPDATABLE_FIELDS = frozenset(
    {
        "name", "description", "start_date", "end_date", "filters", "parameters", "archived", "deleted",
        "secondary_metrics", "holdout_id", "exposure_criteria", "metrics", "metrics_secondary", "stats_config",
        "scheduling_config", "conclusion", "conclusion_comment", "primary_metrics_ordered_uuids",
        "secondary_metrics_ordered_uuids", "saved_metrics_ids", "only_count_matured_users",
        "allow_unknown_events", "update_feature_flag_params", "feature_flag_key",
    }
)
LEGACY_UPDATABLE_FIELDS = frozenset({"name", "description", "end_date", "deleted"})
WRITE_ONLY_FIELDS = frozenset({"allow_unknown_events", "update_feature_flag_params", "feature_flag_key"})
# Fields copied from a PATCH body onto the row as they are.
PLAIN_FIELDS = (
    "name", "description", "filters", "archived", "deleted", "secondary_metrics", "scheduling_config",
    "conclusion", "conclusion_comment", "only_count_matured_users",
)
LOGGED_FIELDS = [
    "name", "description", "start_date", "end_date", "filters", "parameters", "archived", "deleted",
    "secondary_metrics", "holdout_id", "exposure_criteria", "metrics", "metrics_secondary", "stats_config",
    "scheduling_config", "conclusion", "conclusion_comment", "primary_metrics_ordered_uuids",
    "secondary_metrics_ordered_uuids", "only_count_matured_users", "status",
]
LIST_ORDER_FIELDS = ("created_at", "created_by", "updated_at", "name", "start_date", "end_date", "duration", "status")
STATUS_FILTERS = {**{status.value: status for status in ExperimentStatus}, "complete": ExperimentStatus.STOPPED}


def saved_metric_type(metadata: dict[str, Any] | None) -> str:
    return (metadata or {}).get("type") or "primary"


@dataclass
class PatchPlan:
    """What one PATCH changes, decided and validated before anything is written."""

    sent: set[str]
    data: ExperimentUpdate
    deleted_toggled: bool
    stats_config: dict[str, Any] | None
    parameters: dict[str, Any] | None
    exposure_criteria: dict[str, Any] | None
    primary: list[dict[str, Any]] = field(default_factory=list)
    secondary: list[dict[str, Any]] = field(default_factory=list)
    saved: dict[int, ExperimentSavedMetric] = field(default_factory=dict)
    saved_pairs: list[tuple[int, dict[str, Any] | None]] = field(default_factory=list)
    # New flag filters (None: the flag is left alone) and the variants the flag will serve.
    flag_filters: dict[str, Any] | None = None
    variants: list[dict[str, Any]] = field(default_factory=list)


class ExperimentService:
    def __init__(self, session: AsyncSession, project_id: int, actor: User | None):
        self.session = session
        self.project_id = project_id
        self.actor = actor
        self.repo = ExperimentRepository(session, project_id)
        self.flags = FlagService(session, project_id, actor)

    # --- reading ---------------------------------------------------------------------------

    async def get(self, experiment_id: int) -> Experiment:
        experiment = await self.repo.get(experiment_id)
        if experiment is None:
            raise NotFound()
        return experiment

    async def get_for_write(self, experiment_id: int, *, include_deleted: bool = False) -> tuple[Experiment, FeatureFlag]:
        """Load and lock the flag, then the experiment (one writer at a time on PostgreSQL).

        Flag before experiment: the same order as a direct flag change that then moves its
        experiments, so the two never deadlock.
        """
        flag = await self.flags.of_experiment_for_write(experiment_id, include_deleted=include_deleted)
        experiment = (
            await self.repo.get(experiment_id, include_deleted=include_deleted, for_update=True) if flag else None
        )
        if experiment is None:
            raise NotFound()
        return experiment, flag

    async def page(self, params: ExperimentListQuery) -> tuple[int, list[ExperimentOut]]:
        count, experiments = await self.repo.page(params)
        return count, await self.render_many(experiments)

    async def render(self, experiment: Experiment) -> ExperimentOut:
        return (await self.render_many([experiment]))[0]

    async def render_many(self, experiments: Sequence[Experiment]) -> list[ExperimentOut]:
        """Render rows with their flags, holdouts, creators and saved metrics (a few batched queries)."""
        flags = await self.flags.by_ids(e.feature_flag_id for e in experiments)
        holdouts = await self.repo.holdouts(e.holdout_id for e in experiments)
        links = await self.repo.saved_metric_links(e.id for e in experiments)
        users = await self.repo.users(
            [e.created_by_id for e in experiments] + [h.created_by_id for h in holdouts.values()]
        )
        rendered = []
        for experiment in experiments:
            holdout = holdouts.get(experiment.holdout_id) if experiment.holdout_id else None
            saved = [
                ExperimentToSavedMetricOut.of(link, metric, self._with_fingerprint(metric.query or {}, experiment))
                for link, metric in links.get(experiment.id, [])
            ]
            rendered.append(
                ExperimentOut.of(
                    experiment,
                    flag=flags[experiment.feature_flag_id],
                    holdout=HoldoutOut.of(holdout, users.get(holdout.created_by_id)) if holdout else None,
                    saved_metrics=saved,
                    created_by=users.get(experiment.created_by_id),
                )
            )
        return rendered

    # --- create ----------------------------------------------------------------------------

    async def create(self, data: ExperimentCreate) -> Experiment:
        """Validate everything, create or link the flag, then the row, links and status."""
        sent = data.model_fields_set
        self._check_dates(data, sent)
        stats_config = validate_stats_config(data.stats_config)
        baseline = baseline_key(stats_config)
        parameters = validate_parameters(data.parameters, baseline=baseline)
        exposure_criteria = validate_exposure_criteria(data.exposure_criteria)
        primary = metric_rules.validate_metric_list(data.metrics, "metrics")
        secondary = metric_rules.validate_metric_list(data.metrics_secondary, "metrics_secondary")
        saved_pairs = validate_saved_metrics_payload(data.saved_metrics_ids)
        saved = await self._load_saved_metrics(saved_pairs)
        primary, secondary = metric_rules.assign_uuids(primary, secondary, self._saved_query_uuids(saved))
        await self._check_metric_references(primary + secondary, allow_unknown_events=data.allow_unknown_events)
        holdout = await self._load_holdout(data.holdout_id)

        flag = await self.flags.live_by_key(data.feature_flag_key)
        if flag is not None:
            problem = flag_variant_problem(variants_of(flag.filters or {}))
            if problem:
                raise ValidationError(problem)
            # The flag now backs an experiment (`has_experiment` in /flags): refresh the caches.
            self.flags.mark_definitions_changed()
        else:
            flag = await self._create_flag(data, parameters or {}, holdout)
        flag_variants = variants_of(flag.filters or {})
        validate_baseline(stats_config, variant_keys(flag_variants))

        experiment = Experiment(
            project_id=self.project_id,
            name=data.name,
            description=data.description if data.description is not None else "",
            filters=data.filters if data.filters is not None else {},
            parameters=parameters,
            secondary_metrics=data.secondary_metrics if data.secondary_metrics is not None else [],
            created_by_id=self.actor.id if self.actor else None,
            feature_flag_id=flag.id,
            holdout_id=holdout.id if holdout else None,
            start_date=data.start_date,
            end_date=data.end_date,
            archived=data.archived,
            deleted=data.deleted,
            type=data.type,
            variants=self._web_variants(data.type, flag_variants),
            exposure_criteria=exposure_criteria,
            metrics=primary,
            metrics_secondary=secondary,
            stats_config=stats_config,
            scheduling_config=data.scheduling_config,
            only_count_matured_users=bool(data.only_count_matured_users),
            conclusion=data.conclusion,
            conclusion_comment=data.conclusion_comment,
        )
        self.repo.add(experiment)
        await self.session.flush()
        if saved_pairs:
            await self.repo.replace_saved_metric_links(experiment.id, saved_pairs)
        self._sync_ordering(
            experiment,
            saved,
            saved_pairs or [],
            requested_primary=data.primary_metrics_ordered_uuids if "metrics" in sent else None,
            requested_secondary=data.secondary_metrics_ordered_uuids if "metrics_secondary" in sent else None,
            primary_sent="metrics" in sent,
            secondary_sent="metrics_secondary" in sent,
        )
        if experiment.start_date is not None:
            await fire("launch", experiment, flag)
            if not flag.active:
                await fire("pause", experiment, flag)
            if experiment.end_date is not None:
                await fire("end", experiment, flag)
        self._refresh_fingerprints(experiment)
        await self.session.flush()
        record_change(self.session, experiment, self.actor, "created", {}, LOGGED_FIELDS)
        return experiment

    async def _create_flag(
        self, data: ExperimentCreate, parameters: dict[str, Any], holdout: ExperimentHoldout | None
    ) -> FeatureFlag:
        return await self.flags.create_flag(
            key=data.feature_flag_key,
            name=f"Feature Flag for Experiment {data.name}",
            filters=new_experiment_flag_filters(parameters, holdout),
            active=data.start_date is not None,
            ensure_experience_continuity=bool(parameters.get("ensure_experience_continuity", False)),
            creation_context="experiments",
        )

    # --- update ----------------------------------------------------------------------------

    async def update(self, experiment: Experiment, flag: FeatureFlag, data: ExperimentUpdate) -> Experiment:
        """PATCH: plan (validate all of it, write nothing), then apply: flag, row, metrics, status."""
        plan = await self.plan_update(experiment, flag, data)
        before = snapshot(experiment, LOGGED_FIELDS)
        if plan.deleted_toggled:
            self.flags.mark_definitions_changed()  # `has_experiment` of its flag may change
        if plan.flag_filters is not None:
            await self.flags.update_flag(flag, {"filters": plan.flag_filters})
        self._apply_fields(experiment, plan)
        await self._apply_metrics(experiment, plan)
        await self._move_by_dates(experiment, flag, data, plan.sent)
        self._refresh_fingerprints(experiment)
        await self.session.flush()
        record_change(self.session, experiment, self.actor, "updated", before)
        return experiment

    async def plan_update(self, experiment: Experiment, flag: FeatureFlag, data: ExperimentUpdate) -> PatchPlan:
        """Decide what a PATCH changes, raising the reference 400 for anything refused."""
        sent = set(data.model_fields_set)
        links = (await self.repo.saved_metric_links([experiment.id]))[experiment.id]
        self._check_patchable(experiment, flag, data, sent, links)
        stats_config = validate_stats_config(data.stats_config) if "stats_config" in sent else experiment.stats_config
        plan = PatchPlan(
            sent=sent,
            data=data,
            deleted_toggled="deleted" in sent and bool(data.deleted) != experiment.deleted,
            stats_config=stats_config,
            parameters=(
                validate_parameters(data.parameters, baseline=baseline_key(stats_config)) if "parameters" in sent else None
            ),
            exposure_criteria=(
                validate_exposure_criteria(data.exposure_criteria) if "exposure_criteria" in sent else None
            ),
        )
        await self._plan_metrics(experiment, plan, links)
        await self._plan_flag(experiment, flag, plan)
        return plan

    def _check_patchable(
        self, experiment: Experiment, flag: FeatureFlag, data: ExperimentUpdate, sent: set[str],
        links: list[tuple[Any, ExperimentSavedMetric]],
    ) -> None:
        """Refuse keys a PATCH may not send (in general, on legacy experiments, for a restore)."""
        refused = sorted(sent - UPDATABLE_FIELDS)
        if "feature_flag_key" in sent and data.feature_flag_key != flag.key:
            refused = sorted([*refused, "get_feature_flag_key"])
        if refused:
            raise ValidationError(f"Can't update keys: {', '.join(refused)} on Experiment")
        if self._is_legacy(experiment, links):
            blocked = sorted(sent - LEGACY_UPDATABLE_FIELDS - WRITE_ONLY_FIELDS)
            if blocked:
                raise ValidationError(
                    "This experiment uses legacy metric formats and can only have its name, description, "
                    f"or end_date updated. Cannot update: {', '.join(blocked)}"
                )
        if isinstance(data.filters, dict) and data.filters.get("properties"):
            raise ValidationError("Experiments do not support global filter properties")
        if experiment.deleted and "deleted" in sent and not data.deleted and flag.deleted:
            raise ValidationError(
                "Cannot restore experiment: the linked feature flag has been deleted. "
                "Restore the feature flag first, then restore the experiment."
            )
        self._check_dates(data, sent)

    async def _plan_metrics(
        self, experiment: Experiment, plan: PatchPlan, links: list[tuple[Any, ExperimentSavedMetric]]
    ) -> None:
        """The metric lists and saved-metric links the experiment will have (uuids assigned, references checked)."""
        sent, data = plan.sent, plan.data
        primary = (
            metric_rules.validate_metric_list(data.metrics, "metrics")
            if "metrics" in sent else list(experiment.metrics or [])
        )
        secondary = (
            metric_rules.validate_metric_list(data.metrics_secondary, "metrics_secondary")
            if "metrics_secondary" in sent else list(experiment.metrics_secondary or [])
        )
        saved_pairs = validate_saved_metrics_payload(data.saved_metrics_ids) if "saved_metrics_ids" in sent else None
        if saved_pairs is not None:
            plan.saved = await self._load_saved_metrics(saved_pairs)
            plan.saved_pairs = saved_pairs
        else:
            plan.saved = {metric.id: metric for _, metric in links}
            plan.saved_pairs = [(link.saved_metric_id, link.metadata_) for link, _ in links]
        plan.primary, plan.secondary = metric_rules.assign_uuids(
            primary, secondary, self._saved_query_uuids(plan.saved)
        )
        checked = (plan.primary if "metrics" in sent else []) + (plan.secondary if "metrics_secondary" in sent else [])
        await self._check_metric_references(checked, allow_unknown_events=data.allow_unknown_events)

    async def _plan_flag(self, experiment: Experiment, flag: FeatureFlag, plan: PatchPlan) -> None:
        """The flag filters the PATCH implies (variants, rollout, payloads, holdout), or None to leave it."""
        sent, data, parameters = plan.sent, plan.data, plan.parameters
        holdout_changed = "holdout_id" in sent and data.holdout_id != experiment.holdout_id
        holdout = await self._load_holdout(data.holdout_id) if holdout_changed else None
        is_draft = experiment.status == ExperimentStatus.DRAFT
        flag_variants = variants_of(flag.filters or {})
        if not is_draft and parameters and "feature_flag_variants" in parameters:
            self._check_same_variant_keys(parameters["feature_flag_variants"] or [], flag_variants)
        if not is_draft and holdout_changed:
            raise ValidationError("Can't update holdout on running Experiment")
        if parameters and (is_draft or data.update_feature_flag_params):
            current_holdout = holdout if holdout_changed else await self._load_holdout(experiment.holdout_id)
            plan.flag_filters = experiment_flag_filters(flag.filters or {}, parameters, current_holdout)
        elif holdout_changed:
            plan.flag_filters = with_holdout(flag.filters or {}, holdout_flag_filter(holdout))
        plan.variants = variants_of(plan.flag_filters) if plan.flag_filters is not None else flag_variants
        if "stats_config" in sent or plan.flag_filters is not None:
            validate_baseline(plan.stats_config, variant_keys(plan.variants))

    def _apply_fields(self, experiment: Experiment, plan: PatchPlan) -> None:
        sent, data = plan.sent, plan.data
        for name in PLAIN_FIELDS:
            if name in sent:
                setattr(experiment, name, getattr(data, name))
        experiment.filters = experiment.filters or {}
        experiment.only_count_matured_users = bool(experiment.only_count_matured_users)
        if "parameters" in sent:
            experiment.parameters = plan.parameters
        if "stats_config" in sent:
            experiment.stats_config = plan.stats_config
        if "exposure_criteria" in sent:
            experiment.exposure_criteria = plan.exposure_criteria
        if "holdout_id" in sent:
            experiment.holdout_id = data.holdout_id
        if experiment.type == "web" and plan.flag_filters is not None:
            experiment.variants = self._web_variants("web", plan.variants)

    async def _apply_metrics(self, experiment: Experiment, plan: PatchPlan) -> None:
        sent, data = plan.sent, plan.data
        experiment.metrics, experiment.metrics_secondary = plan.primary, plan.secondary
        if "saved_metrics_ids" in sent:
            await self.repo.replace_saved_metric_links(experiment.id, plan.saved_pairs)
        self._sync_ordering(
            experiment,
            plan.saved,
            plan.saved_pairs,
            requested_primary=(data.primary_metrics_ordered_uuids if "primary_metrics_ordered_uuids" in sent
                               else experiment.primary_metrics_ordered_uuids),
            requested_secondary=(data.secondary_metrics_ordered_uuids if "secondary_metrics_ordered_uuids" in sent
                                 else experiment.secondary_metrics_ordered_uuids),
            primary_sent="metrics" in sent or "primary_metrics_ordered_uuids" in sent,
            secondary_sent="metrics_secondary" in sent or "secondary_metrics_ordered_uuids" in sent,
        )

    async def _move_by_dates(
        self, experiment: Experiment, flag: FeatureFlag, data: ExperimentUpdate, sent: set[str]
    ) -> None:
        """A PATCHed `start_date` launches a draft (or, null, resets); a PATCHed `end_date` ends it.

        The machine's sources decide which trigger applies; a draft keeps an `end_date` unmoved.
        """
        if "start_date" in sent:
            trigger, activity = ("launch", "launched") if data.start_date is not None else ("reset", "reset")
            if leaves_from(trigger, experiment.status):
                before = snapshot(experiment, ["status", "start_date"])
                effects = (lambda: self._activate(experiment, flag, True)) if trigger == "launch" else None
                await fire(trigger, experiment, flag, effects=effects)
                record_change(self.session, experiment, self.actor, activity, before)
            experiment.start_date = data.start_date
        if "end_date" in sent:
            before = snapshot(experiment, ["status", "end_date"])
            experiment.end_date = data.end_date
            if data.end_date is not None and leaves_from("end", experiment.status):
                await fire("end", experiment, flag)
                record_change(self.session, experiment, self.actor, "ended", before)

    @staticmethod
    def _check_same_variant_keys(requested: list[dict[str, Any]], flag_variants: list[dict[str, Any]]) -> None:
        """After launch, variant percentages may change but the set of keys may not."""
        current = variant_keys(flag_variants)
        keys = variant_keys(requested)
        if len(keys) != len(current) or any(current.count(key) != 1 or keys.count(key) != 1 for key in keys):
            raise ValidationError("Can't update feature_flag_variants on Experiment")

    # --- lifecycle actions -------------------------------------------------------------------

    async def launch(self, experiment: Experiment, flag: FeatureFlag) -> Experiment:
        before = snapshot(experiment, ["status", "start_date"])
        await fire("launch", experiment, flag, effects=lambda: self._activate(experiment, flag, True))
        experiment.start_date = utcnow()
        self._refresh_fingerprints(experiment)
        return await self._logged(experiment, "launched", before)

    async def pause(self, experiment: Experiment, flag: FeatureFlag) -> Experiment:
        before = snapshot(experiment, ["status"])
        await fire("pause", experiment, flag, effects=lambda: self._activate(experiment, flag, False))
        return await self._logged(experiment, "paused", before)

    async def resume(self, experiment: Experiment, flag: FeatureFlag) -> Experiment:
        before = snapshot(experiment, ["status"])
        await fire("resume", experiment, flag, effects=lambda: self._activate(experiment, flag, True))
        return await self._logged(experiment, "resumed", before)

    async def end(self, experiment: Experiment, flag: FeatureFlag, body: EndRequest) -> Experiment:
        """End now; the conclusion becomes exactly what was sent (null when omitted)."""
        before = snapshot(experiment, ["status", "end_date", "conclusion", "conclusion_comment"])
        await fire("end", experiment, flag)
        experiment.end_date = utcnow()
        experiment.conclusion = body.conclusion
        experiment.conclusion_comment = body.conclusion_comment
        return await self._logged(experiment, "ended", before)

    async def ship_variant(self, experiment: Experiment, flag: FeatureFlag, body: ShipVariantRequest) -> Experiment:
        """Serve one variant to the experiment's users (or everyone), ending it if still running."""
        before = snapshot(experiment, ["status", "end_date", "conclusion", "conclusion_comment"])
        was_stopped = experiment.status == ExperimentStatus.STOPPED

        async def rewrite_flag() -> None:
            await self.flags.ship_variant(flag, body.variant_key, body.release_to_everyone, cause=experiment)

        await fire("ship_variant", experiment, flag, variant_key=body.variant_key, effects=rewrite_flag)
        if not was_stopped:
            experiment.end_date = utcnow()
        if "conclusion" in body.model_fields_set:
            experiment.conclusion = body.conclusion
        if "conclusion_comment" in body.model_fields_set:
            experiment.conclusion_comment = body.conclusion_comment
        return await self._logged(
            experiment, "variant_shipped", before,
            extra={"variant_key": body.variant_key, "release_to_everyone": body.release_to_everyone},
        )

    async def reset(self, experiment: Experiment, flag: FeatureFlag) -> Experiment:
        """Back to draft; the flag is left as it is."""
        before = snapshot(experiment, ["status", "start_date", "end_date", "archived", "conclusion",
                                       "conclusion_comment"])
        await fire("reset", experiment, flag)
        experiment.start_date = experiment.end_date = None
        experiment.archived = False
        experiment.conclusion = experiment.conclusion_comment = None
        return await self._logged(experiment, "reset", before)

    async def archive(self, experiment: Experiment, flag: FeatureFlag) -> Experiment:
        """Hide an ended experiment; the flag is left as it is."""
        before = snapshot(experiment, ["archived"])
        await fire("archive", experiment, flag)
        experiment.archived = True
        return await self._logged(experiment, "archived", before)

    async def unarchive(self, experiment: Experiment, flag: FeatureFlag) -> Experiment:
        before = snapshot(experiment, ["archived"])
        await fire("unarchive", experiment, flag)
        experiment.archived = False
        return await self._logged(experiment, "unarchived", before)

    async def _logged(
        self, experiment: Experiment, activity: str, before: dict[str, Any], extra: dict[str, Any] | None = None
    ) -> Experiment:
        await self.session.flush()
        record_change(self.session, experiment, self.actor, activity, before, extra=extra)
        return experiment

    async def _activate(self, experiment: Experiment, flag: FeatureFlag, active: bool) -> None:
        """Turn the flag on or off through the flag service (so the approval gate sees it)."""
        await self.flags.update_flag(flag, {"active": active}, cause=experiment)

    # --- shared checks -------------------------------------------------------------------------

    @staticmethod
    def _check_dates(data: ExperimentCreate | ExperimentUpdate, sent: set[str]) -> None:
        if "start_date" in sent and "end_date" in sent and data.start_date and data.end_date:
            if data.start_date >= data.end_date:
                raise ValidationError("End date must be after start date")

    async def _load_holdout(self, holdout_id: int | None) -> ExperimentHoldout | None:
        if holdout_id is None:
            return None
        holdout = await self.repo.holdout(holdout_id)
        if holdout is None:
            raise ValidationError(
                f'Invalid pk "{holdout_id}" - object does not exist.', code="does_not_exist", attr="holdout_id"
            )
        return holdout

    async def _load_saved_metrics(
        self, pairs: list[tuple[int, dict[str, Any] | None]] | None
    ) -> dict[int, ExperimentSavedMetric]:
        if not pairs:
            return {}
        found = await self.repo.saved_metrics(saved_metric_id for saved_metric_id, _ in pairs)
        if any(saved_metric_id not in found for saved_metric_id, _ in pairs):
            raise ValidationError(
                "Saved metric does not exist or does not belong to this project", attr="saved_metrics_ids"
            )
        return found

    @staticmethod
    def _saved_query_uuids(saved: dict[int, ExperimentSavedMetric]) -> list[str]:
        return [metric.query["uuid"] for metric in saved.values() if (metric.query or {}).get("uuid")]

    async def _check_metric_references(self, metrics: list[dict[str, Any]], *, allow_unknown_events: bool) -> None:
        """Actions must exist in this project; events must have been ingested (unless allowed)."""
        action_ids = metric_rules.referenced_action_ids(metrics)
        if action_ids:
            # No actions are defined in this service, so every referenced action is missing.
            raise ValidationError(
                f"Action(s) with ID {', '.join(str(i) for i in action_ids)} not found or deleted. "
                "Each ActionsNode must reference an existing action belonging to this project."
            )
        if allow_unknown_events:
            return
        names = metric_rules.referenced_event_names(metrics)
        known = await self.repo.known_event_names(names)
        missing = [name for name in names if name not in known]
        if missing:
            quoted = ", ".join(f"'{name}'" for name in missing)
            raise ValidationError(
                f"Event(s) {quoted} not found. Each EventsNode must reference an event this project has "
                "received; check the spelling, or send allow_unknown_events: true to use it anyway."
            )

    @staticmethod
    def _is_legacy(experiment: Experiment, links: list[tuple[Any, ExperimentSavedMetric]]) -> bool:
        inline = list(experiment.metrics or []) + list(experiment.metrics_secondary or [])
        return any(metric_rules.is_legacy_metric(m) for m in inline) or any(
            metric_rules.is_legacy_metric(saved.query) for _, saved in links
        )

    @staticmethod
    def _web_variants(experiment_type: str | None, variants: list[dict[str, Any]]) -> dict[str, Any]:
        if experiment_type != "web":
            return {}
        return {v.get("key"): {"rollout_percentage": v.get("rollout_percentage")} for v in variants if isinstance(v, dict)}

    def _sync_ordering(
        self,
        experiment: Experiment,
        saved: dict[int, ExperimentSavedMetric],
        saved_pairs: list[tuple[int, dict[str, Any] | None]],
        *,
        requested_primary: list[Any] | None,
        requested_secondary: list[Any] | None,
        primary_sent: bool,
        secondary_sent: bool,
    ) -> None:
        """Ordering arrays hold every metric uuid (inline and saved) exactly once, requested order first."""
        saved_uuids: dict[str, list[str]] = {"primary": [], "secondary": []}
        for saved_metric_id, metadata in saved_pairs:
            query_uuid = (saved[saved_metric_id].query or {}).get("uuid")
            if query_uuid:
                saved_uuids["primary" if saved_metric_type(metadata) != "secondary" else "secondary"].append(query_uuid)
        primary = [m["uuid"] for m in experiment.metrics or []] + saved_uuids["primary"]
        secondary = [m["uuid"] for m in experiment.metrics_secondary or []] + saved_uuids["secondary"]
        experiment.primary_metrics_ordered_uuids = metric_rules.ordered_uuids(
            requested_primary if requested_primary is not None else ([] if primary_sent else None), primary
        )
        experiment.secondary_metrics_ordered_uuids = metric_rules.ordered_uuids(
            requested_secondary if requested_secondary is not None else ([] if secondary_sent else None), secondary
        )

    def _fingerprint_context(self, experiment: Experiment) -> dict[str, Any]:
        return {
            "start_date": experiment.start_date,
            "stats_config": experiment.stats_config,
            "exposure_criteria": experiment.exposure_criteria,
            "only_count_matured_users": experiment.only_count_matured_users,
            "excluded_variants": (experiment.parameters or {}).get("excluded_variants"),
        }

    def _with_fingerprint(self, metric: dict[str, Any], experiment: Experiment) -> dict[str, Any]:
        return {**metric, "fingerprint": metric_rules.fingerprint(metric, **self._fingerprint_context(experiment))}

    def _refresh_fingerprints(self, experiment: Experiment) -> None:
        experiment.metrics = [self._with_fingerprint(m, experiment) for m in experiment.metrics or []]
        experiment.metrics_secondary = [
            self._with_fingerprint(m, experiment) for m in experiment.metrics_secondary or []
        ]


def parse_list_query(params: dict[str, str], *, limit: int, offset: int) -> ExperimentListQuery:
    """Validate the list endpoint's query string (reference messages; unknown statuses ignored)."""
    feature_flag_id = params.get("feature_flag_id")
    if feature_flag_id is not None:
        try:
            feature_flag_id = int(feature_flag_id)
        except ValueError:
            raise ValidationError("feature_flag_id must be an integer") from None
    order = params.get("order") or "-created_at"
    if order.lstrip("-") not in LIST_ORDER_FIELDS or order.startswith("--"):
        raise ValidationError(f"Invalid order field: '{order}'")
    return ExperimentListQuery(
        status=STATUS_FILTERS.get(params.get("status") or ""),
        archived=params.get("archived") == "true",
        created_by_ids=_ids(params.get("created_by_id")),
        feature_flag_id=feature_flag_id,
        search=params.get("search") or None,
        order=order,
        limit=limit,
        offset=offset,
    )


def _ids(raw: str | None) -> list[int] | None:
    """`created_by_id` as one id, a JSON list or a comma-separated list."""
    if not raw:
        return None
    parts = raw.strip().strip("[]").split(",")
    try:
        return [int(part.strip()) for part in parts if part.strip()]
    except ValueError:
        raise ValidationError("created_by_id must be an integer or a list of integers") from None

