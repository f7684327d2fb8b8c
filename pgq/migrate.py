"""Applying ``migrations/*.sql``, the single source of truth for the schema.

``pgq migrate`` and the Django app's migrations both go through
:func:`apply_migrations`, which records each file in ``pgq.migrations``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from typing_extensions import LiteralString

from . import db
from .db import Operation, Query, Script
from .exceptions import ConfigurationError, SchemaNotMigrated, SchemaTooNew

logger = logging.getLogger("pgq.migrate")


@dataclass(frozen=True)
class Migration:
    name: str  # file name without ".sql", e.g. "0001_initial"
    sql: LiteralString


def migrations_dir() -> Path:
    """``migrations/`` of a source checkout, else the copy shipped in the wheel."""
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / "migrations", package / "_migrations"):
        if candidate.is_dir() and any(candidate.glob("*.sql")):
            return candidate
    raise ConfigurationError("pgq's SQL migrations are missing from this installation")


@cache
def all_migrations() -> tuple[Migration, ...]:
    return tuple(
        # Files shipped with pgq are as literal as the source code.
        Migration(path.stem, path.read_text(encoding="utf-8"))
        for path in sorted(migrations_dir().glob("*.sql"))
    )


def apply_migrations(migrations: tuple[Migration, ...] | None = None) -> Operation[list[str]]:
    """Apply the pending migrations in order, in the caller's transaction.

    An advisory lock makes concurrent runs wait for each other; the second one
    then finds nothing left to do.
    """
    wanted = all_migrations() if migrations is None else migrations
    yield Query("lock_migrations")
    yield Query("create_migrations_table")
    applied = {row["name"] for row in (yield Query("applied_migrations"))}
    if migrations is None:
        _refuse_newer(applied)
    done = []
    for migration in wanted:
        if migration.name not in applied:
            yield Script(migration.name, migration.sql)
            yield Query("record_migration", {"name": migration.name})
            done.append(migration.name)
    return done


def check_schema() -> Operation[None]:
    """Fail unless the schema is exactly the one this pgq knows: ``SchemaNotMigrated``
    when a migration is missing, ``SchemaTooNew`` when a newer pgq migrated it."""
    rows = yield Query("schema_exists")
    if not rows[0]["exists"]:
        raise SchemaNotMigrated()
    applied = {row["name"] for row in (yield Query("applied_migrations"))}
    _refuse_newer(applied)
    pending = [m.name for m in all_migrations() if m.name not in applied]
    if pending:
        raise SchemaNotMigrated(
            f"the pgq schema lacks migration(s) {', '.join(pending)}: run `pgq migrate`"
        )


def schema_version(names: Iterable[str]) -> int:
    """The number of the latest of these migrations (``0004_x`` -> 4); 0 for none."""
    numbers = [int(match.group()) for name in names if (match := re.match(r"\d+", name))]
    return max(numbers, default=0)


def _refuse_newer(applied: set[str]) -> None:
    # This code cannot know what a newer migration changed (a column it must
    # fill, a status it must not overwrite), so it does not write to the schema.
    unknown = sorted(applied - {m.name for m in all_migrations()})
    if unknown:
        raise SchemaTooNew(
            f"the database schema is at version {schema_version(applied)}, newer than this "
            f"pgq ({schema_version(m.name for m in all_migrations())}): upgrade pgq "
            f"(unknown migration(s): {', '.join(unknown)})"
        )


def migrate(dsn: str) -> list[str]:
    """Apply pending migrations to the database at ``dsn``; returns their names."""
    with db.connect(dsn) as conn:
        applied = db.run(conn, apply_migrations())
    for name in applied:
        logger.info("applied migration=%s", name)
    return applied
