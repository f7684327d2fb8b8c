"""Turning calls into job rows: delay, using(), delay_many, their async twins,
the caller's transaction, unique keys, and refusing bad input without writing."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

import pgq
from pgq import store
from tests import tasks
from tests.conftest import create_database, dsn_with_dbname, wait_until

SENTINEL = "pgq-test-end-of-notifications"
INJECTIONS = [
    "a'; DROP TABLE pgq.jobs; --",
    "'); DELETE FROM pgq.jobs WHERE ('1'='1",
    "x\\'; TRUNCATE pgq.jobs; --",
    "$1 %s %(queue)s {0} ::jsonb",
    'Robert"); DROP TABLE "pgq"."jobs";--',
]


# Helpers.


def fetch_jobs(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall()


def fetch_job(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute("SELECT * FROM pgq.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None, f"job {job_id} has no row"
    return row


def count_jobs(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pgq.jobs").fetchone()
    assert row is not None
    return int(row[0])


def jobs_table_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('pgq.jobs') IS NOT NULL").fetchone()
    assert row is not None
    return bool(row[0])


@pytest.fixture
def listener(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A separate session LISTENing on the channel pgq notifies."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("LISTEN pgq")
        yield connection


def received_notifications(
    listener: psycopg.Connection[Any], conn: psycopg.Connection[Any]
) -> list[str]:
    """Payloads the listener got on channel pgq so far.

    A sentinel is sent afterwards from another transaction; notifications are
    delivered in commit order, so everything sent before has arrived once it does.
    """
    conn.execute("SELECT pg_notify('pgq', %s)", (SENTINEL,))
    payloads: list[str] = []
    for notify in listener.notifies(timeout=10):
        assert notify.channel == "pgq"
        if notify.payload == SENTINEL:
            return payloads
        payloads.append(notify.payload)
    raise AssertionError("the sentinel notification never arrived")


@pytest.fixture
def caller_conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """The caller's own connection, in a transaction pgq must not commit."""
    with psycopg.connect(dsn, autocommit=False) as connection:
        yield connection
        connection.rollback()


@pytest.fixture(scope="module")
def shared_dsn(server_dsn: str, template_db: str) -> Iterator[str]:
    """One migrated database for the tests that must write nothing: they all
    assert it stays empty, so sharing it saves a database per case."""
    name = create_database(server_dsn, template_db)
    yield dsn_with_dbname(server_dsn, name)
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def shared_conn(shared_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(shared_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def shared_app(shared_dsn: str, shared_conn: psycopg.Connection[Any]) -> Iterator[pgq.App]:
    """tests.tasks.app on the shared database, which must be empty before and after."""
    assert count_jobs(shared_conn) == 0
    tasks.app.configure(dsn=shared_dsn)
    yield tasks.app
    tasks.app.close()
    tasks.app.configure(dsn=None)


def claim_as_worker(app: pgq.App, task: str) -> tuple[uuid.UUID, list[dict[str, Any]]]:
    """Mark the ready jobs of ``task`` running, the way a worker's claim does."""
    worker_id = uuid.uuid4()
    app.execute(store.register_worker(worker_id, "test-host", os.getpid(), None, [task], 1, 60))
    return worker_id, app.execute(store.claim_jobs(worker_id, None, [task], 100))


# delay.


def test_delay__returns_a_queued_job_with_the_tasks_options(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.fail_until.delay(2)

    assert isinstance(job, pgq.Job)
    assert isinstance(job.id, int)
    assert job.status is pgq.JobStatus.QUEUED
    assert job.task == "fail_until"
    assert job.args == [2]
    assert job.kwargs == {}
    assert job.queue == "default"
    assert job.priority == 0
    assert job.max_attempts == 5
    assert job.attempts == 0
    row = fetch_job(conn, job.id)
    assert row["status"] == "queued"
    assert row["task"] == "fail_until"
    assert row["args"] == [2]
    assert row["kwargs"] == {}
    assert row["max_attempts"] == 5
    assert row["unique_key"] is None
    assert row["run_at"] == row["created_at"]
    assert count_jobs(conn) == 1


def test_delay__stores_positional_and_keyword_arguments_as_json(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.echo.delay(1, "two", [3.5, None], flag=True, nested={"a": [1, {"b": "c"}]})

    assert job.args == [1, "two", [3.5, None]]
    assert job.kwargs == {"flag": True, "nested": {"a": [1, {"b": "c"}]}}
    row = fetch_job(conn, job.id)
    assert row["args"] == [1, "two", [3.5, None]]
    assert row["kwargs"] == {"flag": True, "nested": {"a": [1, {"b": "c"}]}}


def test_delay__outside_a_transaction_notifies_its_queue(
    app: pgq.App, conn: psycopg.Connection[Any], listener: psycopg.Connection[Any]
) -> None:
    tasks.add.using(queue="mail").delay(1, 2)

    assert received_notifications(listener, conn) == ["mail"]


# using().


def test_using__sets_priority_queue_max_attempts_and_unique_key(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.add.using(priority=10, queue="images", max_attempts=7, unique_key="add:1").delay(
        1, 2
    )

    assert (job.priority, job.queue, job.max_attempts, job.unique_key) == (
        10,
        "images",
        7,
        "add:1",
    )
    row = fetch_job(conn, job.id)
    assert row["priority"] == 10
    assert row["queue"] == "images"
    assert row["max_attempts"] == 7
    assert row["unique_key"] == "add:1"


def test_using__accepts_the_limits_of_each_option(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    for priority in (-32768, 32767):
        job = tasks.add.using(priority=priority).delay(1, 2)
        assert fetch_job(conn, job.id)["priority"] == priority
    for queue in ("q" * 99 + "9", "a", "0.b_c:d-e"):
        job = tasks.add.using(queue=queue).delay(1, 2)
        assert fetch_job(conn, job.id)["queue"] == queue
    job = tasks.add.using(max_attempts=1, unique_key="k" * 1000).delay(1, 2)
    row = fetch_job(conn, job.id)
    assert (row["max_attempts"], row["unique_key"]) == (1, "k" * 1000)


def test_using__run_after_a_delay_schedules_from_the_databases_now(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    delays: list[tuple[timedelta | float, timedelta]] = [
        (timedelta(minutes=5), timedelta(minutes=5)),
        (30, timedelta(seconds=30)),
        (2.5, timedelta(seconds=2.5)),
        (0, timedelta(0)),
    ]
    for run_after, delta in delays:
        job = tasks.add.using(run_after=run_after).delay(1, 2)

        row = fetch_job(conn, job.id)
        # created_at is now() of the same transaction, so the difference is exact.
        assert row["run_at"] - row["created_at"] == delta, run_after
        assert job.run_at == row["run_at"]


def test_using__run_after_an_aware_datetime_is_stored_exactly(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    when = datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=timezone(timedelta(hours=2)))

    job = tasks.add.using(run_after=when).delay(1, 2)

    assert fetch_job(conn, job.id)["run_at"] == when
    assert job.run_at == when


def test_using__returns_a_copy_and_leaves_the_task_unchanged(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    changed = tasks.add.using(priority=5, queue="other", max_attempts=9, unique_key="k")

    assert changed is not tasks.add
    assert (changed.priority, changed.queue, changed.max_attempts, changed.unique_key) == (
        5,
        "other",
        9,
        "k",
    )
    assert (tasks.add.priority, tasks.add.queue, tasks.add.max_attempts) == (0, "default", 3)
    assert tasks.add.unique_key is None
    job = tasks.add.delay(1, 2)
    row = fetch_job(conn, job.id)
    assert (row["priority"], row["queue"], row["unique_key"]) == (0, "default", None)


@pytest.mark.parametrize("option", ["timeout", "prio", "retry_on", "name"])
def test_using__an_unknown_option_is_refused(option: str) -> None:
    with pytest.raises(pgq.InvalidOptions, match=option):
        tasks.add.using(**{option: 1})


# Arguments must be JSON; nothing is written otherwise.


def test_delay__a_non_json_positional_argument_is_refused_by_position(
    shared_app: pgq.App, shared_conn: psycopg.Connection[Any]
) -> None:
    with pytest.raises(pgq.SerializationError) as caught:
        tasks.echo.delay(1, object(), 3)

    message = str(caught.value)
    assert "positional argument 1" in message
    assert "echo" in message
    assert "object" in message
    assert count_jobs(shared_conn) == 0


def test_delay__a_non_json_keyword_argument_is_refused_by_name(
    shared_app: pgq.App, shared_conn: psycopg.Connection[Any]
) -> None:
    with pytest.raises(pgq.SerializationError) as caught:
        tasks.echo.delay(1, when=datetime.now(timezone.utc))

    message = str(caught.value)
    assert "'when'" in message
    assert "datetime" in message
    assert count_jobs(shared_conn) == 0


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        {"nested": [1, -math.inf]},
        "a\x00b",
        {"key\x00": 1},
        b"bytes",
        {1, 2},
        {"ok": object()},
    ],
    ids=["nan", "inf", "nested-inf", "nul-in-string", "nul-in-key", "bytes", "set", "nested"],
)
def test_delay__values_postgres_json_cannot_hold_are_refused(
    shared_app: pgq.App, shared_conn: psycopg.Connection[Any], value: Any
) -> None:
    with pytest.raises(pgq.SerializationError, match="positional argument 0"):
        tasks.echo.delay(value)
    with pytest.raises(pgq.SerializationError, match="'payload'"):
        tasks.echo.delay(payload=value)

    assert count_jobs(shared_conn) == 0


def test_delay__a_nul_character_is_refused_with_a_reason(
    shared_app: pgq.App, shared_conn: psycopg.Connection[Any]
) -> None:
    with pytest.raises(pgq.SerializationError, match="NUL"):
        tasks.echo.delay(text="a\x00b")

    assert count_jobs(shared_conn) == 0


# Bad options: a clear error, no row.


@pytest.mark.parametrize(
    "queue",
    ["", " ", "has space", "q" * 101, "-leading-dash", "ünïcode", "a\nb", *INJECTIONS, None, 5],
)
def test_using__an_invalid_queue_name_is_refused(
    shared_app: pgq.App, shared_conn: psycopg.Connection[Any], queue: Any
) -> None:
    with pytest.raises(pgq.InvalidOptions, match="invalid queue name"):
        tasks.add.using(queue=queue).delay(1, 2)

    assert count_jobs(shared_conn) == 0
    assert jobs_table_exists(shared_conn)


def test_task__an_invalid_queue_name_is_refused_at_definition() -> None:
    app = pgq.App("postgresql://unused@127.0.0.1:1/unused")

    with pytest.raises(pgq.InvalidOptions, match="invalid queue name"):
        app.task(name="bad_queue", queue="a'; DROP TABLE pgq.jobs; --")(tasks.add.func)
    assert "bad_queue" not in app.tasks


@pytest.mark.parametrize("priority", [32768, -32769, 10**12, 1.5, "1", None, True, False])
def test_using__an_invalid_priority_is_refused(
    shared_app: pgq.App, shared_conn: psycopg.Connection[Any], priority: Any
) -> None:
    with pytest.raises(pgq.InvalidOptions, match="priority"):
        tasks.add.using(priority=priority).delay(1, 2)

    assert count_jobs(shared_conn) == 0


@pytest.mark.parametrize(
    ("run_after", "complaint"),
    [
        (datetime(2030, 1, 1, 12, 0), "no timezone"),
        (timedelta(seconds=-1), "must not be negative"),
        (-0.5, "must not be negative"),
        ("5 minutes", "run_after must be"),
        (True, "run_after must be"),
    ],
)
def test_using__an_invalid_run_after_is_refused(
    shared_app: pgq.App, shared_conn: psycopg.Connection[Any], run_after: Any, complaint: str
) -> None:
    with pytest.raises(pgq.InvalidOptions, match=complaint):
        tasks.add.using(run_after=run_after).delay(1, 2)

    assert count_jobs(shared_conn) == 0


@pytest.mark.parametrize("max_attempts", [0, -1, 1.5, "3", None, True])
def test_using__an_invalid_max_attempts_is_refused(
    shared_app: pgq.App, shared_conn: psycopg.Connection[Any], max_attempts: Any
) -> None:
    with pytest.raises(pgq.InvalidOptions, match="max_attempts"):
        tasks.add.using(max_attempts=max_attempts).delay(1, 2)

    assert count_jobs(shared_conn) == 0


@pytest.mark.parametrize("unique_key", ["", 5, b"key"])
def test_using__an_invalid_unique_key_is_refused(
    shared_app: pgq.App, shared_conn: psycopg.Connection[Any], unique_key: Any
) -> None:
    with pytest.raises(pgq.InvalidOptions, match="unique_key"):
        tasks.add.using(unique_key=unique_key).delay(1, 2)

    assert count_jobs(shared_conn) == 0


@pytest.mark.parametrize("timeout", [0, -1, "3", True, timedelta(seconds=-2)])
def test_task__an_invalid_timeout_is_refused_at_definition(timeout: Any) -> None:
    app = pgq.App("postgresql://unused@127.0.0.1:1/unused")

    with pytest.raises(pgq.InvalidOptions, match="timeout"):
        app.task(name="bad_timeout", timeout=timeout)(tasks.add.func)
    assert app.tasks == {}


def test_delay__a_connection_that_is_not_psycopgs_is_refused(
    shared_app: pgq.App, shared_conn: psycopg.Connection[Any]
) -> None:
    with pytest.raises(pgq.InvalidOptions, match="psycopg Connection"):
        tasks.add.using(connection="postgresql://elsewhere").delay(1, 2)

    assert count_jobs(shared_conn) == 0


# Parameterised SQL: hostile strings are data.


def test_delay__injection_strings_are_stored_verbatim(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    app = pgq.App(dsn)
    try:
        for text in INJECTIONS:
            task = app.task(name=text)(tasks.echo.func)
            job = task.using(unique_key=text).delay(text, **{"key": text})
            ids = task.delay_many([(text,), {"key": text}])
            listed = app.list_jobs(task=text)

            assert jobs_table_exists(conn)
            with conn.cursor(row_factory=dict_row) as cursor:
                rows = cursor.execute(
                    "SELECT * FROM pgq.jobs WHERE task = %s ORDER BY id", (text,)
                ).fetchall()
            assert [row["id"] for row in rows] == [job.id, *ids], text
            assert rows[0]["unique_key"] == text
            assert rows[0]["args"] == [text]
            assert rows[0]["kwargs"] == {"key": text}
            assert rows[1]["args"] == [text]
            assert rows[2]["kwargs"] == {"key": text}
            assert sorted(j.id for j in listed) == [job.id, *ids]
    finally:
        app.close()

    assert count_jobs(conn) == 3 * len(INJECTIONS)


# The caller's transaction.


def test_delay_on_callers_connection__rollback_leaves_no_row_and_no_notification(
    app: pgq.App,
    conn: psycopg.Connection[Any],
    caller_conn: psycopg.Connection[Any],
    listener: psycopg.Connection[Any],
) -> None:
    job = tasks.add.using(connection=caller_conn).delay(1, 2)
    tasks.echo.using(connection=caller_conn, queue="other").delay("x")
    assert fetch_job(caller_conn, job.id)["status"] == "queued"  # visible inside

    caller_conn.rollback()

    assert count_jobs(conn) == 0
    assert received_notifications(listener, conn) == []


def test_delay_on_callers_connection__commit_notifies_once_per_queue(
    app: pgq.App,
    conn: psycopg.Connection[Any],
    caller_conn: psycopg.Connection[Any],
    listener: psycopg.Connection[Any],
) -> None:
    for i in range(3):
        tasks.add.using(connection=caller_conn).delay(i, i)
    tasks.echo.using(connection=caller_conn).delay("same queue, other task")
    for i in range(2):
        tasks.add.using(connection=caller_conn, queue="reports").delay(i, 0)
    assert count_jobs(conn) == 0  # pgq did not commit the caller's transaction

    caller_conn.commit()

    rows = fetch_jobs(conn)
    assert len(rows) == 6
    assert sorted(row["queue"] for row in rows) == ["default"] * 4 + ["reports"] * 2
    assert sorted(received_notifications(listener, conn)) == ["default", "reports"]


def test_delay_on_callers_connection__a_failed_enqueue_leaves_the_callers_rows_to_the_caller(
    app: pgq.App, conn: psycopg.Connection[Any], caller_conn: psycopg.Connection[Any]
) -> None:
    caller_conn.execute("CREATE TABLE orders (id int)")
    caller_conn.execute("INSERT INTO orders VALUES (1)")
    with pytest.raises(pgq.SerializationError):
        tasks.echo.using(connection=caller_conn).delay(object())

    tasks.echo.using(connection=caller_conn).delay("order 1")  # the transaction is still usable
    caller_conn.commit()

    assert conn.execute("SELECT count(*) FROM orders").fetchone() == (1,)
    assert [row["args"] for row in fetch_jobs(conn)] == [["order 1"]]


# Unique keys.


def test_unique_key__a_second_delay_returns_the_live_job(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    first = tasks.echo.using(unique_key="report:7").delay("first")
    second = tasks.echo.using(unique_key="report:7").delay("second")

    assert second.id == first.id
    assert second.args == ["first"]
    rows = fetch_jobs(conn)
    assert len(rows) == 1
    assert rows[0]["args"] == ["first"]


def test_unique_key__a_running_job_still_holds_its_key(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    first = tasks.echo.using(unique_key="report:7").delay("first")
    _, claimed = claim_as_worker(app, "echo")
    assert [row["id"] for row in claimed] == [first.id]

    second = tasks.echo.using(unique_key="report:7").delay("second")

    assert second.id == first.id
    assert second.status is pgq.JobStatus.RUNNING
    assert count_jobs(conn) == 1


def test_unique_key__a_finished_job_releases_its_key(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    for final_status in ("succeeded", "failed", "cancelled"):
        key = f"report:{final_status}"
        first = tasks.echo.using(unique_key=key).delay("first")
        conn.execute(
            "UPDATE pgq.jobs SET status = %s::pgq.job_status, finished_at = now() WHERE id = %s",
            (final_status, first.id),
        )

        second = tasks.echo.using(unique_key=key).delay("second")

        assert second.id != first.id, final_status
        assert second.status is pgq.JobStatus.QUEUED
        with conn.cursor(row_factory=dict_row) as cursor:
            rows = cursor.execute(
                "SELECT args, status::text FROM pgq.jobs WHERE unique_key = %s ORDER BY id",
                (key,),
            ).fetchall()
        assert [(row["args"], row["status"]) for row in rows] == [
            (["first"], final_status),
            (["second"], "queued"),
        ]


def test_unique_key__released_after_a_worker_ran_the_job(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    first = tasks.echo.using(unique_key="run-once").delay("first")
    app.run_worker(burst=True)
    assert first.refresh().status is pgq.JobStatus.SUCCEEDED

    second = tasks.echo.using(unique_key="run-once").delay("second")

    assert second.id != first.id
    assert count_jobs(conn) == 2


def test_unique_task__dedups_by_arguments(app: pgq.App, conn: psycopg.Connection[Any]) -> None:
    one = tasks.unique_echo.delay(1)
    again = tasks.unique_echo.delay(1)
    two = tasks.unique_echo.delay(2)
    by_keyword = tasks.unique_echo.delay(value=1)

    assert again.id == one.id
    assert two.id != one.id
    assert by_keyword.id not in (one.id, two.id)
    rows = fetch_jobs(conn)
    assert len(rows) == 3
    keys = [row["unique_key"] for row in rows]
    assert len(set(keys)) == 3
    assert all(key.startswith("unique_echo:") for key in keys)


def test_unique_task__an_explicit_unique_key_wins(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    one = tasks.unique_echo.using(unique_key="mine").delay(1)
    other_args = tasks.unique_echo.using(unique_key="mine").delay(2)

    assert other_args.id == one.id
    assert [row["unique_key"] for row in fetch_jobs(conn)] == ["mine"]


@pytest.mark.parametrize("holder_ends_with", ["commit", "rollback"])
def test_unique_key__a_concurrent_enqueue_waits_for_the_holder(
    dsn: str, app: pgq.App, conn: psycopg.Connection[Any], holder_ends_with: str
) -> None:
    barrier = threading.Barrier(2)
    holder_may_finish = threading.Event()
    ids: dict[str, int] = {}
    order: list[str] = []
    failures: list[BaseException] = []

    def enqueue(label: str) -> None:
        try:
            with psycopg.connect(dsn) as own:
                barrier.wait(timeout=10)
                job = tasks.echo.using(unique_key="same", connection=own).delay(label)
                ids[label] = job.id
                order.append(label)
                if order[0] == label:  # the holder: keep the key until told
                    holder_may_finish.wait(timeout=20)
                    if holder_ends_with == "rollback":
                        own.rollback()
                        return
                own.commit()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=enqueue, args=(label,)) for label in ("a", "b")]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(order) == 1 and waiting_on_locks(conn) == 1)
    finally:
        holder_may_finish.set()
        for thread in threads:
            thread.join(timeout=20)
    assert not failures, failures
    holder, waiter = order

    rows = fetch_jobs(conn)
    assert len(rows) == 1
    if holder_ends_with == "commit":
        assert ids[waiter] == ids[holder]
        assert rows[0]["args"] == [holder]
    else:
        assert ids[waiter] != ids[holder]
        assert rows[0]["id"] == ids[waiter]
        assert rows[0]["args"] == [waiter]


def waiting_on_locks(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_unique_key__many_threads_at_once_leave_one_live_row(
    dsn: str, app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    count = 8
    barrier = threading.Barrier(count)
    ids: list[int] = []
    failures: list[BaseException] = []

    def enqueue() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as own:
                barrier.wait(timeout=10)
                ids.append(tasks.unique_echo.using(connection=own).delay("same").id)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=enqueue) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not failures, failures
    assert len(ids) == count
    assert len(set(ids)) == 1
    assert [row["id"] for row in fetch_jobs(conn)] == ids[:1]


# delay_many.


def test_delay_many__returns_ids_in_order_with_their_arguments(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    calls: list[Any] = [(1,), (2, "b"), {"x": 3}, (), [4, [5]], {}]

    ids = tasks.echo.delay_many(calls)

    assert len(ids) == len(calls)
    assert ids == sorted(ids)
    rows = {row["id"]: row for row in fetch_jobs(conn)}
    assert sorted(rows) == ids
    assert [(rows[i]["args"], rows[i]["kwargs"]) for i in ids] == [
        ([1], {}),
        ([2, "b"], {}),
        ([], {"x": 3}),
        ([], {}),
        ([4, [5]], {}),
        ([], {}),
    ]
    for i in ids:
        assert rows[i]["task"] == "echo"
        assert rows[i]["status"] == "queued"
        assert rows[i]["max_attempts"] == 3
        assert rows[i]["run_at"] == rows[i]["created_at"]


def test_delay_many__takes_any_iterable(app: pgq.App, conn: psycopg.Connection[Any]) -> None:
    ids = tasks.add.delay_many((i, i) for i in range(100))

    assert len(ids) == 100
    rows = {row["id"]: row for row in fetch_jobs(conn)}
    assert [rows[job_id]["args"] for job_id in ids] == [[i, i] for i in range(100)]


def test_delay_many__notifies_once_for_the_batch(
    app: pgq.App, conn: psycopg.Connection[Any], listener: psycopg.Connection[Any]
) -> None:
    tasks.add.using(queue="bulk").delay_many([(i, i) for i in range(50)])

    assert received_notifications(listener, conn) == ["bulk"]


def test_delay_many__on_callers_connection_notifies_once_per_queue_at_commit(
    app: pgq.App,
    conn: psycopg.Connection[Any],
    caller_conn: psycopg.Connection[Any],
    listener: psycopg.Connection[Any],
) -> None:
    tasks.add.using(connection=caller_conn).delay_many([(i, i) for i in range(10)])
    tasks.add.using(connection=caller_conn, queue="reports").delay_many([(1, 1), (2, 2)])
    tasks.echo.using(connection=caller_conn).delay_many([("x",)])
    assert count_jobs(conn) == 0

    caller_conn.commit()

    assert count_jobs(conn) == 13
    assert sorted(received_notifications(listener, conn)) == ["default", "reports"]


def test_delay_many__on_callers_connection_rolled_back_writes_nothing(
    app: pgq.App,
    conn: psycopg.Connection[Any],
    caller_conn: psycopg.Connection[Any],
    listener: psycopg.Connection[Any],
) -> None:
    ids = tasks.add.using(connection=caller_conn).delay_many([(1, 1), (2, 2)])
    assert len(ids) == 2

    caller_conn.rollback()

    assert count_jobs(conn) == 0
    assert received_notifications(listener, conn) == []


def test_delay_many__with_run_after_schedules_every_row(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    ids = tasks.add.using(run_after=timedelta(hours=1), priority=3).delay_many(
        [(1, 1), (2, 2), (3, 3)]
    )

    rows = fetch_jobs(conn)
    assert [row["id"] for row in rows] == ids
    for row in rows:
        assert row["run_at"] - row["created_at"] == timedelta(hours=1)
        assert row["priority"] == 3


def test_delay_many__with_an_aware_datetime_stores_it_exactly(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    when = datetime(2031, 1, 1, 8, 30, 0, 1, tzinfo=timezone.utc)

    tasks.add.using(run_after=when).delay_many([(1, 1), (2, 2)])

    assert [row["run_at"] for row in fetch_jobs(conn)] == [when, when]


def test_delay_many__an_empty_batch_writes_nothing(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    assert tasks.add.delay_many([]) == []
    assert tasks.add.delay_many(iter(())) == []
    assert count_jobs(conn) == 0


@pytest.mark.parametrize("bad_item", [5, "abc", b"abc", None, 1.5])
def test_delay_many__an_item_that_is_not_a_call_is_refused(
    shared_app: pgq.App, shared_conn: psycopg.Connection[Any], bad_item: Any
) -> None:
    with pytest.raises(pgq.InvalidOptions, match="delay_many"):
        tasks.echo.delay_many([(1,), bad_item, (3,)])

    assert count_jobs(shared_conn) == 0


def test_delay_many__a_non_json_argument_in_one_item_writes_nothing(
    shared_app: pgq.App, shared_conn: psycopg.Connection[Any]
) -> None:
    with pytest.raises(pgq.SerializationError, match="positional argument 0"):
        tasks.echo.delay_many([(1,), (2,), (object(),), (4,)])
    with pytest.raises(pgq.SerializationError, match="'when'"):
        tasks.echo.delay_many([{"when": "ok"}, {"when": datetime.now(timezone.utc)}])

    assert count_jobs(shared_conn) == 0


def test_delay_many__refuses_a_unique_key(
    shared_app: pgq.App, shared_conn: psycopg.Connection[Any]
) -> None:
    with pytest.raises(pgq.InvalidOptions, match="unique_key"):
        tasks.add.using(unique_key="one").delay_many([(1, 1), (2, 2)])

    assert count_jobs(shared_conn) == 0


def test_delay_many__of_a_unique_task_dedups_within_the_batch(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    existing = tasks.unique_echo.delay("a")

    ids = tasks.unique_echo.delay_many([("a",), ("b",), ("b",), ("c",)])

    assert ids[0] == existing.id
    assert ids[1] == ids[2]
    assert len({ids[0], ids[1], ids[3]}) == 3
    assert sorted(row["args"][0] for row in fetch_jobs(conn)) == ["a", "b", "c"]


# Async twins.


def test_async_twins__enqueue_read_cancel_and_retry(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    async def scenario() -> None:
        try:
            job = await tasks.add.using(priority=4).adelay(1, 2)
            assert job.status is pgq.JobStatus.QUEUED
            assert job.priority == 4
            ids = await tasks.echo.adelay_many([(1,), {"k": "v"}])
            again = await app.aget_job(job.id)
            assert (again.id, again.args, again.task) == (job.id, [1, 2], "add")
            with pytest.raises(pgq.JobNotFound):
                await app.aget_job(10**12)
            assert await app.acancel(job.id, ids[0]) == {
                job.id: "cancelled",
                ids[0]: "cancelled",
            }
            assert await app.aretry(job.id) == [job.id]
            await job.arefresh()
            assert job.status is pgq.JobStatus.QUEUED
        finally:
            await app.aclose()

    asyncio.run(scenario())

    rows = fetch_jobs(conn)
    assert [(row["task"], row["status"]) for row in rows] == [
        ("add", "queued"),
        ("echo", "cancelled"),
        ("echo", "queued"),
    ]
    assert [row["args"] for row in rows] == [[1, 2], [1], []]
    assert rows[2]["kwargs"] == {"k": "v"}


def test_async_twins__refuse_bad_input_without_writing(
    shared_app: pgq.App, shared_conn: psycopg.Connection[Any]
) -> None:
    async def scenario() -> None:
        try:
            with pytest.raises(pgq.SerializationError, match="positional argument 0"):
                await tasks.echo.adelay(object())
            with pytest.raises(pgq.InvalidOptions):
                await tasks.echo.adelay_many([(1,), 2])  # type: ignore[list-item]
        finally:
            await shared_app.aclose()

    asyncio.run(scenario())

    assert count_jobs(shared_conn) == 0


@pytest.mark.parametrize("ending", ["commit", "rollback"])
def test_async_delay_on_callers_connection__joins_its_transaction(
    dsn: str,
    app: pgq.App,
    conn: psycopg.Connection[Any],
    listener: psycopg.Connection[Any],
    ending: str,
) -> None:
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as aconn:
            job = await tasks.add.using(connection=aconn).adelay(1, 2)
            ids = await tasks.add.using(connection=aconn, queue="other").adelay_many([(3, 4)])
            assert len(ids) == 1
            assert count_jobs(conn) == 0  # not committed by pgq
            async with aconn.cursor() as cursor:
                await cursor.execute("SELECT count(*) FROM pgq.jobs WHERE id = %s", (job.id,))
                assert await cursor.fetchone() == (1,)
            if ending == "commit":
                await aconn.commit()
            else:
                await aconn.rollback()

    asyncio.run(scenario())

    if ending == "commit":
        assert [row["queue"] for row in fetch_jobs(conn)] == ["default", "other"]
        assert sorted(received_notifications(listener, conn)) == ["default", "other"]
    else:
        assert count_jobs(conn) == 0
        assert received_notifications(listener, conn) == []


def test_async_delay__refuses_a_sync_connection(
    shared_app: pgq.App, shared_conn: psycopg.Connection[Any]
) -> None:
    with pytest.raises(pgq.InvalidOptions, match="AsyncConnection"):
        asyncio.run(tasks.add.using(connection=shared_conn).adelay(1, 2))

    assert count_jobs(shared_conn) == 0


# get_job, cancel, retry.


def test_get_job__an_unknown_id_raises_job_not_found(shared_app: pgq.App) -> None:
    with pytest.raises(pgq.JobNotFound, match="123456789"):
        shared_app.get_job(123456789)


def test_get_job__reads_the_row(app: pgq.App, conn: psycopg.Connection[Any]) -> None:
    job = tasks.echo.using(unique_key="k").delay(1, a="b")

    read = app.get_job(job.id)

    row = fetch_job(conn, job.id)
    for name in ("id", "queue", "task", "args", "kwargs", "priority", "attempts", "run_at"):
        assert getattr(read, name) == row[name], name
    assert read.status is pgq.JobStatus.QUEUED
    assert read.unique_key == "k"


def test_cancel__a_queued_job_is_cancelled_at_once(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.add.delay(1, 2)
    other = tasks.add.delay(3, 4)

    assert app.cancel(job.id) == {job.id: "cancelled"}

    row = fetch_job(conn, job.id)
    assert row["status"] == "cancelled"
    assert row["finished_at"] is not None
    assert row["cancel_requested"] is False
    assert fetch_job(conn, other.id)["status"] == "queued"
    assert job.refresh().status is pgq.JobStatus.CANCELLED


def test_cancel__a_running_job_gets_a_request_and_keeps_running(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.wait_for_cancel.delay()
    worker_id, claimed = claim_as_worker(app, "wait_for_cancel")
    assert [row["id"] for row in claimed] == [job.id]

    assert app.cancel(job.id) == {job.id: "running"}

    row = fetch_job(conn, job.id)
    assert row["status"] == "running"
    assert row["cancel_requested"] is True
    assert row["worker_id"] == worker_id
    assert row["finished_at"] is None


def test_cancel__finished_or_unknown_jobs_are_left_alone(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.add.delay(1, 2)
    conn.execute(
        "UPDATE pgq.jobs SET status = 'succeeded', finished_at = now() WHERE id = %s", (job.id,)
    )

    assert app.cancel(job.id, 10**12) == {}
    assert fetch_job(conn, job.id)["status"] == "succeeded"


def test_retry__failed_and_cancelled_jobs_go_back_to_the_queue(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    failed = tasks.fail_now.delay()
    succeeded = tasks.add.delay(1, 2)
    app.run_worker(burst=True)
    cancelled = tasks.add.delay(3, 4)
    app.cancel(cancelled.id)
    assert fetch_job(conn, failed.id)["status"] == "failed"
    assert fetch_job(conn, failed.id)["attempts"] == 1
    assert fetch_job(conn, succeeded.id)["status"] == "succeeded"

    moved = app.retry(failed.id, cancelled.id, succeeded.id)

    assert sorted(moved) == [failed.id, cancelled.id]
    for job_id in (failed.id, cancelled.id):
        row = fetch_job(conn, job_id)
        assert row["status"] == "queued"
        assert row["attempts"] == 0
        assert row["finished_at"] is None
        assert row["cancel_requested"] is False
    assert fetch_job(conn, succeeded.id)["status"] == "succeeded"
    assert fetch_job(conn, succeeded.id)["result"] == 3


def test_retry__a_succeeded_job_does_not_move(app: pgq.App, conn: psycopg.Connection[Any]) -> None:
    job = tasks.add.delay(1, 2)
    conn.execute(
        "UPDATE pgq.jobs SET status = 'succeeded', attempts = 1, finished_at = now() WHERE id = %s",
        (job.id,),
    )

    assert app.retry(job.id) == []

    row = fetch_job(conn, job.id)
    assert (row["status"], row["attempts"]) == ("succeeded", 1)


# Where the database is: DSN resolution and connection failures.


@pytest.fixture
def no_dsn_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGQ_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)


def _unused_task(app: pgq.App) -> pgq.Task[..., Any]:
    return app.task(name="unused")(tasks.add.func)


@pytest.mark.usefixtures("no_dsn_in_env")
def test_dsn__none_anywhere_fails_on_first_use_not_at_construction() -> None:
    app = pgq.App()
    task = _unused_task(app)

    with pytest.raises(pgq.ConfigurationError, match="PGQ_DSN"):
        task.delay(1, 2)
    with pytest.raises(pgq.ConfigurationError):
        app.get_job(1)


@pytest.mark.usefixtures("no_dsn_in_env")
def test_dsn__pgq_dsn_wins_over_database_url(
    monkeypatch: pytest.MonkeyPatch, dsn: str, conn: psycopg.Connection[Any]
) -> None:
    monkeypatch.setenv("PGQ_DSN", dsn)
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nowhere")
    app = pgq.App()
    try:
        job = _unused_task(app).delay(1, 2)
    finally:
        app.close()

    assert app.dsn == dsn
    assert fetch_job(conn, job.id)["task"] == "unused"


@pytest.mark.usefixtures("no_dsn_in_env")
def test_dsn__database_url_is_the_fallback_and_the_argument_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-env/db")
    assert pgq.App().dsn == "postgresql://from-env/db"
    monkeypatch.setenv("PGQ_DSN", "postgresql://from-pgq-env/db")
    assert pgq.App().dsn == "postgresql://from-pgq-env/db"
    assert pgq.App("postgresql://argument/db").dsn == "postgresql://argument/db"


@pytest.mark.parametrize(
    "bad_dsn", ["host=localhost port", "this is not a dsn", "postgresql://[::1"]
)
def test_dsn__an_invalid_dsn_is_a_one_line_configuration_error(bad_dsn: str) -> None:
    app = pgq.App(bad_dsn)

    with pytest.raises(pgq.ConfigurationError) as caught:
        _unused_task(app).delay(1, 2)

    message = str(caught.value)
    assert message.startswith("invalid DSN")
    assert "\n" not in message


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_dsn__an_unreachable_server_is_database_unavailable_without_the_password() -> None:
    password = "s3cret-Pa55word"
    app = pgq.App(f"postgresql://bob:{password}@127.0.0.1:{closed_port()}/db", connect_timeout=2)
    try:
        with pytest.raises(pgq.DatabaseUnavailable) as caught:
            _unused_task(app).delay(1, 2)
    finally:
        app.close()

    message = str(caught.value)
    assert "127.0.0.1" in message
    assert password not in message
    assert "\n" not in message
