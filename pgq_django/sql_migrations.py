"""Django migrations that apply pgq's SQL files: one source of truth.

Each Django migration of ``pgq_django`` that changes the schema holds an
``ApplySqlMigration("NNNN_name")`` for the top-level ``migrations/NNNN_name.sql``
(a test fails, naming the file, when one is missing). It runs the file through
``pgq.migrate`` on Django's connection, inside the migration's transaction,
and only if ``pgq.migrations`` does not record it yet: ``pgq migrate`` and
``manage.py migrate`` can run in either order, or both, and agree.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import migrations

from pgq import db
from pgq.exceptions import ConfigurationError
from pgq.migrate import Migration, all_migrations, apply_migrations

from .conf import get_settings

logger = logging.getLogger("pgq.migrate")


def sql_migration(name: str) -> Migration:
    for migration in all_migrations():
        if migration.name == name:
            return migration
    raise ConfigurationError(f"pgq's SQL migration {name}.sql is missing from this installation")


def apply_sql_migration(name: str, connection: Any) -> bool:
    """Apply ``migrations/<name>.sql`` on a Django connection unless already
    applied; False when it was (or when this is not the pgq database)."""
    if connection.alias != get_settings().database:
        return False  # the schema lives in PGQ["DATABASE"] only
    connection.ensure_connection()
    applied = db.run(connection.connection, apply_migrations((sql_migration(name),)))
    for migration_name in applied:
        logger.info("applied migration=%s database=%s", migration_name, connection.alias)
    return bool(applied)


class ApplySqlMigration(migrations.RunPython):
    """Apply one of pgq's SQL migrations (forward only, like the SQL files)."""

    def __init__(self, name: str) -> None:
        self.sql_name = name
        super().__init__(self._forward, reverse_code=None, elidable=False)

    def _forward(self, apps: Any, schema_editor: Any) -> None:
        apply_sql_migration(self.sql_name, schema_editor.connection)

    def describe(self) -> str:
        return f"Apply pgq's SQL migration {self.sql_name}.sql"

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (f"{__name__}.{type(self).__qualname__}", [self.sql_name], {})
