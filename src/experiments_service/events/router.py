"""HTTP routes of the events domain (thin: parse, call the service, render)."""

from fastapi import APIRouter

from experiments_service.deps import TransactionalRoute

router = APIRouter(route_class=TransactionalRoute, tags=["events"])
