"""Real ``pgq worker`` processes against a real PostgreSQL: draining many jobs,
``kill -9`` and lease recovery, SIGTERM, NOTIFY wake-up, dropped connections.

Each test waits on what it can observe in the database (job rows, the ledger
that ``tests.tasks.record`` and ``wait_for_file`` write, ``pg_stat_activity``),
never on a fixed sleep.
"""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

import pgq
from pgq import JobStatus
from tests import tasks
from tests.acceptance.processes import (
    FAST_LEASE,
    Conn,
    StartWorker,
    job_count,
    ledger,
    no_traceback,
    scalar,
    wait_idle_and_listening,
    worker_rows,
)
from tests.conftest import wait_until

# Many processes, each job once.


def test_four_worker_processes__drain_5000_jobs__each_exactly_once(
    app: pgq.App, conn: Conn, start_worker: StartWorker
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    workers = [start_worker(log_level="warning") for _ in range(4)]
    wait_idle_and_listening(conn, workers=4)

    started = time.monotonic()
    ids = tasks.record.delay_many([{"key": str(i)} for i in range(5000)])
    wait_until(lambda: job_count(conn, JobStatus.SUCCEEDED) == 5000, timeout=60, interval=0.1)
    elapsed = time.monotonic() - started
    print(f"\n4 worker processes drained 5000 jobs in {elapsed:.2f}s ({5000 / elapsed:.0f} jobs/s)")

    assert [worker.stop() for worker in workers] == [0, 0, 0, 0]
    assert all(no_traceback(worker.output()) for worker in workers)
    assert scalar(conn, "SELECT count(*) FROM test_ledger") == 5000
    assert scalar(conn, "SELECT count(DISTINCT job_id) FROM test_ledger") == 5000
    assert {row[0] for row in conn.execute("SELECT job_id FROM test_ledger")} == set(ids)
    assert scalar(conn, "SELECT max(attempts) FROM pgq.jobs") == 1
    pids = {row[0] for row in conn.execute("SELECT DISTINCT pid FROM test_ledger")}
    assert len(pids) > 1
    assert pids <= {worker.pid for worker in workers}
    assert worker_rows(conn) == 0


def test_supervisor_with_four_processes__drains_2000_jobs_once_and_exits_0_on_sigterm(
    app: pgq.App, conn: Conn, start_worker: StartWorker
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    supervisor = start_worker("--processes", "4", log_level="warning")
    wait_idle_and_listening(conn, workers=4)

    ids = tasks.record.delay_many([{"key": str(i)} for i in range(2000)])
    wait_until(lambda: job_count(conn, JobStatus.SUCCEEDED) == 2000, timeout=60, interval=0.1)

    assert supervisor.stop() == 0, supervisor.output()
    assert no_traceback(supervisor.output())
    assert scalar(conn, "SELECT count(*) FROM test_ledger") == 2000
    assert {row[0] for row in conn.execute("SELECT job_id FROM test_ledger")} == set(ids)
    pids = {row[0] for row in conn.execute("SELECT DISTINCT pid FROM test_ledger")}
    assert len(pids) >= 2
    assert supervisor.pid not in pids  # the supervisor runs no job itself
    assert worker_rows(conn) == 0  # every child deregistered on its way out


# Crashes and leases.


def test_kill_9_mid_job__lease_expires_and_another_worker_reruns_it(
    app: pgq.App, conn: Conn, start_worker: StartWorker, tmp_path: Path
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    release = tmp_path / "release"
    worker_a = start_worker(*FAST_LEASE)
    job = tasks.wait_for_file.delay(str(release))
    wait_until(lambda: ledger(conn, job.id) == [(1, worker_a.pid)])

    worker_a.process.kill()
    assert worker_a.process.wait(timeout=10) == -signal.SIGKILL
    assert job.refresh().status is JobStatus.RUNNING  # nobody has noticed yet

    worker_b = start_worker(*FAST_LEASE)
    wait_until(lambda: len(ledger(conn, job.id)) == 2)
    release.touch()
    job.wait(timeout=20)

    assert job.status is JobStatus.SUCCEEDED
    assert job.attempts == 2
    assert ledger(conn, job.id) == [(1, worker_a.pid), (2, worker_b.pid)]
    assert "stopped sending heartbeats" in (job.last_error or "")
    assert worker_rows(conn, worker_a.pid) == 0
    assert worker_b.stop() == 0, worker_b.output()
    assert f"job={job.id} recovered from a dead worker" in worker_b.output()


# SIGTERM.


def test_sigterm__running_job_finishes_before_the_worker_exits_0(
    app: pgq.App, conn: Conn, start_worker: StartWorker
) -> None:
    worker = start_worker()
    job = tasks.sleep.delay(1.0)
    wait_until(lambda: job.refresh().status is JobStatus.RUNNING)
    signalled_at = scalar(conn, "SELECT clock_timestamp()")

    assert worker.stop() == 0, worker.output()

    assert "SIGTERM: stopping; 1 running job(s)" in worker.output()
    job.refresh()
    assert job.status is JobStatus.SUCCEEDED
    assert job.result == 1.0
    assert job.finished_at is not None and job.finished_at > signalled_at
    assert worker_rows(conn) == 0
    assert no_traceback(worker.output())


def test_sigterm__job_outlasting_the_grace_period_is_released_and_exit_is_0(
    app: pgq.App, conn: Conn, start_worker: StartWorker, tmp_path: Path
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    worker = start_worker("--shutdown-grace", "0.5")
    job = tasks.wait_for_file.delay(str(tmp_path / "never-created"))
    wait_until(lambda: ledger(conn, job.id))

    assert worker.stop() == 0, worker.output()

    assert "released 1 unfinished job(s)" in worker.output()
    job.refresh()
    assert job.status is JobStatus.QUEUED
    assert job.attempts == 0  # the interrupted attempt is not held against the job
    assert worker_rows(conn) == 0
    assert no_traceback(worker.output())


# Waking up and staying connected.


def test_notify__wakes_an_idle_worker_long_before_its_poll_interval(
    app: pgq.App, conn: Conn, start_worker: StartWorker
) -> None:
    worker = start_worker("--poll-interval", "30")
    wait_idle_and_listening(conn)

    job = tasks.add.delay(1, 2)
    job.wait(timeout=10)  # the poll alone would take 30s

    assert job.status is JobStatus.SUCCEEDED
    assert job.result == 3
    assert job.started_at is not None
    latency = (job.started_at - job.created_at).total_seconds()
    print(f"\nNOTIFY wake: commit-to-start latency {latency * 1000:.1f} ms")
    assert worker.stop() == 0, worker.output()


def test_dropped_connections__idle_worker_reconnects_and_runs_the_next_job(
    app: pgq.App, conn: Conn, start_worker: StartWorker
) -> None:
    worker = start_worker()
    wait_idle_and_listening(conn)

    terminated = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend'"
    ).fetchall()
    assert len(terminated) >= 2 and all(ok for (ok,) in terminated)
    job = tasks.add.delay(20, 22)  # possibly while the worker is still reconnecting

    job.wait(timeout=30)
    assert job.status is JobStatus.SUCCEEDED
    assert job.result == 42
    assert worker.process.poll() is None
    assert worker.stop() == 0, worker.output()
    assert "listen connection lost" in worker.output()
    assert no_traceback(worker.output())


# Starting before the database is reachable.


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local TCP port bound but not listening: connections to it are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


ATTEMPT = re.compile(r"cannot connect to \S+: .*\(attempt (\d+), next in ([\d.]+)s\)$", re.M)


def test_unreachable_database__worker_logs_each_attempt_with_backoff_and_exits_0_on_sigterm(
    dsn: str, closed_port: int, start_worker: StartWorker
) -> None:
    unreachable = make_conninfo(dsn, host="127.0.0.1", port=str(closed_port))
    worker = start_worker("--burst", dsn=unreachable)

    attempts = wait_until(lambda: len(found := ATTEMPT.findall(worker.output())) >= 3 and found)
    assert worker.process.poll() is None  # still waiting for the database, not crashed
    assert worker.stop(timeout=15) == 0

    lines = worker.output().splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d ", line) for line in lines), lines  # one line each
    assert no_traceback(worker.output())
    assert [int(n) for n, _ in attempts[:3]] == [1, 2, 3]
    delays = [float(d) for _, d in attempts[:3]]
    assert delays[0] < delays[1] < delays[2], delays  # backing off
    assert f"127.0.0.1:{closed_port}" in lines[0]
    assert "SIGTERM" in worker.output()
