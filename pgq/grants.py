"""Least-privilege database roles: what a worker and a producer need on
schema pgq, and nothing more.

Granted by the owner of schema pgq (the role that ran ``pgq migrate``). GRANT
is idempotent: run it again after a ``pgq migrate`` that adds tables.
"""

from __future__ import annotations

from typing import Literal

import psycopg
from psycopg import errors, sql

from . import db
from .db import Operation, Query
from .exceptions import InvalidOptions, PermissionDenied
from .migrate import check_schema

Kind = Literal["producer", "worker"]

# Enqueue, read jobs back, see which tasks live workers know; never change a job.
PRODUCER: tuple[sql.SQL, ...] = (
    sql.SQL("GRANT USAGE ON SCHEMA pgq TO {role}"),
    sql.SQL("GRANT SELECT ON pgq.migrations TO {role}"),  # the schema check on first use
    sql.SQL("GRANT SELECT, INSERT ON pgq.jobs TO {role}"),
    sql.SQL("GRANT USAGE ON SEQUENCE pgq.jobs_id_seq TO {role}"),  # ids for the jobs it inserts
    sql.SQL("GRANT SELECT ON pgq.workers TO {role}"),
    sql.SQL("GRANT SELECT ON pgq.queues TO {role}"),  # queue settings (pgq queues)
)

# A producer's rights (tasks enqueue too), plus claiming and finishing jobs and
# keeping pgq.workers: registration, heartbeats, recovering dead workers' jobs;
# and enqueueing the ticks of periodic schedules. Never DELETE or TRUNCATE on
# jobs (so such a worker does not prune: see pgq.retention), nothing on
# migrations beyond reading it.
WORKER: tuple[sql.SQL, ...] = (
    *PRODUCER,
    sql.SQL("GRANT UPDATE ON pgq.jobs TO {role}"),
    sql.SQL("GRANT INSERT, UPDATE, DELETE ON pgq.workers TO {role}"),
    sql.SQL("GRANT SELECT, INSERT, UPDATE ON pgq.schedules TO {role}"),  # periodic jobs
    # Claims lock a limited queue's row and take tokens from its rate bucket.
    sql.SQL("GRANT UPDATE ON pgq.queues TO {role}"),
)

PRIVILEGES: dict[Kind, tuple[sql.SQL, ...]] = {"producer": PRODUCER, "worker": WORKER}
MAX_ROLE_BYTES = 63  # PostgreSQL silently truncates longer names: another role's


def role_name(role: str) -> str:
    if not role or "\x00" in role:
        raise InvalidOptions(f"invalid role name {role!r}")
    try:
        size = len(role.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidOptions(f"invalid role name {role!r}: not valid Unicode") from None
    if size > MAX_ROLE_BYTES:
        raise InvalidOptions(f"invalid role name {role!r}: longer than {MAX_ROLE_BYTES} bytes")
    if role == "public":  # GRANT ... TO "public" grants to every role
        raise InvalidOptions("refusing to grant pgq's privileges to PUBLIC, that is to every role")
    return role


def grant_statements(role: str, kind: Kind) -> list[sql.Composed]:
    """The GRANT statements for ``role``; its name is quoted as an identifier."""
    identifier = sql.Identifier(role_name(role))
    return [statement.format(role=identifier) for statement in PRIVILEGES[kind]]


def grant_script(role: str, kind: Kind) -> str:
    """The statements as SQL text, for ``pgq grant --print``."""
    return "\n".join(f"{statement.as_string()};" for statement in grant_statements(role, kind))


def _role_exists(role: str) -> Operation[bool]:
    rows = yield Query("role_exists", {"role": role})
    return bool(rows[0]["exists"])


NOT_OWNER = "`pgq grant` runs as the owner of schema pgq (the role that ran `pgq migrate`)"


def grant(dsn: str, role: str, kind: Kind) -> None:
    """Grant ``role`` the privileges of ``kind`` in one transaction: all or none."""
    statements = grant_statements(role, kind)
    # A role holding a privilege without the right to pass it on gets a
    # warning (SQLSTATE 01007), not an error: caught here so it is not mistaken for success.
    not_granted: list[str] = []
    with db.connect(dsn) as conn:
        conn.add_notice_handler(
            lambda notice: (
                not_granted.append(notice.message_primary or "")
                if notice.sqlstate == "01007"
                else None
            )
        )
        try:
            db.run(conn, check_schema())
            exists = db.run(conn, _role_exists(role))
        except PermissionDenied as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, psycopg.Error) else exc
            raise PermissionDenied(f"{db.first_line(cause)}: {NOT_OWNER}") from exc
        if not exists:
            raise InvalidOptions(
                f"role {role!r} does not exist: create it first "
                "(CREATE ROLE ... LOGIN PASSWORD ...)"
            )
        try:
            for statement in statements:
                conn.execute(statement)
        except errors.InsufficientPrivilege as exc:
            raise PermissionDenied(f"{db.first_line(exc)}: {NOT_OWNER}") from exc
        except psycopg.Error as exc:
            raise db.translate(exc) from exc
        if not_granted:
            conn.rollback()
            raise PermissionDenied(f"{not_granted[0]}: {NOT_OWNER}")
