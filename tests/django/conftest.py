"""Django tests on the session's throwaway PostgreSQL.

pytest-django creates Django's test database on the server that
tests/conftest.py started (``server_dsn``), by Django's migrations, so the pgq
schema there comes from pgq_django's migrations. Tests that need commits seen
by other connections (NOTIFY, workers) use ``committed_db``, which empties
pgq's tables afterwards: Django's flush does not touch unmanaged tables.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.conf import settings
from django.db import connection
from psycopg.conninfo import conninfo_to_dict

import pgq
from pgq_django import app as project_app
from pgq_django.worker import worker_app

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    server_dsn: str, django_db_modify_db_settings_parallel_suffix: None
) -> None:
    """Point Django's DATABASES at the session server, with a test database of
    this run's own (several runs may share one PGQ_TEST_DSN server)."""
    params = {key: str(value) for key, value in conninfo_to_dict(server_dsn).items()}
    database = settings.DATABASES["default"]
    database["HOST"] = params.pop("host", "")
    database["PORT"] = params.pop("port", "")
    database["USER"] = params.pop("user", "")
    database["PASSWORD"] = params.pop("password", "")
    params.pop("dbname", None)
    database.setdefault("OPTIONS", {}).update(params)
    database.setdefault("TEST", {})["NAME"] = f"test_pgq_django_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def committed_db(transactional_db: None, django_db_blocker: Any) -> Iterator[None]:
    """Real commits (workers, NOTIFY, async pool); pgq's tables emptied afterwards."""
    yield
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE pgq.jobs, pgq.workers, pgq.schedules")


@pytest.fixture
def app() -> pgq.App:
    return project_app


@pytest.fixture
def run_burst() -> Callable[..., None]:
    """Run a worker of the project's tasks in this thread until no job is ready."""

    def run(**options: Any) -> None:
        pgq.Worker(worker_app(), burst=True, **options).run()

    return run


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine; the App's async pool is closed before the loop ends."""

    async def wrapped() -> T:
        try:
            return await main()
        finally:
            await project_app.aclose()

    return asyncio.run(wrapped())


def manage_env(dsn: str) -> dict[str, str]:
    """Environment for ``python -m django ...`` against the database at ``dsn``."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django.settings",
        "PGQ_DJANGO_TEST_DATABASE": dsn,
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("PGQ_DSN", "DATABASE_URL"):
        env.pop(name, None)
    return env


def manage(dsn: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m django ARGS`` (what manage.py does) and wait for it."""
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=manage_env(dsn),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
