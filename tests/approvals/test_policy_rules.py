"""Action detection, condition rules and durations (pure functions, no database)."""

import copy
from datetime import timedelta

import pytest

from experiments_service.approvals.policies import (
    DISABLE,
    ENABLE,
    UPDATE,
    InvalidPolicy,
    conditions_match,
    detect_actions,
    format_duration,
    parse_duration,
    rollout_percentages,
)

FILTERS = {
    "groups": [{"properties": [], "rollout_percentage": None}, {"properties": [{"key": "a"}], "rollout_percentage": 30}],
    "super_groups": [{"properties": [], "rollout_percentage": 10}],
    "holdout_groups": [{"properties": [], "rollout_percentage": 5, "variant": "holdout-1"}],
    "multivariate": {"variants": [{"key": "control", "rollout_percentage": 50}, {"key": "test", "rollout_percentage": 50}]},
}


def _with(path_list: str, index: int, value, filters=FILTERS):
    changed = copy.deepcopy(filters)
    if path_list == "multivariate":
        changed["multivariate"]["variants"][index]["rollout_percentage"] = value
    else:
        changed[path_list][index]["rollout_percentage"] = value
    return changed


class TestDetection:
    def test_every_rollout_path_is_read_and_null_means_100(self):
        assert rollout_percentages(FILTERS) == {
            "groups[0].rollout_percentage": 100,
            "groups[1].rollout_percentage": 30,
            "super_groups[0].rollout_percentage": 10,
            "holdout_groups[0].rollout_percentage": 5,
            "multivariate.variants[0].rollout_percentage": 50,
            "multivariate.variants[1].rollout_percentage": 50,
        }

    @pytest.mark.parametrize(
        ("where", "index", "path"),
        [
            ("groups", 1, "groups[1].rollout_percentage"),
            ("super_groups", 0, "super_groups[0].rollout_percentage"),
            ("holdout_groups", 0, "holdout_groups[0].rollout_percentage"),
            ("multivariate", 1, "multivariate.variants[1].rollout_percentage"),
        ],
    )
    def test_update_detected_at_each_path(self, where, index, path):
        [action] = detect_actions(True, FILTERS, {"filters": _with(where, index, 0)})
        assert action.action_key == UPDATE
        assert action.triggered_paths == [path]

    def test_no_action_without_rollout_change(self):
        same = _with("groups", 0, 100)  # null and 100 are the same rollout
        assert detect_actions(True, FILTERS, {"filters": same}) == []
        assert detect_actions(True, FILTERS, {"name": "x"}) == []
        assert detect_actions(True, FILTERS, {"active": True}) == []

    def test_enable_disable_and_combined(self):
        assert [a.action_key for a in detect_actions(False, FILTERS, {"active": True})] == [ENABLE]
        assert [a.action_key for a in detect_actions(True, FILTERS, {"active": False})] == [DISABLE]
        both = detect_actions(False, FILTERS, {"active": True, "filters": _with("groups", 1, 60)})
        assert [a.action_key for a in both] == [ENABLE, UPDATE]

    def test_added_condition_set_counts_as_changed(self):
        grown = {**FILTERS, "groups": [*FILTERS["groups"], {"properties": [], "rollout_percentage": 0}]}
        [action] = detect_actions(True, FILTERS, {"filters": grown})
        assert action.triggered_paths == ["groups[2].rollout_percentage"]

    def test_paths_sort_by_index_not_text(self):
        before = {"groups": [{"rollout_percentage": 0} for _ in range(11)]}
        after = {"groups": [{"rollout_percentage": 1} for _ in range(11)]}
        [action] = detect_actions(True, before, {"filters": after})
        assert action.triggered_paths[9:] == ["groups[9].rollout_percentage", "groups[10].rollout_percentage"]


class TestConditions:
    def _update(self, before_value, after_value):
        before = {"groups": [{"rollout_percentage": before_value}, {"rollout_percentage": 90}]}
        after = {"groups": [{"rollout_percentage": after_value}, {"rollout_percentage": 90}]}
        [action] = detect_actions(True, before, {"filters": after})
        return action

    def test_empty_and_any_change(self):
        action = self._update(10, 20)
        assert conditions_match({}, action) and conditions_match(None, action)
        assert conditions_match({"type": "any_change", "field": "rollout_percentage"}, action)

    def test_before_after_reads_changed_paths_only(self):
        condition = {"type": "before_after", "field": "rollout_percentage", "operator": ">", "value": 50}
        # groups[1] stays at 90 (above 50) but did not change: it does not count.
        assert not conditions_match(condition, self._update(10, 20))
        assert conditions_match(condition, self._update(10, 60))

    def test_change_amount_signed_and_absolute(self):
        condition = {"type": "change_amount", "field": "rollout_percentage", "operator": ">=", "value": 10}
        assert conditions_match(condition, self._update(10, 20))
        assert not conditions_match(condition, self._update(20, 10))
        assert conditions_match({**condition, "absolute": True}, self._update(20, 10))
        assert not conditions_match(condition, self._update(10, 19))

    def test_change_amount_counts_added_path_from_zero(self):
        condition = {"type": "change_amount", "field": "rollout_percentage", "operator": ">", "value": 25}
        [action] = detect_actions(True, {"groups": []}, {"filters": {"groups": [{"rollout_percentage": 30}]}})
        assert conditions_match(condition, action)


class TestDurations:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("14 00:00:00", timedelta(days=14)),
            ("1 days, 02:00:00", timedelta(days=1, hours=2)),
            ("01:30:00", timedelta(hours=1, minutes=30)),
            ("30:00", timedelta(minutes=30)),
            ("90", timedelta(seconds=90)),
            (3600, timedelta(hours=1)),
            ("P2DT3H", timedelta(days=2, hours=3)),
        ],
    )
    def test_parse(self, raw, expected):
        assert parse_duration(raw) == expected

    @pytest.mark.parametrize("raw", ["", "later", "P", 0, -5, "-1 00:00:00", True, None])
    def test_refused(self, raw):
        with pytest.raises(InvalidPolicy) as refused:
            parse_duration(raw)
        assert refused.value.attr == "expires_after"

    def test_format(self):
        assert format_duration(14 * 86400) == "14 00:00:00"
        assert format_duration(5400) == "01:30:00"
        assert format_duration(86400 + 61) == "1 00:01:01"
