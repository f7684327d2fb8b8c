"""Database roles for the privilege tests: made per test, dropped afterwards
(roles belong to the whole cluster, not to a test's database)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo


@contextmanager
def login_role(server_dsn: str, database_dsn: str) -> Iterator[tuple[str, str]]:
    """A new LOGIN role with no privileges: (its name, a DSN of ``database_dsn`` as it).

    It has a password, so the DSN works on servers that ask for one; the
    throwaway cluster trusts local connections and ignores it.
    """
    name = f"pgq_role_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        try:
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test server's role may not create roles")
    try:
        yield name, make_conninfo(database_dsn, user=name, password=password)
    finally:
        with psycopg.connect(database_dsn, autocommit=True) as owner:
            owner.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (name,),
            )
            owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
