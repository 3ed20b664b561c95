"""HTTP routes of the flags domain (thin: parse, call the service, render)."""

from fastapi import APIRouter

from experiments_service.deps import TransactionalRoute

router = APIRouter(route_class=TransactionalRoute, tags=["flags"])
