"""The PostgreSQL the benchmark runs on, a fresh database per measurement,
and what is worth knowing about the machine."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
import uuid
from collections.abc import Iterator
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

    def _admin(self, statement: sql.Composed) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(statement)

    @contextlib.contextmanager
    def fresh_database(self) -> Iterator[str]:
        """An empty database of its own for one measurement, dropped afterwards."""
        name = f"pgq_bench_{uuid.uuid4().hex[:12]}"
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield make_conninfo(self.dsn, dbname=name)
        finally:
            self._admin(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

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
        yield Server(dsn)
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
