"""Limit/offset pagination with DRF's `{count, next, previous, results}` envelope."""

from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from pydantic import BaseModel, WithJsonSchema
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

DEFAULT_LIMIT = 100
# Bounds the work one request can ask for (DRF's default has no ceiling).
MAX_LIMIT = 1000


class Page(BaseModel, Generic[T]):
    """One page of a list endpoint, as PostHog renders it."""

    count: int
    next: str | None
    previous: str | None
    results: list[T]


def _non_negative_int(raw: str | None, *, strict: bool) -> int | None:
    """DRF's lenient parse: garbage falls back to the default instead of failing the request."""
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    if value < 0 or (strict and value == 0):
        return None
    return value


@dataclass(frozen=True)
class PageRequest:
    limit: int
    offset: int
    request: Request

    def envelope(self, results: list[Any], count: int) -> dict[str, Any]:
        """The page body with `next`/`previous` links built from the request URL."""
        url = self.request.url
        next_url = None
        if self.offset + self.limit < count:
            next_url = str(url.include_query_params(limit=self.limit, offset=self.offset + self.limit))
        previous_url = None
        if self.offset > 0:
            if self.offset - self.limit <= 0:
                previous_url = str(url.include_query_params(limit=self.limit).remove_query_params("offset"))
            else:
                previous_url = str(url.include_query_params(limit=self.limit, offset=self.offset - self.limit))
        return {"count": count, "next": next_url, "previous": previous_url, "results": results}


# Documented as integers; parsed leniently (DRF falls back to the default on garbage).
LimitQuery = Annotated[
    str | None,
    Query(description="Number of results to return per page."),
    WithJsonSchema({"type": "integer", "minimum": 1}),
]
OffsetQuery = Annotated[
    str | None,
    Query(description="The initial index from which to return the results."),
    WithJsonSchema({"type": "integer", "minimum": 0}),
]


def page_request(request: Request, limit: LimitQuery = None, offset: OffsetQuery = None) -> PageRequest:
    parsed_limit = _non_negative_int(limit, strict=True) or DEFAULT_LIMIT
    return PageRequest(
        limit=min(parsed_limit, MAX_LIMIT),
        offset=_non_negative_int(offset, strict=False) or 0,
        request=request,
    )


PageDep = Annotated[PageRequest, Depends(page_request)]


async def fetch_page(session: AsyncSession, query: Select, page: PageRequest) -> tuple[list[Any], int]:
    """Run `query` for one page and count every row it matches."""
    count = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = (await session.execute(query.limit(page.limit).offset(page.offset))).scalars().all()
    return list(rows), int(count or 0)
