"""`PersonChange` folds a run of person updates into one net change that any stored properties
can take in one step; it must equal applying the events one by one."""

from experiments_service.events.parsing import PersonChange
from tests.events.helpers import random_case, sequentially


def test_net_change_equals_sequential_application():
    for seed in range(2000):
        stored, events = random_case(seed)
        change = PersonChange()
        for item in events:
            change.add(item)
        assert change.applied_to(stored) == sequentially(stored, events), f"seed {seed}"
        assert change.initial == sequentially({}, events), f"seed {seed}"
