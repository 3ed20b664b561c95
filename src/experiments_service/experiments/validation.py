"""Checks of the free-form JSON fields of an experiment, with the reference messages."""

import copy
from typing import Any

from experiments_service.errors import ValidationError
from experiments_service.flags.validation import TOO_FEW_VARIANTS

MAX_VARIANTS = 20
STATS_METHODS = ("bayesian", "frequentist")
RUNNING_TIME_NUMBERS = ("minimum_detectable_effect", "recommended_running_time", "recommended_sample_size")
EXPOSURE_CONFIG_KINDS = ("ExperimentEventExposureConfig", "ActionsNode")
EXPOSURE_SHAPE = (
    '{"filterTestAccounts": true, "exposure_config": {"kind": "ExperimentEventExposureConfig", '
    '"event": "$feature_flag_called", "properties": []}}'
)


def _object_expected(value: Any, attr: str) -> ValidationError:
    return ValidationError(
        f'Expected a dictionary of items but got type "{type(value).__name__}".', code="invalid", attr=attr
    )


def validate_parameters(parameters: Any, *, baseline: str = "control") -> dict[str, Any] | None:
    """Normalise `parameters` (split_percent → rollout_percentage, `Control` → `control`)."""
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise _object_expected(parameters, "parameters")
    parameters = copy.deepcopy(parameters)
    variants = parameters.get("feature_flag_variants")
    if variants is not None:
        parameters["feature_flag_variants"] = _validate_variants(variants)
    rollout = parameters.get("rollout_percentage")
    if rollout is not None and (isinstance(rollout, bool) or not isinstance(rollout, int | float)
                                or not 0 <= rollout <= 100):
        raise ValidationError("rollout_percentage must be a number between 0 and 100", attr="parameters")
    group_type_index = parameters.get("aggregation_group_type_index")
    if group_type_index is not None and (isinstance(group_type_index, bool) or not isinstance(group_type_index, int)):
        raise ValidationError("aggregation_group_type_index must be an integer or null", attr="parameters")
    payloads = parameters.get("feature_flag_payloads")
    if payloads is not None and not isinstance(payloads, dict):
        raise ValidationError("feature_flag_payloads must be an object of variant key to payload", attr="parameters")
    for key in RUNNING_TIME_NUMBERS:
        value = parameters.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValidationError(f"{key} must be a number", attr="parameters")
    config = parameters.get("exposure_estimate_config")
    if config is not None and not isinstance(config, dict):
        raise ValidationError("exposure_estimate_config must be an object", attr="parameters")
    if parameters.get("excluded_variants") is not None:
        _validate_excluded_variants(parameters, baseline)
    return parameters


def _validate_variants(variants: Any) -> list[dict[str, Any]]:
    if not isinstance(variants, list):
        raise ValidationError("feature_flag_variants must be a list", attr="parameters")
    normalised = []
    for index, variant in enumerate(variants):
        if not isinstance(variant, dict):
            raise ValidationError(f"Feature flag variant at index {index} must be an object", attr="parameters")
        if not isinstance(variant.get("key"), str) or not variant["key"]:
            raise ValidationError(f"Feature flag variant at index {index} must have a 'key' field", attr="parameters")
        if "split_percent" not in variant and "rollout_percentage" not in variant:
            raise ValidationError(
                "Each variant must include split_percent (recommended) or rollout_percentage (deprecated).",
                attr="parameters",
            )
        variant = dict(variant)
        if "split_percent" in variant:
            variant["rollout_percentage"] = variant.pop("split_percent")
        normalised.append(variant)
    if len(normalised) > MAX_VARIANTS:
        raise ValidationError("Feature flag variants must be less than 21", attr="parameters")
    if len(normalised) == 1:
        raise ValidationError(TOO_FEW_VARIANTS, attr="parameters")
    keys = [variant["key"] for variant in normalised]
    if normalised and "control" not in keys:
        spelled = next((i for i, key in enumerate(keys) if isinstance(key, str) and key.lower() == "control"), None)
        if spelled is None:
            raise ValidationError(
                "Feature flag variants must contain a variant with key 'control' (lowercase, exactly). "
                f"Got keys: {keys}. Rename the baseline variant's 'key' to 'control'.",
                attr="parameters",
            )
        normalised[spelled]["key"] = "control"
    return normalised


def _validate_excluded_variants(parameters: dict[str, Any], baseline: str) -> None:
    excluded = parameters["excluded_variants"]
    if not isinstance(excluded, list) or not all(isinstance(key, str) for key in excluded):
        raise ValidationError("excluded_variants must be a list of variant keys", attr="parameters")
    variants = parameters.get("feature_flag_variants")
    if not variants:
        raise ValidationError(
            "excluded_variants requires feature_flag_variants in the same parameters payload", attr="parameters"
        )
    keys = [variant["key"] for variant in variants]
    if any(key.startswith("holdout-") for key in excluded):
        raise ValidationError("excluded_variants cannot include holdout variants", attr="parameters")
    if baseline in excluded:
        raise ValidationError(f"excluded_variants cannot include the baseline variant '{baseline}'", attr="parameters")
    unknown = [key for key in excluded if key not in keys]
    if unknown:
        raise ValidationError(f"excluded_variants contains unknown variant keys: {unknown}", attr="parameters")
    if not [key for key in keys if key != baseline and key not in excluded]:
        raise ValidationError("excluded_variants must leave at least one test variant", attr="parameters")


def validate_stats_config(stats_config: Any) -> dict[str, Any]:
    """Default the method to bayesian; reject unknown methods."""
    if stats_config is None:
        stats_config = {}
    if not isinstance(stats_config, dict):
        raise _object_expected(stats_config, "stats_config")
    stats_config = copy.deepcopy(stats_config)
    if "method" not in stats_config:
        stats_config["method"] = "bayesian"
    elif stats_config["method"] not in STATS_METHODS:
        raise ValidationError(
            f"Invalid stats method: '{stats_config['method']}'. Must be one of: {', '.join(STATS_METHODS)}",
            attr="stats_config",
        )
    return stats_config


def baseline_key(stats_config: dict[str, Any] | None) -> str:
    """The variant results compare against: `stats_config.baseline_variant_key`, else `control`."""
    return (stats_config or {}).get("baseline_variant_key") or "control"


def validate_baseline(stats_config: dict[str, Any] | None, variant_keys: list[str]) -> None:
    baseline = (stats_config or {}).get("baseline_variant_key")
    if baseline is not None and baseline not in variant_keys:
        raise ValidationError(
            f"Invalid baseline_variant_key: '{baseline}'. Must be one of: {', '.join(variant_keys)}"
        )


def validate_exposure_criteria(criteria: Any) -> dict[str, Any]:
    """Check the shape and fill in `filterTestAccounts: true` when missing."""
    if criteria is None:
        criteria = {}
    if not isinstance(criteria, dict):
        raise ValidationError(
            f"exposure_criteria must be an object, got {type(criteria).__name__}. Expected shape: {EXPOSURE_SHAPE}",
            attr="exposure_criteria",
        )
    criteria = copy.deepcopy(criteria)
    if "filterTestAccounts" not in criteria:
        criteria["filterTestAccounts"] = True
    elif not isinstance(criteria["filterTestAccounts"], bool):
        raise ValidationError("exposure_criteria.filterTestAccounts must be a boolean", attr="exposure_criteria")
    config = criteria.get("exposure_config")
    if config is None:
        return criteria
    if not isinstance(config, dict):
        raise ValidationError("exposure_criteria.exposure_config must be an object", attr="exposure_criteria")
    kind = config.get("kind", "ExperimentEventExposureConfig")
    if kind not in EXPOSURE_CONFIG_KINDS:
        raise ValidationError(
            f"exposure_criteria.exposure_config.kind must be one of: {', '.join(EXPOSURE_CONFIG_KINDS)}",
            attr="exposure_criteria",
        )
    if kind == "ActionsNode" and not isinstance(config.get("id"), int):
        raise ValidationError("exposure_criteria.exposure_config of kind ActionsNode needs an integer 'id'",
                              attr="exposure_criteria")
    if kind == "ExperimentEventExposureConfig" and (
        not isinstance(config.get("event"), str) or not isinstance(config.get("properties"), list)
    ):
        raise ValidationError(
            "exposure_criteria.exposure_config needs 'event' (string) and 'properties' (list)",
            attr="exposure_criteria",
        )
    return criteria


def validate_saved_metrics_payload(payload: Any) -> list[tuple[int, dict[str, Any] | None]] | None:
    """`saved_metrics_ids` as (saved metric id, metadata) pairs; None when not sent."""
    if payload is None:
        return None
    if not isinstance(payload, list):
        raise ValidationError("Saved metrics must be a list", attr="saved_metrics_ids")
    pairs = []
    for item in payload:
        if not isinstance(item, dict):
            raise ValidationError("Saved metric must be an object", attr="saved_metrics_ids")
        if "id" not in item:
            raise ValidationError("Saved metric must have an id", attr="saved_metrics_ids")
        metadata = item.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise ValidationError("Metadata must be an object", attr="saved_metrics_ids")
            if "type" not in metadata:
                raise ValidationError("Metadata must have a type key", attr="saved_metrics_ids")
        saved_metric_id = item["id"]
        if isinstance(saved_metric_id, bool) or not isinstance(saved_metric_id, int):
            raise ValidationError(
                "Saved metric does not exist or does not belong to this project", attr="saved_metrics_ids"
            )
        pairs.append((saved_metric_id, metadata))
    return pairs
