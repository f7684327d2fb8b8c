"""Progress reports and queue control (pause, limits, move), with real workers."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgq
from pgq import store
from pgq.context import progress_value
from tests import tasks
from tests.conftest import pgq_command, subprocess_env, wait_until


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pgq_command(dsn, *args), env=subprocess_env(dsn), capture_output=True, text=True
    )


def finished(app: pgq.App, job_id: int) -> pgq.Job | None:
    job = app.get_job(job_id)
    return job if job.is_finished else None


@pytest.mark.parametrize(
    ("task", "worker_args"),
    [
        ("progress_then_wait", ()),
        ("async_progress_then_wait", ()),
        ("progress_then_wait", ("--isolation", "process")),
    ],
)
def test_progress__shown_while_running_and_last_value_kept(
    app: pgq.App, dsn: str, spawn_worker: Any, tmp_path: Path, task: str, worker_args: tuple[str]
) -> None:
    gate = tmp_path / "gate"
    job = app.get_task(task).delay(str(gate))
    spawn_worker(*worker_args)
    running = wait_until(lambda: (j := app.get_job(job.id)).progress and j)
    # The first report is written at once; the tight loop after it is throttled.
    assert running.status is pgq.JobStatus.RUNNING
    assert running.progress["done"] == 0
    assert running.progress["total"] == 10
    assert running.progress["message"] == "first half"
    listed = cli(dsn, "jobs")
    assert listed.returncode == 0, listed.stderr
    assert "0/10 (0%) first half" in listed.stdout
    as_json = json.loads(cli(dsn, "jobs", "--json").stdout)
    assert as_json[0]["progress"]["done"] == 0
    gate.touch()
    done = wait_until(lambda: finished(app, job.id))
    assert done.status is pgq.JobStatus.SUCCEEDED
    # The last value, reported within a second of the previous write, is not lost.
    assert done.progress["done"] == 10
    assert done.progress["message"] == "done"


def test_progress__only_the_current_holder_writes(
    app: pgq.App, conn: psycopg.Connection[Any]
) -> None:
    job = tasks.add.delay(1, 2)
    holder = uuid.uuid4()
    conn.execute(
        "UPDATE pgq.jobs SET status = 'running', worker_id = %s, attempts = 2 WHERE id = %s",
        (holder, job.id),
    )
    assert not app.execute(store.set_job_progress(job.id, uuid.uuid4(), 2, 1, 2, None))
    assert not app.execute(store.set_job_progress(job.id, holder, 1, 1, 2, None))
    assert app.get_job(job.id).progress is None
    assert app.execute(store.set_job_progress(job.id, holder, 2, 1, 2, "half"))
    assert app.get_job(job.id).progress["message"] == "half"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((True,), "done must be a number"),
        (("3",), "done must be a number"),
        ((-1,), "done must be >= 0"),
        ((float("nan"),), "done must be >= 0"),
        ((1, float("inf")), "total must be >= 0"),
        ((1, 2, 3), "message must be a string"),
        ((1, 2, "x" * 1001), "at most 1000"),
    ],
)
def test_progress__bad_values_are_refused(args: tuple[Any, ...], error: str) -> None:
    with pytest.raises(pgq.InvalidOptions, match=error):
        progress_value(*args)


def test_pause__workers_claim_nothing_until_resumed(
    app: pgq.App, dsn: str, conn: psycopg.Connection[Any], spawn_worker: Any, tmp_path: Path
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    gate = tmp_path / "gate"
    held = tasks.hold.using(queue="pausable").delay(str(gate))
    spawn_worker("--queues", "pausable")
    wait_until(lambda: app.get_job(held.id).status is pgq.JobStatus.RUNNING)
    paused = cli(dsn, "pause", "pausable")
    assert paused.returncode == 0, paused.stderr
    waiting = tasks.add.using(queue="pausable").delay(1, 2)
    gate.touch()  # the job in flight finishes
    assert wait_until(lambda: finished(app, held.id)).status is pgq.JobStatus.SUCCEEDED
    # A burst worker exits once it finds nothing to claim: the paused queue gives nothing.
    for queues in ("pausable", None):
        args = ("--burst", "--queues", queues) if queues else ("--burst",)
        assert spawn_worker(*args).wait(timeout=60) == 0
    assert app.get_job(waiting.id).status is pgq.JobStatus.QUEUED
    listed = cli(dsn, "queues")
    assert "pausable  paused" in listed.stdout
    assert cli(dsn, "resume", "pausable").returncode == 0
    assert wait_until(lambda: finished(app, waiting.id)).result == 3


def _max_overlap(conn: psycopg.Connection[Any]) -> int:
    rows = conn.execute(
        "SELECT at, key FROM test_ledger WHERE key IN ('start', 'end') ORDER BY at, key DESC"
    ).fetchall()
    running = peak = 0
    for _at, key in rows:  # an end and a start at the same instant: the end first
        running += 1 if key == "start" else -1
        peak = max(peak, running)
    return peak


def test_max_running__holds_across_worker_processes(
    app: pgq.App, conn: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    app.limit_queue("limited", max_running=2)
    jobs = tasks.timed.using(queue="limited").delay_many([(0.2,)] * 16)
    workers = [spawn_worker("--burst", "--concurrency", "4") for _ in range(3)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0
    # Every burst worker may have left while another held the slots.
    if not all(finished(app, j) for j in jobs):
        assert spawn_worker("--burst").wait(timeout=120) == 0
    assert all(app.get_job(j).status is pgq.JobStatus.SUCCEEDED for j in jobs)
    assert _max_overlap(conn) == 2


def test_rate__started_jobs_never_exceed_the_bucket(
    app: pgq.App, conn: psycopg.Connection[Any], spawn_worker: Any
) -> None:
    rate = 5.0
    limited = cli(app.dsn, "limit", "rated", "--rate", "5")
    assert limited.returncode == 0, limited.stderr
    assert "rate=5/s" in limited.stdout
    jobs = tasks.add.using(queue="rated").delay_many([(1, 1)] * 18)
    workers = [spawn_worker("--queues", "rated", "--concurrency", "10") for _ in range(2)]
    wait_until(lambda: all(finished(app, j) for j in jobs), timeout=60)
    for worker in workers:
        worker.terminate()
    # Starts are recorded by the claims under the queue's lock: a bucket of
    # max(1, rate) tokens refilled at `rate` allows at most that many plus
    # rate * t in any span of t seconds.
    starts = sorted(
        row[0]
        for row in conn.execute(
            "SELECT extract(epoch FROM started_at)::float8 FROM pgq.jobs WHERE queue = 'rated'"
        )
    )
    capacity = max(1.0, rate)
    for i, first in enumerate(starts):
        for j in range(i, len(starts)):
            span = starts[j] - first
            assert j - i + 1 <= capacity + rate * span + 1, (i, j, span)


def test_move__only_waiting_jobs_move(
    app: pgq.App, dsn: str, conn: psycopg.Connection[Any], spawn_worker: Any, tmp_path: Path
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    gate = tmp_path / "gate"
    held = tasks.hold.using(queue="from").delay(str(gate))
    spawn_worker("--queues", "from")
    wait_until(lambda: app.get_job(held.id).status is pgq.JobStatus.RUNNING)
    app.pause_queue("from")
    adds = [tasks.add.using(queue="from").delay(i, i) for i in range(2)]
    echo = tasks.echo.using(queue="from").delay(1)
    moved = cli(dsn, "move", "--from", "from", "--to", "to", "--task", "add")
    assert moved.returncode == 0, moved.stderr
    assert "moved 2 job(s)" in moved.stdout
    assert {app.get_job(j.id).queue for j in adds} == {"to"}
    assert app.get_job(echo.id).queue == "from"
    assert app.move_jobs("from", "to", ids=[held.id]) == []  # running: stays
    refused = cli(dsn, "move", "--from", "from", "--to", "to", str(held.id))
    assert refused.returncode == 1
    assert "not moved" in refused.stderr
    assert app.get_job(held.id).queue == "from"
    gate.touch()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("limit", "q"), 2, "pass --max-running"),
        (("limit", "q", "--rate", "0"), 2, "not a float > 0"),
        (("limit", "q", "--max-running", "1.5"), 2, "not a int >= 0"),
        (("pause", "bad name"), 1, "pgq: error: invalid queue name"),
        (("move", "--from", "a", "--to", "bad name"), 1, "pgq: error: invalid queue name"),
    ],
)
def test_queue_verbs__bad_input(dsn: str, args: tuple[str, ...], code: int, message: str) -> None:
    result = cli(dsn, *args)
    assert result.returncode == code
    assert message in result.stderr
    assert cli(dsn, "queues").stdout.strip() == "no queues"  # nothing written


def test_limit__none_removes_a_limit_and_keeps_the_other(app: pgq.App, dsn: str) -> None:
    app.limit_queue("q", max_running=3, rate_per_second=2.5)
    assert "max_running=none rate=2.5/s" in cli(dsn, "limit", "q", "--max-running", "none").stdout
    row = app.list_queues()[0]
    assert (row["name"], row["max_running"], row["rate_per_second"]) == ("q", None, 2.5)
    with pytest.raises(pgq.InvalidOptions, match="max_running"):
        app.limit_queue("q", max_running=-1)
