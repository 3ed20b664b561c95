"""Cohorts: validation of their filters, static members from a list or a CSV file, and the rule
that a cohort used by an active flag cannot be deleted.

Every change re-stamps the project's flag definitions, so `/flags` and the local-evaluation
definitions pick the cohort up at once.
"""

import csv
import io
from typing import Any

from experiments_service.cohorts.repository import CohortRepository
from experiments_service.cohorts.schemas import CohortCreate, CohortOut, CohortUpdate
from experiments_service.auth.schemas import UserBasic
from experiments_service.errors import NotFound, ValidationError
from experiments_service.flags.cohorts import cohort_id, is_property_group, referenced_cohorts
from experiments_service.flags.repository import FlagRepository
from experiments_service.models import Cohort, User, utcnow
from experiments_service.pagination import PageRequest

PERSON_ID_HEADERS = ("person_id", "person-id", "person .id")
DISTINCT_ID_HEADERS = ("distinct_id", "distinct-id")
EMAIL_HEADERS = ("email", "e-mail")
NO_VALID_IDS = (
    "CSV file contains no valid person IDs, distinct IDs, or email addresses. Please ensure your file has data rows "
    "with person IDs, distinct IDs, or email addresses."
)
UNSUPPORTED_ID_COLUMN = "Only distinct ids can be uploaded: use a single column, or a column headed 'distinct_id'."
NO_STORED_PROPERTIES = ("is_set", "is_not_set")


def _person_filter(entry: dict[str, Any]) -> None:
    missing = []
    if entry.get("value") is None and entry.get("operator") not in NO_STORED_PROPERTIES:
        missing.append("value")
    if entry.get("operator") is None:
        missing.append("operator")
    if not isinstance(entry.get("key"), str):
        missing.insert(0, "key")
    if missing:
        raise ValidationError(f"Missing required keys for person filter: {', '.join(missing)}", attr="filters")


def _validate_group(group: Any) -> None:
    """PostHog's `CohortFilters` shape: AND/OR groups of person and cohort filters."""
    if not isinstance(group, dict) or group.get("type") not in ("AND", "OR") or not isinstance(group.get("values"), list):
        raise ValidationError("Property groups must have a type of AND or OR and a list of values.", attr="filters")
    for entry in group["values"]:
        if is_property_group(entry):
            _validate_group(entry)
        elif not isinstance(entry, dict):
            raise ValidationError("Each filter must be an object.", attr="filters")
        elif entry.get("type") == "person":
            _person_filter(entry)
        elif entry.get("type") == "cohort":
            if entry.get("key") != "id" or cohort_id(entry.get("value")) is None:
                raise ValidationError("Missing required keys for cohort filter: value", attr="filters")
        elif entry.get("type") == "behavioral":
            raise ValidationError("Behavioral filters are not supported: cohorts here are defined by person properties.",
                                  attr="filters")  # fmt: skip
        else:
            raise ValidationError(f"Unsupported filter type '{entry.get('type')}'.", attr="filters")


def _filters_from_groups(groups: list[Any]) -> dict[str, Any]:
    """Legacy `groups` (any of them, each all of its properties) as a property group."""
    values = []
    for group in groups:
        properties = group.get("properties") if isinstance(group, dict) else None
        values.append({"type": "AND", "values": [
            {"type": "person", **prop} if isinstance(prop, dict) and "type" not in prop else prop
            for prop in (properties if isinstance(properties, list) else [])
        ]})  # fmt: skip
    return {"properties": {"type": "OR", "values": values}}


def dynamic_filters(filters: dict[str, Any] | None, groups: list[Any] | None) -> dict[str, Any]:
    """The validated `filters` of a dynamic cohort."""
    if filters is None and groups:
        filters = _filters_from_groups(groups)
    if not isinstance(filters, dict) or "properties" not in filters:
        raise ValidationError("Must contain a 'properties' key with type and values", attr="filters")
    _validate_group(filters["properties"])
    return filters


def distinct_ids_from_csv(content: bytes) -> list[str]:
    """PostHog's CSV rules: one column of distinct ids (no header needed), or a `distinct_id` column."""
    try:
        rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    except UnicodeDecodeError:
        raise ValidationError(
            "CSV file encoding is not supported. Please save your file as UTF-8 and try again.", attr="csv"
        ) from None
    except csv.Error:
        raise ValidationError("CSV file format is invalid. Please check your file format and try again.", attr="csv") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise ValidationError("CSV file is empty. Please upload a CSV file with at least one row of data.", attr="csv")
    header = [cell.strip().lower() for cell in rows[0]]
    if len([cell for cell in header if cell]) <= 1:
        if header[0] in PERSON_ID_HEADERS or header[0] in EMAIL_HEADERS:
            raise ValidationError(UNSUPPORTED_ID_COLUMN, attr="csv")
        skip = 1 if header[0] in DISTINCT_ID_HEADERS else 0
        ids = [row[0].strip() for row in rows[skip:] if row and row[0].strip()]
    else:
        column = next((index for index, cell in enumerate(header) if cell in DISTINCT_ID_HEADERS), None)
        if column is None:
            if any(cell in PERSON_ID_HEADERS or cell in EMAIL_HEADERS for cell in header):
                raise ValidationError(UNSUPPORTED_ID_COLUMN, attr="csv")
            found = ", ".join(cell.strip() for cell in rows[0] if cell.strip()) or "none"
            raise ValidationError(
                "Multi-column CSV must contain at least one column with a supported ID header: 'person_id', "
                f"'Person .id' (PostHog export format), 'distinct_id', 'distinct-id', or 'email'. Found columns: {found}",
                attr="csv",
            )
        ids = [row[column].strip() for row in rows[1:] if len(row) > column and row[column].strip()]
    if not ids:
        raise ValidationError(NO_VALID_IDS, attr="csv")
    return ids


class CohortService:
    def __init__(self, session, project_id: int, actor: User):
        self.session = session
        self.project_id = project_id
        self.actor = actor
        self.repo = CohortRepository(session, project_id)

    async def list_page(self, page: PageRequest, kind: str | None, search: str | None) -> tuple[list[Cohort], int]:
        static = {"static": True, "dynamic": False}.get(kind or "")
        return await self.repo.list_page(page, static=static, search=search)

    async def get(self, cohort_id_: int) -> Cohort:
        cohort = await self.repo.get(cohort_id_)
        if cohort is None:
            raise NotFound()
        return cohort

    async def create(self, data: CohortCreate, csv_file: bytes | None) -> Cohort:
        if data.query is not None:
            raise ValidationError("Cohorts defined by a query are not supported.", attr="query")
        cohort = Cohort(
            project_id=self.project_id, name=data.name, description=data.description or "", groups=data.groups or [],
            is_static=data.is_static, deleted=data.deleted, created_by_id=self.actor.id, last_calculation=utcnow(),
        )
        if not data.is_static:
            cohort.filters = dynamic_filters(data.filters, data.groups)
            await self._refuse_loops(None, cohort.filters)
        elif data.distinct_ids is None and csv_file is None and (data.filters or data.groups):
            raise ValidationError("A static cohort takes its members from distinct_ids or a CSV file.", attr="is_static")
        await self.repo.add(cohort)
        await self._add_static_members(cohort, data.distinct_ids, csv_file)
        self._definitions_changed()
        return cohort

    async def update(self, cohort: Cohort, data: CohortUpdate, csv_file: bytes | None) -> Cohort:
        changes = data.model_dump(exclude_unset=True)
        if changes.get("query") is not None:
            raise ValidationError("Cohorts defined by a query are not supported.", attr="query")
        if changes.get("deleted") is True and not cohort.deleted:
            await self._refuse_if_used_by_flags(cohort)
        for field in ("name", "description", "groups", "is_static", "deleted"):
            if field in changes and changes[field] is not None:
                setattr(cohort, field, changes[field])
        if not cohort.is_static and ("filters" in changes or "groups" in changes):
            cohort.filters = dynamic_filters(changes.get("filters"), changes.get("groups"))
            await self._refuse_loops(cohort.id, cohort.filters)
        if not cohort.deleted:
            await self._add_static_members(cohort, changes.get("distinct_ids"), csv_file)
        cohort.version += 1
        cohort.last_calculation = utcnow()
        await self.session.flush()
        self._definitions_changed()
        return cohort

    async def _add_static_members(self, cohort: Cohort, distinct_ids: list[str] | None, csv_file: bytes | None) -> None:
        if distinct_ids is None and csv_file is None:
            return
        if not cohort.is_static:
            raise ValidationError("Only static cohorts have members added by distinct id.", attr="is_static")
        ids = [item.strip() for item in distinct_ids or [] if item.strip()]
        if csv_file is not None:
            ids += distinct_ids_from_csv(csv_file)
        await self.repo.add_members(cohort.id, ids)

    async def _refuse_loops(self, own_id: int | None, filters: dict[str, Any]) -> None:
        """PostHog's answer to a cohort reaching itself through the cohorts it names."""
        seen: set[int] = set()
        pending = referenced_cohorts(filters.get("properties"))
        while pending:
            if own_id is not None and own_id in pending:
                raise ValidationError("Cohorts cannot reference other cohorts in a loop.", attr="filters")
            seen |= pending
            found = await self.repo.by_ids(pending)
            pending = set().union(*(referenced_cohorts((c.filters or {}).get("properties")) for c in found.values())) - seen

    async def _refuse_if_used_by_flags(self, cohort: Cohort) -> None:
        using = [
            flag for flag in await self.repo.live_flags()
            if cohort.id in set().union(*(
                referenced_cohorts(group.get("properties"))
                for group in (flag.filters or {}).get("groups") or [] if isinstance(group, dict)
            ))
        ]  # fmt: skip
        if using:
            names = ", ".join(flag.name or flag.key for flag in using)
            raise ValidationError(
                f"This cohort is used in {len(using)} active feature flag(s): {names}. "
                "Please remove the cohort from these feature flags before deleting it."
            )

    def _definitions_changed(self) -> None:
        FlagRepository(self.session, self.project_id).bump_definitions_version()

    async def render(self, cohorts: list[Cohort]) -> list[CohortOut]:
        users = await self.repo.users(cohort.created_by_id for cohort in cohorts)
        counts = await self.repo.member_counts(cohort.id for cohort in cohorts if cohort.is_static)
        return [
            CohortOut(
                id=cohort.id,
                name=cohort.name,
                description=cohort.description,
                groups=list(cohort.groups or []),
                deleted=cohort.deleted,
                filters=cohort.filters if cohort.filters else {"properties": {}},
                created_by=UserBasic.of(users.get(cohort.created_by_id)),
                created_at=cohort.created_at,
                last_calculation=cohort.last_calculation,
                count=counts.get(cohort.id, 0) if cohort.is_static else None,
                is_static=cohort.is_static,
                cohort_type="static" if cohort.is_static else "person_property",
            )
            for cohort in cohorts
        ]

    async def render_one(self, cohort: Cohort) -> CohortOut:
        return (await self.render([cohort]))[0]
