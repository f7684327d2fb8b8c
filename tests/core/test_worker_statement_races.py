"""Races between a worker's connections: statements that outlive the worker's
wait for them, a claim in flight while the lease is lost, the check for lost
claims while a claim is in flight. A real in-process worker each time; the
test holds locks or slows claims down with a trigger to open each window."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgq
import pgq.worker
from tests import tasks
from tests.conftest import wait_until
from tests.core.test_worker import ledger, worker_ids, worker_thread
from tests.core.test_worker_leases import job_row
from tests.tcp_proxy import TcpProxy


def slow_claim_ddl(seconds: float) -> str:
    """Claiming a job of priority -1 takes ``seconds`` (a trigger sleeps)."""
    return f"""
CREATE FUNCTION test_slow_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'running' AND NEW.priority = -1 THEN
        PERFORM pg_sleep({seconds});
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_slow_claim BEFORE UPDATE ON pgq.jobs
    FOR EACH ROW EXECUTE FUNCTION test_slow_claim();
"""


def waiting_on_lock(conn: psycopg.Connection[Any], like: str) -> int:
    """Server connections of this database waiting on a lock, running ``like``."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query ILIKE %s",
        (like,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def claim_running(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND state = 'active' AND query ILIKE %s AND pid <> pg_backend_pid()",
        ("%FOR UPDATE SKIP LOCKED%",),
    ).fetchone()
    return row is not None and row[0] > 0


def test_claim_unanswered_past_the_statement_wait__is_cancelled_not_left_to_commit(
    app: pgq.App,
    conn: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A claim still running on the server when the worker stops waiting for it
    # would commit later, holding a job that nobody runs or gives back.
    monkeypatch.setattr(pgq.worker, "MIN_STATEMENT_WAIT", 1.0)  # waits max(1, lease): 2s
    conn.execute(slow_claim_ddl(4))
    job = tasks.add.using(priority=-1).delay(1, 2)
    with worker_thread(app, heartbeat_interval=0.3, lease_seconds=2, poll_interval=0.2):
        wait_until(
            lambda: (
                "no answer within 2s" in caplog.text
                or "canceling statement due to user request" in caplog.text
            )
        )
        conn.execute("DROP TRIGGER test_slow_claim ON pgq.jobs")
        wait_until(lambda: job_row(conn, job.id)["status"] == "succeeded", timeout=15)
    assert job_row(conn, job.id)["attempts"] == 1


def test_heartbeat_statements_blocked_by_a_lock__are_cancelled_not_piled_up(
    app: pgq.App, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    with worker_thread(app, heartbeat_interval=0.2, lease_seconds=5) as worker:
        wait_until(lambda: worker.id in worker_ids(conn))
        with psycopg.connect(app.dsn) as locker:
            # As CREATE INDEX on pgq.jobs does: heartbeats pass, recoveries wait.
            locker.execute("LOCK TABLE pgq.jobs IN SHARE MODE")
            wait_until(lambda: caplog.text.count("heartbeat failed") >= 5)
            # Each recovery that timed out was cancelled on the server, not left
            # waiting there with its connection (one more every heartbeat).
            wait_until(lambda: waiting_on_lock(conn, "%DELETE FROM pgq.workers%") <= 1)
            assert worker.id in worker_ids(conn)
        assert "lost its lease" not in caplog.text


def test_job_claimed_as_the_lease_is_lost__goes_back_with_its_attempt_not_counted(
    app: pgq.App, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pgq.worker")
    conn.execute(tasks.LEDGER_DDL)
    with worker_thread(app, heartbeat_interval=0.5, lease_seconds=3, poll_interval=0.2) as worker:
        wait_until(lambda: worker.id in worker_ids(conn))
        first_id = worker.id
        with psycopg.connect(app.dsn) as locker:
            # Heartbeats and claims both wait on this lock.
            locker.execute("LOCK TABLE pgq.workers IN ACCESS EXCLUSIVE MODE")
            job = tasks.record.using(max_attempts=1).delay("once")
            wait_until(lambda: waiting_on_lock(conn, "%FOR UPDATE SKIP LOCKED%") == 1)
            assert "lost its lease" not in caplog.text  # so the claim is made as first_id
            wait_until(lambda: f"worker={first_id} lost its lease" in caplog.text)
        # The claim goes through under the lost identity: the job never ran there.
        wait_until(lambda: job_row(conn, job.id)["status"] in ("succeeded", "failed"), timeout=15)
        done = job_row(conn, job.id)
        assert (done["status"], done["attempts"]) == ("succeeded", 1), done
        assert done["worker_id"] != first_id
    assert [key for (_, _, key) in ledger(conn, job.id)] == ["once"]


def test_lost_claims_check_while_a_claim_is_in_flight__keeps_the_claimed_job(
    app: pgq.App, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    conn.execute(slow_claim_ddl(1))
    gate = tmp_path / "gate"
    try:
        with worker_thread(app, heartbeat_interval=0.1, lease_seconds=5) as worker:
            wait_until(lambda: worker.id in worker_ids(conn))
            job = tasks.hold.using(priority=-1).delay(str(gate))
            wait_until(lambda: claim_running(conn))
            # As after a reconnection whose check for lost claims failed: it is
            # made again, and must not count the claim in flight as lost.
            worker._lost_claims_unchecked = True
            wait_until(lambda: ledger(conn, job.id))
            wait_until(lambda: not worker._lost_claims_unchecked)
            held = job_row(conn, job.id)
            assert (held["status"], held["attempts"], held["worker_id"]) == (
                "running",
                1,
                worker.id,
            )
            gate.touch()
            wait_until(lambda: job_row(conn, job.id)["status"] == "succeeded")
    finally:
        gate.touch()
    assert [(attempt, key) for (_, attempt, key) in ledger(conn, job.id)] == [
        (1, "started"),
        (1, "ended"),
    ]


def test_work_connection_gone_silent__is_replaced_at_the_first_attempt_and_jobs_flow(
    app: pgq.App,
    conn: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pgq.worker, "MIN_STATEMENT_WAIT", 1.0)  # waits max(1, lease): 2s
    proxy = TcpProxy(app.dsn).start()
    app.configure(dsn=proxy.proxied(app.dsn))
    try:
        with worker_thread(
            app, heartbeat_interval=0.3, lease_seconds=2, poll_interval=0.2
        ) as worker:
            wait_until(lambda: worker.id in worker_ids(conn))
            port = wait_until(lambda: work_connection_port(conn))
            proxy.silence(port)  # no error, no reset: its answers just stop arriving
            wait_until(lambda: "database connection not answering" in caplog.text)
            job = tasks.add.delay(1, 2)
            wait_until(lambda: job_row(conn, job.id)["status"] == "succeeded", timeout=15)
        # The silent connection was closed and wound down before a new one was
        # made: the new one came at the first attempt.
        assert "cannot connect" not in caplog.text
    finally:
        proxy.close()


def work_connection_port(conn: psycopg.Connection[Any]) -> int | None:
    """pg_stat_activity.client_port of the worker's claim connection."""
    row = conn.execute(
        "SELECT client_port FROM pg_stat_activity WHERE datname = current_database()"
        " AND (query ILIKE '%%SKIP LOCKED%%' OR query ILIKE '%%AS due_in%%')"
        " AND pid <> pg_backend_pid()"
    ).fetchone()
    return int(row[0]) if row else None
