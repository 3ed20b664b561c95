"""In-process flag evaluation speed: our `CompiledFlags` against the official `posthog` SDK.

Both evaluate the same 10 flags (simple rollouts, multivariate experiments with payloads,
person-property conditions using exact, is_not, icontains, regex, numeric, semver and date
operators) for the same properties and `--ids` distinct ids (default 100k). The SDK side is
its local-evaluation matcher, `posthog.feature_flags.match_feature_flag_properties`, called
once per flag and id; ours is one `CompiledFlags.evaluate` per id, context construction
included (reading `.value` off the results happens after the clock stops). The two take turns
every `--chunk` ids, so background load weighs on both alike.

Prints evaluations per second (one flag for one id) for both, by CPU time of this process (which
other work on the machine does not inflate) and by wall-clock time, the ratio, and the number of
values that differ where both give an answer (must be 0; the exit status is 1 otherwise).

    .venv/bin/python bench/evaluate.py [--ids 100000]
"""

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from posthog.feature_flags import InconclusiveMatchError, match_feature_flag_properties  # noqa: E402

from experiments_service.flags.evaluation import CompiledFlags, EvaluationContext  # noqa: E402

PLANS = ("free", "pro", "enterprise", "team")
COUNTRIES = ("US", "DE", "FR", "GB", "BR")


def _person(key: str, operator: str, value: Any) -> dict:
    return {"key": key, "type": "person", "operator": operator, "value": value}


def _flag(flag_id: int, key: str, groups: list[dict], **filters: Any) -> dict:
    return {"id": flag_id, "key": key, "active": True, "deleted": False, "ensure_experience_continuity": False,
            "version": 1, "evaluation_runtime": "all", "evaluation_tags": [], "filters": {"groups": groups, **filters}}  # fmt: skip


@dataclass(frozen=True)
class Timing:
    """Wall-clock and CPU seconds (CPU time leaves out other processes on a busy machine)."""

    wall: float
    cpu: float

    @classmethod
    def now(cls) -> "Timing":
        return cls(time.perf_counter(), time.process_time())

    def __add__(self, other: "Timing") -> "Timing":
        return Timing(self.wall + other.wall, self.cpu + other.cpu)

    def __sub__(self, other: "Timing") -> "Timing":
        return Timing(self.wall - other.wall, self.cpu - other.cpu)


def bench_flags() -> list[dict]:
    five = [{"key": k, "rollout_percentage": p} for k, p in
            (("first", 50), ("second", 20), ("third", 20), ("fourth", 5), ("fifth", 5))]  # fmt: skip
    return [
        _flag(1, "simple-rollout", [{"properties": [], "rollout_percentage": 45}]),
        _flag(2, "multivariate-rollout", [{"properties": [], "rollout_percentage": 55}],
              multivariate={"variants": five}, payloads={v["key"]: f'{{"n": {i}}}' for i, v in enumerate(five)}),
        _flag(3, "checkout-experiment", [{"properties": [], "rollout_percentage": 100}],
              multivariate={"variants": [{"key": "control", "rollout_percentage": 50},
                                         {"key": "test", "rollout_percentage": 50}]},
              payloads={"control": '{"layout": "a"}', "test": '{"layout": "b"}'}),
        _flag(4, "paid-plans", [{"properties": [_person("plan", "exact", ["pro", "enterprise"])],
                                 "rollout_percentage": 80}], payloads={"true": '"paid"'}),
        _flag(5, "example-staff", [{"properties": [_person("email", "icontains", "@EXAMPLE.com"),
                                                   _person("country", "is_not", "DE")], "rollout_percentage": 100}]),
        _flag(6, "adult-light-users", [{"properties": [_person("age", "gte", 18), _person("sessions", "lt", 100)],
                                        "rollout_percentage": 70}]),
        _flag(7, "numbered-emails", [{"properties": [_person("email", "regex", r"^user-\d*7\d*@")]}]),
        _flag(8, "staged-release", [
            {"properties": [_person("country", "exact", "US")], "rollout_percentage": 30},
            {"properties": [_person("plan", "exact", "free")], "rollout_percentage": 10},
        ]),
        _flag(9, "new-app-versions", [{"properties": [_person("app_version", "semver_gte", "2.1.0"),
                                                      _person("app_version", "semver_caret", "2.0.0")]}]),
        _flag(10, "recent-signups", [
            {"properties": [_person("signed_up", "is_date_after", "2024-06-01")], "rollout_percentage": 100,
             "variant": "fresh"},
            {"properties": [], "rollout_percentage": 40},
        ], multivariate={"variants": [{"key": "classic", "rollout_percentage": 60},
                                      {"key": "fresh", "rollout_percentage": 40}]}),
    ]  # fmt: skip


def person_properties(i: int) -> dict:
    return {
        "plan": PLANS[i % 4],
        "email": f"user-{i}@{'example.com' if i % 3 else 'other.org'}",
        "country": COUNTRIES[i % 5],
        "age": 10 + i % 50,
        "sessions": (i * 7) % 150,
        "app_version": f"{1 + i % 3}.{i % 4}.{i % 7}",
        "signed_up": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00Z",
    }


def run_ours(compiled: CompiledFlags, people: list[tuple[str, dict]]) -> tuple[Timing, list[dict]]:
    start = Timing.now()
    results = [compiled.evaluate(EvaluationContext(distinct_id, properties)) for distinct_id, properties in people]
    elapsed = Timing.now() - start
    return elapsed, [{key: result.value for key, result in row.items()} for row in results]


def run_sdk(flags: list[dict], people: list[tuple[str, dict]]) -> tuple[Timing, list[dict]]:
    flags_by_key = {flag["key"]: flag for flag in flags}
    start = Timing.now()
    values = []
    for distinct_id, properties in people:
        row = {}
        for flag in flags:
            try:
                row[flag["key"]] = match_feature_flag_properties(
                    flag, distinct_id, properties, flags_by_key=flags_by_key, evaluation_cache={},
                    bucketing_value=distinct_id,
                )  # fmt: skip
            except InconclusiveMatchError:
                pass
        values.append(row)
    return Timing.now() - start, values


def interleaved(flags: list[dict], people: list[tuple[str, dict]], chunk: int) -> tuple[Timing, Timing, list, list]:
    """Alternate the two evaluators chunk by chunk, so background load weighs on both alike."""
    compiled = CompiledFlags(flags)
    ours_seconds = sdk_seconds = Timing(0.0, 0.0)
    ours: list[dict] = []
    sdk: list[dict] = []
    for begin in range(0, len(people), chunk):
        part = people[begin : begin + chunk]
        seconds, values = run_ours(compiled, part)
        ours_seconds += seconds
        ours += values
        seconds, values = run_sdk(flags, part)
        sdk_seconds += seconds
        sdk += values
    return ours_seconds, sdk_seconds, ours, sdk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1_000, help="ids per turn of each evaluator")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    flags = bench_flags()
    people = [(f"user-{i}", person_properties(i)) for i in range(args.ids)]
    evaluations = len(people) * len(flags)

    ours_seconds, sdk_seconds, ours, sdk = interleaved(flags, people, args.chunk)

    compared = mismatches = undefined = 0
    for our_row, sdk_row in zip(ours, sdk, strict=True):
        undefined += len(flags) - len(sdk_row)
        for key, value in sdk_row.items():
            compared += 1
            mismatches += our_row[key] != value

    print(f"flags: {len(flags)}, distinct ids: {len(people)}, evaluations: {evaluations}")
    for clock in ("cpu", "wall"):
        ours_time, sdk_time = getattr(ours_seconds, clock), getattr(sdk_seconds, clock)
        ours_rate, sdk_rate = evaluations / ours_time, evaluations / sdk_time
        print(f"[{clock:4s}] ours: {ours_rate:10,.0f} evals/s ({ours_time:.2f} s)   "
              f"sdk: {sdk_rate:10,.0f} evals/s ({sdk_time:.2f} s)   ratio: {ours_rate / sdk_rate:.2f}x")  # fmt: skip
    print(f"compared values: {compared}, mismatches: {mismatches}, sdk inconclusive: {undefined}")
    enabled = sum(v is not False for row in ours for v in row.values())
    print(f"enabled share (ours): {enabled / evaluations:.3f}")
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
