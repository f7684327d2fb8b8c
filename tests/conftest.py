"""A real PostgreSQL for every test, never a mock.

With ``PGQ_TEST_DSN`` set, tests use that server (its role must be allowed to
create databases); otherwise the session starts a throwaway cluster. A migrated
template database is built once; each test gets its own copy, so tests that
commit, LISTEN or run worker processes never see each other's rows.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pgq
from pgq.migrate import migrate
from pgq.tempdb import TemporaryPostgres

from . import tasks

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    configured = os.environ.get("PGQ_TEST_DSN")
    if configured:
        yield configured
        return
    with TemporaryPostgres(fsync=False) as postgres:
        yield postgres.dsn


def dsn_with_dbname(dsn: str, dbname: str) -> str:
    return make_conninfo(dsn, dbname=dbname)


def _admin(server_dsn: str, statement: sql.Composable) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def template_db(server_dsn: str) -> Iterator[str]:
    name = f"pgq_template_{uuid.uuid4().hex[:8]}"
    _admin(server_dsn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(dsn_with_dbname(server_dsn, name))
    yield name
    _admin(
        server_dsn, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


def create_database(server_dsn: str, template: str | None = None) -> str:
    name = f"pgq_test_{uuid.uuid4().hex[:12]}"
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        )
        if _server_version(server_dsn) >= 150000:
            # Copying the files of a small template is several times faster than
            # PostgreSQL 15's default WAL-logged copy.
            statement += sql.SQL(" STRATEGY FILE_COPY")
    _admin(server_dsn, statement)
    return name


@functools.cache
def _server_version(server_dsn: str) -> int:
    with psycopg.connect(server_dsn) as conn:
        return conn.info.server_version


@pytest.fixture
def dsn(server_dsn: str, template_db: str) -> Iterator[str]:
    """A migrated database of this test's own."""
    name = create_database(server_dsn, template_db)
    yield dsn_with_dbname(server_dsn, name)
    _admin(
        server_dsn, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


@pytest.fixture
def empty_dsn(server_dsn: str) -> Iterator[str]:
    """A database with no pgq schema at all."""
    name = create_database(server_dsn)
    yield dsn_with_dbname(server_dsn, name)
    _admin(
        server_dsn, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


@pytest.fixture
def app(dsn: str) -> Iterator[pgq.App]:
    """The App of tests/tasks.py, pointed at this test's database."""
    tasks.app.configure(dsn=dsn)
    yield tasks.app
    tasks.app.close()
    tasks.app.configure(dsn=None)


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        yield connection


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def pgq_command(dsn: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "pgq", "--dsn", dsn, *args]


def subprocess_env(dsn: str) -> dict[str, str]:
    env = {**os.environ, "PGQ_DSN": dsn, "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    return env


@pytest.fixture
def spawn_worker(dsn: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``pgq worker --app tests.tasks:app`` processes on this test's database;
    any still running at the end of the test are killed. Output goes to a file
    (``process.log_path``), never to a pipe a busy worker could fill and block on."""
    started: list[subprocess.Popen[str]] = []

    def spawn(*args: str) -> subprocess.Popen[str]:
        log_path = tmp_path / f"worker-{len(started)}.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                pgq_command(dsn, "worker", "--app", "tests.tasks:app", *args),
                cwd=ROOT,
                env=subprocess_env(dsn),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        process.log_path = log_path  # type: ignore[attr-defined]
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def database_name(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["dbname"])
