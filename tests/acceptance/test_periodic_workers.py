"""Periodic jobs and retention in real worker processes: several workers race
for every tick of a per-second schedule and enqueue it once; a worker prunes
old finished jobs on its own."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.processes import FAST_LEASE, WorkerProcess, launch, scalar, worker_rows
from tests.conftest import wait_until

Conn = psycopg.Connection[Any]
StartWorkers = Callable[..., list[WorkerProcess]]
ENQUEUED = re.compile(r"schedule=every_second tick=(\S+) job=(\d+)")


@pytest.fixture
def start_workers(dsn: str, tmp_path: Path) -> Iterator[StartWorkers]:
    """``start_workers(count, app_spec, *args)``: worker processes of an App of
    tests/maintenance_tasks.py; any still running at the end are killed."""
    started: list[WorkerProcess] = []

    def start(count: int, app: str, *args: str) -> list[WorkerProcess]:
        for _ in range(count):
            log = tmp_path / f"worker-{len(started)}.log"
            worker_args = ("worker", "--app", f"tests.maintenance_tasks:{app}", *args)
            started.append(launch(dsn, log, *worker_args))
        return started[-count:]

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def ticks_since(conn: Conn, since: datetime) -> int:
    return int(
        scalar(conn, "SELECT count(DISTINCT run_at) FROM pgq.jobs WHERE run_at >= %s", (since,))
    )


@pytest.mark.slow
def test_periodic__four_worker_processes_enqueue_each_tick_exactly_once(
    start_workers: StartWorkers, conn: Conn
) -> None:
    workers = start_workers(4, "periodic_app", *FAST_LEASE)
    wait_until(lambda: worker_rows(conn) == 4, timeout=60)
    # From the next second on, all four workers race for every tick.
    since = scalar(conn, "SELECT date_trunc('second', clock_timestamp()) + interval '1 second'")
    wait_until(lambda: ticks_since(conn, since) >= 12, timeout=60, interval=0.2)
    for worker in workers:
        assert worker.stop() == 0, worker.output()

    per_tick = conn.execute(
        "SELECT run_at, count(*) FROM pgq.jobs WHERE run_at >= %s GROUP BY run_at ORDER BY run_at",
        (since,),
    ).fetchall()
    duplicates = [(tick, count) for tick, count in per_tick if count > 1]
    ticks = [tick for tick, _ in per_tick]
    span = int((ticks[-1] - ticks[0]).total_seconds()) + 1
    winners = Counter(
        index
        for index, worker in enumerate(workers)
        for tick in ENQUEUED.findall(worker.output())
        if datetime.fromisoformat(tick[0]) >= since
    )
    print(
        f"\nperiodic dedup: workers=4 ticks={len(ticks)} jobs={sum(c for _, c in per_tick)} "
        f"duplicates={len(duplicates)} seconds_without_a_job={span - len(ticks)} "
        f"enqueued_by_worker={dict(sorted(winners.items()))}"
    )
    assert duplicates == []
    assert sum(winners.values()) == len(ticks)  # each job logged by the one worker that won
    assert scalar(conn, "SELECT count(*) FROM pgq.schedules") == 1
    assert all("Traceback" not in worker.output() for worker in workers)


@pytest.mark.slow
def test_retention__a_worker_prunes_old_finished_jobs_and_nothing_else(
    start_workers: StartWorkers, conn: Conn
) -> None:
    def job(status: str, finished_hours_ago: float | None) -> int:
        row = conn.execute(
            "INSERT INTO pgq.jobs (queue, task, status, finished_at, run_at, created_at) "
            "VALUES ('default', 'noop', %s, now() - make_interval(secs => %s * 3600), "
            "now() + interval '1 day', now() - interval '3 days') RETURNING id",
            (status, finished_hours_ago),
        ).fetchone()
        assert row is not None
        return int(row[0])

    old = [job("succeeded", 2) for _ in range(5)]
    recent = job("succeeded", 0.5)
    old_failed = job("failed", 48)  # pruning_app keeps failed jobs forever
    waiting = job("queued", None)  # delayed a day; created three days ago

    (worker,) = start_workers(1, "pruning_app", *FAST_LEASE)
    wait_until(
        lambda: scalar(conn, "SELECT count(*) FROM pgq.jobs WHERE id = ANY(%s)", (old,)) == 0
    )
    assert worker.stop() == 0

    remaining = conn.execute("SELECT id, status::text FROM pgq.jobs ORDER BY id").fetchall()
    assert remaining == [(recent, "succeeded"), (old_failed, "failed"), (waiting, "queued")]
    assert "retention: deleted 5 job(s) (succeeded 5)" in worker.output()
