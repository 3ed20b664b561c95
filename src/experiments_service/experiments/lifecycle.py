"""The experiment state machine: the only code that changes `Experiment.status`.

One module-level `transitions` machine drives a small wrapper whose `status` proxies to the row.
`fire()` checks the trigger, runs the caller's side effects (flag writes, which may be refused
by the approval gate) and only then moves the row, so a refused action leaves the status as it was.
"""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from transitions import Machine, MachineError, Transition

from experiments_service.activity import record_activity
from experiments_service.errors import ValidationError
from experiments_service.experiments.repository import ExperimentRepository
from experiments_service.flags.changes import FlagChange
from experiments_service.flags.validation import flag_variant_problem, variant_keys, variants_of
from experiments_service.models import Experiment, ExperimentStatus, FeatureFlag, User

# The machine keeps plain strings (an enum member's `.name` would become the state's name).
DRAFT, RUNNING, PAUSED, STOPPED = (status.value for status in ExperimentStatus)
LAUNCHED = [RUNNING, PAUSED, STOPPED]
NOT_LAUNCHED = "Experiment has not been launched yet."
ALREADY_ENDED = "Experiment has already ended."
NOT_ENDED = "Experiment must be ended before it can be archived."

# Each transition names its guards and, in `refused`, the reference's message for every state
# it cannot leave from. `guards_first`: a failing guard is reported before a wrong state.
TRANSITIONS: list[dict[str, Any]] = [
    {
        "trigger": "launch",
        "source": DRAFT,
        "dest": RUNNING,
        "conditions": ["flag_is_live", "flag_can_back_experiment"],
        "refused": dict.fromkeys(LAUNCHED, "Experiment has already been launched."),
    },
    {
        "trigger": "pause",
        "source": RUNNING,
        "dest": PAUSED,
        "refused": {DRAFT: NOT_LAUNCHED, STOPPED: ALREADY_ENDED, PAUSED: "Experiment is already paused."},
    },
    {
        "trigger": "resume",
        "source": PAUSED,
        "dest": RUNNING,
        "refused": {DRAFT: NOT_LAUNCHED, STOPPED: ALREADY_ENDED, RUNNING: "Experiment is not paused."},
    },
    {"trigger": "end", "source": [RUNNING, PAUSED], "dest": STOPPED, "refused": {DRAFT: NOT_LAUNCHED, STOPPED: ALREADY_ENDED}},
    {
        "trigger": "ship_variant",
        "source": LAUNCHED,
        "dest": STOPPED,
        "conditions": ["variant_exists"],
        "refused": {DRAFT: NOT_LAUNCHED},
    },
    {"trigger": "reset", "source": LAUNCHED, "dest": DRAFT, "refused": {DRAFT: "Experiment is already in draft state."}},
    # Archiving sets the `archived` column and leaves the status as it is (internal transitions).
    {
        "trigger": "archive",
        "source": STOPPED,
        "dest": None,
        "conditions": ["not_archived"],
        "guards_first": True,
        "refused": dict.fromkeys([DRAFT, RUNNING, PAUSED], NOT_ENDED),
    },
    {"trigger": "unarchive", "source": [DRAFT, *LAUNCHED], "dest": None, "conditions": ["is_archived"]},
]


class RuledTransition(Transition):
    """A transition that also carries the reference's refusal messages (see `TRANSITIONS`)."""

    def __init__(self, *args: Any, refused: dict[str, str] | None = None, guards_first: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.refused = refused or {}
        self.guards_first = guards_first


class ExperimentLifecycle:
    """The experiment as the machine drives it: `status` reads and writes the row; guards read the flag."""

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

    def not_archived(self) -> bool:
        return not self.experiment.archived

    def is_archived(self) -> bool:
        return self.experiment.archived


GUARD_MESSAGES: dict[str, Callable[[ExperimentLifecycle], str]] = {
    "flag_is_live": lambda _: "Experiment cannot be launched because its feature flag has been deleted.",
    "flag_can_back_experiment": lambda model: model.variant_problem(),
    "variant_exists": lambda model: f"Variant '{model.variant_key}' not found on feature flag.",
    "not_archived": lambda _: "Experiment is already archived.",
    "is_archived": lambda _: "Experiment is not archived.",
}


class LifecycleMachine(Machine):
    transition_cls = RuledTransition


MACHINE = LifecycleMachine(
    model=None,
    states=[status.value for status in ExperimentStatus],
    transitions=TRANSITIONS,
    initial=DRAFT,
    model_attribute="status",
    auto_transitions=False,
)


def leaves_from(trigger: str, status: str) -> bool:
    """Whether `trigger` has a transition from `status` (the machine's sources; guards not asked)."""
    return trigger in MACHINE.get_triggers(status)


def _failed_guard(model: ExperimentLifecycle, transitions: list[RuledTransition]) -> str | None:
    for transition in transitions:
        for condition in transition.conditions:
            if not getattr(model, condition.func)():
                return GUARD_MESSAGES[condition.func](model)
    return None


def _refusal(trigger: str, model: ExperimentLifecycle) -> ValidationError:
    """The reference 400 for a refused trigger: a wrong state first, then the guards in order.

    A transition marked `guards_first` reports a failing guard before a wrong state.
    """
    transitions = [transition for group in MACHINE.events[trigger].transitions.values() for transition in group]
    if any(transition.guards_first for transition in transitions):
        message = _failed_guard(model, transitions)
        if message is not None:
            return ValidationError(message)
    from_here = [transition for transition in transitions if transition.source == model.status]
    message = _failed_guard(model, from_here) if from_here else None
    message = message or next((t.refused[model.status] for t in transitions if model.status in t.refused), None)
    return ValidationError(message or f"Experiment cannot {trigger.replace('_', ' ')} while {model.status}.")


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
    model = ExperimentLifecycle(experiment, flag, variant_key)
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
) -> None:
    """Log an experiment change: `before` holds the old values of the fields that may have changed."""
    names = fields if fields is not None else list(before)
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
    )


def snapshot(experiment: Experiment, fields: list[str]) -> dict[str, Any]:
    return {name: getattr(experiment, name) for name in fields}


async def follow_flag_switch(change: FlagChange) -> None:
    """A flag listener: when a flag's `active` changes, its running experiments pause, paused ones resume.

    In PostHog a paused experiment is one whose flag is off, so this holds for every path that
    switches a flag (the flags API, an approved change request, another experiment's action).
    The experiment whose own action caused the switch (`change.cause`) moves by that action.
    """
    if change.created or "active" not in change.changes:
        return
    flag = change.flag
    trigger, activity = ("resume", "resumed") if flag.active else ("pause", "paused")
    repo = ExperimentRepository(change.session, flag.project_id)
    for experiment in await repo.using_flag(flag.id, for_update=True):
        if experiment is change.cause or not leaves_from(trigger, experiment.status):
            continue
        before = snapshot(experiment, ["status"])
        await fire(trigger, experiment, flag)
        record_change(change.session, experiment, change.actor, activity, before)
