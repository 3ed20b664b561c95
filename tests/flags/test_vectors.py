"""PostHog's evaluation vectors (`vectors-sample.json`), reproduced by the evaluator exactly."""

import json
from pathlib import Path

import pytest

from experiments_service.flags.evaluation import (
    CompiledFlags,
    EvaluationContext,
    hash01,
    in_rollout,
    rollout_threshold,
    select_variant,
    variant_bounds,
)
from experiments_service.flags.hashing import truncate_distinct_id

VECTORS = json.loads((Path(__file__).resolve().parent / "data" / "vectors-sample.json").read_text())
SUPPLEMENTARY = VECTORS["supplementary"]


def _by_id(entries: list[dict]) -> list:
    return [pytest.param(entry, id=entry["id"]) for entry in entries]


def _consistency_params() -> list:
    return [
        pytest.param(case, distinct_id, id=f"{case['id']}-{distinct_id}")
        for case in VECTORS["cases"]
        for distinct_id in case["expected"]
    ]


@pytest.mark.parametrize(("case", "distinct_id"), _consistency_params())
def test_consistency_case(case: dict, distinct_id: str) -> None:
    flags = CompiledFlags([case["flag"]])
    result = flags.evaluate(EvaluationContext(distinct_id=distinct_id))[case["flag"]["key"]]

    assert result.value == case["expected"][distinct_id]
    if "expected_payload" in case:
        assert (result.payload or "") == case["expected_payload"][distinct_id]
    if not result.enabled:
        assert result.payload is None


@pytest.mark.parametrize("vector", _by_id(SUPPLEMENTARY["hash_primitives"]))
def test_hash_primitive(vector: dict) -> None:
    hashed = hash01(vector["prefix"], vector["identifier"], vector["salt"])

    assert hashed == vector["hash01"]
    assert int(vector["first_15_hex"], 16) == int(vector["n"])
    if "hash01_if_quotient_rounded_once_NOT_CONTRACT" in vector:
        assert hashed != vector["hash01_if_quotient_rounded_once_NOT_CONTRACT"]
    if "identifier_before_truncation" in vector:
        assert truncate_distinct_id(vector["identifier_before_truncation"]) == vector["identifier"]


def _primitive_checks(checks: str, percentage: str) -> list:
    """Each (hash primitive, check) pair of one kind: rollout or holdout checks."""
    return [
        pytest.param(vector, check, id=f"{vector['id']}-{check[percentage]}")
        for vector in SUPPLEMENTARY["hash_primitives"]
        for check in vector.get(checks, [])
    ]


@pytest.mark.parametrize(("vector", "check"), _primitive_checks("rollout_checks", "rollout_percentage"))
def test_rollout_check_through_evaluator(vector: dict, check: dict) -> None:
    """The primitive's flag, evaluated for its identifier, is included exactly when the vector says."""
    key = vector["prefix"].removesuffix(".")
    flag = {"id": 1, "key": key, "active": True, "filters": {
        "groups": [{"properties": [], "rollout_percentage": check["rollout_percentage"]}]}}  # fmt: skip
    source = vector.get("identifier_source", {})
    if "json_group_key" in source:
        flag["filters"]["aggregation_group_type_index"] = 0
        context = EvaluationContext(distinct_id="someone", groups={"organization": source["json_group_key"]})
    else:
        context = EvaluationContext(distinct_id=vector.get("identifier_before_truncation", vector["identifier"]))

    result = CompiledFlags([flag], {0: "organization"}).evaluate(context)[key]

    assert result.enabled is check["included"]
    assert result.reason_code == ("condition_match" if check["included"] else "out_of_rollout_bound")
    assert in_rollout(vector["hash01"], rollout_threshold(check["rollout_percentage"])) is check["included"]


@pytest.mark.parametrize(("vector", "check"), _primitive_checks("holdout_checks", "exclusion_percentage"))
def test_holdout_check_through_evaluator(vector: dict, check: dict) -> None:
    flag = {"id": 1, "key": "any-flag", "active": True, "filters": {
        "groups": [{"properties": [], "rollout_percentage": 100}],
        "holdout": {"id": 3, "exclusion_percentage": check["exclusion_percentage"]}}}  # fmt: skip

    result = CompiledFlags([flag]).evaluate(EvaluationContext(distinct_id=vector["identifier"]))["any-flag"]

    assert (result.value == "holdout-3") is check["member"]
    assert result.reason_code == ("holdout_condition_value" if check["member"] else "condition_match")


@pytest.mark.parametrize("vector", _by_id(SUPPLEMENTARY["threshold_vectors"]))
def test_threshold_vector(vector: dict) -> None:
    assert in_rollout(vector["hash01"], rollout_threshold(vector["rollout_percentage"])) is vector["included"]


def _variant_vectors() -> list:
    primitives = [v for v in SUPPLEMENTARY["hash_primitives"] if "variant_check" in v]
    return _by_id(SUPPLEMENTARY["variant_vectors"]) + [
        pytest.param({"id": v["id"], "hash01": v["hash01"], **v["variant_check"]}, id=v["id"]) for v in primitives
    ]


@pytest.mark.parametrize("vector", _variant_vectors())
def test_variant_vector(vector: dict) -> None:
    bounds = variant_bounds(vector["variants"])

    assert select_variant(vector["hash01"], bounds) == vector["selected"]
    if "cumulative_boundaries" in vector:
        assert [bound for _, bound in bounds] == vector["cumulative_boundaries"]


@pytest.mark.parametrize("case", _by_id(SUPPLEMENTARY["contract_cases"]))
def test_contract_case(case: dict) -> None:
    flags = CompiledFlags(case["flags"], case.get("group_type_mapping"))

    results = flags.evaluate(EvaluationContext(**case["context"]))

    for key, expected in case["expected"].items():
        result = results[key]
        assert result.value == expected["value"], key
        assert result.reason_code == expected["reason_code"], key
        assert result.condition_index == expected["condition_index"], key
        assert result.payload == expected["payload"], key
    for key in case.get("omitted_flags", []):
        assert key not in results
    assert set(results) == set(case["expected"])
