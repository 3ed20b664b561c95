"""Calibration of the statistics: simulated A/A experiments (the same true conversion rate in both
variants) go through the real capture endpoint (`POST /batch/`), the experiments API and the results
endpoint, in-process over ASGI against a fresh SQLite database.

Prints the frequentist false-positive rate at α = 0.05 and the share of Bayesian `significant`
results (both should be 5 ± 1.5 %; for Bayesian that is `ci_level` 0.975, see DECISION_RULES), then
the detection rate of a true 10 % relative lift. Then three more sections:

- **peeking**: A/A experiments whose users arrive in 10 waves, results read after each wave; an
  experiment counts as a false positive when any read says significant. Fixed-horizon p-values
  (expect well above 5 %) against sequential testing (always-valid, must stay ≤ 5 %).
- **CUPED**: a mean metric whose pre-exposure value is correlated with the post-exposure one;
  the variance reduction reported, and the confidence interval's width with and without CUPED.
- **family**: A/A experiments with 10 metrics; the family-wise false-positive rate (any metric
  significant) uncorrected, with Holm–Bonferroni and with Benjamini–Hochberg.

    .venv/bin/python bench/aa_calibration.py [--experiments 400] [--users 1000] [--rate 0.2] [--seed 2026]
        [--peeking-experiments 100] [--cuped-experiments 20] [--family-experiments 60] [--family-users 400]
"""

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

from experiments_service import migrate
from experiments_service.app import create_app
from experiments_service.auth.service import create_project, ensure_user, issue_personal_api_key
from experiments_service.settings import Settings

BATCH_SIZE = 2000
# The Bayesian rule "chance_to_win > ci_level or < 1 − ci_level" is two-sided, so its false-positive
# rate is 2·(1 − ci_level): ci_level 0.975 is the rule matching α = 0.05; the default 0.95 gives ~10 %.
DECISION_RULES = {
    "frequentist, alpha 0.05 (p < 0.05)": {"method": "frequentist", "frequentist": {"alpha": 0.05}},
    "bayesian, ci_level 0.975": {"method": "bayesian", "bayesian": {"ci_level": 0.975}},
    "bayesian, ci_level 0.95 (default)": {"method": "bayesian"},
}
CALIBRATED_RULES = ("frequentist, alpha 0.05 (p < 0.05)", "bayesian, ci_level 0.975")


def simulated_events(rng: np.random.Generator, key: str, users: int, rates: tuple[float, float], start: datetime):
    """One exposure per user (alternating variants) and a `purchase` for those who convert."""
    events = []
    converted = rng.random(users)
    offsets = rng.integers(3600, 86_400, size=users)
    for index in range(users):
        variant = ("control", "test")[index % 2]
        user = f"{key}-{index}"
        exposed_at = start + timedelta(seconds=int(offsets[index]))
        events.append({
            "event": "$feature_flag_called", "distinct_id": user, "timestamp": exposed_at.isoformat(),
            "properties": {"$feature_flag": key, "$feature_flag_response": variant},
        })
        if converted[index] < rates[index % 2]:
            events.append({
                "event": "purchase", "distinct_id": user,
                "timestamp": (exposed_at + timedelta(minutes=10)).isoformat(), "properties": {},
            })
    return events


class Simulation:
    def __init__(self, client: httpx.AsyncClient, project_id: int, project_api_key: str, personal_api_key: str):
        self.client = client
        self.base = f"/api/projects/{project_id}/experiments/"
        self.project_api_key = project_api_key
        self.headers = {"Authorization": f"Bearer {personal_api_key}"}

    async def capture(self, events: list[dict]) -> None:
        for first in range(0, len(events), BATCH_SIZE):
            response = await self.client.post(
                "/batch/", json={"api_key": self.project_api_key, "batch": events[first : first + BATCH_SIZE]}
            )
            response.raise_for_status()

    async def experiment(
        self, key: str, start: datetime, metrics: list[dict] | None = None, stats_config: dict | None = None
    ) -> int:
        response = await self.client.post(self.base, headers=self.headers, json={
            "name": key,
            "feature_flag_key": key,
            "start_date": start.isoformat(),
            "parameters": {"feature_flag_variants": [
                {"key": "control", "rollout_percentage": 50}, {"key": "test", "rollout_percentage": 50},
            ]},
            "metrics": metrics or [FUNNEL],
            "stats_config": stats_config or {"method": "frequentist"},
            "allow_unknown_events": True,
        })
        response.raise_for_status()
        return response.json()["id"]

    async def configure(self, experiment_id: int, stats_config: dict) -> None:
        response = await self.client.patch(
            f"{self.base}{experiment_id}/", headers=self.headers, json={"stats_config": stats_config}
        )
        response.raise_for_status()

    async def variant_results(self, experiment_id: int) -> list[dict]:
        """The test variant's result of every metric."""
        response = await self.client.get(f"{self.base}{experiment_id}/results/", headers=self.headers)
        response.raise_for_status()
        return [result["variant_results"][0] for result in response.json()["results"]]

    async def significant(self, experiment_id: int, stats_config: dict) -> bool:
        """Switch the experiment's statistics, read its results, and report the test variant's verdict."""
        await self.configure(experiment_id, stats_config)
        [variant] = await self.variant_results(experiment_id)
        assert not variant["validation_failures"], variant
        return bool(variant["significant"])


FUNNEL = {"kind": "ExperimentMetric", "metric_type": "funnel", "series": [{"kind": "EventsNode", "event": "purchase"}]}
PEEKS = 10
FIXED = {"method": "frequentist"}


def sequential_config(users: int) -> dict:
    """Sequential testing tuned to the experiment's final size (PostHog's advice for the parameter)."""
    return {"method": "frequentist", "frequentist": {"sequential_testing_enabled": True, "sequential_tuning_parameter": users}}


def amount_metric(event: str) -> dict:
    return {
        "kind": "ExperimentMetric", "metric_type": "mean", "uuid": event,
        "source": {"kind": "EventsNode", "event": event, "math": "sum", "math_property": "amount"},
    }


async def peeking(simulation: Simulation, rng: np.random.Generator, args: argparse.Namespace, start: datetime) -> dict:
    """Share of A/A experiments declared significant at any of 10 reads, fixed-horizon vs sequential."""
    ever = {"fixed": 0, "sequential": 0}
    at_end = {"fixed": 0, "sequential": 0}
    for index in range(args.peeking_experiments):
        key = f"peek-{index}"
        experiment_id = await simulation.experiment(key, start)
        events = simulated_events(rng, key, args.users, (args.rate, args.rate), start)
        # Users arrive in waves: one exposure event, then maybe a purchase, per user.
        per_user = [[]]
        for event in events:
            if event["event"] == "$feature_flag_called" and per_user[-1]:
                per_user.append([])
            per_user[-1].append(event)
        wave = len(per_user) // PEEKS
        seen = {"fixed": False, "sequential": False}
        for peek in range(PEEKS):
            batch = [event for user in per_user[peek * wave : (peek + 1) * wave] for event in user]
            await simulation.capture(batch)
            for name, config in (("fixed", FIXED), ("sequential", sequential_config(args.users))):
                await simulation.configure(experiment_id, config)
                [variant] = await simulation.variant_results(experiment_id)
                verdict = bool(variant["significant"])
                seen[name] = seen[name] or verdict
                if peek == PEEKS - 1:
                    at_end[name] += verdict
        for name in ever:
            ever[name] += seen[name]
    return {"ever": ever, "at_end": at_end}


def cuped_events(rng: np.random.Generator, key: str, users: int, start: datetime, correlation: float):
    """Per user one pre-exposure purchase (a day before exposure) and one after, their amounts
    correlated through the user's own spending level."""
    events = []
    noise = np.sqrt(1 - correlation**2)
    for index in range(users):
        variant = ("control", "test")[index % 2]
        user = f"{key}-{index}"
        exposed_at = start + timedelta(hours=1, seconds=index)
        level = rng.normal()
        before, after = round(50 + 10 * level, 2), round(50 + 10 * (correlation * level + noise * rng.normal()), 2)
        events += [
            {"event": "$feature_flag_called", "distinct_id": user, "timestamp": exposed_at.isoformat(),
             "properties": {"$feature_flag": key, "$feature_flag_response": variant}},
            {"event": "spend", "distinct_id": user, "timestamp": (exposed_at - timedelta(days=1)).isoformat(),
             "properties": {"amount": before}},
            {"event": "spend", "distinct_id": user, "timestamp": (exposed_at + timedelta(minutes=5)).isoformat(),
             "properties": {"amount": after}},
        ]
    return events


async def cuped(simulation: Simulation, rng: np.random.Generator, args: argparse.Namespace, start: datetime) -> dict:
    """Mean variance reduction and interval widths with and without CUPED (A/A data)."""
    reductions, widths, false_positives = [], {"plain": [], "cuped": []}, 0
    for index in range(args.cuped_experiments):
        key = f"cuped-{index}"
        experiment_id = await simulation.experiment(key, start, [amount_metric("spend")])
        await simulation.capture(cuped_events(rng, key, args.users, start, args.correlation))
        for name, config in (("plain", FIXED), ("cuped", {"method": "frequentist", "cuped": {"enabled": True}})):
            await simulation.configure(experiment_id, config)
            [variant] = await simulation.variant_results(experiment_id)
            low, high = variant["confidence_interval"]
            widths[name].append(high - low)
            if name == "cuped":
                reductions.append(variant["cuped"]["variance_reduction"])
                false_positives += bool(variant["significant"])
    return {
        "variance_reduction": float(np.mean(reductions)) if reductions else float("nan"),
        "width_ratio": float(np.mean(widths["cuped"]) / np.mean(widths["plain"])) if reductions else float("nan"),
        "false_positives": false_positives,
    }


async def family(simulation: Simulation, rng: np.random.Generator, args: argparse.Namespace, start: datetime) -> dict:
    """Share of A/A experiments with 10 metrics where at least one verdict is significant."""
    names = [f"metric_{number}" for number in range(10)]
    rates = {
        (difference, correction): 0
        for difference in ("relative", "absolute")
        for correction in ("none", "holm-bonferroni", "benjamini-hochberg")
    }
    for index in range(args.family_experiments):
        key = f"family-{index}"
        experiment_id = await simulation.experiment(key, start, [amount_metric(name) for name in names])
        events = []
        for user_index in range(args.family_users):
            user = f"{key}-{user_index}"
            exposed_at = start + timedelta(hours=1, seconds=user_index)
            events.append({"event": "$feature_flag_called", "distinct_id": user, "timestamp": exposed_at.isoformat(),
                           "properties": {"$feature_flag": key, "$feature_flag_response": ("control", "test")[user_index % 2]}})
            for name, amount in zip(names, rng.gamma(2.0, 10.0, len(names)), strict=True):
                events.append({"event": name, "distinct_id": user,
                               "timestamp": (exposed_at + timedelta(minutes=5)).isoformat(),
                               "properties": {"amount": round(float(amount), 2)}})
        await simulation.capture(events)
        for difference, correction in rates:
            config = {"method": "frequentist", "difference_type": difference}
            if correction != "none":
                config["p_value_correction"] = correction
            await simulation.configure(experiment_id, config)
            verdicts = [variant["significant"] for variant in await simulation.variant_results(experiment_id)]
            rates[difference, correction] += any(verdicts)
    return rates


async def run(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    # In memory-backed storage where there is one: the figures are about statistics, not fsync.
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'aa.db'}"
        await asyncio.to_thread(migrate.upgrade, url)
        app = create_app(Settings(database_url=url, run_worker=False))
        async with app.state.db.transaction() as session:
            project = await create_project(session, "calibration")
            user = await ensure_user(session, "calibration@example.com", project)
            key = await issue_personal_api_key(session, user, ["*"])
        start = datetime.now(UTC) - timedelta(days=2)
        began = time.perf_counter()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://aa", timeout=120) as client:
            simulation = Simulation(client, project.id, project.api_token, key.secret)
            tallies = {}
            for label, lift, count in (("A/A", 1.0, args.experiments), ("10% lift", 1.1, args.lift_experiments)):
                verdicts = np.zeros(len(DECISION_RULES), dtype=int)
                for index in range(count):
                    flag_key = f"{'aa' if lift == 1.0 else 'lift'}-{index}"
                    await simulation.capture(simulated_events(rng, flag_key, args.users, (args.rate, args.rate * lift), start))
                    experiment_id = await simulation.experiment(flag_key, start)
                    for rule, stats_config in enumerate(DECISION_RULES.values()):
                        verdicts[rule] += await simulation.significant(experiment_id, stats_config)
                tallies[label] = (count, verdicts)
            sections = {}
            for name, section, count in (
                ("peeking", peeking, args.peeking_experiments),
                ("cuped", cuped, args.cuped_experiments),
                ("family", family, args.family_experiments),
            ):
                if count:
                    section_began = time.perf_counter()
                    sections[name] = (await section(simulation, rng, args, start), time.perf_counter() - section_began)
        await app.state.db.dispose()
    elapsed = time.perf_counter() - began
    print(f"{args.users} users per experiment, conversion {args.rate:.0%}, seed {args.seed}, {elapsed:.0f} s")
    for label, (count, verdicts) in tallies.items():
        if not count:
            continue
        what = "significant (false positives)" if label == "A/A" else "significant (detections)"
        print(f"{label} — {count} experiments, share {what}:")
        for name, verdict in zip(DECISION_RULES, verdicts, strict=True):
            print(f"  {name:<44} {verdict / count:7.2%}")
    count, verdicts = tallies["A/A"]
    if count:
        shares = dict(zip(DECISION_RULES, verdicts / count, strict=True))
        calibrated = all(0.035 <= shares[name] <= 0.065 for name in CALIBRATED_RULES)
        print("A/A within 5 ± 1.5 % for", " and ".join(CALIBRATED_RULES) + ":", "yes" if calibrated else "NO")
    if "peeking" in sections:
        result, seconds = sections["peeking"]
        n = args.peeking_experiments
        print(f"Peeking — {n} A/A experiments, results read {PEEKS} times each ({seconds:.0f} s), share ever significant:")
        print(f"  fixed-horizon p < 0.05                       {result['ever']['fixed'] / n:7.2%}"
              f"   (at the last read only: {result['at_end']['fixed'] / n:.2%})")
        print(f"  sequential (tuning {args.users})                 {result['ever']['sequential'] / n:7.2%}"
              f"   (at the last read only: {result['at_end']['sequential'] / n:.2%})")
        print("Sequential ≤ 5 % under peeking:", "yes" if result["ever"]["sequential"] / n <= 0.05 else "NO")
    if "cuped" in sections:
        result, seconds = sections["cuped"]
        print(f"CUPED — {args.cuped_experiments} A/A experiments, covariate correlation {args.correlation} ({seconds:.0f} s):")
        print(f"  mean variance reduction {result['variance_reduction']:.1%} (ρ² = {args.correlation**2:.1%} expected),"
              f" interval width with CUPED / without {result['width_ratio']:.3f} (√(1 − ρ²) = {(1 - args.correlation**2) ** 0.5:.3f}),"
              f" false positives {result['false_positives']}")
    if "family" in sections:
        result, seconds = sections["family"]
        n = args.family_experiments
        print(f"Family — {n} A/A experiments × 10 metrics, {args.family_users} users each ({seconds:.0f} s),"
              " share with any significant verdict:")
        for (difference, correction), hits in result.items():
            print(f"  {difference:<9} effect, {correction:<20} {hits / n:7.2%}")
        print(f"  (exact tests give 1 − 0.95^10 = {1 - 0.95**10:.1%} uncorrected and 1 − 0.995^10 = {1 - 0.995**10:.1%}"
              " with Holm–Bonferroni)")
        corrected = all(result[difference, "holm-bonferroni"] / n <= 0.05 for difference in ("relative", "absolute"))
        print("Holm–Bonferroni family-wise rate ≤ 5 %:", "yes" if corrected else "NO")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=400)
    parser.add_argument("--lift-experiments", type=int, default=100)
    parser.add_argument("--users", type=int, default=1000, help="exposed users per experiment (both variants)")
    parser.add_argument("--rate", type=float, default=0.2, help="true conversion rate of control")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--peeking-experiments", type=int, default=100, help="A/A experiments read 10 times each")
    parser.add_argument("--cuped-experiments", type=int, default=20)
    parser.add_argument("--correlation", type=float, default=0.8, help="pre/post correlation of the CUPED metric")
    parser.add_argument("--family-experiments", type=int, default=60, help="A/A experiments with 10 metrics each")
    parser.add_argument("--family-users", type=int, default=400, help="exposed users per 10-metric experiment")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
