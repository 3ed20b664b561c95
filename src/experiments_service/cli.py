"""The `experiments` console script: serve, migrate, bootstrap, create-api-key.

Other tools script against it, so `bootstrap` and `create-api-key` print exactly one JSON object.
"""

import argparse
import asyncio
import json
import sys

from experiments_service import migrate
from experiments_service.auth.keys import valid_scope
from experiments_service.auth.repository import AuthRepository
from experiments_service.auth.service import (
    bootstrap_user,
    create_project,
    ensure_user,
    issue_personal_api_key,
)
from experiments_service.db import Database
from experiments_service.errors import NotFound
from experiments_service.observability.version import __version__
from experiments_service.settings import get_settings


def _print_json(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def _bootstrap(project_name: str, reuse_existing: bool) -> dict:
    db = Database(get_settings())
    try:
        async with db.transaction() as session:
            project = await AuthRepository(session).first_project() if reuse_existing else None
            if project is None:
                project = await create_project(session, project_name)
            user = await bootstrap_user(session, project)
            issued = await issue_personal_api_key(
                session, user, ["*"], label="bootstrap", scoped_teams=[project.id]
            )
            return {
                "project_id": project.id,
                "project_api_key": project.api_token,
                "personal_api_key": issued.secret,
            }
    finally:
        await db.dispose()


async def _create_api_key(project_id: int, scopes: list[str], email: str | None, all_projects: bool) -> dict:
    db = Database(get_settings())
    try:
        async with db.transaction() as session:
            project = await AuthRepository(session).project(project_id)
            if project is None:
                raise NotFound(f"Project {project_id} does not exist.")
            user = await ensure_user(session, email, project) if email else await bootstrap_user(session, project)
            scoped_teams = None if all_projects else [project.id]
            issued = await issue_personal_api_key(session, user, scopes, scoped_teams=scoped_teams)
            return {"personal_api_key": issued.secret, "user_id": user.id}
    finally:
        await db.dispose()


def _cmd_serve(args: argparse.Namespace) -> int:
    from experiments_service.server import serve

    serve(args.host, args.port, args.workers, args.log_level)
    return 0


def _cmd_migrate(_: argparse.Namespace) -> int:
    migrate.upgrade(get_settings().database_url)
    print("Database migrated to head.", file=sys.stderr)
    return 0


def _cmd_bootstrap(args: argparse.Namespace) -> int:
    migrate.upgrade(get_settings().database_url)
    _print_json(asyncio.run(_bootstrap(args.project_name, args.reuse_existing)))
    return 0


def _cmd_create_api_key(args: argparse.Namespace) -> int:
    scopes = [scope.strip() for scope in args.scopes.split(",") if scope.strip()]
    invalid = [scope for scope in scopes if not valid_scope(scope)]
    if not scopes or invalid:
        print(f"error: invalid scopes: {', '.join(invalid) or '(none given)'}", file=sys.stderr)
        return 2
    migrate.upgrade(get_settings().database_url)
    try:
        _print_json(asyncio.run(_create_api_key(args.project_id, scopes, args.email, args.all_projects)))
    except NotFound as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="experiments", description="Experiments service.")
    parser.add_argument("--version", action="version", version=f"experiments {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate the database, then serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=None, help="worker processes (default: WORKERS, 1)")
    serve.add_argument("--log-level", default=None, help="overrides LOG_LEVEL")
    serve.set_defaults(func=_cmd_serve)

    migrate_cmd = commands.add_parser("migrate", help="upgrade the database schema to head")
    migrate_cmd.set_defaults(func=_cmd_migrate)

    bootstrap = commands.add_parser(
        "bootstrap", help="create a project, its owner and an all-scopes key scoped to it; print JSON"
    )
    bootstrap.add_argument("--project-name", default="Default project")
    bootstrap.add_argument(
        "--reuse-existing",
        action="store_true",
        help="use the first existing project instead of creating one (a new key is still minted)",
    )
    bootstrap.set_defaults(func=_cmd_bootstrap)

    create_key = commands.add_parser("create-api-key", help="mint a personal API key; print JSON")
    create_key.add_argument("--project-id", type=int, required=True)
    create_key.add_argument("--scopes", required=True, help="comma-separated, e.g. experiment:read,feature_flag:read")
    create_key.add_argument(
        "--email", default=None, help="owner of the key (made a project member); default: the project's owner"
    )
    create_key.add_argument(
        "--all-projects",
        action="store_true",
        help="let the key reach every project its owner is a member of (default: --project-id only)",
    )
    create_key.set_defaults(func=_cmd_create_api_key)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
