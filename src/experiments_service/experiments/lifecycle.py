"""The experiment state machine: the only code that changes `Experiment.status`.

One module-level `transitions` machine drives a small wrapper whose `status` proxies to the row.
`fire()` checks the trigger, runs the caller's side effects (flag writes, which may be refused
by the approval gate) and only then moves the row, so a refused action leaves the status as it was.
"""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from transitions import Machine, MachineError

from experiments_service.activity import field_changes, record_activity
from experiments_service.errors import ValidationError
from experiments_service.experiments.repository import ExperimentRepository
from experiments_service.experiments.validation import flag_variant_problem, variant_keys
from experiments_service.flags.validation import variants_of
from experiments_service.models import Experiment, FeatureFlag, User

STATES = ["draft", "running", "paused", "stopped"]
LAUNCHED = ["running", "paused", "stopped"]
TRANSITIONS = [
    {
        "trigger": "launch",
        "source": "draft",
        "dest": "running",
        "conditions": ["flag_is_live", "flag_can_back_experiment"],
    },
    {"trigger": "pause", "source": "running", "dest": "paused"},
    {"trigger": "resume", "source": "paused", "dest": "running"},
    {"trigger": "end", "source": ["running", "paused"], "dest": "stopped"},
    {"trigger": "ship_variant", "source": LAUNCHED, "dest": "stopped", "conditions": ["variant_exists"]},
    {"trigger": "reset", "source": LAUNCHED, "dest": "draft"},
]

NOT_LAUNCHED = "Experiment has not been launched yet."
ALREADY_ENDED = "Experiment has already ended."
WRONG_STATE = {
    "launch": dict.fromkeys(LAUNCHED, "Experiment has already been launched."),
    "pause": {"draft": NOT_LAUNCHED, "stopped": ALREADY_ENDED, "paused": "Experiment is already paused."},
    "resume": {"draft": NOT_LAUNCHED, "stopped": ALREADY_ENDED, "running": "Experiment is not paused."},
    "end": {"draft": NOT_LAUNCHED, "stopped": ALREADY_ENDED},
    "ship_variant": {"draft": NOT_LAUNCHED},
    "reset": {"draft": "Experiment is already in draft state."},
}


class ExperimentStatus:
    """What the machine drives: `status` reads and writes the row; guards read the flag."""

    def __init__(self, experiment: Experiment, flag: FeatureFlag, variant_key: str | None = None):
        self.experiment = experiment
        self.flag = flag
        self.variant_key = variant_key

    @property
    def status(self) -> str:
        return self.experiment.status

    @status.setter
    def status(self, value: str) -> None:
        if self.experiment.status != value:
            self.experiment.status = value

    def flag_is_live(self) -> bool:
        return not self.flag.deleted

    def variant_problem(self) -> str | None:
        return flag_variant_problem(variants_of(self.flag.filters or {}))

    def flag_can_back_experiment(self) -> bool:
        return self.variant_problem() is None

    def variant_exists(self) -> bool:
        return self.variant_key in variant_keys(variants_of(self.flag.filters or {}))


GUARD_MESSAGES: dict[str, Callable[[ExperimentStatus], str]] = {
    "flag_is_live": lambda _: "Experiment cannot be launched because its feature flag has been deleted.",
    "flag_can_back_experiment": lambda model: model.variant_problem(),
    "variant_exists": lambda model: f"Variant '{model.variant_key}' not found on feature flag.",
}

MACHINE = Machine(
    model=None,
    states=STATES,
    transitions=TRANSITIONS,
    initial="draft",
    model_attribute="status",
    auto_transitions=False,
)


def _refusal(trigger: str, model: ExperimentStatus) -> ValidationError:
    """The reference 400 for a refused trigger: wrong state first, then the guards in order."""
    wrong_state = WRONG_STATE[trigger].get(model.status)
    if wrong_state is not None:
        return ValidationError(wrong_state)
    for transition in TRANSITIONS:
        if transition["trigger"] == trigger:
            for guard in transition.get("conditions", []):
                if not getattr(model, guard)():
                    return ValidationError(GUARD_MESSAGES[guard](model))
    return ValidationError(f"Experiment cannot {trigger.replace('_', ' ')} while {model.status}.")


async def fire(
    trigger: str,
    experiment: Experiment,
    flag: FeatureFlag,
    *,
    variant_key: str | None = None,
    effects: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """Move `experiment` by `trigger`, or raise the reference 400 and change nothing.

    `effects` (e.g. the flag write) runs after the checks and before the status moves.
    """
    model = ExperimentStatus(experiment, flag, variant_key)
    MACHINE.add_model(model, initial=experiment.status)
    try:
        if not getattr(model, f"may_{trigger}")():
            raise _refusal(trigger, model)
        if effects is not None:
            await effects()
        try:
            moved = model.trigger(trigger)
        except MachineError:
            moved = False
        if not moved:
            raise _refusal(trigger, model)
    finally:
        MACHINE.remove_model(model)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def record_change(
    session: AsyncSession,
    experiment: Experiment,
    actor: User | None,
    activity: str,
    before: dict[str, Any],
    fields: list[str] | None = None,
    *,
    extra: dict[str, Any] | None = None,
    extra_changes: dict[str, tuple[Any, Any]] | None = None,
) -> None:
    """Log an experiment change: `before` holds the old values of the fields that may have changed.

    `extra_changes` adds `{field: (before, after)}` entries for what is not a column (the shipped
    variant). A web experiment's `parameters` are not logged, as PostHog does not log them.
    """
    names = fields if fields is not None else list(before)
    if experiment.type == "web":
        names = [name for name in names if name != "parameters"]
    after = {name: _jsonable(getattr(experiment, name)) for name in names}
    old = {name: _jsonable(before.get(name)) for name in names}
    changed = [name for name in names if old[name] != after[name]]
    record_activity(
        session,
        project_id=experiment.project_id,
        user_id=actor.id if actor else None,
        scope="Experiment",
        item_id=experiment.id,
        activity=activity,
        name=experiment.name,
        before={name: old[name] for name in changed},
        after={name: after[name] for name in changed},
        extra=extra,
        changes=None if activity == "created" else field_changes(
            "Experiment",
            {**{name: old[name] for name in changed}, **{f: b for f, (b, _) in (extra_changes or {}).items()}},
            {**{name: after[name] for name in changed}, **{f: a for f, (_, a) in (extra_changes or {}).items()}},
        ),
    )


def snapshot(experiment: Experiment, fields: list[str]) -> dict[str, Any]:
    return {name: getattr(experiment, name) for name in fields}


async def sync_experiments_with_flag(session: AsyncSession, flag: FeatureFlag, actor: User | None) -> None:
    """After a direct change of `flag.active`: pause running experiments on it, or resume paused ones.

    The flag itself is not written again; callers have already written it.
    """
    repo = ExperimentRepository(session, flag.project_id)
    for experiment in await repo.using_flag(flag.id, for_update=True):
        if flag.active and experiment.status == "paused":
            trigger, activity = "resume", "resumed"
        elif not flag.active and experiment.status == "running":
            trigger, activity = "pause", "paused"
        else:
            continue
        before = snapshot(experiment, ["status"])
        await fire(trigger, experiment, flag)
        record_change(session, experiment, actor, activity, before)
