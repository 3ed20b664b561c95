"""Limits on JSON text: nesting depth, string length, NUL, unpaired surrogates, NaN/Infinity,
integers beyond 64 bits.

The edge (`edge.py`) applies them to every API body and JSON query parameter before
authentication, so they must stay cheap on a 20 MB body: every check is a pass in C (regular
expressions, numpy, the JSON encoder) over the text, never a Python loop over its values (a
loop over five million numbers takes seconds). Only when a check fires are the top-level
fields re-encoded one by one, to name the one at fault (`attr`).
"""

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Outside strings: the non-finite constants, and numbers that may not fit (checked exactly).
_NOT_FINITE = re.compile(rb"NaN|Infinity")
_NUMBER_TO_CHECK = re.compile(rb"-?\d{19,}(?:\.\d+)?(?:[eE][+-]?\d+)?|-?\d+(?:\.\d+)?[eE][+-]?\d{3,}")
_QUOTE = ord('"')
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_STEP = np.zeros(256, np.int32)
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1

NUL_DETAIL = "Null characters are not allowed."
SURROGATE_DETAIL = "Unpaired surrogate characters (\\ud800-\\udfff) are not allowed."
BIG_INT_DETAIL = "Integers must fit in 64 bits."
# What the JSON encoder (and so every stored JSON column) can hold.
_MIN_INT, _MAX_INT = -(2**63), 2**64 - 1
NOT_FINITE_DETAIL = "JSON parse error - Out of range float values are not JSON compliant"


@dataclass(frozen=True, slots=True)
class JsonProblem:
    """Why a value breaks the limits; `attr` is the top-level key it was found under, if any."""

    detail: str
    code: str
    attr: str | None = None


@dataclass(frozen=True, slots=True)
class JsonLimits:
    max_depth: int = 64
    max_string_length: int = 100_000

    def problem(self, value: Any, text: bytes) -> JsonProblem | None:
        """The first limit broken by `value`, read from the JSON `text`; None when it holds."""
        found = self._text_problem(value, text)
        if found is None or not isinstance(value, dict):
            return found
        for key, child in value.items():
            if self._text_problem(key, _encoded(key)) is not None:
                return JsonProblem(found.detail, found.code, str(key))
            try:
                child_text = _encoded(child)
            except RecursionError:  # too deep for the encoder: the depth problem is here
                return JsonProblem(found.detail, found.code, str(key))
            if self._text_problem(child, child_text) is not None:
                return JsonProblem(found.detail, found.code, str(key))
        return found

    def _text_problem(self, value: Any, text: bytes) -> JsonProblem | None:
        masked, quotes, outside = _split_strings(text)
        if _depth(outside) > self.max_depth:
            return JsonProblem(f"JSON nested deeper than {self.max_depth} levels is not accepted.", "max_depth")
        if len(text) > self.max_string_length and self._has_long_string(text, quotes):
            return JsonProblem(
                f"Ensure this field has no more than {self.max_string_length} characters.", "max_length"
            )
        if b"\\u0000" in masked:
            return JsonProblem(NUL_DETAIL, "null_characters_not_allowed")
        if _SURROGATE_ESCAPE.search(masked) is not None and _has_lone_surrogate(value):
            return JsonProblem(SURROGATE_DETAIL, "invalid_input")
        if _NOT_FINITE.search(outside) is not None:
            return JsonProblem(NOT_FINITE_DETAIL, "parse_error")
        if _may_hold_unusual_numbers(outside):
            for number in _NUMBER_TO_CHECK.finditer(outside):
                problem = _number_problem(number.group())
                if problem is not None:
                    return problem
        return None

    def _has_long_string(self, text: bytes, quotes: np.ndarray) -> bool:
        """Literals whose raw length is over the limit are decoded to count characters
        (an escape is longer than the character it stands for, never shorter)."""
        starts, ends = quotes[0::2], quotes[1::2]
        starts = starts[: len(ends)]
        for index in np.flatnonzero(ends - starts - 1 > self.max_string_length):
            if len(json.loads(text[starts[index] : ends[index] + 1])) > self.max_string_length:
                return True
        return False


def _split_strings(text: bytes) -> tuple[bytes, np.ndarray, bytes]:
    """The text with escaped backslashes and quotes masked (same length: every backslash left
    starts an escape, every quote left delimits a literal), the quotes' positions (literals
    lie between even and odd ones), and the text outside literals."""
    masked = text.replace(b"\\\\", b"xx").replace(b'\\"', b"xx")
    characters = np.frombuffer(masked, np.uint8)
    is_quote = characters == _QUOTE
    quotes = np.flatnonzero(is_quote)
    if not quotes.size:
        return masked, quotes, masked
    # Inside a literal: an odd number of quotes so far, the quote itself excluded.
    inside = np.bitwise_xor.accumulate(is_quote.view(np.uint8)).view(bool) & ~is_quote
    return masked, quotes, characters[~inside].tobytes()


def _encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


def _depth(outside_strings: bytes) -> int:
    """Deepest bracket nesting of JSON text whose string literals were emptied."""
    brackets = np.frombuffer(outside_strings.translate(None, _NOT_BRACKETS), np.uint8)
    return int(_STEP[brackets].cumsum().max()) if brackets.size else 0


def _may_hold_unusual_numbers(outside_strings: bytes) -> bool:
    """A 19-digit run or a 3-digit exponent (cheap substring tests on digits made `0`)."""
    zeros = outside_strings.translate(_DIGITS_AS_ZERO)
    return b"0" * 19 in zeros or any(marker in zeros for marker in (b"e000", b"e+000", b"e-000", b"E000", b"E+000", b"E-000"))


def _has_lone_surrogate(value: Any) -> bool:
    """The parser joins escaped pairs into one character; any surrogate left is unpaired."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (RecursionError, ValueError):
        return False
    return False


def _number_problem(token: bytes) -> JsonProblem | None:
    if all(character not in token for character in b".eE"):
        return None if _MIN_INT <= int(token) <= _MAX_INT else JsonProblem(BIG_INT_DETAIL, "max_value")
    return None if math.isfinite(float(token)) else JsonProblem(NOT_FINITE_DETAIL, "parse_error")


def has_unstorable_text(text: str) -> bool:
    """True for text no database column of ours can hold (NUL, unpaired surrogates)."""
    return "\x00" in text or _SURROGATE.search(text) is not None
