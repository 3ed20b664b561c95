"""Business steps of results: read the experiment's definition, query aggregates, run the stats."""

import json
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.errors import NotFound, ValidationError
from experiments_service.experiments.repository import ExperimentRepository
from experiments_service.experiments.validation import baseline_key, stats_level
from experiments_service.flags.cohorts import cohort_id as cohort_reference
from experiments_service.flags.repository import FlagRepository
from experiments_service.models import Experiment, FeatureFlag
from experiments_service.observability.metrics import timed_results
from experiments_service.results import statistics
from experiments_service.results.analysis_repository import (
    AnalysisRepository,
    OutlierHandling,
    Retention,
    ValuesOutOfRange,
    metric_savepoint,
)
from experiments_service.results.repository import (
    MULTIPLE_VARIANTS,
    NUMERIC_OPERATORS,
    SUPPORTED_OPERATORS,
    EventSource,
    ExposureRules,
    MetricQuery,
    ResultsRepository,
)
from experiments_service.results.schemas import (
    BaselineResult,
    BayesianVariantResult,
    CupedOut,
    ExperimentResultsOut,
    FrequentistVariantResult,
    MetricResult,
    RequiresFlagImplementationOut,
    SampleRatioMismatchOut,
)

SUPPORTED_MATH = ("total", "sum", "avg", "min", "max", "unique_session", "dau")
WINDOW_UNIT_SECONDS = {
    "second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400,
}
NOT_STARTED = "Experiment has not been started yet"
CORRECTIONS = ("holm-bonferroni", "benjamini-hochberg")
DEFAULT_CUPED_LOOKBACK_DAYS, MIN_CUPED_LOOKBACK_DAYS, MAX_CUPED_LOOKBACK_DAYS = 14, 1, 30
RETENTION_START_HANDLING = ("first_seen", "last_seen")
VALUES_OUT_OF_RANGE = "Metric values are out of the floating-point range (a value or its square is too large to analyse)."


class MetricDefinitionError(ValueError):
    """The metric cannot be computed as defined (reported per metric, not as a failed request)."""


@dataclass(frozen=True)
class ExperimentMetric:
    """A metric of the experiment, wherever it is defined (inline or saved)."""

    definition: dict[str, Any]
    role: str
    saved_metric_id: int | None = None

    @property
    def uuid(self) -> str | None:
        return self.definition.get("uuid")

    @property
    def slot(self) -> str:
        """Where the metric's live per-entity values are stored (one set per metric)."""
        return f"saved:{self.saved_metric_id}" if self.saved_metric_id is not None else f"inline:{self.uuid}"


def _event_source(node: Any, where: str) -> EventSource:
    if not isinstance(node, dict):
        raise MetricDefinitionError(f"{where} must be an EventsNode object.")
    if node.get("kind", "EventsNode") != "EventsNode":
        raise MetricDefinitionError(f"{where}: only EventsNode sources are supported, got '{node.get('kind')}'.")
    math = node.get("math") or "total"
    if math not in SUPPORTED_MATH:
        raise MetricDefinitionError(f"{where}: math '{math}' is not supported (use one of {', '.join(SUPPORTED_MATH)}).")
    if math in ("sum", "avg", "min", "max") and not node.get("math_property"):
        raise MetricDefinitionError(f"{where}: math '{math}' requires math_property.")
    return EventSource(
        event=node.get("event"), math=math, math_property=node.get("math_property"),
        properties=property_filters(node.get("properties"), where),
    )


def property_filters(properties: Any, where: str) -> tuple[dict[str, Any], ...]:
    """Event-property filters this service can apply, or a MetricDefinitionError saying why not."""
    properties = properties or []
    if not isinstance(properties, list) or not all(isinstance(item, dict) for item in properties):
        raise MetricDefinitionError(f"{where}: properties must be a list of property filters.")
    for item in properties:
        if item.get("type") == "cohort":
            if (item.get("operator") or "in") not in ("in", "not_in"):
                raise MetricDefinitionError(f"{where}: cohort operator '{item.get('operator')}' is not supported.")
            continue
        operator = item.get("operator") or "exact"
        if operator not in SUPPORTED_OPERATORS:
            raise MetricDefinitionError(f"{where}: property operator '{operator}' is not supported.")
        if operator in NUMERIC_OPERATORS:
            try:
                float(item.get("value"))
            except (TypeError, ValueError):
                raise MetricDefinitionError(f"{where}: operator '{operator}' needs a numeric value.") from None
    return tuple(properties)


def _window_seconds(metric: dict[str, Any], name: str, unit_name: str) -> int:
    unit = metric.get(unit_name) or "day"
    window = metric.get(name)
    if unit not in WINDOW_UNIT_SECONDS or isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise MetricDefinitionError(f"{name} must be a positive integer with a valid unit.")
    return window * WINDOW_UNIT_SECONDS[unit]


def metric_query(metric: dict[str, Any]) -> MetricQuery:
    """Translate an `ExperimentMetric` into the sources and window the repository aggregates."""
    metric_type = metric.get("metric_type")
    if metric_type == "mean":
        sources = (_event_source(metric.get("source"), "source"),)
    elif metric_type == "funnel":
        series = metric.get("series")
        if not isinstance(series, list) or not series:
            raise MetricDefinitionError("Funnel metrics require at least one step in series.")
        sources = tuple(_event_source(step, f"series[{index}]") for index, step in enumerate(series))
    elif metric_type == "ratio":
        sources = (
            _event_source(metric.get("numerator"), "numerator"),
            _event_source(metric.get("denominator"), "denominator"),
        )
    elif metric_type == "retention":
        sources = (
            _event_source(metric.get("start_event"), "start_event"),
            _event_source(metric.get("completion_event"), "completion_event"),
        )
    else:
        raise MetricDefinitionError(
            f"Metric type '{metric_type}' is not supported (use mean, funnel, ratio or retention)."
        )
    window_seconds = None
    if metric.get("conversion_window") is not None:
        window_seconds = _window_seconds(metric, "conversion_window", "conversion_window_unit")
    return MetricQuery(metric_type=metric_type, sources=sources, conversion_window_seconds=window_seconds)


def outlier_handling(metric: dict[str, Any]) -> OutlierHandling | None:
    """A mean metric's winsorization bounds (PostHog's `lower/upper_bound_percentile`, `ignore_zeros`)."""
    if metric.get("metric_type") != "mean":
        return None
    bounds = {}
    for name in ("lower_bound_percentile", "upper_bound_percentile"):
        value = metric.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1):
            raise MetricDefinitionError(f"{name} must be a number between 0 and 1.")
        bounds[name] = None if value is None else float(value)
    lower, upper = bounds["lower_bound_percentile"], bounds["upper_bound_percentile"]
    if lower is not None and upper is not None and lower > upper:
        raise MetricDefinitionError("lower_bound_percentile must not exceed upper_bound_percentile.")
    handling = OutlierHandling(lower, upper, ignore_zeros=bool(metric.get("ignore_zeros")))
    return handling if handling.active else None


def retention(metric: dict[str, Any], query: MetricQuery) -> Retention | None:
    """A retention metric's windows (PostHog's `retention_window_start/end/unit`, `start_handling`)."""
    if query.metric_type != "retention":
        return None
    unit = metric.get("retention_window_unit") or "day"
    if unit not in WINDOW_UNIT_SECONDS:
        raise MetricDefinitionError("retention_window_unit must be one of " + ", ".join(WINDOW_UNIT_SECONDS) + ".")
    bounds = [metric.get("retention_window_start"), metric.get("retention_window_end")]
    if any(isinstance(value, bool) or not isinstance(value, int) or value < 0 for value in bounds):
        raise MetricDefinitionError("retention_window_start and retention_window_end must be non-negative integers.")
    if bounds[0] > bounds[1]:
        raise MetricDefinitionError("retention_window_start must not exceed retention_window_end.")
    handling = metric.get("start_handling") or "first_seen"
    if handling not in RETENTION_START_HANDLING:
        raise MetricDefinitionError("start_handling must be first_seen or last_seen.")
    return Retention(
        start=query.sources[0], completion=query.sources[1], window_start=bounds[0], window_end=bounds[1],
        unit=unit, unit_seconds=WINDOW_UNIT_SECONDS[unit], last_seen=handling == "last_seen",
    )


def flag_variant_split(flag: FeatureFlag | None, experiment: Experiment) -> dict[str, float]:
    """Variant key → configured rollout percentage (the flag's, else the experiment parameters')."""
    variants = (((flag.filters if flag else None) or {}).get("multivariate") or {}).get("variants")
    if not variants:
        variants = (experiment.parameters or {}).get("feature_flag_variants") or []
    return {str(item["key"]): float(item.get("rollout_percentage") or 0) for item in variants if "key" in item}


def baseline_variant_key(experiment: Experiment) -> str:
    return baseline_key(experiment.stats_config)


@dataclass(frozen=True)
class ResultsConfig:
    """The experiment's `stats_config` as the analysis reads it."""

    settings: statistics.StatsSettings
    correction: statistics.Correction | None = None
    cuped_lookback_days: int = DEFAULT_CUPED_LOOKBACK_DAYS


def results_config(experiment: Experiment) -> ResultsConfig:
    """Method, levels, difference type, sequential testing, CUPED and p-value correction.

    PostHog's names: `frequentist.sequential_testing_enabled` / `sequential_tuning_parameter`,
    `cuped.enabled` / `lookback_days`; GrowthBook's for what PostHog lacks: `p_value_correction`.
    A metric's `goal` changes nothing here (SPEC decision 15).
    """
    config = experiment.stats_config if isinstance(experiment.stats_config, dict) else {}
    method = "frequentist" if config.get("method") == "frequentist" else "bayesian"
    frequentist = _section(config, "frequentist")
    sequential = _flag(frequentist, "sequential_testing_enabled", "frequentist")
    tuning = frequentist.get("sequential_tuning_parameter")
    if tuning is None:
        tuning = statistics.DEFAULT_SEQUENTIAL_TUNING_PARAMETER
    elif isinstance(tuning, bool) or not isinstance(tuning, int | float) or not 0 < tuning < math.inf:
        raise ValidationError(
            "stats_config.frequentist.sequential_tuning_parameter must be a positive number.", attr="stats_config"
        )
    difference = _section(config, method).get("difference_type", config.get("difference_type")) or "relative"
    if difference not in ("relative", "absolute"):
        raise ValidationError("stats_config.difference_type must be relative or absolute.", attr="stats_config")
    cuped = _section(config, "cuped")
    lookback = cuped.get("lookback_days", DEFAULT_CUPED_LOOKBACK_DAYS)
    if isinstance(lookback, bool) or not isinstance(lookback, int) or lookback < 1:
        raise ValidationError("stats_config.cuped.lookback_days must be a positive integer.", attr="stats_config")
    correction = config.get("p_value_correction")
    if correction is not None and correction not in CORRECTIONS:
        raise ValidationError(
            f"stats_config.p_value_correction must be one of: {', '.join(CORRECTIONS)}.", attr="stats_config"
        )
    settings = statistics.StatsSettings(
        method=method,
        ci_level=stats_level(config, "bayesian", "ci_level", 0.95),
        alpha=stats_level(config, "frequentist", "alpha", 0.05),
        difference_type=difference,
        sequential=sequential,
        sequential_tuning_parameter=float(tuning),
        cuped=_flag(cuped, "enabled", "cuped"),
    )
    return ResultsConfig(
        settings=settings,
        correction=correction,
        cuped_lookback_days=min(max(lookback, MIN_CUPED_LOOKBACK_DAYS), MAX_CUPED_LOOKBACK_DAYS),
    )


def _section(config: dict[str, Any], name: str) -> dict[str, Any]:
    section = config.get(name)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ValidationError(f"stats_config.{name} must be an object.", attr="stats_config")
    return section


def _flag(section: dict[str, Any], name: str, where: str) -> bool:
    value = section.get(name, False)
    if not isinstance(value, bool):
        raise ValidationError(f"stats_config.{where}.{name} must be true or false.", attr="stats_config")
    return value


class ResultsService:
    @classmethod
    def for_project(cls, session: AsyncSession, project_id: int) -> "ResultsService":
        return cls(ResultsRepository(session, project_id))

    def __init__(self, repository: ResultsRepository):
        self.repository = repository
        self.experiments = ExperimentRepository(repository.session, repository.project_id)
        self.flags = FlagRepository(repository.session, repository.project_id)

    async def experiment(self, experiment_id: int) -> Experiment:
        experiment = await self.experiments.get(experiment_id)
        if experiment is None:
            raise NotFound()
        return experiment

    async def started_experiment(self, experiment_id: int) -> Experiment:
        experiment = await self.experiment(experiment_id)
        if experiment.start_date is None:
            raise ValidationError(NOT_STARTED)
        return experiment

    async def metrics(self, experiment: Experiment) -> list[ExperimentMetric]:
        """Primary then secondary metrics; inline ones before saved ones."""
        saved = (await self.experiments.saved_metric_links([experiment.id]))[experiment.id]
        found = []
        for role, inline in (("primary", experiment.metrics), ("secondary", experiment.metrics_secondary)):
            found += [ExperimentMetric(item, role) for item in inline or [] if isinstance(item, dict)]
            found += [
                ExperimentMetric(metric.query or {}, role, metric.id)
                for link, metric in saved
                if ((link.metadata_ or {}).get("type") or "primary") == role
            ]
        return found

    async def exposure_rules(self, experiment: Experiment, until: datetime) -> tuple[ExposureRules, dict[str, float]]:
        flag = await self.flags.get(experiment.feature_flag_id)
        split = flag_variant_split(flag, experiment)
        variants = list(split)
        if experiment.holdout_id is not None:
            variants.append(f"holdout-{experiment.holdout_id}")
        criteria = experiment.exposure_criteria or {}
        config = criteria.get("exposure_config") or {}
        custom_event = None
        custom_properties: tuple[dict[str, Any], ...] = ()
        if config.get("kind", "ExperimentEventExposureConfig") == "ExperimentEventExposureConfig" and config.get(
            "event"
        ) not in (None, "$feature_flag_called"):
            custom_event = config["event"]
            try:
                custom_properties = property_filters(config.get("properties"), "exposure_config")
                custom_properties = await self._with_cohorts(custom_properties)
            except MetricDefinitionError as error:
                raise ValidationError(str(error), attr="exposure_criteria") from None
        rules = ExposureRules(
            flag_key=flag.key if flag else "",
            variants=tuple(variants),
            start=experiment.start_date,
            until=until,
            first_seen=criteria.get("multiple_variant_handling") == "first_seen",
            custom_event=custom_event,
            custom_properties=custom_properties,
        )
        return rules, split

    async def _with_cohorts(self, properties: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        """Exposure filters with each cohort filter carrying its cohort's definition (`cohort`:
        `{"is_static", "properties"}`, nested cohorts resolved the same way; None when unknown)."""
        if not any(item.get("type") == "cohort" for item in properties):
            return properties
        definitions = await self.repository.cohort_definitions()

        def resolved(entry: Any, seen: frozenset[int]) -> Any:
            if isinstance(entry, dict) and isinstance(entry.get("values"), list):
                return {**entry, "values": [resolved(value, seen) for value in entry["values"]]}
            if not isinstance(entry, dict):
                return entry
            if entry.get("type") == "cohort":
                cohort_id = cohort_reference(entry.get("value"))
                definition = definitions.get(cohort_id) if cohort_id not in seen else None
                if definition is not None and not definition["is_static"]:
                    definition = {**definition, "properties": resolved(definition["properties"], seen | {cohort_id})}
                return {**entry, "cohort": definition}
            operator = entry.get("operator") or "exact"
            if operator not in SUPPORTED_OPERATORS:
                raise MetricDefinitionError(f"exposure_config: cohort property operator '{operator}' is not supported.")
            return entry

        return tuple(resolved(item, frozenset()) for item in properties)

    async def metric_result(
        self,
        experiment: Experiment,
        metric: ExperimentMetric,
        rules: ExposureRules,
        baseline_key: str,
        *,
        live: bool,
        config: ResultsConfig | None = None,
    ) -> tuple[MetricResult, dict[str, statistics.VariantAggregate]]:
        """One metric's result, plus the raw per-variant aggregates it came from.

        `live` results read stored per-entity values kept current; a past day's (timeseries) are
        computed from the events alone, as are winsorized, CUPED and retention metrics. A metric
        that cannot be computed carries its own `error` and leaves the others untouched.
        """
        config = config or results_config(experiment)
        settings = config.settings
        entry = MetricResult(
            metric_uuid=metric.uuid,
            fingerprint=metric.definition.get("fingerprint"),
            metric_type=metric.definition.get("metric_type"),
            role=metric.role,
            saved_metric_id=metric.saved_metric_id,
            method=settings.method,
            difference_type=settings.difference_type,
        )
        try:
            query = metric_query(metric.definition)
            outliers = outlier_handling(metric.definition)
            retained = retention(metric.definition, query)
        except MetricDefinitionError as error:
            entry.error = str(error)
            return entry, {}
        if query.metric_type not in ("mean", "funnel"):
            settings = replace(settings, cuped=False)
        try:
            async with metric_savepoint(self.repository.session):
                aggregates = await self._aggregates(
                    experiment, metric, rules, query, config, settings, outliers, retained, live
                )
        except ValuesOutOfRange:
            entry.error = VALUES_OUT_OF_RANGE
            return entry, {}
        if not all(agg.is_finite() for agg in aggregates.values()):
            entry.error = VALUES_OUT_OF_RANGE
            return entry, {}
        empty = statistics.VariantAggregate(key="", number_of_samples=0, sum=0.0, sum_squares=0.0)
        ordered = [aggregates.get(key) or replace(empty, key=key) for key in rules.variants]
        baseline = next((agg for agg in ordered if agg.key == baseline_key), None)
        if baseline is None:
            entry.error = f"Baseline variant '{baseline_key}' is not a variant of the feature flag."
            return entry, aggregates
        others = [agg for agg in ordered if agg.key != baseline_key]
        baseline_failures, comparisons = statistics.compare(query.metric_type, baseline, others, settings)
        entry.baseline = BaselineResult(**_aggregate_fields(baseline), validation_failures=baseline_failures)
        variant_model = FrequentistVariantResult if settings.method == "frequentist" else BayesianVariantResult
        entry.variant_results = [
            variant_model(**_aggregate_fields(agg), **_comparison_fields(settings.method, comparison))
            for agg, comparison in zip(others, comparisons, strict=True)
        ]
        return entry, aggregates

    async def _aggregates(
        self,
        experiment: Experiment,
        metric: ExperimentMetric,
        rules: ExposureRules,
        query: MetricQuery,
        config: ResultsConfig,
        settings: statistics.StatsSettings,
        outliers: OutlierHandling | None,
        retained: Retention | None,
        live: bool,
    ) -> dict[str, statistics.VariantAggregate]:
        if retained is not None or outliers is not None or settings.cuped:
            analysis = AnalysisRepository(self.repository.session, self.repository.project_id)
            return await analysis.analysed_aggregates(
                rules,
                query,
                outliers=outliers,
                cuped_lookback_days=config.cuped_lookback_days if settings.cuped else None,
                retention=retained,
            )
        if live:
            return await self.repository.materialized_aggregates(experiment.id, metric.slot, rules, query)
        return await self.repository.metric_aggregates(rules, query)

    @timed_results("live")
    async def experiment_results(self, experiment_id: int, metric_uuid: str | None) -> ExperimentResultsOut:
        experiment = await self.started_experiment(experiment_id)
        config = results_config(experiment)
        corrected = config.correction is not None and config.settings.method == "frequentist"
        metrics = await self.metrics(experiment)
        if metric_uuid is not None:
            if not any(metric.uuid == metric_uuid for metric in metrics):
                raise NotFound(f"No metric with uuid '{metric_uuid}' in this experiment.", code="not_found")
            if not corrected:
                # A corrected p-value depends on the whole family, so then every metric is computed.
                metrics = [metric for metric in metrics if metric.uuid == metric_uuid]
        else:
            await self.repository.drop_materializations_except(experiment.id, {metric.slot for metric in metrics})
        now = datetime.now(UTC)
        until = min(experiment.end_date, now) if experiment.end_date else now
        rules, split = await self.exposure_rules(experiment, until)
        baseline_key = baseline_variant_key(experiment)
        results, exposures = [], None
        for metric in metrics:
            entry, aggregates = await self.metric_result(experiment, metric, rules, baseline_key, live=True, config=config)
            results.append(entry)
            if exposures is None and aggregates and entry.metric_type != "retention":
                exposures = {key: agg.number_of_samples for key, agg in aggregates.items()}
        if corrected:
            _correct(results, config.correction, config.settings.alpha)
        if metric_uuid is not None:
            results = [entry for entry in results if entry.metric_uuid == metric_uuid]
        if exposures is None:
            exposures = await self.repository.exposure_counts(rules)
        exposures = {key: exposures.get(key, 0) for key in (*rules.variants, MULTIPLE_VARIANTS)}
        srm = statistics.sample_ratio_mismatch(exposures, split)
        return ExperimentResultsOut(
            experiment_id=experiment.id,
            results=results,
            exposures=exposures,
            srm=SampleRatioMismatchOut(**srm.__dict__),
            computed_at=now,
            data_through=until,
        )

    async def requires_flag_implementation(
        self, events_param: str | None, actions_param: str | None, limit: int
    ) -> RequiresFlagImplementationOut:
        """True when none of the recently sampled events of the filter carries a `$feature/` property."""
        event_names = _event_names(events_param, "events")
        _event_names(actions_param, "actions")
        since = datetime.now(UTC) - timedelta(days=7)
        for name in event_names:
            for properties in await self.repository.recent_event_properties(name, since, limit):
                if any(str(key).startswith("$feature/") for key in properties):
                    return RequiresFlagImplementationOut(result=False)
        return RequiresFlagImplementationOut(result=True)


def _event_names(raw: str | None, attr: str) -> list[str]:
    """Event names of a legacy insight filter list (`[{"id": "$pageview", ...}]`)."""
    if raw is None or raw == "":
        return []
    try:
        items = json.loads(raw)
    except ValueError:
        raise ValidationError(f"{attr} must be a JSON list.", attr=attr) from None
    if not isinstance(items, list):
        raise ValidationError(f"{attr} must be a JSON list.", attr=attr)
    names = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            names.append(item["id"])
        elif isinstance(item, dict) and isinstance(item.get("event"), str):
            names.append(item["event"])
    return names


def _correct(results: list[MetricResult], correction: statistics.Correction, alpha: float) -> None:
    """Adjust every frequentist verdict of the experiment as one family (metrics × variants);
    `significant` then says whether it survives the correction."""
    family = [
        variant
        for entry in results
        for variant in entry.variant_results
        if isinstance(variant, FrequentistVariantResult) and variant.p_value is not None
    ]
    for variant, adjusted in zip(
        family, statistics.adjust_p_values([variant.p_value for variant in family], correction), strict=True
    ):
        variant.p_value_adjusted = adjusted
        variant.significant = bool(adjusted < alpha)


def _aggregate_fields(agg: statistics.VariantAggregate) -> dict[str, Any]:
    return {
        "key": agg.key,
        "number_of_samples": agg.number_of_samples,
        "sum": agg.sum,
        "sum_squares": agg.sum_squares,
        "numerator_denominator_sum_product": agg.sum_of_products,
        "denominator_sum": agg.denominator_sum,
        "denominator_sum_squares": agg.denominator_sum_squares,
        "step_counts": agg.step_counts,
        "covariate_sum": agg.covariate_sum,
        "covariate_sum_squares": agg.covariate_sum_squares,
        "covariate_sum_product": agg.covariate_sum_product,
    }


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or Infinity: a statistic that is not a finite number is reported as null."""
    return value if value is not None and math.isfinite(value) else None


def _comparison_fields(method: str, comparison: statistics.Comparison) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "significant": comparison.significant,
        "validation_failures": comparison.validation_failures,
        "cuped": CupedOut(**comparison.cuped.__dict__) if comparison.cuped else None,
    }
    if method == "frequentist":
        interval = comparison.confidence_interval
        return {
            **fields,
            "p_value": _finite(comparison.p_value),
            "confidence_interval": [_finite(bound) for bound in interval] if interval else None,
        }
    interval = comparison.credible_interval
    return {
        **fields,
        "chance_to_win": _finite(comparison.chance_to_win),
        "credible_interval": [_finite(bound) for bound in interval] if interval else None,
    }
