"""Running pgq's queries: one driver for sync and async connections, and the
single place where psycopg errors become pgq errors.

Store operations (:mod:`pgq.store`) are generators that yield the statements
they need and receive the rows, so each is written once and runs on either
kind of connection.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg.abc import Loader
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg.types.datetime import TimestamptzLoader
from psycopg.types.json import JsonbLoader, JsonLoader
from typing_extensions import LiteralString

from .exceptions import (
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailable,
    PermissionDenied,
    PgqError,
    SchemaNotMigrated,
)
from .queries import QUERIES

T = TypeVar("T")
Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Query:
    """Run the named query with these parameters; the operation gets the rows."""

    name: str
    params: Mapping[str, Any] | None = None
    # False: never a server-side prepared statement. After a few runs PostgreSQL
    # may plan a prepared statement once for any parameters, blind to the size
    # of the arrays it is given: a batch of 1,000 outcomes then joined with a
    # plan made for 10 took seconds instead of milliseconds.
    prepare: bool | None = None


@dataclass(frozen=True)
class Script:
    """Run a whole SQL file shipped with pgq (a migration); no parameters."""

    name: str
    text: LiteralString


Step = Query | Script
Operation = Generator[Step, Rows, T]

# SQLSTATEs that mean "the schema pgq expects is not there".
_MISSING_SCHEMA = (
    errors.UndefinedTable,
    errors.InvalidSchemaName,
    errors.UndefinedObject,
    errors.UndefinedColumn,
    errors.UndefinedFunction,
)


def describe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<invalid DSN>"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{host}:{port}/{parts.get('dbname', '')}"


def check_dsn(dsn: str) -> None:
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"invalid DSN: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_disconnect(exc: psycopg.Error) -> bool:
    """True when the error means the connection is gone, not that a statement failed."""
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


# Deadlock, serialization failure, lock not available, query cancelled
# (statement or lock timeout): the same statement may well succeed if run again.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014"})


def is_transient(exc: BaseException) -> bool:
    """True for a pgq error caused by a failure worth retrying as is."""
    cause = exc.__cause__
    return isinstance(cause, psycopg.Error) and cause.sqlstate in TRANSIENT_SQLSTATES


def translate(
    exc: psycopg.Error, step: Step | None = None, conn: psycopg.BaseConnection[Any] | None = None
) -> PgqError:
    """The pgq error for a psycopg error, chosen by SQLSTATE class; ``step`` and
    ``conn`` (the statement that failed and where) make a refusal more precise."""
    if isinstance(exc, _MISSING_SCHEMA):
        return SchemaNotMigrated()
    if isinstance(exc, errors.InsufficientPrivilege):
        return PermissionDenied(_denied(exc, step, conn))
    if isinstance(exc, psycopg.OperationalError) and is_disconnect(exc):
        return DatabaseUnavailable(f"lost the database connection: {first_line(exc)}")
    return DatabaseError(first_line(exc))


def _denied(exc: psycopg.Error, step: Step | None, conn: psycopg.BaseConnection[Any] | None) -> str:
    # PostgreSQL's own line names the object ("permission denied for table jobs");
    # the role and pgq's statement say who needs which grant.
    role = _role(conn)
    who = f"role {role!r}" if role else "this role"
    where = f" (statement {step.name} as {who})" if step is not None else f" (as {who})"
    if isinstance(step, Script) or (step is not None and step.name in _MIGRATION_STEPS):
        fix = "run `pgq migrate` as the role that owns schema pgq (or may create it)"
    else:
        fix = (
            f"`pgq grant {role or 'ROLE'} --worker` (or --producer), run as the owner of "
            "schema pgq, grants what pgq needs"
        )
    return f"{first_line(exc)}{where}: {fix}"


_MIGRATION_STEPS = frozenset({"lock_migrations", "create_migrations_table", "record_migration"})


def _role(conn: psycopg.BaseConnection[Any] | None) -> str | None:
    if conn is None:
        return None
    try:
        return conn.info.user
    except psycopg.Error:
        return None


@contextmanager
def translated_errors() -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc) from exc


# pgq's own connections (workers, migrations, the CLI) never prepare statements
# on the server: those live in a server session, which a transaction-mode
# pooler (PgBouncer) does not keep from one transaction to the next. Their
# statements run rarely, or already unprepared (claims, outcome writes).
NEVER_PREPARE = None


def connect(
    dsn: str, *, autocommit: bool = False, connect_timeout: int = 10
) -> psycopg.Connection[Any]:
    check_dsn(dsn)
    try:
        return psycopg.connect(
            dsn,
            autocommit=autocommit,
            connect_timeout=connect_timeout,
            prepare_threshold=NEVER_PREPARE,
        )
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"cannot connect to {describe_dsn(dsn)}: {first_line(exc)}"
        ) from None


async def aconnect(
    dsn: str, *, autocommit: bool = False, connect_timeout: int = 10
) -> psycopg.AsyncConnection[Any]:
    check_dsn(dsn)
    try:
        return await psycopg.AsyncConnection.connect(
            dsn,
            autocommit=autocommit,
            connect_timeout=connect_timeout,
            prepare_threshold=NEVER_PREPARE,
        )
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"cannot connect to {describe_dsn(dsn)}: {first_line(exc)}"
        ) from None


# pgq reads its rows the same way on any connection. A connection configured by
# a framework may load types its own way (Django's loads jsonb as text and may
# drop time zones) and bind parameters client-side: pgq's cursors are plain
# psycopg cursors with psycopg's standard loaders for the types it reads.
_STANDARD_LOADERS: tuple[tuple[str, type[Loader]], ...] = (
    ("json", JsonLoader),
    ("jsonb", JsonbLoader),
    ("timestamptz", TimestamptzLoader),
)

C = TypeVar("C", psycopg.Cursor[DictRow], psycopg.AsyncCursor[DictRow])


def _with_standard_loaders(cursor: C) -> C:
    for name, loader in _STANDARD_LOADERS:
        cursor.adapters.register_loader(name, loader)
    return cursor


def _execute(cursor: psycopg.Cursor[DictRow], step: Step, prepare: bool | None) -> Rows:
    if isinstance(step, Script):
        cursor.execute(step.text)
        return []
    cursor.execute(QUERIES[step.name], step.params, prepare=_prepare(step, prepare))
    return cursor.fetchall() if cursor.description is not None else []


async def _aexecute(cursor: psycopg.AsyncCursor[DictRow], step: Step, prepare: bool | None) -> Rows:
    if isinstance(step, Script):
        await cursor.execute(step.text)
        return []
    await cursor.execute(QUERIES[step.name], step.params, prepare=_prepare(step, prepare))
    return await cursor.fetchall() if cursor.description is not None else []


def _prepare(step: Query, prepare: bool | None) -> bool | None:
    return False if prepare is False else step.prepare


def run(
    conn: psycopg.Connection[Any], operation: Operation[T], *, prepare: bool | None = None
) -> T:
    """Drive ``operation`` on a sync connection (inside its current transaction).

    ``prepare=False``: no statement is prepared on the server, whatever the
    connection's ``prepare_threshold`` (a connection through a transaction-mode
    pooler, which a framework such as Django configured)."""
    step: Step | None = None
    try:
        with _with_standard_loaders(psycopg.Cursor(conn, row_factory=dict_row)) as cursor:
            step = next(operation)
            while True:
                step = operation.send(_execute(cursor, step, prepare))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    except psycopg.Error as exc:
        raise translate(exc, step, conn) from exc


async def arun(
    conn: psycopg.AsyncConnection[Any], operation: Operation[T], *, prepare: bool | None = None
) -> T:
    """Drive ``operation`` on an async connection (inside its current transaction)."""
    step: Step | None = None
    try:
        async with _with_standard_loaders(
            psycopg.AsyncCursor(conn, row_factory=dict_row)
        ) as cursor:
            step = next(operation)
            while True:
                step = operation.send(await _aexecute(cursor, step, prepare))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    except psycopg.Error as exc:
        raise translate(exc, step, conn) from exc
