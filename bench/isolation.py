"""What ``--isolation process`` costs: no-op job throughput of one
``pgq worker --burst`` process in thread and in process isolation, and the
start-up time of one job process. Run by hand; not part of ``python -m bench``:

    .venv/bin/python -m bench.isolation [--dsn DSN] [--jobs 2000] [--concurrency 4] [--runs 3]

Without ``--dsn`` it starts a throwaway PostgreSQL. Throughput is measured by
the database (``max(finished_at) - min(started_at)``), so a worker's own
start-up is left out; the wall-clock time of the worker process is shown too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg

from pgq.isolation import Child
from pgq.migrate import migrate
from pgq.tempdb import TemporaryPostgres

from . import ROOT, tasks

MODES = ("thread", "process")


@contextlib.contextmanager
def database(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    with TemporaryPostgres() as postgres:
        yield postgres.dsn


def drain(dsn: str, jobs: int, concurrency: int, isolation: str) -> tuple[float, float]:
    """(jobs per second by the database, wall seconds of the worker process)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE pgq.jobs")
        conn.execute("VACUUM ANALYZE pgq.jobs")
    tasks.app.configure(dsn=dsn)
    try:
        tasks.noop.delay_many([(i,) for i in range(jobs)])
    finally:
        tasks.app.close()
    command = [
        *(sys.executable, "-m", "pgq", "--dsn", dsn, "--log-level", "warning", "worker"),
        *("--app", "bench.tasks:app", "--burst", "--concurrency", str(concurrency)),
        *("--isolation", isolation),
    ]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    wall = time.perf_counter() - started
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'), "
            "extract(epoch FROM max(finished_at) - min(started_at)) FROM pgq.jobs"
        ).fetchone()
    assert row is not None
    succeeded, seconds = row
    if succeeded != jobs:
        raise SystemExit(f"{isolation}: {succeeded} of {jobs} jobs succeeded")
    return jobs / float(seconds), wall


async def start_times(dsn: str, count: int) -> list[float]:
    """Milliseconds from spawning a job process to its "ready", one at a time."""
    hello = {
        "spec": "bench.tasks:app",
        "dsn": dsn,
        "path": [str(ROOT), *sys.path],
        "memory_limit_mb": None,
        "log_level": 30,
        "parent": os.getpid(),
    }
    times = []
    for _ in range(count):
        started = time.perf_counter()
        child = await Child.start(hello)
        times.append((time.perf_counter() - started) * 1000)
        await child.stop(time.monotonic() + 5)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.isolation", description=__doc__)
    parser.add_argument("--dsn", help="an existing server (default: a throwaway one)")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--starts", type=int, default=10, help="job processes to time")
    options = parser.parse_args()
    with database(options.dsn) as dsn:
        migrate(dsn)
        rates: dict[str, list[float]] = {mode: [] for mode in MODES}
        walls: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(options.runs):  # interleaved: a slow moment hits both modes
            for mode in MODES:
                rate, wall = drain(dsn, options.jobs, options.concurrency, mode)
                rates[mode].append(rate)
                walls[mode].append(wall)
        starts = asyncio.run(start_times(dsn, options.starts))
    print(f"{options.jobs} no-op jobs, --concurrency {options.concurrency}, {options.runs} runs")
    for mode in MODES:
        print(
            f"  {mode:8} {statistics.median(rates[mode]):7.0f} jobs/s (median; runs: "
            f"{', '.join(f'{r:.0f}' for r in rates[mode])}), worker wall "
            f"{statistics.median(walls[mode]):.2f}s"
        )
    ratio = statistics.median(rates["process"]) / statistics.median(rates["thread"])
    print(f"  process / thread: {ratio:.2f}")
    print(
        f"job process start-up: median {statistics.median(starts):.0f} ms, "
        f"min {min(starts):.0f} ms, max {max(starts):.0f} ms ({len(starts)} starts)"
    )
    with open("/proc/loadavg") as loadavg:
        print(f"load average after: {loadavg.read().split()[:3]}")


if __name__ == "__main__":
    main()
