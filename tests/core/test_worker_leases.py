"""Leases and fencing: a job is never lost, and never recorded by a worker that
no longer holds it. Most tests play two workers by hand through the store
operations the worker uses; one runs a real in-process worker and declares it
dead under its feet."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgq
from pgq import db, store
from pgq.jobs import JobStatus
from pgq.retry import Outcome
from tests import tasks
from tests.conftest import wait_until
from tests.core.test_worker import ledger, worker_ids, worker_thread

TASKS = ["add", "wait_for_file", "hold"]


def register(app: pgq.App, worker_id: uuid.UUID, lease_seconds: float = 60) -> None:
    app.execute(store.register_worker(worker_id, "test-host", 1, None, TASKS, 4, lease_seconds))


def claim(app: pgq.App, worker_id: uuid.UUID, limit: int = 10) -> list[int]:
    return sorted(row["id"] for row in app.execute(store.claim_jobs(worker_id, None, TASKS, limit)))


def expire(conn: psycopg.Connection[Any], worker_id: uuid.UUID) -> None:
    conn.execute(
        "UPDATE pgq.workers SET expires_at = now() - interval '1 second' WHERE id = %s",
        (worker_id,),
    )


def recover(app: pgq.App) -> dict[int, str]:
    return {row["id"]: row["status"] for row in app.execute(store.recover_expired_jobs())}


def job_row(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
    row = cursor.execute(
        "SELECT status::text, attempts, worker_id, result, last_error, finished_at"
        " FROM pgq.jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    return row


# Fencing.


def test_fencing__a_worker_whose_job_was_recovered_cannot_record_or_release_it(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.add.delay(1, 2)
    a, b = uuid.uuid4(), uuid.uuid4()
    register(app, a)
    assert claim(app, a) == [job.id]

    expire(conn, a)
    assert recover(app) == {job.id: "queued"}
    recovered = job_row(conn, job.id)
    assert (recovered["status"], recovered["attempts"]) == ("queued", 1)
    assert f"worker {a} stopped sending heartbeats" in recovered["last_error"]
    assert a not in worker_ids(conn)

    register(app, b)
    assert claim(app, b) == [job.id]
    held = job_row(conn, job.id)
    assert (held["status"], held["attempts"], held["worker_id"]) == ("running", 2, b)

    # A comes back with the outcome of its attempt: nothing is written.
    stale = Outcome(job.id, a, 1, JobStatus.SUCCEEDED, result="3")
    assert app.execute(store.finish_jobs([stale])) == set()
    # Both halves of the token count: A's id with B's attempt, B's id with A's attempt.
    assert app.execute(store.finish_jobs([Outcome(job.id, a, 2, JobStatus.FAILED)])) == set()
    assert app.execute(store.finish_jobs([Outcome(job.id, b, 1, JobStatus.FAILED)])) == set()
    assert app.execute(store.release_jobs(a, [job.id])) == []
    assert job_row(conn, job.id) == held

    assert app.execute(store.finish_jobs([Outcome(job.id, b, 2, JobStatus.SUCCEEDED, "3")])) == {
        job.id
    }
    done = job_row(conn, job.id)
    assert (done["status"], done["attempts"], done["worker_id"], done["result"]) == (
        "succeeded",
        2,
        b,
        3,
    )
    assert done["finished_at"] is not None


def test_fencing__a_batch_records_only_the_jobs_its_worker_still_holds(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    kept, lost = tasks.add.delay(1, 1), tasks.add.delay(2, 2)
    a, b = uuid.uuid4(), uuid.uuid4()
    register(app, a)
    assert claim(app, a) == [kept.id, lost.id]
    conn.execute("UPDATE pgq.jobs SET worker_id = %s WHERE id = %s", (b, lost.id))

    written = app.execute(
        store.finish_jobs(
            [
                Outcome(kept.id, a, 1, JobStatus.SUCCEEDED, result="2"),
                Outcome(lost.id, a, 1, JobStatus.SUCCEEDED, result="4"),
            ]
        )
    )

    assert written == {kept.id}
    assert job_row(conn, kept.id)["status"] == "succeeded"
    assert job_row(conn, lost.id)["status"] == "running"


def test_dead_worker__cannot_claim_until_it_registers_again(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.add.delay(1, 2)
    a = uuid.uuid4()
    assert claim(app, a) == [], "an unregistered worker claims nothing"
    register(app, a)
    expire(conn, a)
    assert claim(app, a) == [], "an expired lease claims nothing, even before recovery"
    recover(app)
    assert a not in worker_ids(conn)
    assert claim(app, a) == []
    assert job_row(conn, job.id)["attempts"] == 0

    register(app, a)
    assert claim(app, a) == [job.id]


def test_heartbeats__keep_the_lease_of_a_job_that_outlives_it(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.sleep.delay(1.5)  # longer than the lease
    with worker_thread(app, heartbeat_interval=0.2, lease_seconds=1) as worker:
        wait_until(lambda: job_row(conn, job.id)["status"] == "running")
        first_beat = conn.execute(
            "SELECT heartbeat_at, expires_at FROM pgq.workers WHERE id = %s", (worker.id,)
        ).fetchone()
        assert first_beat is not None
        wait_until(lambda: job_row(conn, job.id)["status"] == "succeeded", timeout=10)
        later_beat = conn.execute(
            "SELECT heartbeat_at, expires_at FROM pgq.workers WHERE id = %s", (worker.id,)
        ).fetchone()
        assert later_beat is not None
        assert later_beat[0] > first_beat[0] and later_beat[1] > first_beat[1]
        claimed_by = worker.id

    done = job_row(conn, job.id)
    assert (done["attempts"], done["worker_id"], done["last_error"]) == (1, claimed_by, None)


# Recovery.


def test_recovery__a_job_out_of_attempts_fails_naming_the_lost_heartbeats(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.add.using(max_attempts=1).delay(1, 2)
    a = uuid.uuid4()
    register(app, a)
    assert claim(app, a) == [job.id]
    expire(conn, a)

    assert recover(app) == {job.id: "failed"}

    failed = job_row(conn, job.id)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert failed["finished_at"] is not None
    assert "stopped sending heartbeats" in failed["last_error"]


def test_recovery__a_running_job_whose_worker_row_vanished_is_requeued(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    orphan, kept = tasks.add.delay(1, 2), tasks.add.delay(3, 4)
    gone, alive = uuid.uuid4(), uuid.uuid4()
    register(app, gone)
    assert claim(app, gone, limit=1) == [orphan.id]
    register(app, alive)
    assert claim(app, alive) == [kept.id]
    conn.execute("DELETE FROM pgq.workers WHERE id = %s", (gone,))

    assert recover(app) == {orphan.id: "queued"}

    requeued = job_row(conn, orphan.id)
    assert (requeued["status"], requeued["attempts"]) == ("queued", 1)
    assert job_row(conn, kept.id)["status"] == "running", "a live worker's job is left alone"
    assert recover(app) == {}, "recovery moves each job once"


def test_recovery__a_job_whose_cancellation_was_requested_ends_cancelled(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.add.delay(1, 2)
    a = uuid.uuid4()
    register(app, a)
    assert claim(app, a) == [job.id]
    assert app.cancel(job.id) == {job.id: "running"}
    expire(conn, a)

    assert recover(app) == {job.id: "cancelled"}
    assert job_row(conn, job.id)["finished_at"] is not None


def test_release_unknown_jobs__hands_back_claims_whose_reply_was_lost(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    ids = tasks.add.delay_many([(i, i) for i in range(3)])
    other_job = tasks.add.delay(9, 9)
    a, b = uuid.uuid4(), uuid.uuid4()
    register(app, a)
    assert claim(app, a, limit=3) == ids
    register(app, b)
    assert claim(app, b) == [other_job.id]

    # A received only the first job of its claim before the connection dropped.
    released = app.execute(store.release_unknown_jobs(a, [ids[0]]))

    assert sorted(released) == ids[1:]
    for job_id in ids[1:]:
        row = job_row(conn, job_id)
        assert (row["status"], row["attempts"]) == ("queued", 0)
    known = job_row(conn, ids[0])
    assert (known["status"], known["attempts"], known["worker_id"]) == ("running", 1, a)
    assert job_row(conn, other_job.id)["status"] == "running", "another worker's job stays"
    assert app.execute(store.release_unknown_jobs(a, [ids[0]])) == []


# A failed claim statement leaves nothing behind.

SLOW_CLAIM_DDL = """
CREATE FUNCTION test_slow_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'running' AND NEW.priority = -1 THEN
        PERFORM pg_sleep(30);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_slow_claim BEFORE UPDATE ON pgq.jobs
    FOR EACH ROW EXECUTE FUNCTION test_slow_claim();
"""


def test_claim_cut_by_statement_timeout__leaves_every_job_queued(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    ids = tasks.add.delay_many([(i, i) for i in range(5)])
    ids.append(tasks.add.using(priority=-1).delay(0, 0).id)  # its claim stalls
    conn.execute(SLOW_CLAIM_DDL)
    a = uuid.uuid4()
    register(app, a)

    with psycopg.connect(app.dsn, autocommit=True) as claiming:
        claiming.execute("SET statement_timeout = '200ms'")
        with pytest.raises(pgq.DatabaseError) as info:
            db.run(claiming, store.claim_jobs(a, None, TASKS, 10))
        assert not isinstance(info.value, pgq.DatabaseUnavailable)
        rows = conn.execute(
            "SELECT status::text, attempts, worker_id FROM pgq.jobs ORDER BY id"
        ).fetchall()
        assert rows == [("queued", 0, None)] * 6

        conn.execute("DROP TRIGGER test_slow_claim ON pgq.jobs")
        claimed = db.run(claiming, store.claim_jobs(a, None, TASKS, 10))  # still usable
        assert sorted(row["id"] for row in claimed) == ids


def test_worker_whose_claims_time_out__claims_once_the_obstacle_is_gone(
    app: pgq.App, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    ids = tasks.add.delay_many([(i, i) for i in range(3)])
    ids.append(tasks.add.using(priority=-1).delay(0, 0).id)
    conn.execute(SLOW_CLAIM_DDL)
    app.configure(dsn=psycopg.conninfo.make_conninfo(app.dsn, options="-c statement_timeout=200"))

    with worker_thread(app, poll_interval=0.1):
        wait_until(lambda: "canceling statement due to statement timeout" in caplog.text)
        rows = conn.execute("SELECT status::text, attempts FROM pgq.jobs").fetchall()
        assert rows == [("queued", 0)] * 4
        conn.execute("DROP TRIGGER test_slow_claim ON pgq.jobs")
        wait_until(
            lambda: conn.execute(
                "SELECT bool_and(status = 'succeeded') FROM pgq.jobs"
            ).fetchone()
            == (True,),
            timeout=10,
        )
    attempts = conn.execute("SELECT attempts FROM pgq.jobs ORDER BY id").fetchall()
    assert attempts == [(1,)] * 4


# A real worker that loses its lease while it runs a job.


def ended_at(conn: psycopg.Connection[Any], job_id: int, attempt: int) -> Any:
    """When ``tests.tasks.hold`` recorded the end of that attempt (database clock)."""
    row = conn.execute(
        "SELECT at FROM test_ledger WHERE job_id = %s AND attempt = %s AND key = 'ended'",
        (job_id, attempt),
    ).fetchone()
    return row[0] if row else None


def test_worker_declared_dead_mid_run__stops_the_job_and_carries_on_under_a_new_id(
    app: pgq.App, conn: psycopg.Connection[Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pgq.worker")
    conn.execute(tasks.LEDGER_DDL)
    gate = tmp_path / "gate"
    job = tasks.hold.delay(str(gate))
    other = uuid.uuid4()
    try:
        # One slot, held by the job: only stopping it frees the slot.
        with worker_thread(app, concurrency=1, heartbeat_interval=0.2, lease_seconds=1) as worker:
            wait_until(lambda: ledger(conn, job.id))
            first_id = worker.id
            assert job_row(conn, job.id)["worker_id"] == first_id

            # Declared dead and its job taken by another worker, in one transaction.
            with psycopg.connect(app.dsn) as declaring:
                expire(declaring, first_id)
                recovered = db.run(declaring, store.recover_expired_jobs())
                db.run(declaring, store.register_worker(other, "test-host", 1, None, TASKS, 4, 60))
                claimed = db.run(declaring, store.claim_jobs(other, None, TASKS, 10))
            assert [(r["id"], r["status"]) for r in recovered] == [(job.id, "queued")]
            assert [row["id"] for row in claimed] == [job.id]

            # The worker notices at its next heartbeat: it stops its run of the job
            # and carries on under a new id.
            wait_until(lambda: ended_at(conn, job.id, attempt=1))
            wait_until(lambda: worker.id != first_id and worker.id in worker_ids(conn))
            assert f"worker={first_id} lost its lease (another worker declared it dead" in (
                caplog.text
            )
            assert f"continuing as worker={worker.id}" in caplog.text

            # Nothing of the stopped run was recorded; the job is the other's.
            held = job_row(conn, job.id)
            assert (held["status"], held["attempts"], held["worker_id"]) == ("running", 2, other)
            assert held["result"] is None

            # Its only slot is free again.
            assert tasks.add.delay(1, 2).wait(timeout=10).result == 3
    finally:
        gate.touch()

    assert [key for (_, _, key) in ledger(conn, job.id)] == ["started", "ended"]
    outcome = Outcome(job.id, other, 2, JobStatus.SUCCEEDED, result='"done"')
    assert app.execute(store.finish_jobs([outcome])) == {job.id}
    assert job_row(conn, job.id)["result"] == "done"


def test_heartbeats_cut_off__the_job_stops_before_its_lease_expires_then_runs_again(
    app: pgq.App, conn: psycopg.Connection[Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pgq.worker")
    conn.execute(tasks.LEDGER_DDL)
    gate = tmp_path / "gate"
    job = tasks.hold.delay(str(gate))
    try:
        with worker_thread(app, concurrency=1, heartbeat_interval=0.3, lease_seconds=1.5) as worker:
            wait_until(lambda: ledger(conn, job.id))
            first_id = worker.id
            with psycopg.connect(app.dsn) as locker:
                # Heartbeats (and recoveries) wait on this lock, time out, fail.
                locker.execute("LOCK TABLE pgq.workers IN ACCESS EXCLUSIVE MODE")
                row = locker.execute(
                    "SELECT expires_at FROM pgq.workers WHERE id = %s", (first_id,)
                ).fetchone()
                assert row is not None
                stopped = wait_until(lambda: ended_at(conn, job.id, attempt=1), timeout=15)
                # Stopped before its lease could expire, so before anyone could take it.
                assert stopped < row[0]
                held = job_row(conn, job.id)
                assert (held["status"], held["attempts"]) == ("running", 1)
            # Reachable again: the job is given back at once and run again.
            gate.touch()
            wait_until(lambda: job_row(conn, job.id)["status"] == "succeeded", timeout=15)
            assert worker.id != first_id
    finally:
        gate.touch()

    assert job_row(conn, job.id)["attempts"] == 2
    assert [(attempt, key) for (_, attempt, key) in ledger(conn, job.id)] == [
        (1, "started"),
        (1, "ended"),
        (2, "started"),
        (2, "ended"),
    ]
    assert first_id not in worker_ids(conn)
    assert f"worker={first_id} lost its lease (no heartbeat reached the database" in caplog.text
