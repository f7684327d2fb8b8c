"""Database faults seen by real worker processes: the database down at start,
connections cut mid-job, a LISTEN connection that goes silent, lock timeouts on
the claim path. The worker reaches PostgreSQL through a TCP proxy that the test
controls (tests/tcp_proxy.py); the test itself talks to PostgreSQL directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import pgq
from pgq import JobStatus
from tests import tasks
from tests.acceptance.processes import (
    Conn,
    StartWorker,
    ledger,
    no_traceback,
    scalar,
    wait_idle_and_listening,
)
from tests.conftest import wait_until
from tests.tcp_proxy import TcpProxy

ATTEMPT = re.compile(r"cannot connect to \S+: .*\(attempt (\d+), next in ([\d.]+)s\)$", re.M)


@pytest.fixture
def proxy(dsn: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy(dsn).start()
    yield proxy
    proxy.close()


def listen_ports(conn: Conn) -> set[int]:
    """pg_stat_activity.client_port of the connections in LISTEN pgq."""
    rows = conn.execute(
        "SELECT client_port FROM pg_stat_activity WHERE datname = current_database() "
        "AND query ILIKE 'LISTEN pgq%%' AND pid <> pg_backend_pid()"
    ).fetchall()
    return {int(port) for (port,) in rows}


def test_database_down_at_start__worker_waits_with_backoff_and_starts_when_it_is_up(
    app: pgq.App, conn: Conn, proxy: TcpProxy, start_worker: StartWorker, dsn: str
) -> None:
    proxy.refuse()  # as if PostgreSQL were not running yet
    worker = start_worker(dsn=proxy.proxied(dsn))
    attempts = wait_until(lambda: len(found := ATTEMPT.findall(worker.output())) >= 2 and found)
    assert worker.process.poll() is None

    job = tasks.add.delay(2, 3)  # queued directly, while the worker cannot connect
    proxy.start()  # "PostgreSQL is up", on the same port
    job.wait(timeout=30)
    assert job.status is JobStatus.SUCCEEDED
    assert job.result == 5

    assert worker.stop() == 0, worker.output()
    assert [int(n) for n, _ in attempts[:2]] == [1, 2]
    assert no_traceback(worker.output())


def test_connections_cut_mid_job__outcome_is_written_once_the_database_is_back(
    app: pgq.App, conn: Conn, proxy: TcpProxy, start_worker: StartWorker, dsn: str, tmp_path: Path
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    gate = tmp_path / "gate"
    worker = start_worker(dsn=proxy.proxied(dsn))
    job = tasks.wait_for_file.delay(str(gate))
    wait_until(lambda: ledger(conn, job.id))

    # Every worker connection reset, and no new one accepted, while the job runs.
    proxy.refuse()
    proxy.cut_all()
    gate.touch()  # the job finishes during the outage
    wait_until(lambda: ATTEMPT.search(worker.output()))
    assert scalar(conn, "SELECT status::text FROM pgq.jobs WHERE id = %s", (job.id,)) == "running"

    proxy.start()
    job.wait(timeout=30)
    assert job.status is JobStatus.SUCCEEDED
    assert job.attempts == 1  # written after the outage, not run again
    assert job.result == str(gate)
    assert [attempt for attempt, _ in ledger(conn, job.id)] == [1]
    assert worker.stop() == 0, worker.output()
    assert no_traceback(worker.output())


def test_listen_connection_gone_silent__polling_keeps_jobs_flowing_and_it_is_replaced(
    app: pgq.App, conn: Conn, proxy: TcpProxy, start_worker: StartWorker, dsn: str
) -> None:
    worker = start_worker("--poll-interval", "1", dsn=proxy.proxied(dsn))
    wait_idle_and_listening(conn)
    (silenced,) = listen_ports(conn)
    proxy.silence(silenced)  # no error, no reset: its NOTIFYs just stop arriving

    first = tasks.add.delay(1, 1)
    first.wait(timeout=30)  # found by the poll
    assert first.status is JobStatus.SUCCEEDED

    # The quiet connection is checked, found dead, and replaced.
    wait_until(lambda: "listen connection did not answer" in worker.output(), timeout=30)
    wait_until(lambda: listen_ports(conn) - {silenced}, timeout=30)
    second = tasks.add.delay(2, 2)
    second.wait(timeout=30)
    assert second.status is JobStatus.SUCCEEDED
    assert worker.stop() == 0, worker.output()
    assert no_traceback(worker.output())


def test_claims_hitting_lock_timeouts__leave_every_job_queued_and_work_resumes(
    app: pgq.App, conn: Conn, start_worker: StartWorker, dsn: str
) -> None:
    worker = start_worker(
        "--poll-interval", "0.2", dsn=make_conninfo(dsn, options="-c lock_timeout=100")
    )
    wait_until(lambda: scalar(conn, "SELECT count(*) FROM pgq.workers") == 1)
    with psycopg.connect(dsn) as locker:
        # Claims read pgq.workers; while this lock is held they fail on lock_timeout.
        locker.execute("LOCK TABLE pgq.workers IN ACCESS EXCLUSIVE MODE")
        ids = tasks.add.delay_many([(i, i) for i in range(5)])
        seen = worker.output().count("lock timeout")
        wait_until(lambda: worker.output().count("lock timeout") >= seen + 2)
        rows = conn.execute("SELECT status::text, attempts, worker_id FROM pgq.jobs").fetchall()
        assert rows == [("queued", 0, None)] * 5
    wait_until(
        lambda: (
            scalar(
                conn,
                "SELECT count(*) FROM pgq.jobs WHERE id = ANY(%s) AND status = 'succeeded'",
                (ids,),
            )
            == 5
        ),
        timeout=30,
    )
    assert scalar(conn, "SELECT max(attempts) FROM pgq.jobs") == 1
    assert worker.stop() == 0, worker.output()
