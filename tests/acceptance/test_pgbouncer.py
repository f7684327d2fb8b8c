"""pgq through a real PgBouncer in transaction mode: jobs are enqueued and run
through the pooler (2 server connections for everything), while each worker
LISTENs on a direct connection (--listen-dsn). Checks that nothing pgq does
needs session state: no prepared statement, no session advisory lock, no SET.

Skipped where the ``pgbouncer`` binary is missing (Debian: ``apt-get install
pgbouncer``; .ci/run installs it)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pgq
from pgq.tempdb import UNPRIVILEGED_USER
from tests import pgbouncer_tasks
from tests.acceptance.processes import WorkerProcess, scalar
from tests.conftest import ROOT, pgq_command, subprocess_env, wait_until

Conn = psycopg.Connection[Any]
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
POOL_SIZE = 2
# What breaks when session state is assumed through a transaction pooler.
SESSION_ERRORS = re.compile(
    r"prepared statement .* (does not exist|already exists)|cached plan|advisory|Traceback",
    re.IGNORECASE,
)

pytestmark = pytest.mark.skipif(
    not os.access(PGBOUNCER, os.X_OK),
    reason="pgbouncer is not installed (Debian: apt-get install pgbouncer)",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def pooled_dsn(dsn: str, tmp_path: Path) -> Iterator[str]:
    """The test's database through a PgBouncer in transaction mode with a pool
    of 2 server connections; stopped at the end of the test."""
    server = conninfo_to_dict(dsn)
    port = _free_port()
    users = tmp_path / "userlist.txt"
    users.write_text(f'"{server["user"]}" ""\n')
    config = tmp_path / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={server['host']} port={server['port']}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {users}\n"
        f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\n"
        "min_pool_size = 0\nreserve_pool_size = 0\nmax_client_conn = 200\n"
    )
    for path in (users, config):
        path.chmod(0o644)
    # PgBouncer refuses to run as root: as root it drops to the user the
    # throwaway PostgreSQL runs as.
    command = [PGBOUNCER, *(["-u", UNPRIVILEGED_USER] if os.geteuid() == 0 else []), str(config)]
    log = tmp_path / "pgbouncer.log"
    with log.open("w") as out:
        bouncer = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    pooled = make_conninfo(dsn, port=port)

    def accepting() -> bool:
        assert bouncer.poll() is None, f"pgbouncer exited: {log.read_text()}"
        try:
            psycopg.connect(pooled, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    try:
        wait_until(accepting, timeout=20, interval=0.1)
        yield pooled
    finally:
        bouncer.send_signal(signal.SIGINT)  # SIGINT: PgBouncer's "shut down at once"
        try:
            bouncer.wait(timeout=10)
        except subprocess.TimeoutExpired:
            bouncer.kill()
            bouncer.wait()
    assert not SESSION_ERRORS.search(log.read_text()), log.read_text()


@pytest.fixture
def pooled_app(pooled_dsn: str, dsn: str) -> Iterator[pgq.App]:
    pgbouncer_tasks.app.configure(dsn=pooled_dsn, listen_dsn=dsn)
    yield pgbouncer_tasks.app
    pgbouncer_tasks.app.close()
    pgbouncer_tasks.app.configure(dsn=None)


@pytest.fixture
def supervisor(pooled_dsn: str, dsn: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    """``pgq worker --processes 2`` whose jobs go through PgBouncer and whose
    LISTEN goes straight to PostgreSQL. A poll interval far longer than the
    test: only NOTIFY can wake the workers."""
    log = tmp_path / "workers.log"
    command = pgq_command(
        pooled_dsn,
        *("worker", "--app", "tests.pgbouncer_tasks:app", "--listen-dsn", dsn),
        *("--processes", "2", "--poll-interval", "3600"),
        *("--heartbeat-interval", "0.2", "--lease", "2"),
    )
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=subprocess_env(pooled_dsn),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    yield WorkerProcess(process, log)
    if process.poll() is None:
        process.kill()
        process.wait()


def status(conn: Conn, job_id: int) -> str:
    return str(scalar(conn, "SELECT status::text FROM pgq.jobs WHERE id = %s", (job_id,)))


def listening(conn: Conn) -> int:
    return int(
        scalar(
            conn,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query ILIKE 'LISTEN pgq%%'",
        )
    )


@pytest.mark.slow
def test_pgbouncer__workers_and_producers_through_a_transaction_pooler(
    pooled_app: pgq.App, pooled_dsn: str, conn: Conn, supervisor: WorkerProcess
) -> None:
    add, sleep = pgbouncer_tasks.add, pgbouncer_tasks.sleep
    # Finished two hours ago, past the App's retention; one statement, so one
    # pruning run deletes them all.
    old = [
        row[0]
        for row in conn.execute(
            "INSERT INTO pgq.jobs (queue, task, status, finished_at, run_at, created_at) "
            "SELECT 'default', 'add', 'succeeded', now() - interval '2 hours', "
            "now() - interval '3 hours', now() - interval '3 hours' FROM generate_series(1, 3) "
            "RETURNING id"
        )
    ]
    wait_until(
        lambda: scalar(conn, "SELECT count(*) FROM pgq.workers") == 2 and listening(conn) == 2,
        timeout=60,
    )

    # Enqueued through PgBouncer: many times one statement (psycopg would
    # prepare it from the fifth), in bulk, and inside the caller's transaction.
    single = [add.delay(i, 1).id for i in range(20)]
    bulk = add.delay_many([(i, 2) for i in range(50)])
    with psycopg.connect(pooled_dsn) as caller:  # not autocommit: one transaction
        in_transaction = [add.using(connection=caller).delay(i, 3).id for i in range(10)]
        caller.execute("SELECT 1")
    everything = [*single, *bulk, *in_transaction]
    wait_until(
        lambda: (
            scalar(
                conn,
                "SELECT count(*) FROM pgq.jobs WHERE id = ANY(%s) AND status = 'succeeded'",
                (everything,),
            )
            == len(everything)
        ),
        timeout=60,
    )
    assert pooled_app.get_job(single[7]).result == 8

    # Heartbeats and recovery: the worker process that runs a job is killed
    # outright; its lease expires, the job runs again, the supervisor replaces it.
    job = sleep.delay(1.0)
    holder = wait_until(
        lambda: (
            scalar(
                conn,
                "SELECT w.pid FROM pgq.jobs j JOIN pgq.workers w ON w.id = j.worker_id "
                "WHERE j.id = %s AND j.status = 'running'",
                (job.id,),
            )
            if status(conn, job.id) == "running"
            else None
        ),
        timeout=60,
    )
    os.kill(holder, signal.SIGKILL)
    wait_until(lambda: status(conn, job.id) == "succeeded", timeout=60)
    assert scalar(conn, "SELECT attempts FROM pgq.jobs WHERE id = %s", (job.id,)) == 2
    wait_until(
        lambda: (
            scalar(
                conn,
                "SELECT count(*) FROM pgq.workers WHERE pid <> %s AND expires_at > now()",
                (holder,),
            )
            == 2
        ),
        timeout=60,
    )

    # Periodic ticks enqueued and run, old jobs pruned, all through the pooler.
    wait_until(
        lambda: (
            scalar(
                conn, "SELECT count(*) FROM pgq.jobs WHERE task = 'tick' AND status = 'succeeded'"
            )
            >= 3
        ),
        timeout=60,
    )
    wait_until(
        lambda: scalar(conn, "SELECT count(*) FROM pgq.jobs WHERE id = ANY(%s)", (old,)) == 0,
        timeout=60,
    )

    assert supervisor.stop() == 0
    output = supervisor.output()
    assert not SESSION_ERRORS.search(output), output
    assert "retention: deleted 3 job(s)" in output
    assert f"pid={holder} exited with -9; restarting" in output, output
