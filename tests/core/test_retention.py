"""Retention: which jobs a prune deletes (only finished ones, past their
status's retention), in batches that skip locked rows and never block a
claim; results cleared; one pruner at a time; settings checked."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

import pgq
from pgq import db, store
from pgq.exceptions import InvalidOptions
from pgq.grants import grant
from pgq.retention import Pruner, PruneReport, Retention, prune, prune_now
from tests.roles import login_role

Conn = psycopg.Connection[Any]
HOUR = 3600


def add_job(conn: Conn, status: str, finished_hours_ago: float | None, result: Any = None) -> int:
    """A job row as workers leave it; created and due well before it finished."""
    worker = uuid.uuid4() if status == "running" else None
    row = conn.execute(
        "INSERT INTO pgq.jobs (queue, task, status, worker_id, result, finished_at, "
        "created_at, run_at) VALUES ('default', 'add', %s, %s, %s, "
        "now() - make_interval(secs => %s), now() - interval '90 days', "
        "now() - interval '90 days') RETURNING id",
        (
            status,
            worker,
            None if result is None else psycopg.types.json.Jsonb(result),
            None if finished_hours_ago is None else finished_hours_ago * HOUR,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def ids(conn: Conn) -> list[int]:
    return [row[0] for row in conn.execute("SELECT id FROM pgq.jobs ORDER BY id")]


def prune_with(dsn: str, retention: Retention) -> PruneReport:
    return prune_now(dsn, retention)


def test_prune__deletes_only_finished_jobs_past_their_statuss_retention(
    dsn: str, conn: Conn
) -> None:
    doomed = [
        add_job(conn, "succeeded", 25),
        add_job(conn, "cancelled", 8 * 24),
        add_job(conn, "failed", 31 * 24),
    ]
    kept = [
        add_job(conn, "succeeded", 23),
        add_job(conn, "cancelled", 6 * 24),
        add_job(conn, "failed", 29 * 24),
        add_job(conn, "queued", None),  # waiting for 90 days: never pruned
        add_job(conn, "running", None),
        add_job(conn, "queued", 48),  # a retried job keeps no finished_at; even if it did
    ]

    report = prune_with(dsn, Retention())  # the defaults: 1 day, 7 days, 30 days

    assert report.deleted == {"succeeded": 1, "cancelled": 1, "failed": 1}
    assert ids(conn) == sorted(kept)
    assert not set(doomed) & set(ids(conn))
    assert str(report) == ("deleted 3 job(s) (succeeded 1, cancelled 1, failed 1) in 3 batch(es)")


def test_prune__none_keeps_a_status_forever(dsn: str, conn: Conn) -> None:
    old_failed = add_job(conn, "failed", 10_000)
    add_job(conn, "succeeded", 10_000)

    report = prune_with(dsn, Retention(failed=None))

    assert report.deleted == {"succeeded": 1, "cancelled": 0, "failed": 0}
    assert ids(conn) == [old_failed]


def test_prune__deletes_in_batches_of_batch_size(dsn: str, conn: Conn) -> None:
    for _ in range(25):
        add_job(conn, "succeeded", 48)
    recent = add_job(conn, "succeeded", 1)

    report = prune_with(dsn, Retention(batch_size=10, cancelled=None, failed=None))

    assert report.deleted["succeeded"] == 25
    assert report.batches == 3  # 10, 10, 5
    assert ids(conn) == [recent]


def test_prune__skips_a_row_someone_holds_instead_of_waiting(dsn: str, conn: Conn) -> None:
    held, free = add_job(conn, "failed", 40 * 24), add_job(conn, "failed", 40 * 24)
    with psycopg.connect(dsn) as other:
        other.execute("SELECT 1 FROM pgq.jobs WHERE id = %s FOR UPDATE", (held,))
        report = prune_with(dsn, Retention())  # would hang here if it waited
        assert ids(conn) == [held]
        assert report.deleted["failed"] == 1
    prune_with(dsn, Retention())
    assert ids(conn) == []
    assert free not in ids(conn)


def test_prune__a_batch_in_flight_does_not_block_claims(app: pgq.App, dsn: str, conn: Conn) -> None:
    for _ in range(5):
        add_job(conn, "succeeded", 48)
    ready_ids = [app.get_task("add").delay(1, 2).id for _ in range(3)]
    worker = uuid.uuid4()
    app.execute(store.register_worker(worker, "here", 1, None, ["add"], 3, 60))

    with psycopg.connect(dsn) as pruning:  # one batch, not committed yet
        deleted = db.run(
            pruning, store.delete_finished_jobs("succeeded", datetime.now().astimezone(), 1000)
        )
        assert deleted == 5
        with psycopg.connect(dsn, autocommit=True) as claiming:
            claiming.execute("SET lock_timeout = '2s'")  # a wait would fail the claim
            claimed = db.run(claiming, store.claim_jobs(worker, None, ["add"], 10))
        assert sorted(row["id"] for row in claimed) == ready_ids
        pruning.rollback()


def test_prune__clears_results_of_old_succeeded_jobs_and_keeps_the_jobs(
    dsn: str, conn: Conn
) -> None:
    old = [add_job(conn, "succeeded", 3 + n / 100, result={"n": n}) for n in range(7)]
    recent = add_job(conn, "succeeded", 1, result={"n": "recent"})
    failed = add_job(conn, "failed", 5)
    retention = Retention(
        results=timedelta(hours=2), succeeded=None, cancelled=None, failed=None, batch_size=3
    )

    report = prune_with(dsn, retention)

    assert report.results_cleared == 7 and report.total == 0
    assert report.batches == 3  # 3, 3, 1: each batch starts where the last one stopped
    results = dict(conn.execute("SELECT id, result FROM pgq.jobs").fetchall())
    assert results == {**dict.fromkeys(old), recent: {"n": "recent"}, failed: None}
    assert "cleared 7 result(s)" in str(report)


def test_prune__finds_finished_jobs_through_their_index(conn: Conn) -> None:
    conn.execute("SET enable_seqscan = off")
    plan = "\n".join(
        row[0]
        for row in conn.execute(
            "EXPLAIN SELECT id FROM pgq.jobs WHERE status = 'succeeded' "
            "AND finished_at < now() ORDER BY finished_at LIMIT 1000"
        )
    )
    assert "jobs_finished_idx" in plan, plan


def test_pruner__one_worker_at_a_time(dsn: str, conn: Conn) -> None:
    add_job(conn, "succeeded", 48)
    app = pgq.App(dsn)
    conn.execute("SELECT pg_advisory_lock(7231440317026002)")  # another worker is pruning

    assert asyncio.run(Pruner(app, Retention()).run_once()) is None
    assert len(ids(conn)) == 1

    conn.execute("SELECT pg_advisory_unlock(7231440317026002)")
    report = asyncio.run(Pruner(app, Retention()).run_once())
    assert report is not None and report.total == 1
    assert ids(conn) == []


def test_pruner__its_lock_lasts_one_batch_transaction_never_a_session(dsn: str, conn: Conn) -> None:
    # No session state: a transaction-mode pooler (PgBouncer) may hand the next
    # batch to another server connection.
    add_job(conn, "succeeded", 48)
    now = datetime.now().astimezone()
    with psycopg.connect(dsn) as first:  # a batch of another pruner, not committed
        assert db.run(first, store.delete_finished_jobs("failed", now, 10, exclusive=True)) == 0
        with psycopg.connect(dsn, autocommit=True) as second:
            batch = store.delete_finished_jobs("succeeded", now, 10, exclusive=True)
            assert db.run(second, batch) is None  # its turn is taken
            first.commit()
            batch = store.delete_finished_jobs("succeeded", now, 10, exclusive=True)
            assert db.run(second, batch) == 1
            held = second.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
            assert held.fetchone() == (0,)  # nothing outlives the statement


def test_pruner__a_role_that_may_not_delete_prunes_nothing_and_says_so_once(
    server_dsn: str, dsn: str, conn: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    job = add_job(conn, "succeeded", 48)
    with login_role(server_dsn, dsn) as (role, role_dsn):
        grant(dsn, role, "worker")
        pruner = Pruner(pgq.App(role_dsn), Retention())

        async def twice() -> list[PruneReport | None]:
            return [await pruner.run_once(), await pruner.run_once()]

        assert asyncio.run(twice()) == [None, None]

    assert ids(conn) == [job]
    warnings = [r.getMessage() for r in caplog.records if r.name == "pgq.retention"]
    assert warnings == [
        f"retention: role {role!r} may not delete from pgq.jobs, so this worker prunes "
        "nothing: grant it DELETE ON pgq.jobs, or run `pgq prune` as the owner of schema pgq"
    ]


# Settings.


def test_retention__takes_timedeltas_seconds_and_text() -> None:
    retention = Retention(
        succeeded="12h", cancelled=3600, failed=timedelta(days=2), results="1d12h"
    )

    assert retention.age("succeeded") == timedelta(hours=12)
    assert retention.age("cancelled") == timedelta(hours=1)
    assert retention.age("failed") == timedelta(days=2)
    assert retention.age("results") == timedelta(days=1, hours=12)
    assert Retention().interval_seconds == 300


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"succeeded": 0}, "retention succeeded must be a positive duration"),
        ({"failed": "forever"}, "retention failed must be a positive duration"),
        ({"results": -1}, "retention results must be a positive duration"),
        ({"interval": None}, "retention interval must be a positive duration"),
        ({"batch_size": 0}, "retention batch_size must be an integer from 1 to 100,000"),
        ({"batch_size": 10.5}, "retention batch_size must be an integer"),
    ],
)
def test_retention__bad_settings_are_one_line_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidOptions, match=f"^{message}"):
        Retention(**options)


def test_app__retention_must_be_a_retention_or_none() -> None:
    assert pgq.App("postgresql://x/y").retention == Retention()
    assert pgq.App("postgresql://x/y", retention=None).retention is None
    with pytest.raises(InvalidOptions, match=r"retention must be a pgq\.Retention or None"):
        pgq.App("postgresql://x/y", retention={"succeeded": "1d"})  # type: ignore[arg-type]


def test_prune_operation__looks_no_further_than_its_cut_off(dsn: str, conn: Conn) -> None:
    add_job(conn, "succeeded", 10)
    with psycopg.connect(dsn, autocommit=True) as pruning:
        earlier = db.run(pruning, store.database_now()) - timedelta(hours=20)
        report = db.run(pruning, prune(Retention(), earlier))  # 10 h old is 1 day after it
    assert report.total == 0 and len(ids(conn)) == 1
