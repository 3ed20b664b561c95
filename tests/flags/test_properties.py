"""Property operators with the flags server's semantics (each row: filter, properties, expected)."""

from datetime import UTC, date, datetime

import pytest

from experiments_service.flags.properties import as_number, as_text, compile_property, parse_version

NOW = datetime(2024, 3, 31, 12, 0, tzinfo=UTC)


def prop(operator: str, value: object, key: str = "k") -> dict:
    return {"key": key, "type": "person", "operator": operator, "value": value}


def check(filter_: dict, properties: dict, expected: bool) -> None:
    assert compile_property(filter_)(properties, NOW) is expected


CASES = [
    # exact / is_not: case-insensitive text, lists, server boolean-likes, JSON text of non-strings
    ("exact-same", prop("exact", "Value"), {"k": "vALUE"}, True),
    ("exact-other", prop("exact", "value"), {"k": "value2"}, False),
    ("exact-default-operator", {"key": "k", "value": "a"}, {"k": "A"}, True),
    ("exact-list-any", prop("exact", ["US", "CA"]), {"k": "ca"}, True),
    ("exact-list-none", prop("exact", ["US", "CA"]), {"k": "de"}, False),
    ("exact-number-as-text", prop("exact", "5"), {"k": 5}, True),
    ("exact-float-text", prop("exact", ["1.0"]), {"k": 1.0}, True),
    ("exact-bool-like-string", prop("exact", "true"), {"k": True}, True),
    ("exact-bool-like-case", prop("exact", ["True"]), {"k": "TRUE"}, True),
    ("exact-bool-like-false", prop("exact", False), {"k": "false"}, True),
    ("exact-bool-like-mismatch", prop("exact", "true"), {"k": "yes"}, False),
    ("exact-null-value", prop("exact", "null"), {"k": None}, True),
    ("exact-null-other", prop("exact", "x"), {"k": None}, False),
    ("exact-missing", prop("exact", "x"), {}, False),
    ("exact-no-filter-value", prop("exact", None), {"k": "x"}, False),
    ("is-not-other", prop("is_not", "a"), {"k": "b"}, True),
    ("is-not-same", prop("is_not", "a"), {"k": "A"}, False),
    ("is-not-list", prop("is_not", ["a", "b"]), {"k": "b"}, False),
    ("is-not-missing", prop("is_not", "a"), {}, True),
    ("is-not-null", prop("is_not", "a"), {"k": None}, True),
    # presence
    ("is-set-present", prop("is_set", "is_set"), {"k": None}, True),
    ("is-set-missing", prop("is_set", "is_set"), {}, False),
    ("is-not-set-missing", prop("is_not_set", "is_not_set"), {}, True),
    ("is-not-set-present", prop("is_not_set", "is_not_set"), {"k": 1}, False),
    # text operators: ASCII case folding, stringified values, negations true when missing
    ("icontains", prop("icontains", "ValUe"), {"k": "343tfvalue5"}, True),
    ("icontains-number", prop("icontains", "3"), {"k": 323}, True),
    ("icontains-no", prop("icontains", "x"), {"k": "abc"}, False),
    ("icontains-ascii-only", prop("icontains", "É"), {"k": "é"}, False),
    ("icontains-missing", prop("icontains", "x"), {}, False),
    ("not-icontains", prop("not_icontains", "x"), {"k": "abc"}, True),
    ("not-icontains-contained", prop("not_icontains", "B"), {"k": "abc"}, False),
    ("not-icontains-missing", prop("not_icontains", "x"), {}, True),
    ("starts-with", prop("starts_with", "Val"), {"k": "value"}, True),
    ("starts-with-no", prop("starts_with", "al"), {"k": "value"}, False),
    ("not-starts-with", prop("not_starts_with", "al"), {"k": "value"}, True),
    ("not-starts-with-missing", prop("not_starts_with", "al"), {}, True),
    ("ends-with", prop("ends_with", "LUE"), {"k": "value"}, True),
    ("not-ends-with", prop("not_ends_with", "LUE"), {"k": "value"}, False),
    ("icontains-multi-any", prop("icontains_multi", ["zz", "AL"]), {"k": "value"}, True),
    ("icontains-multi-none", prop("icontains_multi", ["zz", "yy"]), {"k": "value"}, False),
    ("not-icontains-multi", prop("not_icontains_multi", ["zz", "yy"]), {"k": "value"}, True),
    ("not-icontains-multi-missing", prop("not_icontains_multi", ["zz"]), {}, True),
    # regex: searched anywhere; an invalid pattern is false for both operators
    ("regex-search", prop("regex", r"\d{3}"), {"k": "ab123"}, True),
    ("regex-anchored", prop("regex", r"^b"), {"k": "ab"}, False),
    ("regex-number-value", prop("regex", r"^12$"), {"k": 12}, True),
    ("regex-invalid", prop("regex", "(unclosed"), {"k": "(unclosed"}, False),
    ("not-regex-invalid", prop("not_regex", "(unclosed"), {"k": "anything"}, False),
    ("not-regex", prop("not_regex", "^a"), {"k": "ba"}, True),
    ("not-regex-missing", prop("not_regex", "^a"), {}, True),
    ("regex-missing", prop("regex", "a"), {}, False),
    # numeric: both sides parsed as f64; text that is not a number never matches
    ("gt-number", prop("gt", 10), {"k": 11}, True),
    ("gt-string-person-value", prop("gt", "9"), {"k": "10"}, True),
    ("lt-string-numeric", prop("lt", "10"), {"k": "9"}, True),
    ("gte-equal", prop("gte", 5), {"k": 5.0}, True),
    ("lte-above", prop("lte", 5), {"k": 6}, False),
    ("gt-non-numeric", prop("gt", 1), {"k": "abc"}, False),
    ("gt-bool", prop("gt", 0), {"k": True}, False),
    ("gt-null", prop("gt", 0), {"k": None}, False),
    ("gt-filter-not-number", prop("gt", "abc"), {"k": 5}, False),
    ("gt-missing", prop("gt", 1), {}, False),
    ("gt-scientific", prop("gt", "1e2"), {"k": "101"}, True),
    ("gt-whitespace-rejected", prop("gt", 1), {"k": " 5"}, False),
    ("between-inside", prop("between", [1, 10]), {"k": 10}, True),
    ("between-outside", prop("between", [1, 10]), {"k": 10.5}, False),
    ("between-string", prop("between", ["1", "10"]), {"k": "5"}, True),
    ("between-missing", prop("between", [1, 10]), {}, False),
    ("not-between-outside", prop("not_between", [1, 10]), {"k": 0}, True),
    ("not-between-inside", prop("not_between", [1, 10]), {"k": 3}, False),
    ("not-between-missing", prop("not_between", [1, 10]), {}, True),
    ("not-between-nan", prop("not_between", [1, 10]), {"k": "NaN"}, False),
    ("between-bad-bounds", prop("between", [10, 1]), {"k": 5}, False),
    ("not-between-bad-shape", prop("not_between", [1]), {"k": 5}, False),
    # semver: leading v, whitespace, padding, leading zeros accepted
    ("semver-eq", prop("semver_eq", "1.2.3"), {"k": "v1.2.3"}, True),
    ("semver-eq-padded", prop("semver_eq", "1.2"), {"k": "1.2.0"}, True),
    ("semver-eq-leading-zero", prop("semver_eq", "3.8.0"), {"k": "3.08"}, True),
    ("semver-neq", prop("semver_neq", "1.2.3"), {"k": "1.2.4"}, True),
    ("semver-gt", prop("semver_gt", "1.2.3"), {"k": "1.10.0"}, True),
    ("semver-gt-prerelease-below", prop("semver_gt", "1.2.3"), {"k": "1.2.3-alpha"}, False),
    ("semver-lt-prerelease", prop("semver_lt", "1.2.3"), {"k": "1.2.3-alpha"}, True),
    ("semver-gte", prop("semver_gte", "1.2.3"), {"k": "1.2.3"}, True),
    ("semver-lte", prop("semver_lte", "1.2.3"), {"k": "1.2.4"}, False),
    ("semver-invalid-person", prop("semver_gt", "1.0.0"), {"k": "banana"}, False),
    ("semver-invalid-filter", prop("semver_gt", "x.y"), {"k": "1.0.0"}, False),
    ("semver-missing", prop("semver_eq", "1.0.0"), {}, False),
    ("semver-tilde-in", prop("semver_tilde", "1.2.3"), {"k": "1.2.9"}, True),
    ("semver-tilde-out", prop("semver_tilde", "1.2.3"), {"k": "1.3.0"}, False),
    ("semver-tilde-below", prop("semver_tilde", "1.2.3"), {"k": "1.2.2"}, False),
    ("semver-caret-major", prop("semver_caret", "1.2.3"), {"k": "1.9.0"}, True),
    ("semver-caret-next-major", prop("semver_caret", "1.2.3"), {"k": "2.0.0"}, False),
    ("semver-caret-zero-minor", prop("semver_caret", "0.2.3"), {"k": "0.3.0"}, False),
    ("semver-caret-zero-minor-in", prop("semver_caret", "0.2.3"), {"k": "0.2.9"}, True),
    ("semver-caret-zero-zero", prop("semver_caret", "0.0.3"), {"k": "0.0.4"}, False),
    ("semver-caret-zero-zero-in", prop("semver_caret", "0.0.3"), {"k": "0.0.3"}, True),
    ("semver-wildcard-major", prop("semver_wildcard", "1.*"), {"k": "1.99.1"}, True),
    ("semver-wildcard-major-out", prop("semver_wildcard", "1.*"), {"k": "2.0.0"}, False),
    ("semver-wildcard-minor", prop("semver_wildcard", "1.2.*"), {"k": "1.2.7"}, True),
    ("semver-wildcard-minor-out", prop("semver_wildcard", "1.2.*"), {"k": "1.3.0"}, False),
    ("semver-wildcard-invalid", prop("semver_wildcard", "1.*.3"), {"k": "1.0.3"}, False),
    ("semver-range-prerelease", prop("semver_wildcard", "1.*"), {"k": "1.5.0-beta"}, False),
    # dates: absolute (date, datetime, Z, offsets, UTC suffix) and relative to now
    ("date-before", prop("is_date_before", "2024-01-01"), {"k": "2023-12-31"}, True),
    ("date-before-equal", prop("is_date_before", "2024-01-01"), {"k": "2024-01-01T00:00:00Z"}, False),
    ("date-after", prop("is_date_after", "2024-01-01T00:00:00+02:00"), {"k": "2023-12-31T23:00:00Z"}, True),
    ("date-after-utc-suffix", prop("is_date_after", "2024-01-01 10:00:00 UTC"), {"k": "2024-01-01T10:00:01Z"}, True),
    ("date-exact", prop("is_date_exact", "2024-01-01"), {"k": "2024-01-01T00:00:00+00:00"}, True),
    ("date-person-datetime", prop("is_date_before", "2024-01-01"), {"k": datetime(2023, 6, 1)}, True),
    ("date-person-date", prop("is_date_after", "2023-01-01"), {"k": date(2023, 6, 1)}, True),
    ("date-person-epoch", prop("is_date_after", "2024-01-01"), {"k": 1735689600}, True),
    ("date-person-epoch-text", prop("is_date_before", "2024-01-01"), {"k": "1600000000"}, True),
    ("date-relative-days", prop("is_date_after", "-7d"), {"k": "2024-03-30"}, True),
    ("date-relative-days-before", prop("is_date_before", "-7d"), {"k": "2024-03-20"}, True),
    ("date-relative-hours", prop("is_date_after", "-3h"), {"k": "2024-03-31T08:00:00Z"}, False),
    ("date-relative-weeks", prop("is_date_after", "2w"), {"k": "2024-03-18"}, True),
    ("date-relative-month-clamp", prop("is_date_exact", "-1m"), {"k": "2024-02-29T12:00:00Z"}, True),
    ("date-relative-year", prop("is_date_exact", "-1y"), {"k": "2023-03-31T12:00:00Z"}, True),
    ("date-relative-too-large", prop("is_date_before", "-10000d"), {"k": "1900-01-01"}, False),
    ("date-invalid-filter", prop("is_date_before", "soon"), {"k": "2024-01-01"}, False),
    ("date-invalid-person", prop("is_date_before", "2024-01-01"), {"k": "yesterday"}, False),
    ("date-missing", prop("is_date_before", "2024-01-01"), {}, False),
    ("date-non-string-filter", prop("is_date_before", 20240101), {"k": "2023-01-01"}, False),
    # unknown operators never match
    ("unknown-operator", prop("sounds_like", "x"), {"k": "x"}, False),
]


@pytest.mark.parametrize(("filter_", "properties", "expected"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_operator(filter_: dict, properties: dict, expected: bool) -> None:
    check(filter_, properties, expected)


def test_relative_months_clamp_each_step() -> None:
    """From 31 March, two months back clamps to 29 February, then keeps the 29th in January."""
    check(prop("is_date_exact", "-2m"), {"k": "2024-01-29T12:00:00Z"}, True)
    check(prop("is_date_exact", "-13m"), {"k": "2023-02-28T12:00:00Z"}, True)


def test_relative_dates_follow_now() -> None:
    matcher = compile_property(prop("is_date_after", "-1d"))
    props = {"k": "2024-03-31T00:00:00Z"}

    assert matcher(props, NOW) is True
    assert matcher(props, datetime(2024, 4, 5, tzinfo=UTC)) is False


def test_values_compare_as_json_text() -> None:
    assert [as_text(v) for v in (None, True, 3, 1.0, 1e16, 1e-7, 0.00001, [1, "a"], {"a": 1})] == [
        "null", "true", "3", "1.0", "1e16", "1e-7", "0.00001", '[1,"a"]', '{"a":1}'
    ]  # fmt: skip


def test_numbers_parse_like_f64() -> None:
    assert as_number("1_000") is None
    assert as_number("٣") is None
    assert as_number("-2.5e3") == -2500.0
    assert as_number(7) == 7.0
    assert as_number(False) is None


def test_versions_order_prerelease_before_release() -> None:
    assert parse_version("1.0.0-alpha") < parse_version("1.0.0-alpha.1") < parse_version("1.0.0-beta")
    assert parse_version("1.0.0-beta.2") < parse_version("1.0.0-beta.11") < parse_version("1.0.0")
    assert parse_version("1.2.3.4") is None
    assert parse_version("1.0.0-01") is None
