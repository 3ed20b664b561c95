"""Calibration of the statistics: simulated A/A experiments (the same true conversion rate in both
variants) go through the real capture endpoint (`POST /batch/`), the experiments API and the results
endpoint, in-process over ASGI against a fresh SQLite database.

Prints the frequentist false-positive rate at α = 0.05 and the share of Bayesian `significant`
results (both should be 5 ± 1.5 %; for Bayesian that is `ci_level` 0.975, see DECISION_RULES), then
the detection rate of a true 10 % relative lift.

    .venv/bin/python bench/aa_calibration.py [--experiments 400] [--users 1000] [--rate 0.2] [--seed 2026]
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

    async def experiment(self, key: str, start: datetime) -> int:
        response = await self.client.post(self.base, headers=self.headers, json={
            "name": key,
            "feature_flag_key": key,
            "start_date": start.isoformat(),
            "parameters": {"feature_flag_variants": [
                {"key": "control", "rollout_percentage": 50}, {"key": "test", "rollout_percentage": 50},
            ]},
            "metrics": [{"kind": "ExperimentMetric", "metric_type": "funnel",
                         "series": [{"kind": "EventsNode", "event": "purchase"}]}],
            "stats_config": {"method": "frequentist"},
            "allow_unknown_events": True,
        })
        response.raise_for_status()
        return response.json()["id"]

    async def significant(self, experiment_id: int, stats_config: dict) -> bool:
        """Switch the experiment's statistics, read its results, and report the test variant's verdict."""
        response = await self.client.patch(
            f"{self.base}{experiment_id}/", headers=self.headers, json={"stats_config": stats_config}
        )
        response.raise_for_status()
        response = await self.client.get(f"{self.base}{experiment_id}/results/", headers=self.headers)
        response.raise_for_status()
        [variant] = response.json()["results"][0]["variant_results"]
        assert not variant["validation_failures"], variant
        return bool(variant["significant"])


async def run(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as directory:
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
    if not count:
        return
    shares = dict(zip(DECISION_RULES, verdicts / count, strict=True))
    calibrated = all(0.035 <= shares[name] <= 0.065 for name in CALIBRATED_RULES)
    print("A/A within 5 ± 1.5 % for", " and ".join(CALIBRATED_RULES) + ":", "yes" if calibrated else "NO")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=400)
    parser.add_argument("--lift-experiments", type=int, default=100)
    parser.add_argument("--users", type=int, default=1000, help="exposed users per experiment (both variants)")
    parser.add_argument("--rate", type=float, default=0.2, help="true conversion rate of control")
    parser.add_argument("--seed", type=int, default=2026)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
