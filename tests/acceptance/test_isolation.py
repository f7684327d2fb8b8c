"""``--isolation process``: poisoned jobs (os.abort, a memory blow-up, an endless
loop, a C call deaf to signals) cost a job process, never the worker, and end
``failed`` with the reason; everything else a job does works as in a thread.

Real ``pgq worker`` processes on the tasks of tests/poison_tasks.py. Tests wait
on what they can observe: job rows, files a task writes, /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgq
from pgq import ConfigurationError, InvalidOptions, JobStatus
from tests import poison_tasks, tasks
from tests.acceptance.processes import launch
from tests.conftest import ROOT, pgq_command, subprocess_env, wait_until

Conn = psycopg.Connection[Any]

ISOLATED = ("--isolation", "process")
# Short enough for a test, long enough that a live worker never loses its lease.
FAST_LEASE = ("--heartbeat-interval", "0.2", "--lease", "1")


class WorkerProcess:
    """A ``pgq worker --app tests.poison_tasks:app`` subprocess, output in a file."""

    def __init__(self, process: subprocess.Popen[str], log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM; the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


@pytest.fixture
def poison_app(dsn: str) -> Iterator[pgq.App]:
    poison_tasks.app.configure(dsn=dsn)
    yield poison_tasks.app
    poison_tasks.app.close()
    poison_tasks.app.configure(dsn=None)


@pytest.fixture
def start_worker(dsn: str, tmp_path: Path) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        started.append(launch(dsn, log, "worker", "--app", "tests.poison_tasks:app", *args))
        return started[-1]

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def children_of(pid: int) -> dict[int, str]:
    """{pid: state} of the processes whose parent is ``pid`` (state "Z": a zombie)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        state, ppid = text[text.rindex(")") + 2 :].split()[:2]
        if int(ppid) == pid:
            found[int(stat.parent.name)] = state
    return found


def exists(pid: int) -> bool:
    """True while ``pid`` is a process, zombies included."""
    return Path(f"/proc/{pid}").exists()


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has ended, even if nobody reaped it yet)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def registered_pids(conn: Conn) -> list[int]:
    return [row[0] for row in conn.execute("SELECT pid FROM pgq.workers")]


# Poisons.

POISONS = [
    pytest.param(
        poison_tasks.abort,
        (),
        "JobCrashed: the job's process was killed by signal 6 (SIGABRT)",
        2,  # a crash is retried like an exception while attempts remain
        id="os.abort",
    ),
    pytest.param(
        poison_tasks.hog,
        ("--memory-limit", "64"),
        "MemoryError: exceeded the memory limit of 64 MB",
        1,
        id="out-of-memory",
    ),
    pytest.param(
        poison_tasks.spin,
        (),  # the task's own timeout
        "JobTimeout: spin timed out after 1s; its process was killed",
        1,
        id="endless-loop",
    ),
    pytest.param(
        poison_tasks.block_in_c,
        ("--job-timeout", "1"),
        "JobTimeout: block_in_c timed out after 1s; its process was killed",
        1,
        id="blocked-in-c-with-signals-blocked",
    ),
]


@pytest.mark.parametrize(("poison", "options", "error", "attempts"), POISONS)
def test_poisoned_job__fails_with_its_reason_while_the_worker_and_other_jobs_carry_on(
    poison_app: pgq.App,
    conn: Conn,
    start_worker: Any,
    poison: pgq.Task[[], Any],
    options: tuple[str, ...],
    error: str,
    attempts: int,
) -> None:
    worker = start_worker(*ISOLATED, "--concurrency", "2", *options)
    job = poison.delay()
    others = [poison_tasks.add.delay(i, i) for i in range(10)]

    job.wait(timeout=60)
    assert job.status is JobStatus.FAILED
    assert job.attempts == attempts
    assert (job.last_error or "").startswith(error), job.last_error
    assert [other.wait(timeout=60).result for other in others] == [2 * i for i in range(10)]
    assert all(other.status is JobStatus.SUCCEEDED and other.attempts == 1 for other in others)

    # The same worker process serves on, with no zombie and no stray process.
    after = poison_tasks.whoami.delay().wait(timeout=60)
    assert after.status is JobStatus.SUCCEEDED
    assert worker.process.poll() is None
    assert registered_pids(conn) == [worker.pid]
    children = children_of(worker.pid)
    assert after.result["pid"] in children
    assert len(children) <= 2 and "Z" not in children.values(), children
    assert worker.stop() == 0, worker.output()
    assert "Traceback" not in worker.output()


# What a job does in a process, as it would in a thread.


def test_isolated_jobs__sync_async_retry_current_job_and_printing(
    poison_app: pgq.App, start_worker: Any
) -> None:
    worker = start_worker(*ISOLATED, "--concurrency", "2")
    added = poison_tasks.add.delay(2, 3)
    sync_job = poison_tasks.whoami.delay()
    async_job = poison_tasks.async_whoami.delay()
    retried = poison_tasks.retry_once.delay()
    chatty = poison_tasks.chatty.delay()
    for job in (added, sync_job, async_job, retried, chatty):
        job.wait(timeout=60)
        assert job.status is JobStatus.SUCCEEDED, job.last_error

    assert added.result == 5
    for job in (sync_job, async_job):
        assert job.result["id"] == job.id
        assert job.result["attempt"] == 1
        assert job.result["pid"] != worker.pid
        assert job.result["pid"] in children_of(worker.pid)
    assert retried.result == 2 and retried.attempts == 2
    assert chatty.result == "said it"  # not the reply it printed to stdout
    output = worker.output()
    assert '{"status": "succeeded", "result": "\\"forged\\""}' in output  # on stderr, harmless
    assert "written to fd 1 by chatty" in output
    assert "put by chatty through libc" in output
    assert worker.stop() == 0, output


def test_cancel_of_a_running_isolated_job__kills_its_process_and_ends_cancelled(
    poison_app: pgq.App, start_worker: Any, tmp_path: Path
) -> None:
    worker = start_worker(*ISOLATED, *FAST_LEASE)
    pid_file = tmp_path / "pid"
    job = poison_tasks.block_in_c.delay(str(pid_file))  # deaf to every signal but SIGKILL
    child = int(wait_until(lambda: pid_file.exists() and pid_file.read_text()))
    assert child in children_of(worker.pid)

    assert poison_app.cancel(job.id) == {job.id: "running"}
    job.wait(timeout=30)

    assert job.status is JobStatus.CANCELLED
    assert job.attempts == 1
    assert (job.last_error or "").startswith(
        "Cancelled: cancellation requested; its process was killed"
    ), job.last_error
    assert not exists(child)  # killed and reaped
    assert poison_tasks.add.delay(1, 1).wait(timeout=60).result == 2
    assert worker.process.poll() is None
    assert worker.stop() == 0, worker.output()


def test_sigterm__releases_a_job_stuck_in_c_and_leaves_no_process_behind(
    poison_app: pgq.App, conn: Conn, start_worker: Any, tmp_path: Path
) -> None:
    worker = start_worker(*ISOLATED, "--concurrency", "3", "--shutdown-grace", "0.5")
    pid_file = tmp_path / "pid"
    stuck = poison_tasks.block_in_c.delay(str(pid_file))
    done = [poison_tasks.whoami.delay().wait(timeout=60) for _ in range(4)]
    stuck_pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text()))
    children = children_of(worker.pid)
    assert set(children) == {stuck_pid} | {job.result["pid"] for job in done}

    assert worker.stop() == 0, worker.output()

    assert "released 1 unfinished job(s)" in worker.output()
    stuck.refresh()
    assert stuck.status is JobStatus.QUEUED
    assert stuck.attempts == 0  # the interrupted attempt is not held against it
    assert [pid for pid in children if exists(pid)] == []
    assert registered_pids(conn) == []
    assert "Traceback" not in worker.output()


def test_worker_killed_by_sigkill__its_job_processes_die_with_it(
    poison_app: pgq.App, start_worker: Any, tmp_path: Path
) -> None:
    worker = start_worker(*ISOLATED)
    pid_file = tmp_path / "pid"
    poison_tasks.block_in_c.delay(str(pid_file))
    child = int(wait_until(lambda: pid_file.exists() and pid_file.read_text()))

    worker.process.kill()
    worker.process.wait(timeout=10)

    wait_until(lambda: not alive(child), timeout=10)


def test_in_process_worker__job_processes_use_its_database_and_are_gone_when_it_returns(
    poison_app: pgq.App, dsn: str
) -> None:
    # The App's DSN was given in code (configure), not in the environment the
    # job process inherits: it reaches the job process through the protocol.
    poison_app.import_spec = "tests.poison_tasks:app"
    try:
        whoami = poison_tasks.whoami.delay()
        chained = poison_tasks.enqueue_add.delay(20, 22)
        pgq.Worker(poison_app, isolation="process", burst=True, concurrency=2).run()
    finally:
        poison_app.import_spec = None

    assert whoami.refresh().status is JobStatus.SUCCEEDED, whoami.last_error
    assert whoami.result["pid"] != os.getpid()
    assert not exists(whoami.result["pid"])  # stopped and reaped before run() returned
    assert chained.refresh().status is JobStatus.SUCCEEDED, chained.last_error
    assert poison_app.get_job(chained.result).result == 42  # queued there, run here


# Without isolation: the worker process dies with the job.


def test_without_isolation__os_abort_kills_the_worker_and_the_supervisor_recovers_the_job(
    poison_app: pgq.App, conn: Conn, start_worker: Any
) -> None:
    supervisor = start_worker("--processes", "2", *FAST_LEASE)
    wait_until(lambda: len(registered_pids(conn)) == 2, timeout=30)
    job = poison_tasks.abort.delay()

    job.wait(timeout=30)  # two workers killed, each attempt recovered after its lease

    assert job.status is JobStatus.FAILED
    assert job.attempts == 2
    assert "stopped sending heartbeats" in (job.last_error or "")
    assert supervisor.output().count(f"exited with {-signal.SIGABRT}") == 2
    assert poison_tasks.add.delay(1, 2).wait(timeout=30).result == 3  # restarted, serving
    assert supervisor.stop() == 0, supervisor.output()


# Options.


def test_process_isolation__an_app_that_cannot_be_imported_by_name_is_refused(dsn: str) -> None:
    app = pgq.App(dsn)
    app.task(name="noop")(lambda: None)
    with pytest.raises(ConfigurationError) as raised:
        pgq.Worker(app, isolation="process")
    assert "app.import_spec = 'module:attr'" in str(raised.value)
    assert "\n" not in str(raised.value)
    app.import_spec = "tests.poison_tasks:app"
    pgq.Worker(app, isolation="process")  # accepted; nothing starts before run()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"isolation": "fork"}, "isolation must be 'thread' or 'process', got 'fork'"),
        ({"memory_limit_mb": 64}, "memory_limit_mb needs isolation='process'"),
        ({"isolation": "process", "memory_limit_mb": 0}, "memory_limit_mb must be an integer"),
        ({"job_timeout": 0}, "job_timeout must be seconds > 0, got 0"),
        ({"job_timeout": float("nan")}, "job_timeout must be seconds > 0, got nan"),
    ],
)
def test_worker_config__bad_isolation_options_are_refused(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidOptions) as raised:
        pgq.WorkerConfig(**options)
    assert message in str(raised.value)


def test_cli__isolation_options_are_checked_before_anything_runs(dsn: str) -> None:
    def worker(*args: str) -> subprocess.CompletedProcess[str]:
        command = pgq_command(dsn, "worker", "--app", "tests.poison_tasks:app", "--burst", *args)
        return subprocess.run(
            command, cwd=ROOT, env=subprocess_env(dsn), capture_output=True, text=True, timeout=60
        )

    thread_limit = worker("--memory-limit", "64")
    assert thread_limit.returncode == 1
    assert thread_limit.stderr.strip().splitlines() == [
        "pgq: error: memory_limit_mb needs isolation='process': threads share the worker's memory"
    ]
    for args in (("--isolation", "fork"), ("--memory-limit", "0"), ("--job-timeout", "-1")):
        usage = worker(*args)
        assert usage.returncode == 2, args
        assert "Traceback" not in usage.stderr


# job_timeout in thread mode.


def test_job_timeout__bounds_a_task_without_a_timeout_of_its_own_in_threads(
    app: pgq.App, conn: Conn
) -> None:
    conn.execute(tasks.LEDGER_DDL)
    job = tasks.wait_for_cancel.delay(timeout=60)  # no timeout of its own; max_attempts=1
    pgq.Worker(app, burst=True, job_timeout=0.3).run()
    job.refresh()
    assert job.status is JobStatus.FAILED
    assert (job.last_error or "").startswith(
        "JobTimeout: wait_for_cancel ran longer than its timeout of 0.3s"
    ), job.last_error
