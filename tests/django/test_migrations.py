"""One source of truth: Django's migrations apply pgq's SQL files, and both
routes (``pgq migrate``, ``manage.py migrate``) give the same schema in either order."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader
from psycopg import sql

from pgq.migrate import all_migrations, migrate
from pgq_django.checks import sql_names
from tests.conftest import _admin, create_database, dsn_with_dbname
from tests.django.conftest import manage

# The catalog of schema pgq, in a form two databases can be compared by.
SNAPSHOT_QUERIES = {
    "columns": """
        SELECT table_name, column_name, ordinal_position, data_type, udt_name,
               is_nullable, column_default, is_identity, identity_generation
        FROM information_schema.columns WHERE table_schema = 'pgq'
        ORDER BY table_name, ordinal_position""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'pgq'::regnamespace
        ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'pgq' ORDER BY 1, 2""",
    "types": """
        SELECT t.typname, e.enumsortorder, e.enumlabel
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE t.typnamespace = 'pgq'::regnamespace ORDER BY 1, 2""",
    "relations": """
        SELECT relname, relkind FROM pg_class
        WHERE relnamespace = 'pgq'::regnamespace ORDER BY 1""",
    "functions": """
        SELECT proname, pg_get_functiondef(oid) FROM pg_proc
        WHERE pronamespace = 'pgq'::regnamespace ORDER BY 1""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
        WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'pgq.%%' ORDER BY 1, 2""",
    "applied": "SELECT name FROM pgq.migrations ORDER BY name",
}


def schema_snapshot(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    # One search_path for both sides: it decides how definitions name types.
    with psycopg.connect(dsn, options="-c search_path=public") as conn:
        return {name: conn.execute(query).fetchall() for name, query in SNAPSHOT_QUERIES.items()}


@pytest.fixture
def fresh_dsn(server_dsn: str) -> Iterator[str]:
    name = create_database(server_dsn)
    yield dsn_with_dbname(server_dsn, name)
    _admin(
        server_dsn, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


def _django_wrappers() -> list[str]:
    """SQL migration names applied by pgq_django's migrations, in graph order."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    names = []
    for key in loader.graph.forwards_plan(loader.graph.leaf_nodes("pgq_django")[0]):
        if key[0] == "pgq_django":
            names += sql_names(loader.get_migration(*key).operations)
    return names


def test_every_sql_migration__has_a_django_wrapper_in_order() -> None:
    wrapped = _django_wrappers()
    for migration in all_migrations():
        assert migration.name in wrapped, (
            f"migrations/{migration.name}.sql has no Django wrapper: add a migration to "
            f"pgq_django/migrations/ whose operations include "
            f'ApplySqlMigration("{migration.name}")'
        )
    assert wrapped == [m.name for m in all_migrations()], (
        "pgq_django's migrations must apply the SQL files once each, in their order"
    )


@pytest.mark.django_db
def test_models__match_their_migrations() -> None:
    out = StringIO()
    call_command("makemigrations", "pgq_django", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db
def test_django_test_database__has_the_schema_pgq_migrate_builds(
    template_db: str, server_dsn: str
) -> None:
    from pgq_django import app

    django_route = app.dsn  # Django's test database, built by Django's migrations
    pgq_route = dsn_with_dbname(server_dsn, template_db)
    assert schema_snapshot(django_route) == schema_snapshot(pgq_route)


@pytest.mark.slow
def test_manage_migrate_then_pgq_migrate__same_schema_nothing_left(
    fresh_dsn: str, server_dsn: str, template_db: str
) -> None:
    done = manage(fresh_dsn, "migrate", "--verbosity", "1")
    assert done.returncode == 0, done.stderr
    assert "pgq_django.0001_initial... OK" in done.stdout
    assert migrate(fresh_dsn) == []  # pgq migrate finds nothing to do
    assert schema_snapshot(fresh_dsn) == schema_snapshot(dsn_with_dbname(server_dsn, template_db))


@pytest.mark.slow
def test_pgq_migrate_then_manage_migrate__same_schema_no_error(
    fresh_dsn: str, server_dsn: str, template_db: str
) -> None:
    assert migrate(fresh_dsn) == [m.name for m in all_migrations()]
    before = schema_snapshot(fresh_dsn)
    done = manage(fresh_dsn, "migrate", "--verbosity", "1")
    assert done.returncode == 0, done.stderr
    assert "pgq_django.0001_initial... OK" in done.stdout
    assert schema_snapshot(fresh_dsn) == before
    assert before == schema_snapshot(dsn_with_dbname(server_dsn, template_db))
