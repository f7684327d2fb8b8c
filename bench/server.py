"""The PostgreSQL the benchmark runs on, a fresh database per measurement,
and what is worth knowing about the machine."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from pgq.tempdb import TemporaryPostgres

from . import ROOT
from .queries import QUERIES


class Server:
    """A PostgreSQL server the benchmark may create and drop databases on."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self._templates: dict[str, str] = {}

    def _admin(self, statement: sql.Composed) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(statement)

    def _create(self, name: str, template: str | None = None) -> None:
        if template is None:
            self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return
        # FILE_COPY (PostgreSQL 15+) copies the files instead of WAL-logging every page.
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            version = conn.info.server_version
        statement = sql.SQL(
            QUERIES[
                "create_database_from" if version < 150000 else "create_database_from_file_copy"
            ]
        )
        for attempt in range(20):
            try:
                self._admin(statement.format(sql.Identifier(name), sql.Identifier(template)))
                return
            except errors.ObjectInUse:  # a connection to the template is just closing
                if attempt == 19:
                    raise
                time.sleep(0.25)

    def _drop(self, name: str) -> None:
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    @contextlib.contextmanager
    def fresh_database(self, template: str | None = None) -> Iterator[str]:
        """A database of its own for one measurement (empty, or a copy of
        ``template``), dropped afterwards."""
        name = f"pgq_bench_{uuid.uuid4().hex[:12]}"
        self._create(name, template)
        try:
            yield make_conninfo(self.dsn, dbname=name)
        finally:
            self._drop(name)

    def template(self, key: str, build: Callable[[str], None]) -> str:
        """A database built once by ``build(dsn)`` (then settled and closed to
        connections), for ``fresh_database(template=...)`` to copy: a million
        rows of history are written once per system, not once per run."""
        if key not in self._templates:
            name = f"pgq_bench_template_{uuid.uuid4().hex[:12]}"
            self._create(name)
            try:
                dsn = make_conninfo(self.dsn, dbname=name)
                build(dsn)
                self.settle(dsn)
                # No connection, autovacuum's included, may hold it while it is copied.
                self._admin(
                    sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                        sql.Identifier(name)
                    )
                )
            except BaseException:
                self._drop(name)
                raise
            self._templates[key] = name
        return self._templates[key]

    def drop_templates(self) -> None:
        while self._templates:
            self._drop(self._templates.popitem()[1])

    def settle(self, dsn: str) -> None:
        """Fresh statistics and no dirty pages before the clock starts, so that a
        checkpoint or a stale plan from setup does not land inside a measurement."""
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(QUERIES["vacuum_analyze"])
            with contextlib.suppress(errors.InsufficientPrivilege):
                conn.execute(QUERIES["checkpoint"])

    def settings(self) -> dict[str, Any]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cursor = conn.execute(QUERIES["server_settings"])
            assert cursor.description is not None
            names = [column.name for column in cursor.description]
            row = cursor.fetchone()
            assert row is not None
            return dict(zip(names, row, strict=True))


@contextlib.contextmanager
def open_server(dsn: str | None) -> Iterator[Server]:
    """The server at ``dsn``, else a throwaway cluster with fsync on (durable
    commits, as in production)."""
    if dsn:
        server = Server(dsn)
        try:
            yield server
        finally:
            server.drop_templates()
        return
    with TemporaryPostgres(fsync=True) as postgres:
        yield Server(postgres.dsn)


def machine_info(server: Server, *, throwaway: bool) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "psycopg": metadata.version("psycopg"),
        "pgq": metadata.version("pgq-jobs"),
        "git_commit": _git_commit(),
        "postgres": {**server.settings(), "throwaway_cluster": throwaway},
    }


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _memory_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}-dirty" if dirty else head
