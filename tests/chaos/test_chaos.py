"""Chaos: 10,000 jobs, four worker processes, one killed with SIGKILL every
1-3 s and replaced, a PostgreSQL restart and a mass pg_terminate_backend on
the way. Afterwards every job succeeded, every job ran at least once, and the
only jobs that ran more than once are those a killed worker was running.

The test runs its own PostgreSQL cluster (it restarts it), so it needs server
binaries even when PGQ_TEST_DSN names a server.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgq.exceptions import ConfigurationError
from pgq.migrate import migrate
from pgq.tempdb import TemporaryPostgres, find_binaries
from tests.chaos import tasks
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

JOBS = 10_000
WORKERS = 4
CONCURRENCY = 8
# Heartbeat every second; a killed worker's jobs come back 6 s later. Long
# enough that a PostgreSQL restart costs no live worker its lease.
WORKER_ARGS = ("--concurrency", str(CONCURRENCY), "--heartbeat-interval", "1", "--lease", "6")
DEADLINE = 300.0
PGQ = (sys.executable, "-m", "pgq")


@pytest.fixture
def chaos_server() -> Iterator[TemporaryPostgres]:
    try:
        find_binaries()
    except ConfigurationError as exc:
        pytest.skip(f"the chaos test restarts its own PostgreSQL: {exc}")
    with TemporaryPostgres(fsync=False) as server:
        yield server


@dataclass
class Figures:
    jobs: int = JOBS
    kills: int = 0
    restarts: int = 0
    terminated_connections: int = 0
    repeats: int = 0
    lost: int = 0
    lease_losses: int = 0
    wall_seconds: float = 0.0
    killed_pids: set[int] = field(default_factory=set)

    def line(self) -> str:
        return (
            f"chaos: jobs={self.jobs} kills={self.kills} restarts={self.restarts} "
            f"terminated_connections={self.terminated_connections} repeats={self.repeats} "
            f"lost={self.lost} lease_losses={self.lease_losses} wall={self.wall_seconds:.1f}s"
        )


class Workers:
    """The four worker processes; ``kill_one`` SIGKILLs one and starts its replacement."""

    def __init__(self, dsn: str, log_dir: Path):
        self.dsn, self.log_dir = dsn, log_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}
        self.started = 0

    def start(self) -> subprocess.Popen[bytes]:
        self.started += 1
        log_path = self.log_dir / f"worker-{self.started}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [*PGQ, "--dsn", self.dsn, "worker", "--app", "tests.chaos.tasks:app", *WORKER_ARGS],
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        self.logs[process.pid] = log_path
        return process

    def kill_one(self, rng: random.Random) -> int:
        victim = rng.choice(self.processes)
        victim.kill()
        victim.wait()
        self.processes.remove(victim)
        self.start()
        return victim.pid

    def stop_all(self) -> list[int | None]:
        # A replacement still starting up would die of the signal: let it start.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
            " started queues=" in self.logs[p.pid].read_text() for p in self.processes
        ):
            time.sleep(0.1)
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        codes = []
        for process in self.processes:
            try:
                codes.append(process.wait(timeout=60))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(None)
        return codes

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))


def succeeded(dsn: str) -> int | None:
    """Jobs succeeded so far; None while the server is unreachable (restarting)."""
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            query = "SELECT count(*) FROM pgq.jobs WHERE status = 'succeeded'"
            row = conn.execute(query).fetchone()
    except psycopg.OperationalError:
        return None
    assert row is not None
    return int(row[0])


def terminate_worker_connections(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def test_chaos__kills_restart_and_cut_connections__no_job_lost_repeats_only_after_kills(
    chaos_server: TemporaryPostgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    admin_dsn = chaos_server.dsn
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE chaos")
    dsn = chaos_server.dsn_for("chaos")
    migrate(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(tasks.LEDGER_DDL)
    tasks.app.configure(dsn=dsn)
    try:
        tasks.chaos_step.delay_many([(n,) for n in range(JOBS)])
    finally:
        tasks.app.close()

    rng = random.Random(20261123)
    figures = Figures()
    workers = Workers(dsn, tmp_path)
    began = time.monotonic()
    try:
        for _ in range(WORKERS):
            workers.start()
        done = 0
        while done < JOBS:
            assert time.monotonic() - began < DEADLINE, (
                f"only {done} of {JOBS} jobs succeeded in {DEADLINE:.0f}s\n{figures.line()}"
            )
            time.sleep(rng.uniform(1.0, 3.0))
            figures.killed_pids.add(workers.kill_one(rng))
            figures.kills += 1
            done = succeeded(dsn) or done
            if not figures.restarts and done >= JOBS * 0.3:
                chaos_server.restart(mode="fast")
                figures.restarts += 1
            elif not figures.terminated_connections and done >= JOBS * 0.6:
                figures.terminated_connections = terminate_worker_connections(dsn)
        figures.wall_seconds = time.monotonic() - began
        exit_codes = workers.stop_all()
    finally:
        for process in workers.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    with psycopg.connect(dsn) as conn:
        statuses = dict(
            conn.execute("SELECT status::text, count(*) FROM pgq.jobs GROUP BY 1").fetchall()
        )
        runs: dict[int, list[tuple[int, int]]] = {}
        for job_id, attempt, pid in conn.execute(
            "SELECT job_id, attempt, pid FROM chaos_ledger ORDER BY job_id, attempt"
        ):
            runs.setdefault(job_id, []).append((attempt, pid))
        job_ids = {row[0] for row in conn.execute("SELECT id FROM pgq.jobs")}

    repeated = {job_id: r for job_id, r in runs.items() if len(r) > 1}
    figures.repeats = sum(len(r) - 1 for r in repeated.values())
    figures.lost = len(job_ids - runs.keys())
    figures.lease_losses = workers.output().count(" lost its lease ")
    with capsys.disabled():
        print(f"\n{figures.line()}")

    assert figures.restarts == 1 and figures.terminated_connections > 0, figures.line()
    assert statuses == {"succeeded": JOBS}, statuses
    assert figures.lost == 0
    unexplained: dict[int, Any] = {
        job_id: r
        for job_id, r in repeated.items()
        if any(pid not in figures.killed_pids for _, pid in r[:-1])
    }
    assert not unexplained, f"runs repeated without a kill: {list(unexplained.items())[:5]}"
    assert exit_codes == [0] * WORKERS, exit_codes
    assert "Traceback" not in workers.output()
