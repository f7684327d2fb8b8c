"""The ``pgq`` command line, verb by verb, with its errors.

Most checks call :func:`pgq.cli.main` in this process (fast); each kind of
error also runs once as a real ``python -m pgq`` to see the exit code and that
stderr holds one line and no traceback.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import pgq
from pgq import JobStatus, store
from pgq.cli import main
from pgq.migrate import all_migrations
from tests import tasks
from tests.conftest import ROOT, pgq_command, subprocess_env

Conn = psycopg.Connection[Any]
ENQUEUED = re.compile(r"^enqueued job (\d+) task=(\S+) queue=(\S+) status=queued$")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``pgq ARGS`` in this process: (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m pgq ARGS`` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "pgq", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def enqueued_id(out: str) -> int:
    match = ENQUEUED.match(out.strip())
    assert match, out
    return int(match.group(1))


def register_live_worker(app: pgq.App, task_names: list[str], lease_seconds: float = 60) -> None:
    """A worker row as a process on another machine would write it."""
    app.execute(
        store.register_worker(uuid.uuid4(), "elsewhere", 4242, None, task_names, 2, lease_seconds)
    )


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pgq: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err


@pytest.fixture
def closed_dsn(server_dsn: str) -> Iterator[str]:
    """The test server's DSN, but on a local port that refuses connections."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield make_conninfo(server_dsn, host="127.0.0.1", port=str(sock.getsockname()[1]))


# migrate


def test_migrate__applies_the_schema_then_says_it_is_up_to_date(
    empty_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    applied = ", ".join(m.name for m in all_migrations())
    assert run(capsys, "--dsn", empty_dsn, "migrate") == (0, f"applied: {applied}\n", "")
    assert run(capsys, "--dsn", empty_dsn, "migrate") == (0, "schema is up to date\n", "")
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (0,)


# worker


def test_worker_burst__runs_the_ready_jobs_and_exits_0(app: pgq.App, dsn: str) -> None:
    jobs = [tasks.add.delay(1, 2), tasks.async_add.delay(3, 4), tasks.echo.delay("x", y=1)]

    done = subprocess.run(
        pgq_command(dsn, "worker", "--app", "tests.tasks:app", "--burst"),
        cwd=ROOT,
        env=subprocess_env(dsn),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert [job.refresh().status for job in jobs] == [JobStatus.SUCCEEDED] * 3
    assert [job.result for job in jobs] == [3, 7, {"args": ["x"], "kwargs": {"y": 1}}]


# enqueue


def test_enqueue__json_object_gives_keyword_arguments(
    app: pgq.App, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "--dsn", dsn, "enqueue", "add", '{"a": 1, "b": 2}', "--app", "tests.tasks:app"
    )

    assert (code, err) == (0, "")
    job = app.get_job(enqueued_id(out))
    assert (job.task, job.queue, job.args, job.kwargs) == ("add", "default", [], {"a": 1, "b": 2})
    assert job.status is JobStatus.QUEUED


def test_enqueue__json_array_gives_positional_arguments(
    app: pgq.App, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--dsn", dsn, "enqueue", "add", "[1, 2]", "--app", "tests.tasks:app")

    assert code == 0
    job = app.get_job(enqueued_id(out))
    assert (job.args, job.kwargs) == ([1, 2], {})
    app.run_worker(burst=True)
    assert job.refresh().result == 3


def test_enqueue__arguments_default_to_none(
    app: pgq.App, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--dsn", dsn, "enqueue", "fail_now", "--app", "tests.tasks:app")

    assert code == 0
    job = app.get_job(enqueued_id(out))
    assert (job.args, job.kwargs) == ([], {})


def test_enqueue__queue_priority_delay_and_unique_key(
    app: pgq.App, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    options = ["--queue", "images", "--priority", "7", "--delay", "60", "--unique-key", "k1"]
    code, out, _ = run(
        capsys, "--dsn", dsn, "enqueue", "add", "[1, 2]", "--app", "tests.tasks:app", *options
    )

    assert code == 0
    assert ENQUEUED.match(out.strip()) and "queue=images" in out
    job = app.get_job(enqueued_id(out))
    assert (job.queue, job.priority, job.unique_key) == ("images", 7, "k1")
    assert (job.run_at - job.created_at).total_seconds() == pytest.approx(60, abs=1)

    code, again, _ = run(
        capsys, "--dsn", dsn, "enqueue", "add", "[5, 6]", "--app", "tests.tasks:app", *options
    )
    assert code == 0
    assert enqueued_id(again) == job.id  # the live job already holds the key


def test_enqueue_without_app__unknown_task_when_no_live_worker_registered_it(
    app: pgq.App, conn: Conn, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    register_live_worker(app, ["other.task"])
    register_live_worker(app, ["reports.build"], lease_seconds=-1)  # expired: dead

    code, out, err = run(capsys, "--dsn", dsn, "enqueue", "reports.build", '{"month": 3}')

    assert (code, out) == (1, "")
    assert_one_line_error(err, "unknown task 'reports.build'", "--app")
    assert conn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (0,)


def test_enqueue_without_app__accepted_when_a_live_worker_registered_the_task(
    app: pgq.App, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    register_live_worker(app, ["reports.build"])

    code, out, err = run(
        capsys, "--dsn", dsn, "enqueue", "reports.build", '{"month": 3}', "--queue", "reports"
    )

    assert (code, err) == (0, "")
    job = app.get_job(enqueued_id(out))
    assert (job.task, job.queue, job.kwargs) == ("reports.build", "reports", {"month": 3})


# status: see test_cli_status.py


@pytest.fixture
def mixed_queue(app: pgq.App) -> dict[str, int]:
    """default: 1 succeeded, 1 failed, 1 ready echo (no live worker knows echo) and
    1 scheduled add; images: 1 ready add. One live worker that knows only add."""
    ids = {"succeeded": tasks.add.delay(1, 1).id, "failed": tasks.fail_now.delay().id}
    app.run_worker(burst=True)
    ids["orphan"] = tasks.echo.delay("hello").id
    ids["scheduled"] = tasks.add.using(run_after=3600).delay(0, 0).id
    ids["images"] = tasks.add.using(queue="images").delay(2, 2).id
    register_live_worker(app, ["add"])
    return ids


# jobs


def listed_ids(out: str) -> list[int]:
    return [int(line.split()[0]) for line in out.splitlines()[1:]]


def test_jobs__lists_newest_first_with_filters(
    mixed_queue: dict[str, int], dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = mixed_queue
    code, out, _ = run(capsys, "--dsn", dsn, "jobs")
    assert code == 0
    assert out.splitlines()[0].split() == [
        "id", "status", "queue", "task", "attempts", "age", "progress", "error",
    ]  # fmt: skip
    assert listed_ids(out) == sorted(ids.values(), reverse=True)
    failed_line = next(line for line in out.splitlines() if line.startswith(f"{ids['failed']} "))
    assert "failed" in failed_line and "no point retrying" in failed_line

    def listed(*filters: str) -> list[int]:
        code, out, _ = run(capsys, "--dsn", dsn, "jobs", *filters)
        assert code == 0
        return listed_ids(out)

    assert listed("--status", "failed") == [ids["failed"]]
    assert listed("--queue", "images") == [ids["images"]]
    assert listed("--task", "echo") == [ids["orphan"]]
    assert listed("--task", "add", "--queue", "default") == [ids["scheduled"], ids["succeeded"]]
    assert listed("--limit", "2") == [ids["images"], ids["scheduled"]]
    assert run(capsys, "--dsn", dsn, "jobs", "--status", "cancelled") == (0, "no jobs\n", "")


def test_jobs_json__every_field(
    mixed_queue: dict[str, int], dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--dsn", dsn, "jobs", "--json", "--status", "succeeded")

    assert code == 0
    [job] = json.loads(out)
    assert job["id"] == mixed_queue["succeeded"]
    assert (job["task"], job["status"], job["args"], job["result"]) == (
        "add",
        "succeeded",
        [1, 1],
        2,
    )
    assert job["attempts"] == 1 and job["finished_at"] is not None
    assert json.loads(run(capsys, "--dsn", dsn, "jobs", "--json", "--task", "nope")[1]) == []


def test_jobs__bad_status_is_a_usage_error(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--dsn", dsn, "jobs", "--status", "lost")
    assert code == 2
    assert "'lost' is not one of" in err


# retry


def test_retry__failed_job_goes_back_to_the_queue(
    app: pgq.App, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tasks.fail_now.delay()
    app.run_worker(burst=True)
    assert job.refresh().status is JobStatus.FAILED

    assert run(capsys, "--dsn", dsn, "retry", str(job.id)) == (0, f"queued again: {job.id}\n", "")
    job.refresh()
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 0)


def test_retry__queued_or_missing_job_fails_with_exit_1(
    app: pgq.App, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = tasks.fail_now.delay()
    app.run_worker(burst=True)
    queued = tasks.add.delay(1, 2)

    code, out, err = run(capsys, "--dsn", dsn, "retry", str(failed.id), str(queued.id), "999999")

    assert code == 1
    assert out == f"queued again: {failed.id}\n"  # the retryable one still moved
    assert_one_line_error(err, "not retried", f"{queued.id} 999999")
    assert queued.refresh().status is JobStatus.QUEUED


# cancel


def test_cancel__queued_job_is_cancelled(
    app: pgq.App, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tasks.add.delay(1, 2)

    assert run(capsys, "--dsn", dsn, "cancel", str(job.id)) == (0, f"cancelled: {job.id}\n", "")
    assert job.refresh().status is JobStatus.CANCELLED


def test_cancel__running_job_gets_a_cancellation_request(
    app: pgq.App, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    worker_id = uuid.uuid4()
    app.execute(store.register_worker(worker_id, "elsewhere", 4242, None, ["add"], 1, 60))
    job = tasks.add.delay(1, 2)
    [claimed] = app.execute(store.claim_jobs(worker_id, None, ["add"], 1))
    assert claimed["id"] == job.id

    code, out, err = run(capsys, "--dsn", dsn, "cancel", str(job.id))

    assert (code, err) == (0, "")
    assert out == f"cancellation requested (running): {job.id}\n"
    job.refresh()
    assert (job.status, job.cancel_requested) == (JobStatus.RUNNING, True)


def test_cancel__finished_job_fails_with_exit_1(
    app: pgq.App, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tasks.add.delay(1, 2)
    app.run_worker(burst=True)

    code, out, err = run(capsys, "--dsn", dsn, "cancel", str(job.id))

    assert (code, out) == (1, "")
    assert_one_line_error(err, "not cancelled", str(job.id))
    assert job.refresh().status is JobStatus.SUCCEEDED


# demo, help, version


def test_demo__on_the_given_database_prints_the_summary(dsn: str) -> None:
    done = run_process("demo", "--dsn", dsn, env=subprocess_env(dsn))

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "migrated: already up to date" in done.stdout
    assert "all settled in" in done.stdout
    summary = [line for line in done.stdout.splitlines() if line.startswith("  #")]
    assert len(summary) == 7
    assert "demo.urgent_report" in summary[0]  # priority 10 ran first
    assert any("demo.charge_card" in line and "failed" in line for line in summary)
    assert any("demo.flaky_upload" in line and "attempts=2" in line for line in summary)


def test_help__python_dash_m_lists_every_verb() -> None:
    done = run_process("--help")

    assert done.returncode == 0
    for verb in ("migrate", "worker", "enqueue", "status", "jobs", "retry", "cancel", "demo"):
        assert re.search(rf"^\s+{verb}\s", done.stdout, re.M), verb


def test_version__console_script() -> None:
    script = Path(sys.executable).parent / "pgq"
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0
    assert re.fullmatch(r"pgq, version \S+\n", done.stdout)


# Errors: one line on stderr, no traceback, exit 1 (2 for usage errors).

ErrorCase = tuple[str, list[str], str]
ERRORS: list[ErrorCase] = [
    # Checked before any connection is made: the DSN may point nowhere.
    ("closed_dsn", ["--dsn", "postgresql://[", "status"], "invalid DSN"),
    ("closed_dsn", ["--dsn", "dbname=x port", "jobs"], "invalid DSN"),
    ("closed_dsn", ["enqueue", "add", "[1, 2]", "--app", "tests.tasks"], "must look like"),
    ("closed_dsn", ["enqueue", "add", "[1, 2]", "--app", "no_such_module:app"], "cannot import"),
    ("closed_dsn", ["enqueue", "add", "[1, 2]", "--app", "tests.tasks:add"], "is not a pgq.App"),
    # The database is unreachable, or not migrated.
    ("closed_dsn", ["migrate"], "cannot connect to postgresql://"),
    ("closed_dsn", ["status"], "cannot connect to postgresql://"),
    ("closed_dsn", ["enqueue", "add", "[1, 2]"], "cannot connect to postgresql://"),
    ("closed_dsn", ["retry", "1"], "cannot connect to postgresql://"),
    ("empty_dsn", ["status"], "run `pgq migrate`"),
    ("empty_dsn", ["jobs"], "run `pgq migrate`"),
    ("empty_dsn", ["cancel", "1"], "run `pgq migrate`"),
    # Refused by the App or the database.
    ("dsn", ["enqueue", "nope", "{}", "--app", "tests.tasks:app"], "unknown task 'nope'"),
    ("dsn", ["enqueue", "add", "[1, 2]", "--app", "tests.tasks:app", "--queue", "a b"], "queue"),
    ("dsn", ["enqueue", "add", "[1]", "--app", "tests.tasks:app", "--priority", "99999"], "range"),
    ("dsn", ["retry", "999999"], "not retried"),
]
# One of each kind: bad DSN, bad --app, unreachable, unmigrated, unknown task, bad option.
AS_PROCESS = [ERRORS[i] for i in (0, 3, 6, 9, 12, 13)]


def cli_args(request: pytest.FixtureRequest, database: str, args: list[str]) -> list[str]:
    """ARGS with ``--dsn`` of the named database fixture, unless they bring their own."""
    if "tests.tasks:app" in args:
        request.getfixturevalue("app")  # the CLI points tests.tasks.app at the database
    if "--dsn" in args:
        return args
    return ["--dsn", request.getfixturevalue(database), *args]


@pytest.mark.parametrize(("database", "args", "message"), ERRORS, ids=lambda v: str(v))
def test_error__one_line_on_stderr_and_exit_1(
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    database: str,
    args: list[str],
    message: str,
) -> None:
    code, out, err = run(capsys, *cli_args(request, database, args))

    assert (code, out) == (1, "")
    assert_one_line_error(err, message)


@pytest.mark.parametrize(("database", "args", "message"), AS_PROCESS, ids=lambda v: str(v))
def test_error__as_a_process_exits_1_with_one_line_and_no_traceback(
    request: pytest.FixtureRequest, database: str, args: list[str], message: str
) -> None:
    argv = cli_args(request, database, args)

    done = run_process(*argv, env=subprocess_env(argv[argv.index("--dsn") + 1]))

    assert done.returncode == 1
    assert done.stdout == ""
    assert_one_line_error(done.stderr, message)


def test_error__missing_dsn_says_how_to_configure_one(
    dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = subprocess_env(dsn)
    del env["PGQ_DSN"]
    done = run_process("status", env=env)

    assert done.returncode == 1
    assert_one_line_error(done.stderr, "PGQ_DSN", "DATABASE_URL")

    monkeypatch.delenv("PGQ_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    code, _, err = run(capsys, "jobs")
    assert code == 1
    assert_one_line_error(err, "not configured")


def test_error__worker_on_an_unmigrated_database_exits_1_without_traceback(
    empty_dsn: str,
) -> None:
    done = subprocess.run(
        pgq_command(empty_dsn, "worker", "--app", "tests.tasks:app", "--burst"),
        cwd=ROOT,
        env=subprocess_env(empty_dsn),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("pgq: error:") and "run `pgq migrate`" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["enqueue", "add", "{bad", "--app", "tests.tasks:app"], "not valid JSON"),
        (["enqueue", "add", "42", "--app", "tests.tasks:app"], "must be a JSON object or array"),
        (["retry", "12", "x"], "job ids are integers"),
        (["cancel", "abc"], "job ids are integers"),
        (["cancel", "0"], "positive integers"),
        (["enqueue", "add", "[1, 2]", "--delay", "-5"], "Invalid value for '--delay'"),
        (["retry"], "Missing argument"),
        (["frobnicate"], "No such command"),
    ],
)
def test_usage_error__exit_2_and_no_traceback(
    closed_dsn: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run(capsys, "--dsn", closed_dsn, *args)  # refused before connecting

    assert (code, out) == (2, "")
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["enqueue", "add", "{bad"], "Error: Invalid value for ARGUMENTS: not valid JSON"),
        (["retry", "7", "x"], "Error: Invalid value: job ids are integers, got 7 x"),
    ],
)
def test_usage_error__as_a_process_exits_2(closed_dsn: str, args: list[str], message: str) -> None:
    done = run_process("--dsn", closed_dsn, *args, env=subprocess_env(closed_dsn))

    assert done.returncode == 2
    assert done.stdout == ""
    assert any(line.startswith(message) for line in done.stderr.splitlines()), done.stderr
    assert "Traceback" not in done.stderr


def test_debug__shows_the_traceback(closed_dsn: str) -> None:
    done = run_process("--debug", "--dsn", closed_dsn, "status", env=subprocess_env(closed_dsn))

    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "pgq.exceptions.DatabaseUnavailable: cannot connect to" in done.stderr
