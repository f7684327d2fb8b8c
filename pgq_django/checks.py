"""System checks: say plainly what is wrong before a worker or a view finds out.

pgq_django.E001  the PGQ setting has a bad key or value
pgq_django.E002  PGQ["DATABASE"] (or PGQ["LISTEN_DATABASE"]) is not an alias in DATABASES
pgq_django.E003  that database is not PostgreSQL
pgq_django.E004  Django's PostgreSQL backend runs on psycopg2, not psycopg 3
pgq_django.W001  the pgq schema lacks SQL migrations Django has recorded as applied
pgq_django.W002  Django would create its own tables in schema pgq (a role named "pgq")
(W001 and W002 are database checks: ``manage.py check --database default``.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from importlib import import_module, resources
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError, connections
from django.db.migrations.loader import MigrationLoader

from pgq import db
from pgq.exceptions import DatabaseError as PgqDatabaseError
from pgq.migrate import all_migrations
from pgq.queries import parse_queries

from .conf import SettingsError, read_settings

APP_LABEL = "pgq_django"


@register(APP_LABEL)
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[Any]:
    try:
        pgq_settings = read_settings(getattr(settings, "PGQ", None))
    except SettingsError as exc:
        return [
            Error(problem, hint="See pgq_django.conf for the keys and their types.", id=_id(1))
            for problem in exc.problems
        ]
    alias = pgq_settings.database
    databases = getattr(settings, "DATABASES", {})
    for key, name in (("DATABASE", alias), ("LISTEN_DATABASE", pgq_settings.listen_database)):
        if name is not None and name not in databases:
            return [
                Error(
                    f"PGQ[{key!r}] is {name!r}, which is not an alias in DATABASES.",
                    hint=f"Use one of: {', '.join(databases) or 'none configured'}.",
                    id=_id(2),
                )
            ]
    return _backend_errors(alias, databases[alias].get("ENGINE", ""))


def _backend_errors(alias: str, engine: str) -> list[CheckMessage]:
    try:
        vendor = import_module(f"{engine}.base").DatabaseWrapper.vendor
    except (ImportError, AttributeError):
        return []  # Django's own checks report an engine it cannot load
    if vendor != "postgresql":
        return [
            Error(
                f"DATABASES[{alias!r}] uses the {vendor} backend ({engine}); pgq needs PostgreSQL.",
                hint="Set ENGINE to 'django.db.backends.postgresql', or point PGQ['DATABASE'] "
                "at a PostgreSQL alias.",
                id=_id(3),
            )
        ]
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return driver_errors(alias, is_psycopg3)


def driver_errors(alias: str, is_psycopg3: bool) -> list[CheckMessage]:
    if is_psycopg3:
        return []
    return [
        Error(
            f"DATABASES[{alias!r}] runs Django's PostgreSQL backend on psycopg2; "
            "pgq needs psycopg 3.",
            hint="pip install 'psycopg[binary]>=3.2' (Django uses psycopg 3 when it is installed).",
            id=_id(4),
        )
    ]


@register(APP_LABEL, Tags.database)
def check_schema(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Iterable[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """Warn when Django believes pgq's migrations applied but the schema lacks some
    (faked migrations, a dropped schema, a restore without it; unapplied Django
    migrations are left to ``manage.py migrate``, which applies them anyway), and
    when Django's own tables would land in schema pgq."""
    try:
        alias = read_settings(getattr(settings, "PGQ", None)).database
    except SettingsError:
        return []  # reported by check_settings
    if databases is None or alias not in databases or alias not in settings.DATABASES:
        return []
    try:
        missing = missing_sql_migrations(alias)
        schema, role = tables_schema(alias)
    except (DatabaseError, PgqDatabaseError):
        return []  # unreachable database: every command says so on its own
    messages: list[CheckMessage] = []
    if missing:
        messages.append(
            Warning(
                f"The pgq schema in database {alias!r} lacks migration(s) {', '.join(missing)}, "
                "though Django records pgq_django's migrations as applied.",
                hint="Run `manage.py pgq_migrate` to apply them.",
                id="pgq_django.W001",
            )
        )
    if schema == "pgq":
        messages.append(
            Warning(
                f"Django creates its tables in schema 'pgq' in database {alias!r}: the role "
                f'{role!r} has it first on its search_path ("$user").',
                hint="Put OPTIONS={'options': '-c search_path=public'} in the DATABASES entry, "
                "or connect as a role with another name.",
                id="pgq_django.W002",
            )
        )
    return messages


@cache
def _queries() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("queries.sql").read_text(encoding="utf-8")
    return parse_queries(text)


def tables_schema(alias: str) -> tuple[str | None, str]:
    """The schema unqualified tables go to on ``alias``, and the role connected."""
    with connections[alias].cursor() as cursor:
        cursor.execute(_queries()["tables_schema"])
        schema, role = cursor.fetchone()
    return schema, role


def missing_sql_migrations(alias: str) -> list[str]:
    """SQL migrations whose Django wrapper is recorded as applied on ``alias``
    but that ``pgq.migrations`` does not list."""
    connection = connections[alias]
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    wrapped_and_applied = set()
    for key, migration in loader.disk_migrations.items():
        if key[0] == APP_LABEL and key in loader.applied_migrations:
            wrapped_and_applied.update(sql_names(migration.operations))
    if not wrapped_and_applied:
        return []
    connection.ensure_connection()
    applied = db.run(connection.connection, _applied_sql_migrations())
    known = [m.name for m in all_migrations()]
    return [name for name in known if name in wrapped_and_applied and name not in applied]


def _applied_sql_migrations() -> db.Operation[set[str]]:
    rows = yield db.Query("schema_exists")
    if not rows[0]["exists"]:
        return set()
    return {row["name"] for row in (yield db.Query("applied_migrations"))}


def sql_names(operations: Iterable[Any]) -> list[str]:
    """The SQL migrations a Django migration's operations apply."""
    from .sql_migrations import ApplySqlMigration

    return [op.sql_name for op in operations if isinstance(op, ApplySqlMigration)]


def _id(number: int) -> str:
    return f"pgq_django.E{number:03d}"
