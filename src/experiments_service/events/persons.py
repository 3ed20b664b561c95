"""PostHog's person rules applied to one capture batch, in event order, on plain data.

`$set_once`/`$set`/`$unset` change the event's person; `$identify` (with `$anon_distinct_id`),
`$create_alias` and `$merge_dangerously` (with `alias`) merge the other distinct id's person into
the event's: a distinct id with no person joins the other's person (or both get a new one), two
persons become one keeping the event person's properties on conflict, and a person already
identified is never merged away except by `$merge_dangerously`. Illegal ids ("anonymous", "null",
…) and an id merged with itself merge nothing. The repository loads and locks what a batch
touches, this module decides, and the repository writes the outcome.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from experiments_service.events.parsing import CapturedEvent

_CASE_INSENSITIVE_ILLEGAL = (
    "anonymous", "guest", "distinctid", "distinct_id", "id", "not_authenticated", "email", "undefined", "true", "false",
)
_CASE_SENSITIVE_ILLEGAL = ("[object Object]", "NaN", "None", "none", "null", "0", "undefined")


def _quoted(ids: tuple[str, ...]) -> set[str]:
    return {*ids, *(f"'{item}'" for item in ids), *(f'"{item}"' for item in ids)}


ILLEGAL_IDS_ANY_CASE = frozenset(_quoted(_CASE_INSENSITIVE_ILLEGAL))
ILLEGAL_IDS = frozenset(_quoted(_CASE_SENSITIVE_ILLEGAL))


def is_illegal_distinct_id(distinct_id: str) -> bool:
    """Ids that stem from a bug (PostHog refuses to merge on them)."""
    return not distinct_id.strip() or distinct_id.lower() in ILLEGAL_IDS_ANY_CASE or distinct_id in ILLEGAL_IDS


def apply_property_changes(properties: dict[str, Any], event: CapturedEvent) -> dict[str, Any]:
    """PostHog's order: `$set_once` fills missing keys, then `$set` overwrites, then `$unset` removes."""
    changed = dict(properties)
    for key, value in (event.person_set_once or {}).items():
        changed.setdefault(key, value)
    changed.update(event.person_set or {})
    for key in event.person_unset:
        changed.pop(key, None)
    return changed


@dataclass(eq=False)
class PersonState:
    """A person as the batch sees it. `id` is None for a person this batch creates."""

    id: int | None
    key: str
    properties: dict[str, Any]
    is_identified: bool
    created_at: datetime
    distinct_ids: set[str]
    merged_into: "PersonState | None" = None
    changed: bool = False


@dataclass(frozen=True)
class Merge:
    """`source` became part of `target`; the distinct ids each had at that moment."""

    source: PersonState
    target: PersonState
    source_ids: frozenset[str]
    target_ids: frozenset[str]


@dataclass
class PersonsBatch:
    """The persons of a batch's distinct ids, changed event by event."""

    owners: dict[str, PersonState] = field(default_factory=dict)
    merges: list[Merge] = field(default_factory=list)

    @classmethod
    def of(cls, persons: list[PersonState]) -> "PersonsBatch":
        return cls({distinct_id: person for person in persons for distinct_id in person.distinct_ids})

    def apply(self, event: CapturedEvent) -> None:
        person = self._merge(event) if event.merge_from is not None else None
        if person is None:
            person = self._person_of(event.distinct_id, event.timestamp)
        properties = apply_property_changes(person.properties, event)
        if properties != person.properties:
            person.properties, person.changed = properties, True

    def persons(self) -> list[PersonState]:
        """The persons that remain, each once, in a stable order."""
        seen = {id(person): person for person in self.owners.values()}
        return sorted(seen.values(), key=lambda person: person.key)

    def _person_of(self, distinct_id: str, timestamp: datetime) -> PersonState:
        person = self.owners.get(distinct_id)
        if person is None:
            person = PersonState(None, distinct_id, {}, False, timestamp, {distinct_id}, changed=True)
            self.owners[distinct_id] = person
        return person

    def _identified(self, person: PersonState) -> PersonState:
        if not person.is_identified:
            person.is_identified, person.changed = True, True
        return person

    def _merge(self, event: CapturedEvent) -> PersonState | None:
        """Merge `merge_from`'s person into the event's; returns the event's person, or None
        when the merge does not apply (the event then changes its own person as any other)."""
        other_id, into_id = event.merge_from, event.distinct_id
        if other_id == into_id or is_illegal_distinct_id(into_id) or is_illegal_distinct_id(other_id):
            return None
        other, into = self.owners.get(other_id), self.owners.get(into_id)
        if other is None and into is None:
            person = PersonState(None, into_id, {}, True, event.timestamp, {into_id, other_id}, changed=True)
            self.owners[into_id] = self.owners[other_id] = person
            return person
        if other is None or into is None:
            person, added = (into, other_id) if other is None else (other, into_id)
            person.distinct_ids.add(added)
            self.owners[added] = person
            person.changed = True
            return self._identified(person)
        if other is into:
            return self._identified(into)
        if other.is_identified and event.event != "$merge_dangerously":
            return self._identified(into)
        self.merges.append(Merge(other, into, frozenset(other.distinct_ids), frozenset(into.distinct_ids)))
        into.properties = {**other.properties, **into.properties}
        into.created_at = min(into.created_at, other.created_at)
        into.distinct_ids |= other.distinct_ids
        for distinct_id in other.distinct_ids:
            self.owners[distinct_id] = into
        other.merged_into = into
        into.is_identified = into.changed = True
        return into
