"""Limits on decoded JSON: nesting depth, string length, NUL, unpaired surrogates, NaN.

Pure and iterative (no recursion, so a value nested 10,000 deep is measured, not crashed on).
The edge (`edge.py`) applies it to every API body and JSON query parameter, `/flags` to its
body, and capture to each event on its own (a bad event is dropped, its batch kept).
"""

import math
import re
from dataclasses import dataclass
from typing import Any

# A UTF-16 surrogate that is not part of a pair cannot be encoded as UTF-8 (nor stored).
_SURROGATE = re.compile("[\ud800-\udfff]")

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
    # None: no limit on string length (capture bounds events by body size instead).
    max_string_length: int | None = 100_000
    allow_nul: bool = False

    def problem(self, value: Any) -> JsonProblem | None:
        """The first limit `value` breaks, or None; containers count one level each."""
        stack: list[tuple[Any, int, str | None]] = [(value, 0, None)]
        while stack:
            item, depth, attr = stack.pop()
            if isinstance(item, str):
                found = self._string_problem(item, attr)
                if found is not None:
                    return found
            elif isinstance(item, dict | list):
                if depth >= self.max_depth:
                    return JsonProblem(
                        f"JSON nested deeper than {self.max_depth} levels is not accepted.", "max_depth", attr
                    )
                if isinstance(item, dict):
                    for key, child in item.items():
                        key_attr = attr if depth else str(key)
                        if isinstance(key, str):
                            found = self._string_problem(key, key_attr)
                            if found is not None:
                                return found
                        stack.append((child, depth + 1, key_attr))
                else:
                    stack.extend((child, depth + 1, attr) for child in item)
            elif isinstance(item, float) and not math.isfinite(item):
                return JsonProblem(NOT_FINITE_DETAIL, "parse_error", attr)
            elif isinstance(item, int) and not _MIN_INT <= item <= _MAX_INT:
                return JsonProblem(BIG_INT_DETAIL, "max_value", attr)
        return None

    def _string_problem(self, text: str, attr: str | None) -> JsonProblem | None:
        if self.max_string_length is not None and len(text) > self.max_string_length:
            return JsonProblem(
                f"Ensure this field has no more than {self.max_string_length} characters.", "max_length", attr
            )
        if not self.allow_nul and "\x00" in text:
            return JsonProblem(NUL_DETAIL, "null_characters_not_allowed", attr)
        if _SURROGATE.search(text) is not None:
            return JsonProblem(SURROGATE_DETAIL, "invalid_input", attr)
        return None


def has_unstorable_text(text: str) -> bool:
    """True for text no database column of ours can hold (NUL, unpaired surrogates)."""
    return "\x00" in text or _SURROGATE.search(text) is not None
