"""Evaluation order, reasons, groups, holdouts, dependencies and identifiers of `CompiledFlags`."""

from typing import Any

import pytest

from experiments_service.flags.evaluation import CompiledFlags, EvaluationContext, FlagResult, hash01

MAPPING = {0: "organization", 1: "project"}
TEN_VARIANTS = [{"key": f"v{i}", "rollout_percentage": 10} for i in range(10)]


def flag(key: str, groups: list[dict] | None = None, flag_id: int = 1, **extra: Any) -> dict:
    top = {name: extra.pop(name) for name in list(extra) if name in (
        "active", "deleted", "evaluation_runtime", "evaluation_tags", "ensure_experience_continuity",
        "rollout_percentage", "bucketing_identifier")}  # fmt: skip
    filters = {"groups": groups if groups is not None else [{"properties": [], "rollout_percentage": 100}], **extra}
    return {"id": flag_id, "key": key, "active": True, "deleted": False, "filters": filters, **top}


def person(key: str, value: Any, operator: str = "exact") -> dict:
    return {"key": key, "type": "person", "operator": operator, "value": value}


def depends(on: Any, value: Any) -> dict:
    return {"key": on, "type": "flag", "operator": "flag_evaluates_to", "value": value}


def run(flags: list[dict], distinct_id: str = "user-1", **context: Any) -> dict[str, FlagResult]:
    return CompiledFlags(flags, MAPPING).evaluate(EvaluationContext(distinct_id=distinct_id, **context))


def one(definition: dict, distinct_id: str = "user-1", **context: Any) -> FlagResult:
    return run([definition], distinct_id, **context)[definition["key"]]


class TestServedFlags:
    def test_inactive_and_deleted_flags_are_omitted(self) -> None:
        results = run([flag("on"), flag("off", active=False, flag_id=2), flag("gone", deleted=True, flag_id=3)])

        assert set(results) == {"on"}

    def test_runtime_filter(self) -> None:
        flags = [flag("server", evaluation_runtime="server"), flag("client", evaluation_runtime="client", flag_id=2),
                 flag("both", evaluation_runtime="all", flag_id=3)]  # fmt: skip
        compiled = CompiledFlags(flags)
        ctx = EvaluationContext(distinct_id="u")

        assert set(compiled.evaluate(ctx, runtime="server")) == {"server", "both"}
        assert set(compiled.evaluate(ctx, runtime="client")) == {"client", "both"}
        assert set(compiled.evaluate(ctx)) == {"server", "client", "both"}

    def test_evaluation_tags(self) -> None:
        flags = [flag("web", evaluation_tags=["web", "docs"]), flag("app", evaluation_tags=["app"], flag_id=2),
                 flag("untagged", flag_id=3)]  # fmt: skip
        compiled = CompiledFlags(flags)
        ctx = EvaluationContext(distinct_id="u")

        assert set(compiled.evaluate(ctx, evaluation_contexts=["docs"])) == {"web", "untagged"}
        assert set(compiled.evaluate(ctx, evaluation_contexts=["app", "web"])) == {"web", "app", "untagged"}
        assert set(compiled.evaluate(ctx, evaluation_contexts=[])) == {"web", "app", "untagged"}

    def test_requested_keys_only_but_dependencies_still_evaluated(self) -> None:
        base = flag("base", [{"properties": [person("plan", "pro")], "rollout_percentage": 100}], flag_id=1)
        dependent = flag("dependent", [{"properties": [depends("base", True)]}], flag_id=2)

        results = CompiledFlags([dependent, base]).evaluate(
            EvaluationContext(distinct_id="u", person_properties={"plan": "pro"}), keys=["dependent", "nope"]
        )

        assert set(results) == {"dependent"}
        assert results["dependent"].enabled is True

    def test_flag_lookup_returns_the_definition(self) -> None:
        definition = flag("x")
        compiled = CompiledFlags([definition])

        assert compiled.flag("x") is definition
        assert compiled.flag("missing") is None


class TestConditions:
    def test_first_matching_set_in_stored_order_wins(self) -> None:
        definition = flag("layout", [
            {"properties": [person("plan", "pro")], "rollout_percentage": 100},
            {"properties": [person("plan", "pro")], "rollout_percentage": 100, "variant": "b"},
        ], multivariate={"variants": [{"key": "a", "rollout_percentage": 0}, {"key": "b", "rollout_percentage": 100}]})  # fmt: skip

        result = one(definition, person_properties={"plan": "pro"})

        assert (result.variant, result.condition_index) == ("b", 0)

    def test_variant_override_applies_only_for_a_real_variant(self) -> None:
        variants = {"variants": [{"key": "a", "rollout_percentage": 100}, {"key": "b", "rollout_percentage": 0}]}
        valid = flag("f", [{"properties": [], "rollout_percentage": 100, "variant": "b"}], multivariate=variants)
        unknown = flag("f", [{"properties": [], "rollout_percentage": 100, "variant": "zzz"}], multivariate=variants)

        assert one(valid).value == "b"
        assert one(unknown).value == "a"

    def test_later_equal_reason_replaces_the_index(self) -> None:
        definition = flag("f", [{"properties": [person("a", "x")]}, {"properties": [person("b", "y")]}])

        result = one(definition)

        assert (result.value, result.reason_code, result.condition_index) == (False, "no_condition_match", 1)
        assert result.reason_description == "No matching condition set"

    def test_flag_without_conditions(self) -> None:
        result = one(flag("f", []))

        assert (result.enabled, result.reason_code, result.condition_index) == (False, "no_group_type", None)

    def test_early_exit_stops_after_a_rollout_miss(self) -> None:
        groups = [{"properties": [person("plan", "pro")], "rollout_percentage": 0},
                  {"properties": [], "rollout_percentage": 100}]  # fmt: skip
        ctx = {"person_properties": {"plan": "pro"}}

        exits = one(flag("f", groups, early_exit=True), **ctx)
        continues = one(flag("f", groups), **ctx)

        assert (exits.enabled, exits.reason_code, exits.condition_index) == (False, "out_of_rollout_bound", 0)
        assert (continues.enabled, continues.reason_code, continues.condition_index) == (True, "condition_match", 1)
        assert continues.reason_description == "Matched condition set 2"

    def test_early_exit_ignores_property_misses(self) -> None:
        groups = [{"properties": [person("plan", "pro")], "rollout_percentage": 0},
                  {"properties": [], "rollout_percentage": 100}]  # fmt: skip

        assert one(flag("f", groups, early_exit=True), person_properties={"plan": "free"}).enabled is True

    def test_payloads(self) -> None:
        boolean = flag("b", payloads={"true": '{"x": 1}'})
        variants = {"variants": [{"key": "only", "rollout_percentage": 100}]}
        multivariate = flag("m", multivariate=variants, payloads={"true": "ignored"})
        off = flag("o", [{"properties": [], "rollout_percentage": 0}], payloads={"true": "never"})

        assert one(boolean).payload == '{"x": 1}'
        assert (one(multivariate).value, one(multivariate).payload) == ("only", None)
        assert one(off, distinct_id="user-105").payload is None

    def test_variants_summing_below_one_fall_back_to_true(self) -> None:
        definition = flag("f", multivariate={"variants": [{"key": "tiny", "rollout_percentage": 0}]}, payloads={"true": "p"})

        result = one(definition)

        assert (result.value, result.variant, result.payload) == (True, None, "p")

    def test_legacy_flag_without_groups(self) -> None:
        definition = {"id": 1, "key": "legacy", "active": True, "rollout_percentage": 100,
                      "filters": {"properties": [person("plan", "pro")]}}  # fmt: skip

        assert one(definition, person_properties={"plan": "pro"}).enabled is True
        assert one(definition, person_properties={"plan": "free"}).reason_code == "no_condition_match"

    def test_cohort_filters_never_match(self) -> None:
        definition = flag("f", [{"properties": [{"key": "id", "type": "cohort", "value": 5, "operator": "in"}]}])

        assert one(definition).reason_code == "no_condition_match"

    def test_missing_property_is_a_miss_and_negations_hold(self) -> None:
        negated = flag("f", [{"properties": [person("email", "@corp", "not_icontains"), person("x", "", "is_not_set")]}])
        positive = flag("g", [{"properties": [person("email", "@corp", "icontains")]}])

        assert one(negated).enabled is True
        assert one(positive).reason_code == "no_condition_match"


class TestGroupFlags:
    def definition(self, rollout: float = 50, **extra: Any) -> dict:
        tier = {"key": "tier", "type": "group", "group_type_index": 0, "operator": "exact", "value": "gold"}
        return flag("org-flag", [{"properties": [tier], "rollout_percentage": rollout}],
                    aggregation_group_type_index=0, **extra)  # fmt: skip

    def test_group_key_is_hashed_not_the_distinct_id(self) -> None:
        ctx = {"groups": {"organization": "org-9"}, "group_properties": {"organization": {"tier": "gold"}}}
        expected = hash01("org-flag.", "org-9") <= 0.5

        values = {one(self.definition(), distinct_id=f"user-{i}", **ctx).enabled for i in range(20)}

        assert values == {expected}

    def test_integer_group_key_hashes_as_its_decimal_text(self) -> None:
        props = {"group_properties": {"organization": {"tier": "gold"}}}
        for rollout in range(0, 101, 5):
            as_int = one(self.definition(rollout), groups={"organization": 42}, **props)
            as_text = one(self.definition(rollout), groups={"organization": "42"}, **props)
            assert as_int.enabled is as_text.enabled is (hash01("org-flag.", "42") <= rollout / 100)

    def test_group_properties_come_from_the_group(self) -> None:
        ctx = {"groups": {"organization": "org-9"}, "person_properties": {"tier": "gold"}}

        result = one(self.definition(100), group_properties={"organization": {"tier": "silver"}}, **ctx)

        assert result.reason_code == "no_condition_match"

    def test_missing_group_or_unknown_group_type(self) -> None:
        missing = one(self.definition(100), groups={"project": "p"})
        unknown = CompiledFlags([self.definition(100)], {1: "project"}).evaluate(
            EvaluationContext(distinct_id="u", groups={"organization": "o"})
        )["org-flag"]

        for result in (missing, unknown):
            assert (result.enabled, result.reason_code, result.condition_index) == (False, "no_group_type", 0)

    def test_mixed_targeting_per_condition(self) -> None:
        org_gold = {"key": "tier", "type": "group", "group_type_index": 0, "value": "gold"}
        definition = flag("mixed", [
            {"properties": [org_gold], "rollout_percentage": 100, "aggregation_group_type_index": 0},
            {"properties": [person("plan", "pro")], "rollout_percentage": 100},
        ])  # fmt: skip
        gold = {"groups": {"organization": "o"}, "group_properties": {"organization": {"tier": "gold"}}}

        by_group = one(definition, **gold)
        by_person = one(definition, person_properties={"plan": "pro"})
        neither = one(definition, person_properties={"plan": "free"})

        assert (by_group.enabled, by_group.condition_index) == (True, 0)
        assert (by_person.enabled, by_person.condition_index) == (True, 1)
        assert (neither.reason_code, neither.condition_index) == ("no_condition_match", 1)


class TestHoldouts:
    def test_full_holdout_wins_before_conditions(self) -> None:
        definition = flag("exp", holdout={"id": 7, "exclusion_percentage": 100}, payloads={"true": "p"},
                          multivariate={"variants": [{"key": "control", "rollout_percentage": 100}]})  # fmt: skip

        result = one(definition)

        assert (result.value, result.reason_code, result.condition_index, result.payload) == (
            "holdout-7", "holdout_condition_value", None, None)  # fmt: skip
        assert result.reason_description == "Holdout condition value"

    def test_holdout_bucket_is_shared_across_flags(self) -> None:
        holdout = {"id": 3, "exclusion_percentage": 30}
        flags = [flag("first", holdout=holdout), flag("second", holdout=holdout, flag_id=2)]
        compiled = CompiledFlags(flags)

        members = 0
        for i in range(200):
            results = compiled.evaluate(EvaluationContext(distinct_id=f"person-{i}"))
            member = hash01("holdout-", f"person-{i}") <= 0.3
            assert results["first"].value == results["second"].value == ("holdout-3" if member else True)
            members += member
        assert 0 < members < 200

    def test_empty_distinct_id_hashes_the_bare_prefix(self) -> None:
        bare = hash01("holdout-", "") * 100

        inside = one(flag("f", holdout={"id": 1, "exclusion_percentage": bare + 0.001}), distinct_id="")
        outside = one(flag("f", holdout={"id": 1, "exclusion_percentage": bare - 0.001}), distinct_id="")

        assert inside.value == "holdout-1"
        assert outside.value is True

    def test_legacy_holdout_groups(self) -> None:
        definition = flag("f", holdout_groups=[{"properties": [], "rollout_percentage": 100, "variant": "holdout-9"}])

        result = one(definition)

        assert (result.value, result.reason_code) == ("holdout-9", "holdout_condition_value")


class TestDependencies:
    def layout(self) -> dict:
        return flag("layout", [{"properties": [person("plan", "pro")], "rollout_percentage": 100, "variant": "Wide"}],
                    flag_id=10, multivariate={"variants": [{"key": "Wide", "rollout_percentage": 100}]})  # fmt: skip

    @pytest.mark.parametrize(
        ("reference", "expected", "plan", "enabled"),
        [
            ("layout", True, "pro", True),
            ("layout", True, "free", False),
            ("layout", False, "free", True),
            ("layout", False, "pro", False),
            ("layout", "Wide", "pro", True),
            ("layout", "wide", "pro", False),
            (10, "Wide", "pro", True),
            ("10", True, "pro", True),
        ],
    )
    def test_flag_evaluates_to(self, reference: Any, expected: Any, plan: str, enabled: bool) -> None:
        banner = flag("banner", [{"properties": [depends(reference, expected)], "rollout_percentage": 100}], flag_id=11)

        result = run([banner, self.layout()], person_properties={"plan": plan})["banner"]

        assert result.enabled is enabled
        assert result.reason_code == ("condition_match" if enabled else "no_condition_match")

    def test_missing_deleted_and_cyclic_dependencies(self) -> None:
        flags = [
            flag("needs-ghost", [{"properties": [depends("ghost", True)]}], flag_id=1),
            flag("needs-deleted", [{"properties": [depends("deleted", False)]}], flag_id=2),
            flag("deleted", deleted=True, flag_id=3),
            flag("a", [{"properties": [depends("b", True)]}], flag_id=4),
            flag("b", [{"properties": [depends("a", True)]}], flag_id=5),
            flag("behind-cycle", [{"properties": [depends("a", False)]}], flag_id=6),
            flag("fine", flag_id=7),
        ]

        results = run(flags)

        for key in ("needs-ghost", "needs-deleted", "a", "b", "behind-cycle"):
            result = results[key]
            assert (result.enabled, result.reason_code, result.condition_index) == (False, "missing_dependency", None)
            assert result.reason_description == "Flag cannot be evaluated due to missing dependency"
        assert results["fine"].enabled is True

    def test_inactive_dependency_evaluates_to_false(self) -> None:
        flags = [flag("off", active=False, flag_id=1), flag("when-off", [{"properties": [depends("off", False)]}], flag_id=2)]

        results = run(flags)

        assert set(results) == {"when-off"}
        assert results["when-off"].enabled is True


class TestEarlyAccess:
    def test_feature_enrollment_decides_when_present(self) -> None:
        definition = flag("beta", [{"properties": [], "rollout_percentage": 0}], feature_enrollment=True,
                          payloads={"true": "p"})  # fmt: skip

        enrolled = one(definition, distinct_id="user-105", person_properties={"$feature_enrollment/beta": "true"})
        declined = one(definition, person_properties={"$feature_enrollment/beta": False})
        unknown = one(definition, distinct_id="user-105")

        assert (enrolled.enabled, enrolled.reason_code, enrolled.condition_index, enrolled.payload) == (
            True, "super_condition_value", 0, "p")  # fmt: skip
        assert (declined.enabled, declined.reason_code) == (False, "super_condition_value")
        assert unknown.reason_code == "out_of_rollout_bound"

    def test_super_groups_decide_only_when_the_property_is_known(self) -> None:
        gate = {"properties": [person("$feature_enrollment/beta", ["true"])], "rollout_percentage": 100}
        definition = flag("beta", [{"properties": [], "rollout_percentage": 100}], super_groups=[gate])

        opted_in = one(definition, person_properties={"$feature_enrollment/beta": True})
        opted_out = one(definition, person_properties={"$feature_enrollment/beta": False})
        unknown = one(definition)

        assert (opted_in.enabled, opted_in.reason_code, opted_in.condition_index) == (True, "super_condition_value", 0)
        assert opted_in.reason_description == "Super condition value"
        assert (opted_out.enabled, opted_out.reason_code) == (False, "super_condition_value")
        assert (unknown.enabled, unknown.reason_code) == (True, "condition_match")


class TestIdentifiers:
    def multivariate(self, **extra: Any) -> dict:
        return flag("split", multivariate={"variants": TEN_VARIANTS}, **extra)

    def distinct_pair(self) -> tuple[str, str, str]:
        """Three ids that land in three different variants, so a wrong identifier is visible."""
        values: dict[Any, str] = {}
        for i in range(100):
            values.setdefault(one(self.multivariate(), distinct_id=f"id-{i}").value, f"id-{i}")
            if len(values) == 3:
                return tuple(values.values())  # type: ignore[return-value]
        raise AssertionError("no three distinct variants")

    def test_experience_continuity_priority(self) -> None:
        current, anonymous, stored = self.distinct_pair()
        continuity = self.multivariate(ensure_experience_continuity=True)

        def value(definition: dict, **ctx: Any) -> Any:
            return one(definition, distinct_id=current, **ctx).value

        assert value(continuity) == one(self.multivariate(), distinct_id=current).value
        assert value(continuity, anon_distinct_id=anonymous) == one(self.multivariate(), distinct_id=anonymous).value
        assert value(continuity, anon_distinct_id=anonymous, hash_key_overrides={"split": stored}) == one(
            self.multivariate(), distinct_id=stored).value  # fmt: skip
        assert value(self.multivariate(), anon_distinct_id=anonymous, hash_key_overrides={"split": stored}) == one(
            self.multivariate(), distinct_id=current).value  # fmt: skip

    def test_device_bucketing(self) -> None:
        device, other, _ = self.distinct_pair()
        by_device = self.multivariate(bucketing_identifier="device_id")

        same = {one(by_device, distinct_id=f"user-{i}", device_id=device).value for i in range(10)}
        from_property = one(by_device, distinct_id="x", person_properties={"$device_id": other}).value
        without = one(by_device, distinct_id="x")

        assert same == {one(self.multivariate(), distinct_id=device).value}
        assert from_property == one(self.multivariate(), distinct_id=other).value
        assert (without.enabled, without.reason_code, without.condition_index) == (False, "out_of_rollout_bound", 0)

    def test_empty_distinct_id_is_included_and_gets_the_first_variant(self) -> None:
        definition = flag("f", [{"properties": [], "rollout_percentage": 0}], multivariate={"variants": TEN_VARIANTS})

        assert one(definition, distinct_id="").value == "v0"

    def test_distinct_id_truncated_to_200_scalar_values(self) -> None:
        prefix = "é😀" * 100
        definition = flag("f", [{"properties": [], "rollout_percentage": 50}], multivariate={"variants": TEN_VARIANTS})
        values = set()
        for tail in ("a", "bcd", "zzzzzzzz"):
            values.add(one(definition, distinct_id=prefix + tail).value)

        assert values == {one(definition, distinct_id=prefix).value}


class TestMalformedDefinitions:
    @pytest.mark.parametrize(
        "filters",
        [
            None,
            {"groups": None},
            {"groups": [None, "x", {"properties": "nope", "rollout_percentage": "half"}]},
            {"groups": [{"properties": [None, {"key": 3, "value": "x"}], "rollout_percentage": 100}]},
            {"multivariate": ["a"], "payloads": ["b"], "groups": [{"rollout_percentage": 100}]},
            {"multivariate": {"variants": [{"key": "a"}, {"key": "b", "rollout_percentage": "x"}]}, "groups": [{}]},
            {"super_groups": "x", "holdout": {"id": 1}, "holdout_groups": "y", "groups": [{}]},
        ],
    )
    def test_a_broken_flag_does_not_break_the_project(self, filters: Any) -> None:
        broken = {"id": 1, "key": "broken", "active": True, "filters": filters, "evaluation_tags": "web"}

        results = run([broken, flag("healthy", flag_id=2)])

        assert results["healthy"].enabled is True
        assert isinstance(results["broken"].enabled, bool)

    def test_unreadable_rollout_lets_nobody_through(self) -> None:
        result = one(flag("f", [{"properties": [], "rollout_percentage": "half"}]), distinct_id="user-1")

        assert (result.enabled, result.reason_code) == (False, "out_of_rollout_bound")
