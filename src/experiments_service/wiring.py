"""Who reacts to flag writes: connected here, once, so `flags` imports no other domain's services.

The approval gate may hold a change before it is written; experiments follow their flag's
`active` after it is written. `flags/service.py` registers its own listeners (version stamp,
activity log) where they are defined, so they run first.
"""

from experiments_service.approvals.gate import check_flag_change
from experiments_service.experiments.lifecycle import follow_flag_switch
from experiments_service.flags.changes import HOOKS


def connect_flag_hooks() -> None:
    """Idempotent: the app factory calls it for every app it builds."""
    HOOKS.add_gate(check_flag_change)
    HOOKS.add_listener(follow_flag_switch)
