"""What runs around every flag write: gates before it, listeners after it.

`FlagService` is the one write path for flags. Other packages react to flag changes by
registering here (see `experiments_service/wiring.py`), so `flags` imports neither
`approvals` nor `experiments`: a gate may refuse a change before anything is written (the
approval gate's 409); listeners run once after the change is applied (version stamp, activity
log, experiments following their flag's `active`).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.models import FeatureFlag, User


@dataclass(frozen=True)
class FlagChange:
    """One flag write, as gates see it before and listeners after it is applied."""

    session: AsyncSession
    project_id: int
    actor: User | None
    flag: FeatureFlag
    # The fields that change and their new values (every writable field when the flag is created).
    changes: dict[str, Any]
    # Their values before the change; None when the flag is created.
    before: dict[str, Any] | None
    # What the caller was asked to do (kept in a change request's intent when a gate holds it).
    request_data: dict[str, Any] = field(default_factory=dict)
    # What asked for the change (an experiment action passes its experiment), so a listener
    # reacting to the change can leave alone the object that is already moving.
    cause: object | None = None

    @property
    def created(self) -> bool:
        return self.before is None


FlagHook = Callable[[FlagChange], Awaitable[None]]


class FlagHooks:
    """Ordered, duplicate-free lists of gates and listeners."""

    def __init__(self) -> None:
        self.gates: list[FlagHook] = []
        self.listeners: list[FlagHook] = []

    def add_gate(self, gate: FlagHook) -> FlagHook:
        if gate not in self.gates:
            self.gates.append(gate)
        return gate

    def add_listener(self, listener: FlagHook) -> FlagHook:
        if listener not in self.listeners:
            self.listeners.append(listener)
        return listener

    async def check(self, change: FlagChange) -> None:
        """Run every gate; one may raise to refuse the change (nothing has been written yet)."""
        for gate in self.gates:
            await gate(change)

    async def notify(self, change: FlagChange) -> None:
        """Run every listener in registration order, one after another (they share the session)."""
        for listener in self.listeners:
            await listener(change)


HOOKS = FlagHooks()
