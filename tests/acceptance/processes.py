"""Helpers for tests that run real ``pgq worker`` processes: the ``start_worker``
fixture and queries that watch workers from the database side."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgq import JobStatus
from tests.conftest import ROOT, pgq_command, subprocess_env, wait_until

Conn = psycopg.Connection[Any]

# Short enough for a test, long enough that a live worker never loses its lease.
FAST_LEASE = ("--heartbeat-interval", "0.2", "--lease", "1")


def scalar(conn: Conn, query: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def job_count(conn: Conn, status: JobStatus) -> int:
    return int(scalar(conn, "SELECT count(*) FROM pgq.jobs WHERE status = %s", (status.value,)))


def listening_backends(conn: Conn) -> int:
    """Connections of this database (other than ``conn``) sitting in LISTEN pgq."""
    return int(
        scalar(
            conn,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN pgq%%'",
        )
    )


def other_backends_idle(conn: Conn) -> bool:
    """True when no other connection of this database is running a statement."""
    busy = scalar(
        conn,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state <> 'idle'",
    )
    return int(busy) == 0


def worker_rows(conn: Conn, pid: int | None = None) -> int:
    if pid is None:
        return int(scalar(conn, "SELECT count(*) FROM pgq.workers"))
    return int(scalar(conn, "SELECT count(*) FROM pgq.workers WHERE pid = %s", (pid,)))


def ledger(conn: Conn, job_id: int) -> list[tuple[int, int]]:
    """(attempt, pid) of every recorded run of a job, in order."""
    rows = conn.execute(
        "SELECT attempt, pid FROM test_ledger WHERE job_id = %s ORDER BY at", (job_id,)
    ).fetchall()
    return [(attempt, pid) for attempt, pid in rows]


def wait_idle_and_listening(conn: Conn, workers: int = 1, timeout: float = 30.0) -> None:
    """Every worker registered and LISTENing, and none of them mid-statement."""
    wait_until(
        lambda: (
            worker_rows(conn) == workers
            and listening_backends(conn) == workers
            and other_backends_idle(conn)
        ),
        timeout=timeout,
    )


@dataclass
class WorkerProcess:
    """A ``pgq worker`` subprocess whose output goes to a file (a pipe nobody
    reads would fill up and block a busy worker)."""

    process: subprocess.Popen[str]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM; the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(dsn: str, tmp_path: Path) -> Iterator[StartWorker]:
    """``start_worker(*worker_args, dsn=..., log_level=...)``: a ``pgq worker --app
    tests.tasks:app`` process; any still running at the end of the test is killed."""
    started: list[WorkerProcess] = []

    def start(*args: str, dsn: str = dsn, log_level: str = "info") -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        worker_args = ("--log-level", log_level, "worker", "--app", "tests.tasks:app", *args)
        started.append(launch(dsn, log, *worker_args))
        return started[-1]

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def launch(dsn: str, log: Path, *args: str) -> WorkerProcess:
    """``pgq --dsn DSN *args`` in the background, its output in ``log``."""
    with log.open("w") as out:
        process = subprocess.Popen(
            pgq_command(dsn, *args),
            cwd=ROOT,
            env=subprocess_env(dsn),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return WorkerProcess(process, log)


def no_traceback(output: str) -> bool:
    return "Traceback" not in output
