"""Property operators of release conditions, with the flags server's semantics.

Each filter is compiled once into a `Matcher`: a function of (properties, now) that returns
whether the filter holds. Compilation parses the filter value (numbers, regexes, dates,
versions) so evaluation only looks at the person's or group's value. Regexes are RE2 (linear time).

Server rules kept here: a missing property fails positive operators and satisfies negated ones
(`is_not`, `not_*`, `not_between`) and `is_not_set`; a filter without a value never matches;
values are compared through their JSON text (strings as themselves); a value that cannot be
parsed for the operator (number, date, version, regex) is a non-match, never an error.
"""

import calendar
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from operator import eq, ge, gt, le, lt, ne
from typing import Any

import re2

Matcher = Callable[[Mapping[str, Any], datetime | None], bool]

_MISSING = object()
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_RELATIVE_DATE = re.compile(r"-?([0-9]+)([hdwmy])")
_MAX_RELATIVE_AMOUNT = 10_000


def _never(props: Mapping[str, Any], now: datetime | None) -> bool:
    return False


# --- value conversions -----------------------------------------------------------------


def _float_text(value: float) -> str:
    """A float as serde_json writes it (ryu: `1e16`, `1000000000000000.0`, `0.00001`, `1e-6`)."""
    if not math.isfinite(value):
        return "null"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    exponent += len(digit_tuple) - len(digits)
    point = len(digits) + exponent
    if exponent >= 0 and point <= 16:
        text = digits + "0" * exponent + ".0"
    elif 0 < point <= 16:
        text = f"{digits[:point]}.{digits[point:]}"
    elif -5 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        text = digits[0] + (f".{digits[1:]}" if len(digits) > 1 else "") + f"e{point - 1}"
    return ("-" if sign else "") + text


def as_text(value: Any) -> str:
    """The text a value is compared as: strings as themselves, everything else as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def ascii_lower(text: str) -> str:
    """Lowercase ASCII letters only, as the server's case-insensitive text operators do."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


_F64_TEXT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE)


def as_number(value: Any) -> float | None:
    """Parse a value as f64 the way the server does (numbers directly, text strictly)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            return None
    text = as_text(value)
    return float(text) if _F64_TEXT.fullmatch(text) else None


def _is_boolean_like(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, str):
        return value.lower() in ("true", "false")
    if isinstance(value, list):
        return all(_is_boolean_like(item) for item in value)
    return False


def _is_truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.lower() == "true"
    if isinstance(value, list):
        return all(_is_truthy(item) for item in value)
    return False


# --- dates -----------------------------------------------------------------------------


def _months_back(moment: datetime, months: int) -> datetime:
    """Step back one calendar month at a time, clamping the day to each month's length."""
    year, month, day = moment.year, moment.month, moment.day
    for step in range(months):
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
        day = min(day, calendar.monthrange(year, month)[1])
        if day <= 28:  # no month is shorter: the remaining steps cannot clamp again
            year, month = divmod(year * 12 + month - 1 - (months - step - 1), 12)
            month += 1
            break
    return moment.replace(year=year, month=month, day=day)


def _years_back(moment: datetime, years: int) -> datetime:
    year = moment.year - years
    day = moment.day
    if moment.month == 2 and day == 29 and not calendar.isleap(year):
        day = 28
    return moment.replace(year=year, day=day)


def relative_date(text: str, now: datetime) -> datetime | None:
    """`-?N[hdwmy]` (N < 10000) as `now` minus N units; None when `text` is not relative."""
    match = _RELATIVE_DATE.fullmatch(text)
    if match is None:
        return None
    amount, unit = int(match.group(1)), match.group(2)
    if amount >= _MAX_RELATIVE_AMOUNT:
        return None
    try:
        if unit == "h":
            return now - timedelta(hours=amount)
        if unit == "d":
            return now - timedelta(days=amount)
        if unit == "w":
            return now - timedelta(weeks=amount)
        if unit == "m":
            return _months_back(now, amount)
        return _years_back(now, amount)
    except (ValueError, OverflowError):
        return None


def absolute_date(text: str) -> datetime | None:
    """An ISO date or datetime (`Z`, `UTC` suffix or offset allowed); naive values are UTC."""
    text = text.strip()
    if text.endswith("UTC"):
        text = text[:-3].rstrip()
        if not text:
            return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _timestamp(seconds: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        return None


_RELATIVE = object()


@lru_cache(maxsize=8192)
def _text_date(text: str) -> datetime | object | None:
    """A date string's instant; `_RELATIVE` when it depends on the current time."""
    seconds = as_number(text)
    if seconds is not None:
        return _timestamp(seconds) if math.isfinite(seconds) else None
    if _RELATIVE_DATE.fullmatch(text):
        return _RELATIVE
    return absolute_date(text)


def person_date(value: Any, now: datetime | None) -> datetime | None:
    """A person's date property: datetime, date, epoch seconds, or a date string."""
    if isinstance(value, str):
        moment = _text_date(value)
        return relative_date(value, now or datetime.now(UTC)) if moment is _RELATIVE else moment
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _timestamp(value) if math.isfinite(value) else None
    return None


# --- semantic versions -----------------------------------------------------------------

_IDENTIFIER = re.compile(r"[0-9A-Za-z-]+")


def _strip_zeros(part: str) -> str:
    return (part.lstrip("0") or "0") if part.isdigit() and part.isascii() else part


def _identifiers(text: str, numeric_without_zeros: bool) -> tuple | None:
    """Pre-release or build identifiers as sortable tuples (numeric before alphanumeric)."""
    keys = []
    for part in text.split("."):
        if not _IDENTIFIER.fullmatch(part):
            return None
        if part.isdigit():
            if numeric_without_zeros and len(part) > 1 and part[0] == "0":
                return None
            keys.append((0, int(part), part))
        else:
            keys.append((1, 0, part))
    return tuple(keys)


def _without_v(text: str) -> str:
    """The server strips one leading `v`, then surrounding whitespace."""
    return (text[1:] if text.startswith("v") else text).strip()


def parse_version(value: Any) -> tuple | None:
    """A version as a sortable key `((major, minor, patch), pre, build)`, or None.

    Leading zeros are dropped and missing minor/patch parts count as 0 (the server canonicalises
    mobile-style versions before strict semver parsing). A version without pre-release sorts
    after any pre-release of the same core.
    """
    return _parse_version_text(as_text(value))


@lru_cache(maxsize=4096)
def _parse_version_text(text: str) -> tuple | None:
    text = _without_v(text)
    cut = min((i for i in (text.find("-"), text.find("+")) if i >= 0), default=len(text))
    core, suffix = text[:cut], text[cut:]
    parts = [_strip_zeros(part) for part in core.split(".")]
    parts += ["0"] * (3 - len(parts))
    if len(parts) != 3 or not all(part.isdigit() and part.isascii() for part in parts):
        return None
    pre_text, _, build_text = suffix.partition("+")
    if suffix.startswith("+"):
        pre_text = ""
    elif pre_text:
        pre_text = pre_text[1:]
    if suffix.startswith("-") and not pre_text:
        return None
    pre = _identifiers(pre_text, True) if pre_text else ()
    build = _identifiers(build_text, False) if "+" in suffix else ()
    if pre is None or build is None or ("+" in suffix and not build_text):
        return None
    pre_key = (0, *pre) if pre else (1,)
    return (int(parts[0]), int(parts[1]), int(parts[2])), pre_key, build


def _caret_upper(parts: list[int]) -> tuple[int, int, int]:
    """Exclusive upper bound of `^parts` for 1 to 3 given parts (semver crate rules)."""
    major = parts[0]
    if major > 0 or len(parts) == 1:
        return (major + 1, 0, 0)
    minor = parts[1]
    if minor > 0 or len(parts) == 2:
        return (0, minor + 1, 0)
    return (0, 0, parts[2] + 1)


def version_range(operator: str, value: Any) -> tuple[tuple, tuple[int, int, int]] | None:
    """`(lower key, exclusive upper core)` of a tilde, caret or wildcard filter."""
    if operator in ("semver_tilde", "semver_caret"):
        lower = parse_version(value)
        if lower is None:
            return None
        major, minor, patch = lower[0]
        if operator == "semver_tilde":
            return lower, (major, minor + 1, 0)
        return lower, _caret_upper([major, minor, patch])
    parts = [_strip_zeros(part) for part in _without_v(as_text(value)).split(".")]
    wild = [part in ("*", "x", "X") for part in parts]
    fixed = wild.index(True) if any(wild) else len(parts)
    if len(parts) > 3 or not all(wild[fixed:]):
        return None
    if not all(part.isdigit() and part.isascii() for part in parts[:fixed]):
        return None
    numbers = [int(part) for part in parts[:fixed]]
    lower = ((*numbers, *[0] * (3 - len(numbers))), (1,), ())
    if not numbers:
        return lower, (math.inf, 0, 0)
    if any(wild):
        upper = [*numbers]
        upper[-1] += 1
        return lower, (*upper, *[0] * (3 - len(upper)))
    return lower, _caret_upper(numbers)


# --- compilation -----------------------------------------------------------------------


def _presence(key: str, negated: bool) -> Matcher:
    if negated:
        return lambda props, now: key not in props
    return lambda props, now: key in props


def _exact(key: str, value: Any, negated: bool) -> Matcher:
    if _is_boolean_like(value):
        wanted = _is_truthy(value)

        def test(props: Mapping[str, Any], now: datetime | None) -> bool:
            actual = props.get(key, _MISSING)
            if actual is _MISSING:
                return negated
            return (_is_truthy(actual) == wanted) != negated

        return test
    candidates = frozenset(as_text(item).lower() for item in value) if isinstance(value, list) else None
    single = None if isinstance(value, list) else as_text(value).lower()

    def test(props: Mapping[str, Any], now: datetime | None) -> bool:
        actual = props.get(key, _MISSING)
        if actual is _MISSING:
            return negated
        text = (actual if type(actual) is str else as_text(actual)).lower()
        return (text in candidates if candidates is not None else text == single) != negated

    return test


_TEXT_TESTS: dict[str, Callable[[str, str], bool]] = {
    "icontains": lambda text, needle: needle in text,
    "starts_with": lambda text, needle: text.startswith(needle),
    "ends_with": lambda text, needle: text.endswith(needle),
}


def _text(key: str, value: Any, operator: str) -> Matcher:
    negated = operator.startswith("not_")
    base = operator.removeprefix("not_")
    if base == "icontains_multi":
        needles = tuple(ascii_lower(as_text(item)) for item in (value if isinstance(value, list) else [value]))

        def contains_any(text: str, _: str) -> bool:
            return any(needle in text for needle in needles)

        compare, needle = contains_any, ""
    else:
        compare, needle = _TEXT_TESTS[base], ascii_lower(as_text(value))

    def test(props: Mapping[str, Any], now: datetime | None) -> bool:
        actual = props.get(key, _MISSING)
        if actual is _MISSING:
            return negated
        return compare(ascii_lower(actual if type(actual) is str else as_text(actual)), needle) != negated

    return test


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # an invalid pattern is an answer (None), not a line on stderr
    return options


_RE2_OPTIONS = _re2_options()


def regex_error(pattern: str) -> str | None:
    """Why RE2 cannot compile `pattern` (lookaround, backreferences, bad syntax), or None."""
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else "invalid pattern"
        return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    return None


@lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> Any:
    """Compiled pattern, cached across definitions; None when the pattern is invalid.

    RE2 runs in time linear in the input whatever the pattern (the `phc_` token that lets
    anyone choose the input is public), like the regex engine of PostHog's flags service;
    Python's `re` backtracks exponentially on patterns such as `(a+)+$`.
    """
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error:
        return None


def _regex(key: str, value: Any, negated: bool) -> Matcher:
    pattern = compile_regex(as_text(value))

    def test(props: Mapping[str, Any], now: datetime | None) -> bool:
        actual = props.get(key, _MISSING)
        if actual is _MISSING:
            return negated
        if pattern is None:
            return False
        return (pattern.search(actual if type(actual) is str else as_text(actual)) is not None) != negated

    return test


_NUMERIC_TESTS: dict[str, Callable[[Any, Any], bool]] = {"gt": gt, "gte": ge, "lt": lt, "lte": le}


def _numeric(key: str, value: Any, operator: str) -> Matcher:
    bound = as_number(value)
    if bound is None:
        return _never
    compare = _NUMERIC_TESTS[operator]

    def test(props: Mapping[str, Any], now: datetime | None) -> bool:
        actual = props.get(key)
        number = actual if type(actual) is int or type(actual) is float else as_number(actual)
        return number is not None and compare(number, bound)

    return test


def _between(key: str, value: Any, negated: bool) -> Matcher:
    if not isinstance(value, list) or len(value) != 2:
        return _never
    low, high = as_number(value[0]), as_number(value[1])
    if low is None or high is None or math.isnan(low) or math.isnan(high) or low > high:
        return _never

    def test(props: Mapping[str, Any], now: datetime | None) -> bool:
        actual = props.get(key, _MISSING)
        if actual is _MISSING:
            return negated
        number = as_number(actual)
        if number is None or math.isnan(number):
            return False
        return (low <= number <= high) != negated

    return test


_VERSION_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "semver_eq": eq, "semver_neq": ne, "semver_gt": gt, "semver_gte": ge, "semver_lt": lt, "semver_lte": le,
}  # fmt: skip


_VERSION_OPERATORS = frozenset({*_VERSION_TESTS, "semver_tilde", "semver_caret", "semver_wildcard"})


def _semver(key: str, value: Any, operator: str) -> Matcher:
    if operator in _VERSION_TESTS:
        wanted = parse_version(value)
        if wanted is None:
            return _never
        compare = _VERSION_TESTS[operator]

        def test(props: Mapping[str, Any], now: datetime | None) -> bool:
            actual = props.get(key, _MISSING)
            if actual is _MISSING:
                return False
            version = _parse_version_text(actual) if type(actual) is str else parse_version(actual)
            return version is not None and compare(version, wanted)

        return test
    bounds = version_range(operator, value)
    if bounds is None:
        return _never
    lower, upper = bounds

    def in_range(props: Mapping[str, Any], now: datetime | None) -> bool:
        actual = props.get(key, _MISSING)
        if actual is _MISSING:
            return False
        version = _parse_version_text(actual) if type(actual) is str else parse_version(actual)
        if version is None or version < lower or version[0] >= upper:
            return False
        # A pre-release only satisfies a range whose lower bound is a pre-release of the same core.
        return version[1] == (1,) or (lower[1] != (1,) and version[0] == lower[0])

    return in_range


_DATE_TESTS: dict[str, Callable[[Any, Any], bool]] = {"is_date_before": lt, "is_date_after": gt, "is_date_exact": eq}


def _date(key: str, value: Any, operator: str) -> Matcher:
    if not isinstance(value, str):
        return _never
    compare = _DATE_TESTS[operator]
    relative = _RELATIVE_DATE.fullmatch(value) is not None and relative_date(value, datetime.now(UTC)) is not None
    fixed = None if relative else absolute_date(value)
    if not relative and fixed is None:
        return _never

    def test(props: Mapping[str, Any], now: datetime | None) -> bool:
        actual = props.get(key, _MISSING)
        if actual is _MISSING:
            return False
        moment = person_date(actual, now)
        if moment is None:
            return False
        bound = fixed if fixed is not None else relative_date(value, now or datetime.now(UTC))
        return bound is not None and compare(moment, bound)

    return test


def compile_property(prop: Mapping[str, Any]) -> Matcher:
    """Compile one person or group property filter (cohort and flag filters are not here)."""
    key = prop.get("key")
    operator = prop.get("operator") or "exact"
    value = prop.get("value")
    if not isinstance(key, str) or not isinstance(operator, str):
        return _never
    if operator in ("is_set", "is_not_set"):
        return _presence(key, operator == "is_not_set")
    if value is None:
        return _never
    if operator in ("exact", "is_not"):
        return _exact(key, value, operator == "is_not")
    if operator.removeprefix("not_") in ("icontains", "starts_with", "ends_with", "icontains_multi"):
        return _text(key, value, operator)
    if operator in ("regex", "not_regex"):
        return _regex(key, value, operator == "not_regex")
    if operator in _NUMERIC_TESTS:
        return _numeric(key, value, operator)
    if operator in ("between", "not_between"):
        return _between(key, value, operator == "not_between")
    if operator.startswith("semver_"):
        return _semver(key, value, operator) if operator in _VERSION_OPERATORS else _never
    if operator in _DATE_TESTS:
        return _date(key, value, operator)
    return _never
